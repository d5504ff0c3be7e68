"""Prefect's fixed cost per flow run, and how much of it is the flow-run heartbeat.

    python benchmarks/flow_overhead.py [--repeat 5]

Starts `prefect server start` on a free loopback port (as run.py's --with-prefect-server does),
then, in one process against it, times flows that only sleep 0, 0.25, 0.5 or 0.75 s: once with
Prefect's default settings and once with flow-run heartbeats off for that call
(`PREFECT_FLOWS_HEARTBEAT_FREQUENCY=None` through `temporary_settings`; Prefect 3.9 accepts no
"off" value from the environment). The difference is the time the engine waits at the end of
a run for its heartbeat thread, which sleeps in whole seconds. Prints a Markdown table and
writes benchmarks/results/flow-overhead-<time>.json. Measurement only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SLEEPS = (0.0, 0.25, 0.5, 0.75)


def child(repeat: int) -> None:
    """Runs with PREFECT_API_URL set: the timings, as one JSON line."""
    from prefect import flow
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    @flow(name="bench-sleep")
    def sleeper(seconds: float) -> None:
        time.sleep(seconds)

    def timed(seconds: float) -> float:
        started = time.perf_counter()
        sleeper(seconds)
        return time.perf_counter() - started - seconds  # Prefect's share of the call

    timed(0.0)  # the first run in a process also builds the client; not what is measured here
    rows = []
    for seconds in SLEEPS:
        default = [timed(seconds) for _ in range(repeat)]
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            without = [timed(seconds) for _ in range(repeat)]
        rows.append({"flow_body_s": seconds, "overhead_default_s": statistics.median(default),
                     "overhead_no_heartbeat_s": statistics.median(without)})
    print("FLOW-OVERHEAD " + json.dumps(rows), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each flow (median kept)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.repeat)
        return

    sys.path.insert(0, str(HERE))
    import prefect
    from run import PrefectServer, _server_flow_env, log

    server = PrefectServer()
    try:
        log(f"prefect server on {server.api_url}")
        out = subprocess.run([sys.executable, __file__, "--child", "--repeat", str(args.repeat)],
                             env=_server_flow_env(server.api_url), capture_output=True, text=True, check=True)
    finally:
        server.stop()
    line = next(x for x in out.stdout.splitlines() if x.startswith("FLOW-OVERHEAD "))
    rows = json.loads(line.split(" ", 1)[1])

    print(f"Prefect {prefect.__version__}, flow run against a running local server, median of {args.repeat}\n")
    print("| flow body (sleep) | Prefect's time in the call, default settings | the same, heartbeats off |")
    print("|---:|---:|---:|")
    for r in rows:
        print(f"| {r['flow_body_s']:.2f} s | {r['overhead_default_s']:.2f} s | {r['overhead_no_heartbeat_s']:.2f} s |")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / f"flow-overhead-{stamp}.json").write_text(json.dumps(
        {"prefect": prefect.__version__, "repeat": args.repeat, "rows": rows, "machine_cpus": os.cpu_count()},
        indent=2))


if __name__ == "__main__":
    main()
