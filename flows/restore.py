"""`restore_sessions`: parameters -> options -> `operations.restore_sessions` (preflight, one
task per part, totals) -> artifacts."""

from __future__ import annotations

from typing import Any

from session_migration import parameters
from session_migration.plan import PLAN_KEYS

from ._artifacts import publish_summary
from ._edge import PREFECT, Connection, session_flow


@session_flow(name="restore-sessions", log_prints=True)
def restore_sessions(
    snapshot: str,
    target: Connection,
    patterns: list[str] | None = None,
    ttl_policy: str = "absolute",
    min_ttl_seconds: int = 0,
    on_conflict: str = "replace",
    rename_prefix: list[str] | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    signing_key_block: str | None = None,
    storage_block: str | None = None,
    allow_unsigned: bool = False,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Restore a snapshot into a Redis/Valkey server.

    Args:
        snapshot: the snapshot folder or URL (ROOT/SNAPSHOT_ID), any fsspec URL.
        target: a redis:// URL without password (use ?password_env=VAR) or a RedisConnection block name.
        patterns: restore only rows matching these patterns; default: the snapshot's scope when a signing
            key verified its signature, else the default session patterns.
        ttl_policy: absolute (expire at the source's instant), relative (restart the captured TTL), none.
        min_ttl_seconds: skip sessions that would expire within this many seconds of arriving.
        on_conflict: replace existing keys, skip them, or fail before writing anything.
        rename_prefix: [OLD, NEW]: keys starting with OLD are written with NEW instead.
        batch_size: rows per pipelined round trip.
        dry_run: write nothing; report what would be created, overwritten, skipped, expired.
        signing_key_block: name of a Prefect Secret block holding the signing key (docs/snapshot-format.md);
            default: SESSION_MIGRATION_SIGNING_KEY from the environment, if set.
        storage_block: name of a SnapshotStorage block whose storage options (credentials, endpoint)
            open the snapshot filesystem; default: fsspec's own configuration and the environment.
        allow_unsigned: with a signing key configured, restore an unsigned snapshot all the same, knowingly.
        dask_address: a Dask scheduler (tcp://HOST:8786): the parts are written from there, one task per
            group of parts, as many groups as the cluster has threads (docs/scale-out.md); default: here.
    """
    summary = parameters.run_operation("restore_sessions", PREFECT, locals())
    publish_summary(summary, SUMMARY_KEYS, "restore", "Restore of snapshot {snapshot_id}")
    return summary


SUMMARY_KEYS = ("snapshot", "target", "server", "scope_from", "parts", "resumed_parts", "rows", "not_selected",
                "outside_default_patterns", "written", "created",
                "overwritten", "skipped_existing", "expired_on_arrival", "below_min_ttl", "dump_restored",
                "dump_fallbacks", "typed_writes", *PLAN_KEYS)
