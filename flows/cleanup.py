"""`cleanup_expired_sessions`: find expired (and optionally stale, corrupt, lock, orphan) keys;
with apply, snapshot them and delete them."""

from __future__ import annotations

from typing import Any

from session_migration import parameters
from session_migration.cleanup import CATEGORIES

from ._artifacts import code, markdown, number, table
from ._edge import PREFECT, Connection, session_flow


@session_flow(name="cleanup-expired-sessions")
def cleanup_expired_sessions(
    source: Connection,
    backup_path: str | None = None,
    patterns: list[str] | None = None,
    include: list[str] | None = None,
    max_age: dict[str, str] | None = None,
    max_delete: int = 10_000,
    apply: bool = False,
    batch_size: int = 500,
    max_rate: float | None = 5_000.0,
    signing_key_block: str | None = None,
    storage_block: str | None = None,
) -> dict[str, Any]:
    """Delete expired sessions; a dry run unless `apply`.

    Args:
        source: a redis:// URL without password (use ?password_env=VAR) or a RedisConnection block name.
        backup_path: where the deleted keys are snapshotted first (required with apply).
        patterns: key patterns in scope; default: every known session store.
        include: extra categories: stale, corrupt, locks, orphans (expired is always in).
        max_age: store -> duration (e.g. {"express": "30d"}) judging sessions without TTL by idle time.
        max_delete: refuse the run when it would delete more keys than this.
        apply: really delete (default: a dry run).
        batch_size: keys per SCAN page and per delete batch.
        max_rate: deletes per second at most.
        signing_key_block: name of a Prefect Secret block holding the signing key (docs/snapshot-format.md);
            default: SESSION_MIGRATION_SIGNING_KEY from the environment, if set.
        storage_block: name of a SnapshotStorage block whose storage options (credentials, endpoint)
            open the snapshot filesystem; default: fsspec's own configuration and the environment.
    """
    report = parameters.run_operation("cleanup_expired_sessions", PREFECT, locals())
    verb = "deleted" if apply else "would delete"
    table("cleanup-summary", [
        {"category": c, "keys": report["candidates"][c], "included": c == "expired" or c in (include or ())}
        for c in CATEGORIES], f"Cleanup of {report['source']}: {verb} {report['total']:,} keys")
    lines = [f"# Cleanup ({'applied' if apply else 'dry run'})", "", f"- source: `{report['source']}`",
             f"- scanned: {number(report['scanned'])}",
             f"- {verb}: {number(report['deleted'] if apply else report['total'])}"]
    if apply:
        lines += [f"- kept because refreshed meanwhile: {number(report['changed'])}",
                  f"- already gone: {number(report['gone'])}",
                  f"- pre-image snapshot (restore it to undo): `{report['pre_image']}`"]
    for category, keys in report["examples"].items():
        lines.append(f"- {category} examples: " + ", ".join(code(k) for k in keys))
    markdown("cleanup-report", lines)
    return report
