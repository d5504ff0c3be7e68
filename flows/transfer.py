"""`transfer_sessions`: parameters -> options -> preflight -> one resumable copy task -> artifact."""

from __future__ import annotations

from typing import Any

from prefect import flow

from session_migration.plan import PLAN_KEYS as _PLAN_KEYS
from session_migration.transfer import TransferOptions
from tasks.transfer import check_transfer_task, transfer_task

from ._artifacts import publish_summary, write_options

_COUNT_KEYS = ("scanned", "keys", "vanished", "duplicates", "expired_on_arrival", "below_min_ttl")


@flow(name="transfer-sessions", log_prints=True)
def transfer_sessions(
    source: str,
    target: str,
    patterns: list[str] | None = None,
    ttl_policy: str = "absolute",
    min_ttl_seconds: int = 0,
    on_conflict: str = "replace",
    rename_prefix: list[str] | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    checkpoint_path: str | None = None,
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
            default ./.session-migration.
    """
    options = write_options(TransferOptions, patterns=patterns, ttl_policy=ttl_policy, min_ttl_seconds=min_ttl_seconds,
                            on_conflict=on_conflict, rename_prefix=rename_prefix, batch_size=batch_size, dry_run=dry_run)
    check = check_transfer_task(source, target, options, checkpoint_path)
    if dry_run:
        plan = check.get("plan", {})
        summary = {
            "source": check["source"], "target": check["target"], "source_server": check["source_server"],
            "target_server": check["target_server"], "dry_run": True,
            **{k: plan.get(k, 0) for k in (*_COUNT_KEYS, *_PLAN_KEYS)},
        }
    else:
        summary = transfer_task(source, target, options, checkpoint_path)
    _publish(summary)
    return summary


def _publish(summary: dict[str, Any]) -> None:
    keys = ("source", "target", "source_server", "target_server", "resumed", "checkpoints", *_COUNT_KEYS,
            "written", "created", "overwritten", "skipped_existing", "dump_restored", "dump_fallbacks",
            "typed_writes", *_PLAN_KEYS)
    publish_summary(summary, keys, "transfer", "Transfer {source} -> {target}")
