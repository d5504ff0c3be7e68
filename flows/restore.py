"""`restore_sessions`: parameters -> options -> preflight -> one task per part -> artifacts."""

from __future__ import annotations

from typing import Any

from prefect import flow

from session_migration.options import RestoreOptions
from session_migration.plan import PLAN_KEYS as _PLAN_KEYS
from session_migration.restore import RestoreProgress
from tasks.progress import ProgressReporter
from tasks.restore import check_restore_task, finish_restore_task, restore_part

from ._artifacts import publish_summary, write_options


@flow(name="restore-sessions", log_prints=True)
def restore_sessions(
    snapshot: str,
    target: str,
    patterns: list[str] | None = None,
    ttl_policy: str = "absolute",
    min_ttl_seconds: int = 0,
    on_conflict: str = "replace",
    rename_prefix: list[str] | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    signing_key_block: str | None = None,
    allow_unsigned: bool = False,
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
        allow_unsigned: with a signing key configured, restore an unsigned snapshot all the same, knowingly.
    """
    options = write_options(RestoreOptions, patterns=patterns, ttl_policy=ttl_policy, min_ttl_seconds=min_ttl_seconds,
                            on_conflict=on_conflict, rename_prefix=rename_prefix, batch_size=batch_size, dry_run=dry_run)
    signing = {"signing_key_block": signing_key_block, "allow_unsigned": allow_unsigned}
    check = check_restore_task(snapshot, target, options, **signing)
    if dry_run:
        plan = check.get("plan", {})
        summary = {
            "snapshot": check["snapshot"], "snapshot_id": check["snapshot_id"], "target": check["target"],
            "server": check["server"], "dry_run": True, "parts": len(check["parts"]), "scope_from": check["scope_from"],
            **{k: plan.get(k, 0) for k in ("rows", "not_selected", "outside_default_patterns", "expired_on_arrival",
                                           "below_min_ttl", *_PLAN_KEYS)},
        }
        _publish(summary)
        return summary
    reporter = ProgressReporter(key="restore-progress", description=f"Restore {check['snapshot_id']}")
    resumed = rows = written = 0
    parts = check["parts"]
    for index, name in enumerate(parts, 1):
        done = restore_part(snapshot, target, name, options, **signing)
        resumed += bool(done["resumed"])
        rows += done["rows"]
        written += done["written"]
        reporter(RestoreProgress(check["snapshot_id"], name, index, len(parts), rows, written, index / len(parts)))
    reporter.done()
    summary = finish_restore_task(snapshot, target, options, resumed, check["server"], **signing)
    _publish(summary)
    return summary


def _publish(summary: dict[str, Any]) -> None:
    keys = ("snapshot", "target", "server", "scope_from", "parts", "resumed_parts", "rows", "not_selected",
            "outside_default_patterns", "written", "created",
            "overwritten", "skipped_existing", "expired_on_arrival", "below_min_ttl", "dump_restored",
            "dump_fallbacks", "typed_writes", *_PLAN_KEYS)
    publish_summary(summary, keys, "restore", "Restore of snapshot {snapshot_id}")
