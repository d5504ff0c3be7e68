"""Every operation, written once: its steps in order, what it tells the operator, its result.

An operation takes a `Runner` (runner.py) and runs each step through it: the Prefect flows
(flows/) pass one that makes each step a task; the CLI without a Prefect server, notebooks and
scripts pass a `DirectRunner`. So a backup, a restore or a migration does the same work, says
the same sentences, writes the same state files and returns the same summary whichever way it
is started.

Connections are Redis URLs, block names or endpoints; locations are fsspec URLs or resolved
`(fs, path)` pairs (see `steps.py`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from . import steps
from .endpoints import RedisEndpoint, is_block_name
from .errors import InvalidParameter, MigrationFailed, SnapshotInvalid, SnapshotNotFound
from .migration import new_migration_id, verification_failure
from .options import (
    BackupOptions, CleanupOptions, LiveOptions, MigrationOptions, RestoreOptions, RetentionOptions, TransferOptions, VerifyOptions,
)
from .plan import PLAN_KEYS
from .runner import Runner
from .signing import KeySource
from .snapshot import PRE_IMAGE_SUFFIX, new_snapshot_id
from .storage import Location

Connection = str | RedisEndpoint


def shown(connection: Connection) -> str:
    """A connection as an operator may see it: the URL without password, or the block's name."""
    if isinstance(connection, RedisEndpoint):
        return connection.display_url
    if "://" in connection:
        try:
            return RedisEndpoint.from_url(connection).display_url
        except ValueError:
            return "the given URL"
    return f"block {connection}" if is_block_name(connection) else repr(connection)


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 and count else "-"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"


# -- backup ------------------------------------------------------------------------------------


def backup_sessions(run: Runner, source: Connection, backup_path: Location, options: BackupOptions,
                    keys: KeySource | None = None) -> dict[str, Any]:
    """Preflight, then the resumable copy into a snapshot (or, as a dry run, the counts only)."""
    if options.snapshot_id is None and not options.dry_run:
        options = replace(options, snapshot_id=new_snapshot_id())  # fixed first, so a retry resumes it
    run.say(f"Connecting to {shown(source)} ...")
    info = run.step(steps.check_backup, source, backup_path, options)
    run.say(f"{info['source']}: {info['server']} {info['version']}, {info['dbsize']:,} keys in the database")
    if info.get("resume"):
        resume = info["resume"]
        run.say(f"Resuming snapshot {options.snapshot_id}: {resume['parts']:,} part(s) with {resume['keys']:,} keys "
                "already written are reused")
    progress = run.progress("backup-progress", f"Backup {options.snapshot_id or '(dry run)'}")
    started = time.monotonic()
    if run.spread and not options.dry_run:
        summary = _back_up_in_units(run, source, backup_path, options, progress, keys)
    else:
        summary = run.step(steps.back_up, source, backup_path, options, progress, keys)
    progress.done()
    elapsed = time.monotonic() - started
    summary["source"] = info["source"]
    summary["server"] = f"{info['server']} {info['version']}"
    if options.dry_run:
        run.say(f"Dry run: {summary['keys']:,} keys ({_size(summary['bytes'])}) would be backed up, about "
                f"{_size(summary.get('estimated_snapshot_bytes', 0))} of snapshot; nothing written")
    else:
        read_now = summary["keys"] - (info.get("resume") or {}).get("keys", 0)
        run.say(f"Backed up {summary['keys']:,} keys ({_size(summary['bytes'])}) in {elapsed:,.1f} s "
                f"({_rate(read_now, elapsed)}), {summary.get('parts', 0):,} part(s), "
                f"{summary['vanished']:,} vanished during the scan, into {summary['snapshot']}")
    return summary


def _back_up_in_units(run: Runner, source: Connection, backup_path: Location, options: BackupOptions,
                      progress: Any, keys: KeySource | None) -> dict[str, Any]:
    """The backup as one step per unit (a SCAN segment), run at once by the runner's task runner,
    then a commit step (`backup_units.py`). Units: `readers`, else as many as the runner runs at
    once (rounded down to a power of two, at most 8)."""
    from .pipeline import BackupProgress

    count = options.readers or min(8, 1 << (max(1, run.spread).bit_length() - 1))
    started = run.step(steps.start_backup_units, source, backup_path, options, count, keys)
    units = started["units"]
    if started["resumed_parts"]:
        run.say(f"Resuming snapshot {options.snapshot_id} in {len(units)} unit(s): {started['resumed_parts']:,} "
                f"part(s) with {started['resumed_keys']:,} keys already written are reused")
    else:
        run.say(f"Backing up in {len(units)} unit(s), one task each")
    done = run.each(steps.back_up_unit, [(source, backup_path, options, index, count) for index, count in units],
                    keys=keys)
    summary = run.step(steps.commit_backup_units, source, backup_path, options, keys)
    summary["units"] = done
    progress(BackupProgress(options.snapshot_id, summary["keys"], summary["bytes"], summary["vanished"],
                            options.patterns[-1], len(options.patterns), len(options.patterns), 1.0,
                            summary.get("parts", 0)))
    return summary


