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

TASKS: dict[Callable[..., Any], Task] = {}


def _task(step: Callable[..., Any], name: str, **options: Any) -> Task:
    made = task(step, name=name, cache_policy=NO_CACHE, **RETRY_POLICY, **options)
    TASKS[step] = made
    return made


check_backup_task = _task(steps.check_backup, "check-backup")
back_up_task = _task(steps.back_up, "back-up-sessions")
check_restore_task = _task(steps.check_restore, "check-restore")
restore_part_task = _task(steps.restore_part, "restore-part", task_run_name="restore-{part_name}")
finish_restore_task = _task(steps.finish_restore, "finish-restore")
check_transfer_task = _task(steps.check_transfer, "check-transfer")
transfer_task = _task(steps.transfer, "transfer")
verify_task = _task(steps.verify, "verify-sessions")
validate_snapshot_task = _task(steps.validate, "validate-snapshot")
newest_backup_task = _task(steps.newest_backup, "find-newest-backup")
compute_stats_task = _task(steps.compute_stats, "compute-snapshot-stats")
write_report_task = _task(steps.write_report, "write-audit-report")
cleanup_task = _task(steps.clean_up, "clean-up-sessions")
prune_task = _task(steps.prune, "prune-snapshots")
check_migration_task = _task(steps.check_migration, "check-migration")
plan_migration_task = _task(steps.plan_migration, "plan-migration")
start_migration_task = _task(steps.start_migration, "start-migration")
record_step_task = _task(steps.record_migration_step, "record-migration-step", task_run_name="record-{step}")
pre_image_task = _task(steps.take_pre_image, "take-pre-image")
judge_verification_task = _task(steps.judge_verification, "judge-verification")
handle_failure_task = _task(steps.handle_migration_failure, "handle-migration-failure")
summary_task = _task(steps.migration_summary, "migration-summary")
