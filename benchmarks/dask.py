"""The backup on a local Dask cluster (2 workers) against the local default, at 1M keys.

    python benchmarks/dask.py [--keys 1000000] [--rounds 3]

One throwaway redis-server is seeded as in `run.py` (session-like values of ~1.1 KB, TTLs of
1-24 h) and backed up with its pattern `sess:*`; a `prefect server` and a Dask cluster (`dask scheduler` + 2 `dask worker --nthreads 1`)
run on loopback. Each round runs every contestant once, in an order that rotates from round to
round, each in a fresh process (so the machine's drift hits all alike):

- `direct-1`: the local default on this 2-core machine (no Prefect, one process, `readers` 1);
- `direct-2`: the home-made worker processes (`readers` 2), no Prefect;
- `flow-local`: the backup_sessions flow as it runs without `dask_address`: default `readers` (one
  process on this 2-core machine), Prefect's default task runner;
- `flow-2`: the backup_sessions flow with `readers` 2 (worker processes, Prefect's default task runner);
- `flow-dask`: the backup_sessions flow with `dask_address` (2 unit tasks on the 2 Dask workers);
- `flow-dask-1`: the same with `readers` 1: the whole backup as one unit task on one Dask worker.
  Against `flow-local` it is the same work in one process, so the difference is what Dask adds
  (shipping the task, the worker's process and environment, `import distributed`), apart from
  what two units side by side cost on two cores that the server also needs.

Prints the median wall time of the process, time in the call, client CPU (the process and its
children; not the Dask workers, which are long-lived) and server CPU; for the Dask runs also the
Prefect task runs' durations (the units' own time is reported by the units: `seconds`), which
give the overhead per task. Writes benchmarks/results/dask-<time>.json. Measurement only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# This file's folder goes last: first, `import dask` would find this very file
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]

CONTESTANTS = ("direct-1", "direct-2", "flow-local", "flow-2", "flow-dask", "flow-dask-1")
PATTERN = "sess:*"  # the seeded express sessions, as in run.py


def child(name: str, url: str, root: str, dask: str) -> None:
    """One backup, in this fresh process; prints `BENCH-RESULT {json}`."""
    sys.path.insert(0, str(ROOT))
    started = time.perf_counter()
    if name.startswith("direct"):
        from session_migration import backup

        result = backup(url, root, patterns=[PATTERN], readers=int(name[-1])).summary()
        print("BENCH-RESULT " + json.dumps({"call_s": time.perf_counter() - started, "keys": result["keys"]}))
        return
    from flows import backup_sessions

    chosen = {"flow-dask": {"dask_address": dask}, "flow-dask-1": {"dask_address": dask, "readers": 1},
              "flow-2": {"readers": 2}, "flow-local": {}}[name]
    state = backup_sessions(source=url, backup_path=root, patterns=[PATTERN], return_state=True, **chosen)
    call = time.perf_counter() - started
    summary = state.result()
    print("BENCH-RESULT " + json.dumps({"call_s": call, "keys": summary["keys"], "units": summary.get("units"),
                                        "tasks": _task_seconds(state.state_details.flow_run_id)}))


def _task_seconds(flow_run_id) -> dict[str, float]:
    """Each task run's name -> its duration as Prefect recorded it (waits until all are final)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 60
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if (runs and all(r.state and r.state.is_final() and r.end_time for r in runs)) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    return {r.name: (r.end_time - r.start_time).total_seconds() for r in runs if r.start_time and r.end_time}