# -- restore -----------------------------------------------------------------------------------


def _write_parts(run: Runner, snapshot: Location, target: Connection, options: RestoreOptions,
                 check: dict[str, Any], progress_key: str, keys: KeySource | None) -> dict[str, Any]:
    """Write every part (one step each; done parts are skipped), then total up."""
    if check["done"]:
        run.say(f"Resuming the restore of {check['snapshot_id']}: {len(check['done']):,} of "
                f"{len(check['parts']):,} part(s) already written")
    progress = run.progress(progress_key, f"Restore {check['snapshot_id']}")
    resumed = 0
    if run.spread:  # one task per group of parts, the groups written at once (dask_address)
        groups = min(run.spread, len(check["parts"]))
        calls = [(snapshot, target, check["parts"][g::groups], options) for g in range(groups)]
        resumed = sum(done["resumed"] for group in run.each(steps.restore_parts, calls, keys=keys) for done in group)
    else:
        for name in check["parts"]:
            done = run.step(steps.restore_part, snapshot, target, name, options, progress, keys)
            resumed += bool(done["resumed"])
    progress.done()
    return run.step(steps.finish_restore, snapshot, target, options, resumed, check["server"], keys)


def restore_sessions(run: Runner, snapshot: Location, target: Connection, options: RestoreOptions,
                     keys: KeySource | None = None) -> dict[str, Any]:
    """Validate and plan, then write part by part (resumable); a dry run stops at the plan."""
    run.say(f"Validating the snapshot and connecting to {shown(target)} ...")
    check = run.step(steps.check_restore, snapshot, target, options, keys)
    if options.dry_run:
        plan = check.get("plan", {})
        summary = {
            "snapshot": check["snapshot"], "snapshot_id": check["snapshot_id"], "target": check["target"],
            "server": check["server"], "dry_run": True, "parts": len(check["parts"]),
            **{k: plan.get(k, 0) for k in ("rows", "not_selected", "expired_on_arrival", "below_min_ttl",
                                           "outside_default_patterns", *PLAN_KEYS)},
            **{k: check[k] for k in ("scope_from",) if k in check},
        }
        run.say(f"Dry run: would create {summary['would_create']:,}, overwrite {summary['would_overwrite']:,}, "
                f"skip {summary['would_skip_existing']:,}; nothing written")
        return summary
    started = time.monotonic()
    summary = _write_parts(run, snapshot, target, options, check, "restore-progress", keys)
    elapsed = time.monotonic() - started
    run.say(f"Restored {summary['written']:,} keys ({summary['created']:,} created, {summary['overwritten']:,} "
            f"overwritten) into {summary['target']} in {elapsed:,.1f} s ({_rate(summary['written'], elapsed)}); "
            f"{summary['expired_on_arrival']:,} expired on arrival")
    return summary


# -- transfer ----------------------------------------------------------------------------------

_TRANSFER_COUNTS = ("scanned", "keys", "vanished", "duplicates", "expired_on_arrival", "below_min_ttl")


def transfer_sessions(run: Runner, source: Connection, target: Connection, options: TransferOptions,
                      checkpoint_path: Location | None = None, keys: KeySource | None = None,
                      live: LiveOptions | None = None) -> dict[str, Any]:
    """Preflight (and the checkpoint), then one resumable streamed copy; with `live`, the
    source's changes are recorded from before the copy and followed after it until stopped."""
    if live is not None:
        LiveOptions.check_writes(options)
    run.say(f"Connecting to {shown(source)} and {shown(target)} ...")
    check = run.step(steps.check_transfer, source, target, options, checkpoint_path, keys, live is not None)
    if live is not None and not options.dry_run:
        return _live_transfer(run, source, target, options, checkpoint_path, keys, live, check)
    if options.dry_run:
        plan = check.get("plan", {})
        summary = {"source": check["source"], "target": check["target"], "source_server": check["source_server"],
                   "target_server": check["target_server"], "dry_run": True,
                   **{k: plan.get(k, 0) for k in (*_TRANSFER_COUNTS, *PLAN_KEYS)}}
        run.say(f"Dry run: would create {summary['would_create']:,}, overwrite {summary['would_overwrite']:,}, "
                f"skip {summary['would_skip_existing']:,}; nothing written")
        return summary
    return _copy(run, source, target, options, checkpoint_path, keys, check)


