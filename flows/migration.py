"""`full_migration`: backup -> validate -> pre-image -> restore -> verify -> audit, with rollback.

Wiring only: each step is a task (the existing backup, validate, restore, verify and audit
tasks, plus the migration tasks); a failure after the first write to the target runs the
rollback task in the except branch; a markdown artifact tells the whole story.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.utilities.annotations import quote

from session_migration.errors import SnapshotInvalid
from session_migration.migration import MigrationFailed, MigrationOptions, new_migration_id
from session_migration.patterns import DEFAULT_PATTERNS
from session_migration.restore import RestoreProgress
from session_migration.snapshot import new_snapshot_id
from tasks.audit import compute_stats_task, write_report_task
from tasks.backup import back_up_task
from tasks.migration import (
    check_migration_task, handle_failure_task, judge_verification_task, plan_migration_task, pre_image_task,
    record_step_task, start_migration_task, summary_task,
)
from tasks.progress import ProgressReporter
from tasks.restore import check_restore_task, finish_restore_task, restore_part
from tasks.validate import validate_snapshot_task
from tasks.verify import verify_task


@flow(name="full-migration", log_prints=True)
def full_migration(
    source: str,
    target: str,
    backup_path: str,
    patterns: list[str] | None = None,
    batch_size: int = 1000,
    preserve_ttl: bool = True,
    dry_run: bool = False,
    verify: bool = True,
    rollback_on_failure: bool = True,
    require_empty_target: bool = False,
    signing_key_block: str | None = None,
) -> dict[str, Any]:
    """Move sessions from SOURCE to TARGET through a validated snapshot, verify, audit; on a
    failure after the first write, put TARGET back exactly as its pre-image says.

    Args:
        source, target: redis:// URLs without password (use ?password_env=VAR) or RedisConnection block names.
        backup_path: root for the snapshots, the target's pre-image and migrations/<id>.json (any fsspec URL).
        patterns: key patterns in scope; default: every known session store's keys.
        batch_size: keys per SCAN page and pipelined read/write.
        preserve_ttl: carry each key's absolute expiry over.
        dry_run: write nothing; report the backup's numbers and what the restore would do.
        verify: compare the snapshot with the target after the restore (a mismatch fails the run).
        rollback_on_failure: undo the target's changes when a step after the first write fails.
        require_empty_target: refuse when the target already holds keys in scope.
        signing_key_block: name of a Prefect Secret block holding the signing key, which signs the
            snapshot, the pre-image and the state file; default: SESSION_MIGRATION_SIGNING_KEY, if set.
    """
    key = {"signing_key_block": signing_key_block}
    options = MigrationOptions(
        patterns=tuple(patterns) if patterns else DEFAULT_PATTERNS, batch_size=batch_size, preserve_ttl=preserve_ttl,
        dry_run=dry_run, verify=verify, rollback_on_failure=rollback_on_failure,
        require_empty_target=require_empty_target,
    )
    checked = check_migration_task(source, target, backup_path, options)
    if dry_run:
        summary = {"dry_run": True, **checked, **plan_migration_task(source, target, options)}
        _publish(summary)
        return summary
    migration_id = new_migration_id()
    start_migration_task(source, target, backup_path, options, migration_id, **key)
    try:
        backup = back_up_task(source, backup_path, options.backup_options(snapshot_id=new_snapshot_id()), **key)
        snapshot = backup["snapshot"]
        record_step_task(backup_path, migration_id, "backed_up", {"backup": backup},
                         {"snapshot": snapshot, "snapshot_id": backup["snapshot_id"]}, **key)
        validation = validate_snapshot_task(snapshot, **key)
        record_step_task(backup_path, migration_id, "validated" if validation["valid"] else "backed_up",
                         {"validate": {k: validation[k] for k in ("valid", "rows_checked", "problems")}}, **key)
        if not validation["valid"]:
            problems = " ".join(f"[{p['code']}] {p['message']}" for p in validation["problems"])
            raise SnapshotInvalid(f"The source snapshot {snapshot} is not valid: {problems}")
        pre = pre_image_task(target, backup_path, options, f"{new_snapshot_id()}-pre", **key)
        record_step_task(backup_path, migration_id, "pre_image", {"pre_image": pre},
                         {"pre_image": pre["snapshot"], "pre_image_id": pre["snapshot_id"]}, **key)
        record_step_task(backup_path, migration_id, "restoring", **key)  # from here on, rollback applies
        restore_options = options.restore_options()
        check = check_restore_task(snapshot, target, restore_options, **key)
        reporter = ProgressReporter(key="migration-restore-progress", description=f"Restore {check['snapshot_id']}")
        resumed = rows = written = 0
        for index, name in enumerate(check["parts"], 1):
            done = restore_part(snapshot, target, name, restore_options, **key)
            resumed, rows, written = resumed + bool(done["resumed"]), rows + done["rows"], written + done["written"]
            reporter(RestoreProgress(check["snapshot_id"], name, index, len(check["parts"]), rows, written,
                                     index / len(check["parts"])))
        reporter.done()
        restored = finish_restore_task(snapshot, target, restore_options, resumed, check["server"], **key)
        record_step_task(backup_path, migration_id, "restored", {"restore": restored}, **key)
        if verify:
            report = verify_task(snapshot, target, options.verify_options())
            judged = judge_verification_task(report, target, snapshot, pre["snapshot"], options, **key)
            record_step_task(backup_path, migration_id, "restored", None, {"verify": judged}, **key)
            if not judged["ok"]:
                raise MigrationFailed("Verification failed: " + ", ".join(
                    f"{c} {n}" for c, n in judged["counts"].items() if c in ("MISSING", "TYPE", "VALUE", "TTL") and n)
                    + (f", unexpected EXTRA {judged['unexpected_extra']}" if judged["unexpected_extra"] else ""))
        record_step_task(backup_path, migration_id, "verified", **key)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded and, after a write, rolled back
        outcome = handle_failure_task(target, backup_path, migration_id, str(exc) or exc.__class__.__name__,
                                      rollback_on_failure, patterns=list(options.patterns), **key)
        _publish(outcome["summary"], outcome["message"])
        raise MigrationFailed(outcome["message"], outcome["summary"]) from exc
    stats = compute_stats_task(snapshot, validation)
    audit = write_report_task(snapshot, validation, quote(stats), f"{snapshot.rstrip('/')}/audit")
    record_step_task(backup_path, migration_id, "audited", None, {"audit": audit["files"]}, **key)
    record_step_task(backup_path, migration_id, "done", **key)
    summary = summary_task(backup_path, migration_id, **key)
    _publish(summary)
    return summary


def _publish(summary: dict[str, Any], failure: str | None = None) -> None:
    if summary.get("dry_run"):
        plan = summary["restore_plan"]
        lines = ["# Migration dry run: nothing written", "",
                 f"- source: `{summary['source']}` ({summary['source_server']})",
                 f"- target: `{summary['target']}` ({summary['target_server']})",
                 f"- keys in scope on the source: {summary['backup']['keys']:,} ({summary['backup']['bytes']:,} bytes)",
                 f"- would create {plan['would_create']:,}, overwrite {plan['would_overwrite']:,}; "
                 f"target keys in scope {plan['target_keys_in_scope']:,}, of which kept (not in the source) "
                 f"{plan['target_only_kept']:,}"]
        create_markdown_artifact(key="migration-dry-run", markdown="\n".join(lines), description="Dry run: nothing written")
        return
    verify = summary.get("verify") or {}
    restore = summary.get("restore") or {}
    title = "done" if summary.get("ok") else ("FAILED, rolled back" if summary.get("rolled_back") else "FAILED")
    lines = [f"# Migration {summary['migration_id']}: {title}", "",
             f"- source: `{summary['source']}`", f"- target: `{summary['target']}`",
             f"- step reached: {summary['step']}",
             f"- snapshot: `{summary.get('snapshot')}` ({(summary.get('backup') or {}).get('keys', 0):,} keys)",
             f"- target pre-image: `{summary.get('pre_image')}` ({summary.get('pre_image_keys') or 0:,} keys)"]
    if restore:
        lines.append(f"- restored: {restore.get('written', 0):,} written ({restore.get('created', 0):,} created, "
                     f"{restore.get('overwritten', 0):,} overwritten), {restore.get('expired_on_arrival', 0):,} expired on arrival")
    if verify:
        lines += ["", "| verify | keys |", "|---|---|"]
        lines += [f"| {c} | {n:,} |" for c, n in verify.get("counts", {}).items()]
        lines.append(f"| target-only kept | {verify.get('kept_target_only', 0):,} |")
        lines.append(f"| unexpected extra | {verify.get('unexpected_extra', 0):,} |")
    if summary.get("rollback"):
        rb = summary["rollback"]
        lines += ["", f"**Rollback** ({rb.get('stage')}): {rb.get('deleted_new', 0):,} new keys deleted, "
                      f"{rb.get('restored', 0):,} pre-image keys restored, {rb.get('removed_expired', 0):,} expired meanwhile and removed."]
    if summary.get("audit"):
        lines += ["", "Audit report: " + ", ".join(f"[{k}]({v})" for k, v in summary["audit"].items())]
    if failure:
        lines += ["", f"**Error:** {failure}"]
    create_markdown_artifact(key="migration-report", markdown="\n".join(lines),
                             description=f"Migration {summary['migration_id']}: {title}")
