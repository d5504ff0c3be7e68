"""`prune_snapshots`: apply the retention rules to a snapshot root."""

from __future__ import annotations

from typing import Any

from session_migration import parameters

from ._artifacts import table
from ._edge import PREFECT, session_flow


@session_flow(name="prune-snapshots")
def prune_snapshots(backup_path: str, keep_last: int | None = None, keep_days: float | None = None,
                    dry_run: bool = True, signing_key_block: str | None = None,
                    storage_block: str | None = None) -> dict[str, Any]:
    """Keep the newest `keep_last` backups that validate fully and/or those younger than
    `keep_days`; pre-images follow their migration; delete the rest unless `dry_run` (the
    default). The newest valid backup is never deleted; suspicious folders never are
    (docs/snapshot-format.md).

    Args:
        backup_path: the snapshot root (a folder or fsspec URL).
        keep_last: keep the newest N snapshots.
        keep_days: keep snapshots younger than D days.
        dry_run: only report what would be deleted.
        signing_key_block: name of a Prefect Secret block holding the signing key (docs/snapshot-format.md);
            default: SESSION_MIGRATION_SIGNING_KEY from the environment, if set.
        storage_block: name of a SnapshotStorage block whose storage options (credentials, endpoint)
            open the snapshot filesystem; default: fsspec's own configuration and the environment.
    """
    plan = parameters.run_operation("prune_snapshots", PREFECT, locals())
    rows = [{"snapshot_id": s["snapshot_id"], "finished_at": s["finished_at"], "action": "keep"} for s in plan["keep"]]
    rows += [{"snapshot_id": s["snapshot_id"], "finished_at": s["finished_at"],
              "action": "would delete" if plan["dry_run"] else "deleted"} for s in plan["delete"]]
    rows += [{"snapshot_id": s["name"], "finished_at": "", "action": f"left alone: {s['reason']}"}
             for s in plan["suspicious"]]
    table("prune-snapshots", rows,
          "Dry run: nothing deleted" if plan["dry_run"] else f"Deleted {plan['deleted']:,} snapshot(s)")
    return plan
