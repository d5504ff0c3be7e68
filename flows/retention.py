"""`prune_snapshots`: apply the retention rules to a snapshot root."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from session_migration.retention import RetentionOptions
from tasks.retention import prune_task


@flow(name="prune-snapshots")
def prune_snapshots(backup_path: str, keep_last: int | None = None, keep_days: float | None = None,
                    dry_run: bool = True) -> dict[str, Any]:
    """Keep the newest `keep_last` snapshots and/or those younger than `keep_days`; delete the
    rest unless `dry_run` (the default). The newest valid snapshot is never deleted."""
    plan = prune_task(backup_path, RetentionOptions(keep_last=keep_last, keep_days=keep_days, dry_run=dry_run))
    rows = [{"snapshot_id": s["snapshot_id"], "finished_at": s["finished_at"], "action": "keep"} for s in plan["keep"]]
    rows += [{"snapshot_id": s["snapshot_id"], "finished_at": s["finished_at"],
              "action": "would delete" if dry_run else "deleted"} for s in plan["delete"]]
    create_table_artifact(key="prune-snapshots", table=rows,
                          description=("Dry run: nothing deleted" if dry_run else f"Deleted {plan['deleted']} snapshot(s)"))
    return plan
