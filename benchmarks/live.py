"""Benchmark live following (`transfer --live`) and the compare-and-repair pass.

    python benchmarks/live.py [--keys 100000] [--rates 1500,5000,15000,max] [--seconds 20]
                              [--repair-keys 1000000] [--repeat 3] [--only follow,repair]

follow  Redis 7.0 source with --keys express sessions, Valkey 9 target. `session-migration transfer
        --live` (direct mode, its own process); once it prints "Now following", an application
        writes for --seconds at each rate (tests/live_writer.py: creates, refreshes, logouts,
        PEXPIREs, hash sessions, short TTLs; "max" is `redis-benchmark` SETs as fast as it goes,
        pipelined), then stops, and the tool gets SIGTERM. Reported: the writer's rate, the
        changes the tool applied per second of writing, its lag percentiles (event received ->
        key written; every sample is steady-state, since writing starts after the copy), the
        final lag at the stop, and the time from SIGTERM to exit (drain + final verify).
repair  --repair-keys keys equal on both sides: `session-migration verify A B` against one
        compare-and-repair pass (`Mirror.repair_pass(fix=False)`, what a gap or scan mode
        costs), each its own process, alternating, --repeat pairs.

Prints Markdown tables and writes benchmarks/results/live-<time>.json. Measurement only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from cli import direct_env  # noqa: E402
from common import seed, start_server  # noqa: E402

RESULTS = HERE / "results"
CLI = [sys.executable, "-m", "session_migration_cli"]
WRITER = ROOT / "tests" / "live_writer.py"
REDIS_BENCHMARK = "redis-benchmark"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def follow_at(rate: str, keys: int, seconds: float, home: Path) -> dict:
    src, dst = start_server("redis"), start_server("valkey")
    try:
        seed(src, keys, 1)
        with tempfile.TemporaryDirectory() as state:
            env = {**direct_env(home), "SESSION_MIGRATION_STATE_DIR": state}
            err_path = Path(state) / "tool.err"
            with open(err_path, "wb") as err, tempfile.TemporaryFile() as out:
                tool = subprocess.Popen([*CLI, "transfer", src.url, dst.url, "-p", "sess:*", "--live", "--json"],
                                        stdout=out, stderr=err, env=env)
                deadline = time.monotonic() + 300
                while b"Now following" not in err_path.read_bytes():
                    if tool.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(err_path.read_text(errors="replace")[-2000:])
                    time.sleep(0.1)
                ops, wrote_s = write(src, rate, keys, seconds)
                stopped = time.monotonic()
                tool.send_signal(signal.SIGTERM)
                tool.wait(600)
                drain_s = time.monotonic() - stopped
                out.seek(0)
                summary = json.loads(out.read().decode().strip().splitlines()[-1])
        live = summary["live"]
        return {"rate": rate, "writer_ops": ops, "writer_ops_per_s": round(ops / wrote_s),
                "changes": live["changes"], "applied_per_s": round(live["changes"] / wrote_s),
                "lag_ms": live["lag_ms"], "final_lag_ms": live["final_lag_ms"], "gaps": live["gaps"],
                "spills": live["spills"], "stop_to_exit_s": round(drain_s, 2), "verify_ok": live["verify"]["ok"],
                "verify_keys": live["verify"]["keys"], "source": f"redis {src.version}",
                "target": f"valkey {dst.version}"}
    finally:
        src.stop()
        dst.stop()


def write(src, rate: str, keys: int, seconds: float) -> tuple[int, float]:
    """The application's writes; returns (operations, seconds spent writing)."""
    started = time.monotonic()
    if rate == "max":
        count = int(60_000 * seconds)  # more than it can do in `seconds`; it is stopped then
        bench = subprocess.Popen([REDIS_BENCHMARK, "-h", "127.0.0.1", "-p", str(src.port), "-r", str(keys),
                                  "-n", str(count), "-c", "4", "-P", "16", "-q", "--csv", "SET",
                                  "sess:__rand_int__", "value-changed-by-benchmark"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        before = int(src.info("stats")["total_commands_processed"])
        try:
            bench.wait(seconds)
        except subprocess.TimeoutExpired:
            bench.terminate()
            bench.wait()
        elapsed = time.monotonic() - started
        return int(src.info("stats")["total_commands_processed"]) - before, elapsed
    app = subprocess.Popen([sys.executable, str(WRITER), src.url, str(seconds), rate, str(keys)],
                           stdout=subprocess.PIPE)
    out, _ = app.communicate(timeout=seconds + 60)
    return int(out.strip() or 0), time.monotonic() - started


def repair_cost(keys: int, repeat: int, home: Path) -> dict:
    src, dst = start_server("redis"), start_server("valkey")
    try:
        seed(src, keys, 2)
        env = {**direct_env(home), "SESSION_MIGRATION_STATE_DIR": str(home / "state")}
        subprocess.run([*CLI, "transfer", src.url, dst.url, "-p", "sess:*"], env=env, check=True,
                       capture_output=True)
        runs: dict[str, list[float]] = {"verify": [], "repair pass": []}
        commands = {
            "verify": [*CLI, "verify", src.url, dst.url, "-p", "sess:*", "--json"],
            "repair pass": [sys.executable, str(Path(__file__)), "--one-repair-pass", src.url, dst.url],
        }
        for i in range(repeat):
            for name in (("verify", "repair pass") if i % 2 == 0 else ("repair pass", "verify")):
                started = time.perf_counter()
                done = subprocess.run(commands[name], env=env, capture_output=True, text=True)
                runs[name].append(round(time.perf_counter() - started, 2))
                if done.returncode != 0:
                    raise RuntimeError(f"{name} failed: {done.stdout[-1000:]} {done.stderr[-1000:]}")
                log(f"{name}: {runs[name][-1]} s")
        return {"keys": keys, "runs": runs, "median_s": {k: statistics.median(v) for k, v in runs.items()}}
    finally:
        src.stop()
        dst.stop()


def one_repair_pass(source: str, target: str) -> None:
    """One compare pass over sess:* on both sides, as a gap or scan mode runs it; prints its counts."""
    sys.path.insert(0, str(ROOT))
    from session_migration.endpoints import RedisEndpoint
    from session_migration.live.mirror import Mirror

    mirror = Mirror(RedisEndpoint.from_url(source), RedisEndpoint.from_url(target), ("sess:*",))
    try:
        result = mirror.repair_pass(fix=False)
    finally:
        mirror.close()
    print(json.dumps(result["counts"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--rates", default="1500,5000,15000,max")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--repair-keys", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="follow,repair")
    parser.add_argument("--one-repair-pass", nargs=2, metavar=("SOURCE", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_repair_pass:
        one_repair_pass(*args.one_repair_pass)
        return
    only = set(args.only.split(","))
    results: dict = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                              capture_output=True, text=True).stdout.strip(),
                     "args": vars(args)}
    with tempfile.TemporaryDirectory() as home:
        if "follow" in only:
            results["follow"] = []
            for rate in args.rates.split(","):
                log(f"following at {rate} ops/s for {args.seconds:g} s ...")
                results["follow"].append(follow_at(rate, args.keys, args.seconds, Path(home)))
                log(json.dumps(results["follow"][-1]))
        if "repair" in only:
            log(f"repair pass vs verify at {args.repair_keys:,} keys ...")
            results["repair"] = repair_cost(args.repair_keys, args.repeat, Path(home))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"live-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    print_tables(results)
    log(f"written {path}")


def print_tables(results: dict) -> None:
    if results.get("follow"):
        print("| writer rate asked | writer ops/s | applied/s | lag p50 ms | p90 | p99 | max | final lag ms | "
              "SIGTERM to exit s | gaps | spills | final verify |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in results["follow"]:
            lag = r["lag_ms"]
            print(f"| {r['rate']} | {r['writer_ops_per_s']:,} | {r['applied_per_s']:,} | {lag['p50']:,} | "
                  f"{lag['p90']:,} | {lag['p99']:,} | {lag['max']:,} | {r['final_lag_ms']:,} | "
                  f"{r['stop_to_exit_s']} | {r['gaps']} | {r['spills']} | "
                  f"{'OK' if r['verify_ok'] else 'MISMATCH'} ({r['verify_keys']:,} keys) |")
    if results.get("repair"):
        rep = results["repair"]
        print()
        print("| keys | contestant | runs s | median s |")
        print("|---:|---|---|---:|")
        for name, runs in rep["runs"].items():
            print(f"| {rep['keys']:,} | {name} | {', '.join(map(str, runs))} | {rep['median_s'][name]} |")


if __name__ == "__main__":
    main()
