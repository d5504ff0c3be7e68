"""`validate_snapshot`: check a snapshot's integrity and publish the result as an artifact."""

from __future__ import annotations

from typing import Any

from session_migration import parameters

from ._artifacts import markdown, md, number
from ._edge import PREFECT, session_flow


@session_flow(name="validate-snapshot")
def validate_snapshot(snapshot: str, check_rows: bool = True, signing_key_block: str | None = None,
                      storage_block: str | None = None) -> dict[str, Any]:
    """Validate a snapshot: manifest, every part's sha256/rows/schema, unlisted files,
    duplicate keys and rows outside the declared scope. Returns the report (never raises
    for data problems: `report["valid"]` says).

    Args:
        snapshot: the snapshot folder or URL (ROOT/SNAPSHOT_ID).
        check_rows: also read the keys (duplicates, rows out of scope), not only files and checksums.
        signing_key_block: name of a Prefect Secret block holding the signing key (docs/snapshot-format.md);
            default: SESSION_MIGRATION_SIGNING_KEY from the environment, if set.
        storage_block: name of a SnapshotStorage block whose storage options (credentials, endpoint)
            open the snapshot filesystem; default: fsspec's own configuration and the environment.
    """
    report = parameters.run_operation("validate_snapshot", PREFECT, locals())
    lines = [f"# Snapshot validation: {'valid' if report['valid'] else 'INVALID'}", "",
             f"- snapshot: `{report['snapshot']}`", f"- parts checked: {number(report['parts_checked'])}",
             f"- sha256 verified: {number(report['checksums_verified'])}",
             f"- rows checked: {number(report['rows_checked'])}",
             f"- signed: {'yes' if report['signed'] else 'no'}, signature {report['signature']}"]
    if report["problems"]:
        lines += ["", "| problem | part | message |", "|---|---|---|"]
        lines += [f"| {md(p['code'])} | {md(p['part'] or '')} | {md(p['message'])} |" for p in report["problems"]]
    markdown("snapshot-validation", lines, f"Validation of {report['snapshot_id'] or report['snapshot']}")
    return report
