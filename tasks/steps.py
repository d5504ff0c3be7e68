"""Every step of `session_migration/steps.py` as its Prefect task.

A task is the step itself plus Prefect's view of it: a name in the UI, the one retry policy
(only transient errors, 2/4/8 s), and no caching (the steps resume from their own durable
checkpoints, which Prefect's cache would only get in the way of). Connections stay strings
(password-free URLs or block names) and are resolved inside the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from session_migration import steps

from .policy import RETRY_POLICY

# step -> (task name in the UI, extra task options)
_NAMED: dict[Callable[..., Any], tuple[str, dict[str, Any]]] = {
    steps.check_backup: ("check-backup", {}),
    steps.back_up: ("back-up-sessions", {}),
    steps.start_backup_units: ("start-backup-units", {}),
    steps.back_up_unit: ("back-up-unit", {"task_run_name": "back-up-unit-{index}-of-{count}"}),
    steps.commit_backup_units: ("commit-backup-units", {}),
    steps.check_restore: ("check-restore", {}),
    steps.restore_part: ("restore-part", {"task_run_name": "restore-{part_name}"}),
    steps.restore_parts: ("restore-parts", {}),
    steps.finish_restore: ("finish-restore", {}),
    steps.check_transfer: ("check-transfer", {}),
    steps.transfer: ("transfer", {}),
    steps.start_live_transfer: ("start-live-transfer", {}),
    steps.follow_transfer: ("follow-transfer", {}),
    steps.verify: ("verify-sessions", {}),
    steps.validate: ("validate-snapshot", {}),
    steps.newest_backup: ("find-newest-backup", {}),
    steps.compute_stats: ("compute-snapshot-stats", {}),
    steps.check_part: ("check-part", {}),
    steps.slice_stats: ("count-part-slice", {}),
    steps.write_report: ("write-audit-report", {}),
    steps.clean_up: ("clean-up-sessions", {}),
    steps.prune: ("prune-snapshots", {}),
    steps.check_migration: ("check-migration", {}),
    steps.plan_migration: ("plan-migration", {}),
    steps.start_migration: ("start-migration", {}),
    steps.record_migration_step: ("record-migration-step", {"task_run_name": "record-{step}"}),
    steps.take_pre_image: ("take-pre-image", {}),
    steps.start_live_migration: ("start-live-migration", {}),
    steps.follow_migration: ("follow-migration", {}),
    steps.judge_verification: ("judge-verification", {}),
    steps.handle_migration_failure: ("handle-migration-failure", {}),
    steps.migration_summary: ("migration-summary", {}),
    steps.migration_patterns: ("migration-patterns", {}),
}

TASKS: dict[Callable[..., Any], Task] = {
    step: task(step, name=name, cache_policy=NO_CACHE, **RETRY_POLICY, **options)
    for step, (name, options) in _NAMED.items()
}
