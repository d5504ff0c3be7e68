"""`transfer_sessions`: parameters -> options -> `operations.transfer_sessions` (preflight, one
resumable copy task) -> artifact."""

from __future__ import annotations

from typing import Any

from session_migration import parameters
from session_migration.plan import PLAN_KEYS

from ._artifacts import final_state, publish_live, publish_summary
from ._edge import PREFECT, Connection, session_flow


@session_flow(name="transfer-sessions", log_prints=True)
def transfer_sessions(
    source: Connection,
    target: Connection,
    patterns: list[str] | None = None,
    ttl_policy: str = "absolute",
    min_ttl_seconds: int = 0,
    on_conflict: str = "replace",
    rename_prefix: list[str] | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    checkpoint_path: str | None = None,
    signing_key_block: str | None = None,
    storage_block: str | None = None,
    live: bool = False,
    live_mode: str | None = None,
    live_until: str | None = None,
) -> dict[str, Any]:
    """Copy sessions from one Redis/Valkey server to another (SCAN + pipelined reads and writes; never MIGRATE).

    Args:
        source: a redis:// URL without password (use ?password_env=VAR) or a RedisConnection block name.
        target: the same kinds; must be a different database than the source.
        patterns: key patterns to transfer; default: every known session store.
        ttl_policy: absolute (expire at the source's instant), relative (the TTL left, from now), none.
        min_ttl_seconds: skip sessions that would expire within this many seconds of arriving.
        on_conflict: replace existing keys, skip them, or fail before writing anything.
        rename_prefix: [OLD, NEW]: keys starting with OLD are written with NEW instead.
        batch_size: keys per SCAN page and pipelined round trip.
        dry_run: write nothing (not even a checkpoint); report what would happen.
        checkpoint_path: folder or fsspec URL for checkpoints (kept in its transfers/ folder);
            default: $SESSION_MIGRATION_STATE_DIR, else ~/.local/state/session-migration.
        signing_key_block: name of a Prefect Secret block holding the signing key (docs/snapshot-format.md);
            default: SESSION_MIGRATION_SIGNING_KEY from the environment, if set.
        storage_block: name of a SnapshotStorage block whose storage options (credentials, endpoint)
            open the snapshot filesystem; default: fsspec's own configuration and the environment.
        live: record the source's changes from before the copy and follow them after it until the
            run is stopped (SIGTERM, cancellation) or live_until; then drain, verify, report.
        live_mode: notify (keyspace notifications; default) or scan (compare-and-repair passes).
        live_until: stop following at this instant (ISO 8601) or after this long (30m, 2h).
    """
    summary = parameters.run_operation("transfer_sessions", PREFECT, locals())
    publish_summary(summary, SUMMARY_KEYS, "transfer", "Transfer {source} -> {target}")
    publish_live(summary.get("live"), "transfer")
    return final_state(summary)


SUMMARY_KEYS = ("source", "target", "source_server", "target_server", "resumed", "checkpoints", "scanned", "keys",
                "vanished", "duplicates", "expired_on_arrival", "below_min_ttl", "written", "created", "overwritten",
                "skipped_existing", "dump_restored", "dump_fallbacks", "typed_writes", *PLAN_KEYS)
