"""`validate_snapshot`: check a snapshot's integrity and publish the result as an artifact."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from tasks.validate import validate_snapshot_task


@flow(name="validate-snapshot")
def validate_snapshot(snapshot: str, check_rows: bool = True, signing_key_block: str | None = None) -> dict[str, Any]:
    """Validate a snapshot: manifest, every part's sha256/rows/schema, unlisted files,
    duplicate keys and rows outside the declared scope; with a signing key (the environment's,
    or the Prefect Secret block `signing_key_block`), its signature. Returns the report (never
    raises for data problems: `report["valid"]` says)."""
    report = validate_snapshot_task(snapshot, check_rows, signing_key_block)
    lines = [f"# Snapshot validation: {'valid' if report['valid'] else 'INVALID'}", "",
             f"- snapshot: `{report['snapshot']}`", f"- parts checked: {report['parts_checked']}",
             f"- sha256 verified: {report['checksums_verified']}", f"- rows checked: {report['rows_checked']}",
             f"- signed: {'yes' if report['signed'] else 'no'}, signature {report['signature']}"]
    if report["problems"]:
        lines += ["", "| problem | part | message |", "|---|---|---|"]
        lines += [f"| {p['code']} | {p['part'] or ''} | {p['message']} |" for p in report["problems"]]
    create_markdown_artifact(key="snapshot-validation", markdown="\n".join(lines),
                             description=f"Validation of {report['snapshot_id'] or report['snapshot']}")
    return report
