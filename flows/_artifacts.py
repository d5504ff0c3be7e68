"""How the flows publish: table and markdown artifacts with readable numbers, escaped text,
and report links that open from the Prefect UI."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from session_migration import storage
from session_migration.redaction import markdown_escape, safe_text

SIGNED_LINK_SECONDS = 7 * 24 * 3600


def number(value: Any) -> Any:
    """3314000 -> "3,314,000"; anything else as it is."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value


def code(value: Any) -> str:
    """Untrusted text (a redacted key) as an inline code span: shown literally, nothing in it
    is markup; a backtick, which would end the span, becomes a quote."""
    return "`" + safe_text(value).replace("`", "'") + "`"


def md(value: Any) -> str:
    """Untrusted text (keys, reasons, URLs) as literal Markdown: no HTML, links or emphasis."""
    return markdown_escape(value)


def table(key: str, rows: Iterable[Mapping[str, Any]], description: str) -> None:
    create_table_artifact(key=key, table=[{k: number(v) for k, v in row.items()} for row in rows],
                          description=description)


def markdown(key: str, lines: list[str], description: str | None = None) -> None:
    create_markdown_artifact(key=key, markdown="\n".join(lines), description=description)


def metrics(summary: Mapping[str, Any], keys: Iterable[str]) -> list[dict[str, Any]]:
    """metric/value rows of `keys` present in `summary`."""
    return [{"metric": k, "value": summary[k]} for k in keys if k in summary]


def publish_summary(summary: Mapping[str, Any], keys: tuple[str, ...], name: str, description: str) -> None:
    """A metric/value table of `keys` present in `summary`, as `<name>-dry-run` or `<name>-summary`;
    `description` is formatted with the summary's fields (a dry run's is always "Dry run: nothing written")."""
    dry_run = summary.get("dry_run")
    table(f"{name}-dry-run" if dry_run else f"{name}-summary", metrics(summary, keys),
          "Dry run: nothing written" if dry_run else description.format_map(summary))


def report_link(url: str, label: str) -> str:
    """A Markdown link the Prefect UI can open: a signed https URL where the filesystem makes one
    (s3, gcs, ...); for local or other files, the path to copy (a browser will not open a
    file:// link from an http page)."""
    try:
        fs, path = storage.resolve(url)
        signed = fs.sign(path, expiration=SIGNED_LINK_SECONDS)
        if str(signed).startswith("https://"):
            return f"[{md(label)}]({signed}) (link valid for 7 days)"
    except Exception:  # noqa: BLE001 - most filesystems cannot sign: fall back to the path
        pass
    shown = url.removeprefix("file://")
    return f"{md(label)}: `{shown.replace('`', '')}` (copy this path)"


LIVE_KEYS = ("stopped_by", "following_s", "changes", "written", "deleted", "repairs", "repaired", "gaps", "spills",
             "final_lag_ms", "kept_target_only")


def publish_live(live: Mapping[str, Any] | None, name: str) -> None:
    """A live run's following, as the table `<name>-live`: what was applied, the lag, the final verify."""
    if not live:
        return
    verify = live.get("verify") or {}
    rows = metrics(live, LIVE_KEYS)
    rows += [{"metric": f"lag_ms_{q}", "value": v} for q, v in (live.get("lag_ms") or {}).items()]
    rows += [{"metric": "final_verify", "value": "OK" if verify.get("ok") else "MISMATCH"},
             {"metric": "final_verify_keys", "value": verify.get("keys", 0)},
             {"metric": "final_verify_mismatches", "value": verify.get("mismatches", 0)}]
    table(f"{name}-live", rows, f"Live: stopped by {live.get('stopped_by')}; final verify of {verify.get('scope')}")


def final_state(summary: dict[str, Any]) -> Any:
    """What a flow returns: its summary, or, when a live run stopped following because the run
    was being cancelled, a Cancelled state carrying the summary (so the UI shows Cancelled, not a
    run stuck in Cancelling)."""
    live = summary.get("live") or {}
    if live.get("stopped_by") != "cancelled":
        return summary
    from prefect.states import Cancelled

    verify = live.get("verify") or {}
    return Cancelled(message=f"Cancelled while following: {live.get('changes', 0):,} changes applied, final verify "
                             f"{'OK' if verify.get('ok') else 'MISMATCH'}", data=summary)
