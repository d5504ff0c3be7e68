"""`cleanup_expired_sessions`: find expired (and optionally stale, corrupt, lock, orphan) keys;
with apply, snapshot them and delete them."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from session_migration.cleanup import CATEGORIES, CleanupOptions, parse_max_age
from session_migration.errors import InvalidParameter
from session_migration.patterns import DEFAULT_PATTERNS
from tasks.cleanup import cleanup_task


@flow(name="cleanup-expired-sessions")
def cleanup_expired_sessions(
    source: str,
    backup_path: str | None = None,
    patterns: list[str] | None = None,
    include: list[str] | None = None,
    max_age: dict[str, str] | None = None,
    max_delete: int = 10_000,
    apply: bool = False,
    batch_size: int = 500,
    max_rate: float | None = 5_000.0,
    signing_key_block: str | None = None,
) -> dict[str, Any]:
    """Delete expired sessions; a dry run unless `apply`.

    Args:
        source: a redis:// URL without password (use ?password_env=VAR) or a RedisConnection block name.
        backup_path: where the deleted keys are snapshotted first (required with apply).
        include: extra categories: stale, corrupt, locks, orphans (expired is always in).
        max_age: store -> duration (e.g. {"express": "30d"}) judging sessions without TTL by idle time.
        max_delete: refuse the run when it would delete more keys than this.
        max_rate: deletes per second at most.
        signing_key_block: name of a Prefect Secret block holding the signing key (docs/snapshot-format.md);
            default: SESSION_MIGRATION_SIGNING_KEY from the environment, if set.
    """
    if apply and not backup_path:
        raise InvalidParameter("apply needs a backup_path: the keys are snapshotted there before they are deleted.")
    options = CleanupOptions(patterns=tuple(patterns) if patterns else DEFAULT_PATTERNS,
                             include=frozenset(include or ()), max_age_ms=parse_max_age(max_age),
                             max_delete=max_delete, apply=apply, batch_size=batch_size, max_rate=max_rate)
    report = cleanup_task(source, options, backup_path, signing_key_block)
    verb = "deleted" if apply else "would delete"
    create_table_artifact(key="cleanup-summary", table=[
        {"category": c, "keys": report["candidates"][c], "included": c == "expired" or c in options.include}
        for c in CATEGORIES], description=f"Cleanup of {report['source']}: {verb} {report['total']} keys")
    lines = [f"# Cleanup ({'applied' if apply else 'dry run'})", "", f"- source: `{report['source']}`",
             f"- scanned: {report['scanned']}", f"- {verb}: {report['deleted'] if apply else report['total']}"]
    if apply:
        lines += [f"- kept because refreshed meanwhile: {report['changed']}", f"- already gone: {report['gone']}",
                  f"- pre-image snapshot (restore it to undo): `{report['pre_image']}`"]
    for category, keys in report["examples"].items():
        lines.append(f"- {category} examples: " + ", ".join(f"`{k}`" for k in keys))
    create_markdown_artifact(key="cleanup-report", markdown="\n".join(lines))
    return report