def _copy(run: Runner, source: Connection, target: Connection, options: TransferOptions,
          checkpoint_path: Location | None, keys: KeySource | None, check: dict[str, Any]) -> dict[str, Any]:
    """The transfer's copy step (resumed from its checkpoint), with its progress and sentences."""
    if check["resumed"]:
        run.say(f"Resuming the transfer from its checkpoint {check['checkpoint']}")
    progress = run.progress("transfer-progress", "Transfer")
    started = time.monotonic()
    summary = run.step(steps.transfer, source, target, options, checkpoint_path, progress, keys)
    progress.done()
    elapsed = time.monotonic() - started
    run.say(f"Transferred {summary['written']:,} keys ({summary['created']:,} created, {summary['overwritten']:,} "
            f"overwritten) in {elapsed:,.1f} s ({_rate(summary['written'], elapsed)})")
    return summary


def _live_transfer(run: Runner, source: Connection, target: Connection, options: TransferOptions,
                   checkpoint_path: Location | None, keys: KeySource | None, live: LiveOptions,
                   check: dict[str, Any]) -> dict[str, Any]:
    from .live import end

    resuming = check.get("resume_following", False)
    started = run.step(steps.start_live_transfer, source, target, options, live, checkpoint_path, keys)
    try:
        run.say(_recording_sentence(live, started["kept_target_only"]))
        if started["earlier_run"] and not resuming:
            run.say("An earlier live run of this transfer stopped during its copy: following starts with a "
                    "compare-and-repair pass")
        if resuming:
            run.say("The copy was done before the run stopped: following resumes with a compare-and-repair pass")
            summary = {k: check[k] for k in ("source", "target", "source_server", "target_server", "checkpoint")}
            summary["copy"] = "done before"
        else:
            summary = _copy(run, source, target, options, checkpoint_path, keys, check)
        summary["live"] = _follow(run, steps.follow_transfer, started["recording"], source, target, options, live,
                                  checkpoint_path, keys=keys, resuming=resuming or started["earlier_run"])
    finally:
        end(started["recording"])
    return summary


def _recording_sentence(live: LiveOptions, kept: int | None) -> str:
    how = ("keyspace notifications" if live.mode == "notify"
           else f"compare-and-repair passes every {live.scan_interval_s:g} s")
    until = f" until {live.until}" if live.until else " until SIGINT/SIGTERM (Ctrl-C)"
    own = "" if kept is None else f"; {kept:,} key(s) only the target had are kept"
    return f"Live: the source's changes are recorded from now and followed after the copy by {how}{until}{own}"


def _follow(run: Runner, step: Any, recording: str, *args: Any, keys: KeySource | None,
            resuming: bool) -> dict[str, Any]:
    """The follow step of a live run (`args` are its own), and what it tells the operator."""
    from .live.follow import signals_stop_following

    with signals_stop_following():  # true from the moment it is said
        run.say("Now following the source's changes; Ctrl-C or SIGTERM stops following, drains and verifies")
        progress = run.progress("live-progress", "Following")
        result = run.step(step, recording, *args, progress=progress, keys=keys, repair_first=resuming)
    progress.done()
    verify = result["verify"]
    lag = result["lag_ms"]
    run.say(f"Stopped following ({result['stopped_by']}): {result['changes']:,} changes applied "
            f"({result['written']:,} written, {result['deleted']:,} deleted), {result['repairs']:,} repair pass(es), "
            f"{result['gaps']:,} gap(s); lag p50 {lag['p50']:,} ms, p99 {lag['p99']:,} ms")
    run.say(f"Final verify of {verify['scope']}: {'OK' if verify['ok'] else 'MISMATCH'}, {verify['keys']:,} keys"
            + ("" if verify["ok"] else f", {verify['mismatches']:,} differ"))
    return result