def _cluster(processes: list[subprocess.Popen]) -> str:
    """A scheduler and 2 workers of one thread (appended to `processes`, which the caller stops)."""
    from common import free_port
    from distributed import Client

    port = free_port()
    dask = str(Path(sys.executable).with_name("dask"))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    address = f"tcp://127.0.0.1:{port}"
    processes.append(subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                       "--no-dashboard"], **quiet))
    processes += [subprocess.Popen([dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--host",
                                    "127.0.0.1", "--no-dashboard"], **quiet) for _ in range(2)]
    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
    return address


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=4, metavar=("NAME", "URL", "ROOT", "DASK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    import distributed  # noqa: F401 - now, while `dask` still means the package (run.py puts this folder first)
    from common import measure, seed, start_server
    from run import PrefectServer, _base_env, _server_flow_env, log

    server = start_server("redis")
    prefect = PrefectServer()
    cluster: list[subprocess.Popen] = []
    results: dict[str, list[dict]] = {name: [] for name in CONTESTANTS}
    try:
        address = _cluster(cluster)
        log(f"seeding {args.keys:,} keys")
        seed(server, args.keys, 18)
        envs = {"direct": _base_env(), "flow": _server_flow_env(prefect.api_url)}
        url = f"redis://127.0.0.1:{server.port}/0"

        def once(name: str) -> dict:
            with tempfile.TemporaryDirectory(prefix="bench-dask-") as root:
                m = measure([sys.executable, __file__, "--child", name, url, root, address], server=server,
                            env=envs[name.split("-")[0]])
            line = next((x for x in m.stdout.splitlines() if x.startswith("BENCH-RESULT ")), None)
            if m.returncode != 0 or line is None:
                raise RuntimeError(f"{name} failed: {m.stderr[-2000:]}")
            return {"wall_s": m.wall_s, "client_cpu_s": m.user_s + m.sys_s, "server_cpu_s": m.server_cpu_s,
                    **json.loads(line.split(" ", 1)[1])}

        log("warming up: a first flow run and a first task on each Dask worker")
        once("flow-dask")
        for r in range(args.rounds):
            order = CONTESTANTS[r % len(CONTESTANTS):] + CONTESTANTS[:r % len(CONTESTANTS)]
            for name in order:
                results[name].append(once(name))
                log(f"round {r + 1} {name}: {results[name][-1]['wall_s']:.1f} s")
    finally:
        for process in cluster:
            process.terminate()
        for process in cluster:
            process.wait(30)
        prefect.stop()
        server.stop()
    _report(results, args)


def _report(results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    med = {name: {k: statistics.median(run[k] for run in runs) for k in ("wall_s", "call_s", "client_cpu_s",
                                                                          "server_cpu_s")}
           for name, runs in results.items()}
    print(f"\n{args.keys:,} keys, median of {args.rounds} rounds\n")
    print("| contestant | wall | in the call | keys/s | client CPU | server CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | {m['wall_s']:.1f} s | {m['call_s']:.1f} s | {args.keys / m['call_s']:,.0f} | "
              f"{m['client_cpu_s']:.1f} s | {m['server_cpu_s']:.1f} s |")
    dask_runs = results["flow-dask"]
    tasks = [run["tasks"] for run in dask_runs]
    unit_task = statistics.median(s for t in tasks for n, s in t.items() if n.startswith("back-up-unit"))
    unit_own = statistics.median(u["seconds"] for run in dask_runs for u in run["units"])
    commit = statistics.median(s for t in tasks for n, s in t.items() if n.startswith("commit-backup-units"))
    # what the flow spent around its tasks: submitting, waiting, results, artifacts
    around = statistics.median(run["call_s"] - sum(s for n, s in run["tasks"].items() if not n.startswith("back-up-unit"))
                               - max(s for n, s in run["tasks"].items() if n.startswith("back-up-unit"))
                               for run in dask_runs)
    dask_call = med["flow-dask"]["call_s"]
    print(f"\nDask under the flow, in the call: {dask_call / med['flow-local']['call_s'] - 1:+.1%} against the same flow "
          f"without it (flow-local), {dask_call / med['flow-2']['call_s'] - 1:+.1%} against its 2 worker processes "
          f"(flow-2); {med['flow-dask']['wall_s'] / med['direct-1']['wall_s'] - 1:+.1%} wall against no Prefect (direct-1)")
    print(f"Dask with one unit (flow-dask-1), in the call: {med['flow-dask-1']['call_s'] / med['flow-local']['call_s'] - 1:+.1%} "
          "against flow-local (the same work in one process)")
    print(f"a unit task: {unit_task:.2f} s as Prefect saw it, {unit_own:.2f} s of its own work "
          f"(per task: {unit_task - unit_own:.3f} s of task-run overhead); commit (repeats pass + manifest): {commit:.2f} s; "
          f"the flow around its tasks: {around:.2f} s")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"dask-{stamp}.json").write_text(json.dumps({"keys": args.keys, "rounds": args.rounds, "runs": results,
                                                        "medians": med, "cpus": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
