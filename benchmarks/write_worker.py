"""One contestant of `run_writes.py`, in its own process (its peak RSS is its own).

    python benchmarks/write_worker.py backup URL DEST
    python benchmarks/write_worker.py audit SNAPSHOT            (validate_snapshot + compute_stats)
    python benchmarks/write_worker.py restore SNAPSHOT TARGET
    python benchmarks/write_worker.py transfer SOURCE TARGET CHECKPOINT_DIR
    python benchmarks/write_worker.py migrate-ref SOURCE TARGET  (server-side MIGRATE, 1,000 keys a call)

Prints `BENCH-RESULT {json}` last: what it did and the seconds inside the call.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    mode, *args = sys.argv[1:]
    started = time.perf_counter()
    if mode == "backup":
        from session_migration import backup

        result = {"keys": backup(args[0], args[1], patterns=["sess:*"]).counters.keys}
    elif mode == "audit":
        from session_migration import open_snapshot, storage
        from session_migration.stats import compute_stats
        from session_migration.validation import validate_snapshot

        fs, path = storage.resolve(args[0])
        report = validate_snapshot(fs, path)
        stats = compute_stats(open_snapshot(args[0], verify=False))
        result = {"valid": report.valid, "keys": stats.keys, "by_status": stats.by_status}
    elif mode == "restore":
        from session_migration.restore import restore

        result = {"keys": restore(args[0], args[1]).summary()["written"]}
    elif mode == "transfer":
        from session_migration.transfer import transfer

        summary = transfer(args[0], args[1], checkpoint_path=args[2]).summary()
        result = {"keys": summary["written"]}
    elif mode == "migrate-ref":
        result = {"keys": migrate_reference(args[0], args[1])}
    else:
        raise SystemExit(f"unknown mode {mode}")
    result["call_s"] = time.perf_counter() - started
    print("BENCH-RESULT " + json.dumps(result))


def migrate_reference(source_url: str, target_url: str, per_call: int = 1000) -> int:
    """What an operator would do with the server alone: SCAN, then MIGRATE ... COPY REPLACE KEYS."""
    import redis

    source = redis.Redis.from_url(source_url)
    target = redis.Redis.from_url(target_url)
    host, port = target.connection_pool.connection_kwargs["host"], target.connection_pool.connection_kwargs["port"]
    moved, cursor, batch = 0, 0, []
    while True:
        cursor, keys = source.scan(cursor=cursor, match="sess:*", count=per_call)
        batch.extend(keys)
        while len(batch) >= per_call or (cursor == 0 and batch):
            chunk, batch = batch[:per_call], batch[per_call:]
            source.execute_command("MIGRATE", host, port, "", 0, 60_000, "COPY", "REPLACE", "KEYS", *chunk)
            moved += len(chunk)
        if cursor == 0:
            return moved


if __name__ == "__main__":
    main()
