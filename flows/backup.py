"""`backup_sessions`: parameters -> options -> `operations.backup_sessions` (preflight, resumable
copy, each a task) -> artifacts."""

from __future__ import annotations

from typing import Any

from session_migration import parameters

from ._artifacts import metrics, table
from ._edge import PREFECT, Connection, session_flow


@session_flow(name="backup-sessions", log_prints=True)
def backup_sessions(
    source: Connection,
    backup_path: str,
    patterns: list[str] | None = None,
    batch_size: int = 1000,
    preserve_ttl: bool = True,
    compression: str = "zstd",
    dry_run: bool = False,
    snapshot_id: str | None = None,
    capture_dump: bool = False,
    part_rows: int = 100_000,
    readers: int | None = None,
    signing_key_block: str | None = None,
    storage_block: str | None = None,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Back up the sessions of a Redis/Valkey server into a Parquet snapshot.

    Args:
        source: a redis:// URL without password (use ?password_env=VAR) or a RedisConnection block name.
        backup_path: the snapshot root, any fsspec URL (a folder, s3://bucket/prefix, memory://...).
        patterns: key patterns to back up; default: every known session store's keys.
        batch_size: keys per SCAN page and pipelined read.
        preserve_ttl: capture each key's absolute expiry.
        compression: Parquet codec (zstd, snappy, lz4, gzip, brotli, none).
        dry_run: write nothing; report keys and bytes per type and pattern and the estimated size.
        snapshot_id: resume this unfinished snapshot, or name a new one; default: a new time-sortable id.
        capture_dump: also store DUMP payloads (enables RESTORE on restore; costs server CPU).
        part_rows: rows per Parquet part, the checkpoint granularity.
        readers: worker processes, each reading and writing one share of the SCAN (1, 2, 4 or 8);
            default: 2 on 4 or more cores for a database of 50,000 keys or more, else 1.
        signing_key_block: name of a Prefect Secret block holding the signing key (docs/snapshot-format.md);
            default: SESSION_MIGRATION_SIGNING_KEY from the environment, if set.
        storage_block: name of a SnapshotStorage block whose storage options (credentials, endpoint)
            open the snapshot filesystem; default: fsspec's own configuration and the environment.
        dask_address: a Dask scheduler (tcp://HOST:8786): the reads run there as one task per SCAN
            segment (`readers` of them, default: the cluster's threads), each writing its own parts
            (docs/scale-out.md); default: in the flow's process.
    """
    summary = parameters.run_operation("backup_sessions", PREFECT, locals())
    _publish(summary)
    return summary


def _publish(summary: dict[str, Any]) -> None:
    rows = metrics(summary, ("snapshot", "source", "server", "keys", "bytes", "parts", "vanished", "duplicates",
                             "with_ttl", "without_ttl", "resumed_parts", "estimated_snapshot_bytes"))
    rows += [{"metric": f"type {k}", "value": v} for k, v in summary["by_type"].items()]
    rows += [{"metric": f"store {k}", "value": v} for k, v in summary["by_store"].items()]
    rows += [{"metric": f"pattern {k}", "value": f"{v['keys']:,} keys, {v['bytes']:,} bytes"}
             for k, v in summary["by_pattern"].items()]
    dry_run = summary.get("dry_run")
    table("backup-dry-run" if dry_run else "backup-summary", rows,
          "Dry run: nothing written" if dry_run else f"Snapshot {summary['snapshot_id']}")