# -- verify, validate, audit -------------------------------------------------------------------


def verify_sessions(run: Runner, a: Connection | Location, b: Connection | Location,
                    options: VerifyOptions, keys: KeySource | None = None) -> dict[str, Any]:
    """Compare A and B key by key, both directions."""
    progress = run.progress("verify-progress", "Verify")
    report = run.step(steps.verify, a, b, options, progress, keys)
    progress.done()
    mismatches = ", ".join(f"{c} {n:,}" for c, n in report["counts"].items() if n and c != "OK")
    run.say(f"Verify {'OK' if report['ok'] else 'MISMATCH'}: {report['counts']['OK']:,} keys equal"
            + (f"; {mismatches}" if mismatches else ""))
    return report


def validate_snapshot(run: Runner, snapshot: Location, check_rows: bool = True,
                      keys: KeySource | None = None) -> dict[str, Any]:
    """Manifest (and its signature, with a key), every part's sha256/rows/schema, unlisted files,
    duplicate and out-of-scope rows."""
    report = run.step(steps.validate, snapshot, check_rows, keys)
    run.say(f"Snapshot {report['snapshot']}: {'valid' if report['valid'] else 'INVALID'}, "
            f"{report['parts_checked']:,} part(s), {report['rows_checked']:,} rows checked")
    return report


def audit_report(run: Runner, snapshot: Location | None, output: Location | None = None,
                 max_age_ms: dict[str, int] | None = None, backup_path: Location | None = None,
                 keys: KeySource | None = None) -> dict[str, Any]:
    """Validate, count, judge every session, and write report.html/.md/.json and findings.csv.
    Without `snapshot`, the newest backup under `backup_path` is audited (a scheduled audit)."""
    if snapshot is None:
        if backup_path is None:
            raise InvalidParameter("Name the snapshot to audit, or a backup_path whose newest backup is audited.")
        snapshot = run.step(steps.newest_backup, backup_path, keys)
        run.say(f"Auditing the newest backup: {snapshot}")
    validation = run.step(steps.validate, snapshot, True, keys, _spread(run))
    if any(p["code"] == "not-found" for p in validation["problems"]):
        raise SnapshotNotFound(validation["problems"][0]["message"])
    return _audit(run, snapshot, validation, output, max_age_ms, keys)


def _spread(run: Runner) -> steps.Spread | None:
    """For a runner that runs steps at once (dask_address): per-part work as one step each."""
    if not run.spread:
        return None

    def mapper(fn: Any, calls: Any, _workers: int, _fs: Any = None) -> Any:
        return iter(run.each(fn, calls))

    return run.spread, mapper


def _audit(run: Runner, snapshot: Location, validation: dict[str, Any], output: Location | None,
           max_age_ms: dict[str, int] | None, keys: KeySource | None) -> dict[str, Any]:
    from .storage import child

    stats = run.step(steps.compute_stats, snapshot, validation, max_age_ms, _spread(run))
    report = run.step(steps.write_report, snapshot, validation, stats, output or child(snapshot, "audit"))
    run.say(f"Audit of {report['snapshot']['url']}: {report.get('keys', 0):,} keys, "
            f"{report['findings']['total']:,} finding(s); report: {report['files']['html']}")
    return report


# -- cleanup, retention ------------------------------------------------------------------------


def cleanup_expired_sessions(run: Runner, source: Connection, options: CleanupOptions,
                             backup_path: Location | None = None, keys: KeySource | None = None) -> dict[str, Any]:
    """Classify every key in scope; with apply, snapshot the chosen ones, then delete them."""
    run.say(f"Connecting to {shown(source)} ...")
    progress = run.progress("cleanup-progress", "Cleanup" if options.apply else "Cleanup (dry run)")
    report = run.step(steps.clean_up, source, options, backup_path, progress, keys)
    progress.done()
    if options.apply:
        run.say(f"Cleanup: {report['scanned']:,} keys scanned, {report['deleted']:,} deleted, {report['changed']:,} "
                f"kept (refreshed meanwhile), {report['gone']:,} already gone; pre-image {report['pre_image']}")
    else:
        run.say(f"Cleanup dry run: {report['scanned']:,} keys scanned, {report['total']:,} would be deleted")
    return report


