"""Serve the same deployments as prefect.yaml from one long-running process (one machine).

    python deployments/serve.py            # needs PREFECT_API_URL pointing at a Prefect server

Parameters are checked before anything is served (deployments/check_parameters.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "deployments"))


DEFAULT_BACKUP_PATH = os.path.join(os.path.expanduser("~"), "session-migration", "snapshots")  # not the checkout


def build_deployments(backup_path: str = DEFAULT_BACKUP_PATH):
    from prefect.schedules import Cron

    from check_parameters import check
    from flows import (
        audit_report, backup_sessions, cleanup_expired_sessions, full_migration, prune_snapshots, restore_sessions,
    )

    plan = [
        (backup_sessions, "nightly-backup", "0 2 * * *",
         {"source": "session-store-source", "backup_path": backup_path}),
        (audit_report, "nightly-audit", "30 2 * * *", {"backup_path": backup_path}),
        (cleanup_expired_sessions, "daily-cleanup", "30 3 * * *",
         {"source": "session-store-source", "backup_path": f"{backup_path}/cleanup", "apply": True,
          "include": ["locks", "orphans"], "max_delete": 100_000}),
        (prune_snapshots, "daily-prune", "0 4 * * *",
         {"backup_path": backup_path, "keep_last": 7, "keep_days": 14, "dry_run": False}),
        (restore_sessions, "on-demand-restore", None, {"target": "session-store-target"}),
    ]
    plan.append((full_migration, "on-demand-migration", None,
                 {"source": "session-store-source", "target": "session-store-target",
                  "backup_path": f"{backup_path}/migrations"}))
    deployments = []
    for flow_fn, name, cron, parameters in plan:
        check(flow_fn, parameters)
        deployments.append(flow_fn.to_deployment(
            name=name, parameters=parameters, schedules=[Cron(cron, timezone="UTC")] if cron else None))
    return deployments


if __name__ == "__main__":
    from prefect import serve

    serve(*build_deployments())
