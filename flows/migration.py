"""`full_migration`: `operations.full_migration` with each step a task (backup, validate,
pre-image, restore part by part, verify, audit; on failure, the rollback), then a markdown
artifact that tells the whole story. The core's `run_migration` runs the very same steps."""

from __future__ import annotations

from typing import Any

from session_migration import parameters
from session_migration.errors import MigrationFailed

from ._artifacts import final_state, markdown, md, number, publish_live, report_link
from ._edge import PREFECT, Connection, session_flow


@session_flow(name="full-migration", log_prints=True)
def full_migration(
    source: Connection,
    target: Connection,
    backup_path: str,
    patterns: list[str] | None = None,
    batch_size: int = 1000,
    preserve_ttl: bool = True,
    dry_run: bool = False,
    verify: bool = True,
    rollback_on_failure: bool = True,
    require_empty_target: bool = False,
    signing_key_block: str | None = None,
    storage_block: str | None = None,
    live: bool = False,
    live_mode: str | None = None,
    live_until: str | None = None,
    resume_live: str | None = None,
) -> dict[str, Any]:
    """Move sessions from SOURCE to TARGET through a validated snapshot, verify, audit; on a
    failure after the first write, put TARGET back exactly as its pre-image says.

    Args:
        source: a redis:// URL without password (use ?password_env=VAR) or a RedisConnection block name.
        target: the same kinds.
        backup_path: root for the snapshots, the target's pre-image and migrations/<id>.json (any fsspec URL).
        patterns: key patterns in scope; default: every known session store's keys.
        batch_size: keys per SCAN page and pipelined read/write.
        preserve_ttl: carry each key's absolute expiry over.
        dry_run: write nothing; report the backup's numbers and what the restore would do.
        verify: compare the snapshot with the target after the restore (a mismatch fails the run).
        rollback_on_failure: undo the target's changes when a step after the first write fails.
        require_empty_target: refuse when the target already holds keys in scope.
        signing_key_block: name of a Prefect Secret block holding the signing key (docs/snapshot-format.md);
            default: SESSION_MIGRATION_SIGNING_KEY from the environment, if set.
        storage_block: name of a SnapshotStorage block whose storage options (credentials, endpoint)
            open the snapshot filesystem; default: fsspec's own configuration and the environment.
        live: record the source's changes from before the backup and, after the verify, follow them
            until the run is stopped (SIGTERM, cancellation) or live_until; then drain, verify, audit.
        live_mode: notify (keyspace notifications; default) or scan (compare-and-repair passes).
        live_until: stop following at this instant (ISO 8601) or after this long (30m, 2h).
        resume_live: the id of a live migration that stopped while following (a crash): go on
            following it, after a compare-and-repair pass.
    """
    try:
        summary = parameters.run_operation("full_migration", PREFECT, locals())
    except MigrationFailed as failed:
        _publish(failed.summary, str(failed))
        raise
    _publish(summary)
    publish_live(summary.get("live"), "migration")
    return final_state(summary)


def _publish(summary: dict[str, Any], failure: str | None = None) -> None:
    if summary.get("dry_run"):
        plan = summary["restore_plan"]
        markdown("migration-dry-run", [
            "# Migration dry run: nothing written", "",
            f"- source: `{summary['source']}` ({summary['source_server']})",
            f"- target: `{summary['target']}` ({summary['target_server']})",
            f"- keys in scope on the source: {number(summary['backup']['keys'])} "
            f"({number(summary['backup']['bytes'])} bytes)",
            f"- would create {number(plan['would_create'])}, overwrite {number(plan['would_overwrite'])}; "
            f"target keys in scope {number(plan['target_keys_in_scope'])}, of which kept (not in the source) "
            f"{number(plan['target_only_kept'])}"], "Dry run: nothing written")
        return
    if not summary.get("migration_id"):
        return  # refused before it started: nothing to tell beyond the error
    verify = summary.get("verify") or {}
    restore = summary.get("restore") or {}
    title = "done" if summary.get("ok") else ("FAILED, rolled back" if summary.get("rolled_back") else "FAILED")
    lines = [f"# Migration {summary['migration_id']}: {title}", "",
             f"- source: `{summary['source']}`", f"- target: `{summary['target']}`",
             f"- step reached: {summary['step']}",
             f"- snapshot: `{summary.get('snapshot')}` ({number((summary.get('backup') or {}).get('keys', 0))} keys)",
             f"- target pre-image: `{summary.get('pre_image')}` ({number(summary.get('pre_image_keys') or 0)} keys)",
             f"- state file: `{summary.get('state_file')}`"]
    if restore:
        lines.append(f"- restored: {number(restore.get('written', 0))} written ({number(restore.get('created', 0))} "
                     f"created, {number(restore.get('overwritten', 0))} overwritten), "
                     f"{number(restore.get('expired_on_arrival', 0))} expired on arrival")
    if verify:
        lines += ["", "| verify | keys |", "|---|---|"]
        lines += [f"| {c} | {n:,} |" for c, n in verify.get("counts", {}).items()]
        lines.append(f"| target-only kept | {verify.get('kept_target_only', 0):,} |")
        lines.append(f"| unexpected extra | {verify.get('unexpected_extra', 0):,} |")
    if summary.get("rollback"):
        rb = summary["rollback"]
        lines += ["", f"**Rollback** ({rb.get('stage')}): {number(rb.get('deleted_new', 0))} new keys deleted, "
                      f"{number(rb.get('restored', 0))} pre-image keys restored, "
                      f"{number(rb.get('removed_expired', 0))} expired meanwhile and removed."]
    if summary.get("audit"):
        lines += ["", "Audit report: " + ", ".join(report_link(url, f"report.{kind}")
                                                    for kind, url in summary["audit"].items())]
    if failure:
        lines += ["", f"**Error:** {md(failure)}"]
    markdown("migration-report", lines, f"Migration {summary['migration_id']}: {title}")
