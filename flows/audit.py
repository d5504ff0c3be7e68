"""`audit_report`: validate -> statistics -> report files -> Prefect artifacts."""

from __future__ import annotations

from typing import Any

from session_migration import parameters
from session_migration.audit import summary_markdown
from session_migration.stats import STATUSES

from ._artifacts import markdown, md, number, report_link, table
from ._edge import PREFECT, session_flow

BAR_WIDTH = 30


@session_flow(name="audit-report")
def audit_report(snapshot: str | None = None, output: str | None = None, max_age: dict[str, str] | None = None,
                 backup_path: str | None = None, signing_key_block: str | None = None,
                 storage_block: str | None = None, dask_address: str | None = None) -> dict[str, Any]:
    """Audit a snapshot: validation, counts by store/type/status, TTL and size distribution,
    largest keys, findings and NIST control evidence, written as report.html, report.md,
    report.json and findings.csv. Returns report.json's content plus `files`; a snapshot that
    fails validation still gets its report (`result["valid"]` says).

    Args:
        snapshot: the snapshot folder or URL (ROOT/SNAPSHOT_ID); default: the newest backup under backup_path.
        output: folder or fsspec URL for the report files; default: <snapshot>/audit.
        max_age: per-store maximum session age as a duration (e.g. {"aiohttp": "1d"}) for stores
            whose payload does not record it.
        backup_path: a snapshot root: without `snapshot`, its newest backup is audited (the scheduled audit).
        signing_key_block: name of a Prefect Secret block holding the signing key (docs/snapshot-format.md);
            default: SESSION_MIGRATION_SIGNING_KEY from the environment, if set.
        storage_block: name of a SnapshotStorage block whose storage options (credentials, endpoint)
            open the snapshot filesystem; default: fsspec's own configuration and the environment.
        dask_address: a Dask scheduler (tcp://HOST:8786): each part is checked, and each slice of a part
            counted, by a task there (docs/scale-out.md); default: processes of this machine.
    """
    report = parameters.run_operation("audit_report", PREFECT, locals())
    _publish(report)
    return report


def text_bars(title: str, counts: dict[str, int]) -> list[str]:
    """A bar chart the Prefect UI renders in any markdown artifact (no images, no HTML)."""
    top = max(counts.values(), default=0)
    lines = [f"**{md(title)}**", "", "```"]
    width = max((len(label) for label in counts), default=0)
    for label, count in counts.items():
        bar = "█" * (round(BAR_WIDTH * count / top) if top else 0)
        lines.append(f"{label.ljust(width)} {bar} {count:,}")
    return lines + ["```", ""]


def _publish(report: dict[str, Any]) -> None:
    rows = [{"store": store, **counts, "total": sum(counts.values())} for store, counts in report["by_store"].items()]
    if rows:
        rows.append({"store": "total", **report["by_status"], "total": report["keys"]})
    name = report["snapshot"].get("snapshot_id") or report["snapshot"]["url"]
    table("audit-by-store", rows or [{"store": "-", **{s: 0 for s in STATUSES}, "total": 0}],
          f"Keys by store and status in {name}")
    lines = [summary_markdown(report), ""]
    if report["stats_available"]:
        lines += text_bars("Keys by session status", report["by_status"])
        lines += text_bars("Time to expiry (by TTL)", report["ttl_buckets"])
        lines += text_bars("Value size", report["size_buckets"])
    lines += ["**Full report** (tables, charts, largest keys, every finding): "
              + report_link(report["files"]["html"], "report.html"),
              "", f"Findings: {number(report.get('findings', {}).get('total', 0))} in "
              + report_link(report["files"]["csv"], "findings.csv")]
    markdown("audit-report", lines, f"Audit of {name}: {'valid' if report['valid'] else 'INVALID'}")
