"""What the operator sees: stdout for results, stderr for progress and messages.

Nothing an operator must copy (ids, URLs, paths) is ever cut: such values are printed on
lines of their own that do not wrap, and table cells fold instead of ending in an ellipsis.
Text that came from outside (keys, URLs, messages quoting them) has its control characters
replaced before it reaches the terminal.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from session_migration.redaction import safe_text
from session_migration.retry import Retry

STATUS_EVERY_S = 30.0  # a status line without progress bars
from session_migration.runner import Feedback

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

def safe(text: Any) -> str:
    """Untrusted text for the terminal: control characters (escape sequences) made visible,
    Rich markup escaped."""
    return escape(safe_text(text))


def number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else safe(value)


def table(title: str | None = None, columns: tuple[str, ...] = (), numeric: tuple[str, ...] = ()) -> Table:
    """A table whose cells fold rather than being cut."""
    made = Table(title=title, title_justify="left")
    for column in columns:
        made.add_column(column, overflow="fold", justify="right" if column in numeric else "left")
    return made


class Report:
    """A command's result for people (stdout, or stderr with --json) and scripts (--json: the
    last line of stdout is one JSON object)."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.console = err if as_json else out

    def line(self, text: str = "", style: str | None = None) -> None:
        self.console.print(text, style=style, soft_wrap=True)

    def field(self, label: str, value: Any) -> None:
        """`label: value` on a line of its own that never wraps or ends in an ellipsis."""
        self.console.print(f"  {label}: {number(value)}", soft_wrap=True)

    def show(self, renderable: Any) -> None:
        self.console.print(renderable)

    def result(self, data: dict[str, Any]) -> None:
        if self.as_json:
            print(json.dumps(data, default=str), flush=True)


def emit_error(message: str, kind: str, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    err.print(f"[bold red]error:[/] {safe(message)}", soft_wrap=True)
    if as_json:
        print(json.dumps({"error": message, "kind": kind, **(extra or {})}, default=str), flush=True)


class TerminalFeedback(Feedback):
    """Sentences and retries on stderr; one progress bar per long step (on a terminal, or with
    SESSION_MIGRATION_PROGRESS=1; never with --json)."""

    def __init__(self, as_json: bool):
        self.bars_enabled = (not as_json and err.is_terminal) or os.environ.get("SESSION_MIGRATION_PROGRESS") == "1"
        self._progress = None
        self._tasks: dict[str, Any] = {}
        self.run_id: str | None = None
        self._on_reached: dict[str, Any] = {}
        self._status_at = time.monotonic()

    def _print(self, text: str) -> None:
        (self._progress.console if self._progress is not None else err).print(text, soft_wrap=True)

    def run_started(self, run_id: str) -> None:
        self.run_id = run_id

    def say(self, text: str) -> None:
        self._print(safe(text))

    def retrying(self, retry: Retry) -> None:
        self._print(f"[yellow]{safe(retry.sentence())}[/]")

    def reached(self, step: str, info: dict[str, Any]) -> None:
        if step in self._on_reached:
            self._on_reached[step](info)

    def on_reached(self, step: str, callback: Any) -> None:
        """Call `callback(info)` when the operation reports that `step` is reached."""
        self._on_reached[step] = callback

    def progress(self, key: str, description: str, event: Any) -> None:
        if not self.bars_enabled:
            self._status_line(description, event)
            return
        if self._progress is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("{task.fields[count]}"), TimeElapsedColumn(), console=err, transient=False)
            self._progress.start()
        if key not in self._tasks:
            self._tasks[key] = self._progress.add_task(safe(description), total=100, count="")
        count = getattr(event, "keys", None)
        if count is None:
            count = getattr(event, "rows", None)
        shown = getattr(event, "detail", None) or (f"{count:,} keys" if isinstance(count, int) else "")
        self._progress.update(self._tasks[key], completed=100 * event.fraction, count=shown)

    def _status_line(self, description: str, event: Any) -> None:
        """Without bars (piped, --json), a step that reports a `detail` (a live run following
        for hours) still gets one line on stderr every STATUS_EVERY_S."""
        detail = getattr(event, "detail", None)
        now = time.monotonic()
        if detail and now - self._status_at >= STATUS_EVERY_S:
            self._status_at = now
            self._print(f"{safe(description)}: {safe(detail)}")

    def progress_done(self, key: str) -> None:
        if self._progress is not None and key in self._tasks:
            self._progress.update(self._tasks[key], completed=100)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
