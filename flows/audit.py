"""`audit_report`: validate -> statistics -> report files -> Prefect artifacts."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.utilities.annotations import quote

from session_migration.audit import summary_markdown
from session_migration.errors import SnapshotNotFound
from session_migration.stats import STATUSES
from tasks.audit import compute_stats_task, write_report_task
from tasks.validate import validate_snapshot_task


@flow(name="audit-report")
def audit_report(snapshot: str, output: str | None = None, max_age_ms: dict[str, int] | None = None,
                 signing_key_block: str | None = None) -> dict[str, Any]:
    """Audit a snapshot: validation, counts by store/type/status, TTL and size distribution,
    largest keys, findings and NIST control evidence, written as report.html, report.md,
    report.json and findings.csv. Returns report.json's content plus `files`; a snapshot that
    fails validation still gets its report (`result["valid"]` says).

    Args:
        snapshot: the snapshot folder or URL (ROOT/SNAPSHOT_ID).
        output: folder or fsspec URL for the report files; default: <snapshot>/audit.
        max_age_ms: per-store maximum session age in ms (e.g. {"aiohttp": 86400000}) for stores
            whose payload does not record it.
        signing_key_block: name of a Prefect Secret block holding the signing key (docs/snapshot-format.md);
            default: SESSION_MIGRATION_SIGNING_KEY from the environment, if set.
    """
    validation = validate_snapshot_task(snapshot, signing_key_block=signing_key_block)
    if any(p["code"] == "not-found" for p in validation["problems"]):
        raise SnapshotNotFound(validation["problems"][0]["message"])
    stats = compute_stats_task(snapshot, validation, max_age_ms)
    target = output or f"{snapshot.rstrip('/')}/audit"
    # quote(): the findings list can be long; Prefect need not walk it looking for futures.
    report = write_report_task(snapshot, validation, quote(stats), target)
    _publish(report)
    return report


def _publish(report: dict[str, Any]) -> None:
    rows = [{"store": store, **counts, "total": sum(counts.values())} for store, counts in report["by_store"].items()]
    if rows:
        rows.append({"store": "total", **report["by_status"], "total": report["keys"]})
    name = report["snapshot"].get("snapshot_id") or report["snapshot"]["url"]
    create_table_artifact(key="audit-by-store", table=rows or [{"store": "-", **{s: 0 for s in STATUSES}, "total": 0}],
                          description=f"Keys by store and status in {name}")
    create_markdown_artifact(key="audit-report", markdown=summary_markdown(report),
                             description=f"Audit of {name}: {'valid' if report['valid'] else 'INVALID'}")
