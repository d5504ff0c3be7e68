"""Where the time of a core backup goes: cProfile over `session_migration.backup` on N keys.

    python benchmarks/profile_backup.py [--keys 100000] [--server redis|valkey] [--top 25]

Starts its own throwaway server, seeds the same session-like data as run.py, and profiles one
backup (patterns=["sess:*"]). The backup normally reads Redis in a prefetch thread while the main
thread writes Parquet; cProfile only sees the thread it runs in, so by default the prefetch is
replaced by a pass-through and the whole job runs serially in the main thread (the sum of the
stages, not their overlap). `--threaded` keeps the real prefetch (main-thread view only).
Writes the raw stats to benchmarks/results/profile-<keys>.pstats.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import seed, start_server  # noqa: E402

# The stages of the loop, by function, for a compact summary (cumulative time of each).
STAGES = {
    "SCAN pages": ("sources/redis.py", "scan_page"),
    "read: MGET + PEXPIRETIME round trip (send, recv, hiredis parse)": ("sources/resp.py", "execute"),
    "read: RESP packing": ("sources/resp.py", "pack_per_key"),
    "read: store detection (detect_store)": ("sessions/detect.py", "detect_store"),
    "read: Python lists -> Arrow batch (to_batch)": ("sources/redis.py", "to_batch"),
    "read: whole (RedisSource.read)": ("sources/redis.py", "read"),
    "dedupe (SeenKeys.add_new)": ("session_migration/seen.py", "add_new"),
    "counters (add_batch)": ("session_migration/counters.py", "add_batch"),
    "Parquet: Arrow table -> encode + zstd + sha256 + file (PartWriter._flush)": ("sinks/snapshot.py", "_flush"),
    "Parquet: close a part (PartWriter.finish)": ("sinks/snapshot.py", "finish"),
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--server", choices=["redis", "valkey"], default="redis")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--threaded", action="store_true", help="keep the prefetch thread (main thread profiled only)")
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args()

    import session_migration
    import session_migration.pipeline as pipeline

    if not args.threaded:
        pipeline.prefetch = lambda items, depth=4: items  # serial: every stage in this thread
    server = start_server(args.server)
    dest = tempfile.mkdtemp(prefix="bench-profile-")
    try:
        seed(server, args.keys, seed_value=args.seed)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        result = session_migration.backup(server.url, dest, patterns=["sess:*"])
        profiler.disable()
        wall = time.perf_counter() - started
    finally:
        server.stop()
        shutil.rmtree(dest, ignore_errors=True)

    (HERE / "results").mkdir(exist_ok=True)
    out = HERE / "results" / f"profile-{args.keys}{'-threaded' if args.threaded else ''}.pstats"
    profiler.dump_stats(out)
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # tottime summed = profiled CPU+wait of this thread
    from run import source_fingerprint

    print(f"source fingerprint {source_fingerprint()} (as in run.py's results)")
    print(f"{result.counters.keys:,} keys in {wall:.2f} s under cProfile "
          f"({'threaded' if args.threaded else 'serial'}; {result.counters.keys / wall:,.0f} keys/s, profiler overhead included)")
    print(f"\n## Stages (cumulative seconds, share of {wall:.2f} s)\n")
    for label, (file_part, func) in STAGES.items():
        cum = sum(v[3] for k, v in stats.stats.items() if file_part in k[0] and k[2] == func)
        calls = sum(v[1] for k, v in stats.stats.items() if file_part in k[0] and k[2] == func)
        print(f"- {label}: {cum:.2f} s ({cum / wall:.0%}), {calls:,} calls")
    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(args.top)
    print(f"\n## Top {args.top} by own time (tottime)\n")
    print("\n".join(line for line in buf.getvalue().splitlines() if line.strip())[:8000])
    print(f"\nstats: {out.relative_to(HERE.parent)}  (total own time {total:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