def prune_snapshots(run: Runner, backup_path: Location, options: RetentionOptions,
                    keys: KeySource | None = None) -> dict[str, Any]:
    plan = run.step(steps.prune, backup_path, options, keys)
    verb = "would delete" if plan["dry_run"] else "deleted"
    run.say(f"Retention in {plan['root']}: keep {len(plan['keep']):,}, {verb} {len(plan['delete']):,} snapshot(s)")
    return plan


# -- migration ---------------------------------------------------------------------------------


def full_migration(run: Runner, source: Connection, target: Connection, backup_path: Location,
                   options: MigrationOptions, keys: KeySource | None = None,
                   live: LiveOptions | None = None) -> dict[str, Any]:
    """Backup -> validate -> pre-image -> restore -> verify -> audit; on a failure after the first
    write, the target is put back as its pre-image says. The state file
    `<backup_path>/migrations/<id>.json` records every step (see migration.py). With `live`, the
    source's changes are recorded from before the backup and followed after the verify until
    stopped (step `following`), then the audit.

    Raises `MigrationRefused` (nothing written) or `MigrationFailed` (with `.summary`)."""
    if live is not None and not options.preserve_ttl:
        raise InvalidParameter("A live migration keeps every key in scope equal on both sides: it needs expiry "
                               "carried over (drop --no-ttl / preserve_ttl=false).")
    run.say(f"Connecting to {shown(source)} and {shown(target)} ...")
    checked = run.step(steps.check_migration, source, target, backup_path, options)
    run.reached("preflight", checked)
    if options.dry_run:
        plan = run.step(steps.plan_migration, source, target, options)
        run.reached("restore_plan", plan["restore_plan"])
        return {"dry_run": True, **checked, **plan}
    migration_id = new_migration_id()
    started = run.step(steps.start_migration, source, target, backup_path, options, migration_id, keys)
    run.reached("started", {"migration_id": migration_id, "state_file": started["state_file"]})
    run.say(f"Migration {migration_id} started; its state file: {started['state_file']}")

    record = _recorder(run, backup_path, migration_id, keys)
    recording = None
    if live is not None:
        recording = run.step(steps.start_live_migration, source, backup_path, migration_id, options.patterns,
                             live)["recording"]
        run.say(_recording_sentence(live, None))
    try:
        return _migrate(run, source, target, backup_path, options, keys, live, migration_id, recording, record)
    finally:
        if recording is not None:
            from .live import end

            end(recording)


def _recorder(run: Runner, backup_path: Location, migration_id: str, keys: KeySource | None) -> Any:
    """`record(step, counts=None, **fields)`: move the migration's state file to `step` (a step)."""

    def record(step: str, counts: dict[str, Any] | None = None, **fields: Any) -> None:
        run.step(steps.record_migration_step, backup_path, migration_id, step, counts, fields or None, keys)

    return record


def _migrate(run: Runner, source: Connection, target: Connection, backup_path: Location, options: MigrationOptions,
             keys: KeySource | None, live: LiveOptions | None, migration_id: str, recording: str | None,
             record: Any) -> dict[str, Any]:
    try:
        backup = backup_sessions(run, source, backup_path, options.backup_options(snapshot_id=new_snapshot_id()), keys)
        record("backed_up", {"backup": backup}, snapshot=backup["snapshot"], snapshot_id=backup["snapshot_id"])
        run.reached("backup", backup)
        snapshot = _below(backup_path, backup["snapshot_id"])
        validation = run.step(steps.validate, snapshot, True, keys)
        checked_rows = {k: validation[k] for k in ("valid", "rows_checked", "problems")}
        if not validation["valid"]:
            record("backed_up", {"validate": checked_rows})
            problems = " ".join(f"[{p['code']}] {p['message']}" for p in validation["problems"])
            raise SnapshotInvalid(f"The source snapshot {backup['snapshot']} is not valid: {problems}")
        record("validated", {"validate": checked_rows})
        run.reached("validate", checked_rows)
        pre = run.step(steps.take_pre_image, target, backup_path, options, new_snapshot_id() + PRE_IMAGE_SUFFIX, keys)
        record("pre_image", {"pre_image": pre}, pre_image=pre["snapshot"], pre_image_id=pre["snapshot_id"])
        run.reached("pre_image", pre)
        run.say(f"Pre-image of the target: {pre['keys']:,} keys in scope, in {pre['snapshot']}")
        record("restoring")  # from here on, a failure rolls the target back
        restore_options = options.restore_options()
        check = run.step(steps.check_restore, snapshot, target, restore_options, keys)
        restored = _write_parts(run, snapshot, target, restore_options, check, "migration-restore-progress", keys)
        record("restored", {"restore": restored})
        run.reached("restore", restored)
        run.say(f"Restored {restored['written']:,} keys ({restored['created']:,} created, "
                f"{restored['overwritten']:,} overwritten)")
        if options.verify:
            progress = run.progress("migration-verify-progress", "Verify")
            report = run.step(steps.verify, snapshot, target, options.verify_options(), progress, keys)
            progress.done()
            judged = run.step(steps.judge_verification, report, target, backup_path, backup["snapshot_id"],
                              pre["snapshot_id"], options, keys)
            record("restored", None, verify=judged)
            run.reached("verify", judged)
            if not judged["ok"]:
                raise MigrationFailed(verification_failure(judged))
            run.say(f"Verified: {judged['counts']['OK']:,} keys equal, {judged['kept_target_only']:,} target-only "
                    "keys kept")
        record("verified")
        if live is not None:
            _follow_migration(run, source, target, backup_path, migration_id, live, keys, recording, record, False)
    except Exception as exc:  # every failure is recorded and, after a write, rolled back
        outcome = run.step(steps.handle_migration_failure, target, backup_path, migration_id,
                           str(exc) or exc.__class__.__name__, options, run.reached, keys)
        run.say(outcome["message"])
        raise MigrationFailed(outcome["message"], outcome["summary"]) from exc
    except BaseException as exc:  # Ctrl-C, SIGTERM: recorded; rolling back is the operator's call
        steps.record_interruption(backup_path, migration_id, exc, keys)
        raise
    return _audit_and_finish(run, snapshot, validation, backup_path, migration_id, keys, record)


