"""One contestant of the benchmark, run by `run.py` as its own process (so its peak RSS is its own).

    python benchmarks/worker.py core URL DEST --pattern 'sess:*' [--batch-size N] [--part-rows N] [--compression C]
    python benchmarks/worker.py flow URL DEST ...      (the Prefect flow, ephemeral mode)
    python benchmarks/worker.py noop-flow URL DEST     (an empty Prefect flow: Prefect's fixed cost)

Prints one line `BENCH-RESULT {json}` at the end: the keys backed up, the time inside the call
(imports excluded), the import time, and this process's own peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def vm_hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["core", "flow", "noop-flow"])
    parser.add_argument("url")
    parser.add_argument("dest")
    parser.add_argument("--pattern", action="append", default=None)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--part-rows", type=int, default=100_000)
    parser.add_argument("--compression", default="zstd")
    parser.add_argument("--dry-run", action="store_true", help="flow only: warm-up run, writes nothing")
    args = parser.parse_args()
    patterns = args.pattern or ["sess:*"]

    t_import = time.perf_counter()
    if args.mode == "core":
        from session_migration import backup
    elif args.mode == "flow":
        sys.path.insert(0, str(ROOT))
        from flows import backup_sessions
    else:
        sys.path.insert(0, str(ROOT))
        import flows  # noqa: F401 - the same imports as the real flow
        from prefect import flow

        @flow(name="bench-noop")
        def noop() -> dict:
            return {"keys": 0}
    import_s = time.perf_counter() - t_import
    rss_after_import = vm_hwm_kb()

    started = time.perf_counter()
    if args.mode == "core":
        result = backup(args.url, args.dest, patterns=patterns, batch_size=args.batch_size,
                        part_rows=args.part_rows, compression=args.compression)
        summary = result.summary()
    elif args.mode == "noop-flow":
        summary = noop()
    else:
        summary = backup_sessions(source=args.url, backup_path=args.dest, patterns=patterns,
                                  batch_size=args.batch_size, part_rows=args.part_rows,
                                  compression=args.compression, dry_run=args.dry_run)
    call_s = time.perf_counter() - started
    out = {
        "mode": args.mode,
        "keys": summary.get("keys"),
        "bytes": summary.get("bytes"),
        "vanished": summary.get("vanished"),
        "duplicates": summary.get("duplicates"),
        "parts": summary.get("parts"),
        "snapshot_bytes": summary.get("snapshot_bytes"),
        "call_s": call_s,
        "import_s": import_s,
        "vm_hwm_kb": vm_hwm_kb(),
        "vm_hwm_after_import_kb": rss_after_import,
        # which copy of the package ran (ab.py checks it imported the version it meant to)
        "module_file": sys.modules["session_migration"].__file__,
    }
    sys.stdout.flush()
    print("BENCH-RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
