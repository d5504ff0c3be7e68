"""`prune_snapshots`: apply the retention rules to a snapshot root."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from session_migration.retention import RetentionOptions
from tasks.retention import prune_task


@flow(name="prune-snapshots")
def prune_snapshots(backup_path: str, keep_last: int | None = None, keep_days: float | None = None,
                    dry_run: bool = True, signing_key_block: str | None = None) -> dict[str, Any]:
    """Keep the newest `keep_last` backups that validate fully and/or those younger than
    `keep_days`; pre-images follow their migration; delete the rest unless `dry_run` (the
    default). The newest valid backup is never deleted; suspicious folders never are
    (docs/snapshot-format.md). `signing_key_block`: a Prefect Secret block holding the signing
    key (default: the environment's)."""
    plan = prune_task(backup_path, RetentionOptions(keep_last=keep_last, keep_days=keep_days, dry_run=dry_run),
                      signing_key_block)
    rows = [{"snapshot_id": s["snapshot_id"], "finished_at": s["finished_at"], "action": "keep"} for s in plan["keep"]]
    rows += [{"snapshot_id": s["snapshot_id"], "finished_at": s["finished_at"],
              "action": "would delete" if dry_run else "deleted"} for s in plan["delete"]]
    rows += [{"snapshot_id": s["name"], "finished_at": "", "action": f"left alone: {s['reason']}"} for s in plan["suspicious"]]
    create_table_artifact(key="prune-snapshots", table=rows,
                          description=("Dry run: nothing deleted" if dry_run else f"Deleted {plan['deleted']} snapshot(s)"))
    return plan