def _follow_migration(run: Runner, source: Connection, target: Connection, backup_path: Location,
                      migration_id: str, live: LiveOptions, keys: KeySource | None, recording: str, record: Any,
                      resuming: bool) -> None:
    record("following")
    run.reached("following", {"migration_id": migration_id})
    followed = _follow(run, steps.follow_migration, recording, source, target, backup_path, migration_id, live,
                       keys=keys, resuming=resuming)
    run.reached("live", followed)


def resume_live_migration(run: Runner, source: Connection, target: Connection, backup_path: Location,
                          migration_id: str, options: MigrationOptions, live: LiveOptions,
                          keys: KeySource | None = None) -> dict[str, Any]:
    """Go on following a live migration that stopped while following (kill -9, a crash): a
    compare-and-repair pass first (what changed meanwhile is unknown), then follow, audit, done."""
    state = run.step(steps.migration_summary, backup_path, migration_id, keys)
    if state["step"] != "following":
        raise InvalidParameter(f"Migration {migration_id} is at step {state['step']!r}; --resume-live goes on only "
                               "with a live migration that stopped while following.")
    recorded = tuple(run.step(steps.migration_patterns, backup_path, migration_id, keys))
    if recorded != options.patterns:
        raise InvalidParameter(f"Migration {migration_id} was run with the patterns {', '.join(recorded)}; pass the "
                               "same --pattern options to resume it.")
    run.say(f"Resuming live migration {migration_id}: a compare-and-repair pass, then following")

    record = _recorder(run, backup_path, migration_id, keys)
    from .live import end

    recording = run.step(steps.start_live_migration, source, backup_path, migration_id, options.patterns,
                         live)["recording"]
    try:
        _follow_migration(run, source, target, backup_path, migration_id, live, keys, recording, record, True)
    finally:
        end(recording)
    snapshot = _below(backup_path, state["snapshot_id"])
    validation = run.step(steps.validate, snapshot, True, keys)
    return _audit_and_finish(run, snapshot, validation, backup_path, migration_id, keys, record)


def _audit_and_finish(run: Runner, snapshot: Location, validation: dict[str, Any], backup_path: Location,
                      migration_id: str, keys: KeySource | None, record: Any) -> dict[str, Any]:
    audit = _audit(run, snapshot, validation, None, None, keys)
    record("audited", None, audit=audit["files"])
    run.reached("audit", audit["files"])
    record("done")
    run.reached("done", {"migration_id": migration_id})
    summary = run.step(steps.migration_summary, backup_path, migration_id, keys)
    run.say(f"Migration {migration_id} done: {summary['restore']['written']:,} keys moved; "
            f"audit report: {summary['audit']['html']}")
    return summary


def _below(location: Location, name: str) -> Location:
    from .storage import child

    return child(location, name)
