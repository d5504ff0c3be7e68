"""Migration tasks: the steps of `session_migration.migration` that the existing backup,
validate, restore, verify and audit tasks do not already cover. Connections are resolved
inside each task; every task is safe to retry (the state file and each rollback stage are
idempotent)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from session_migration import migration as core
from session_migration import storage
from session_migration.snapshot import open_snapshot

from .blocks import resolve_endpoint, signing_keyring
from .policy import RETRY_POLICY


@task(name="check-migration", cache_policy=NO_CACHE, **RETRY_POLICY)
def check_migration_task(source: str, target: str, backup_path: str, options: core.MigrationOptions) -> dict[str, Any]:
    """Every refusal before anything is written: same database, non-empty target (when
    required), an unfinished rollback of this target, an unwritable backup path."""
    fs, root = storage.resolve(backup_path)
    return core.preflight(resolve_endpoint(source), resolve_endpoint(target), fs, root, options)


@task(name="plan-migration", cache_policy=NO_CACHE, **RETRY_POLICY)
def plan_migration_task(source: str, target: str, options: core.MigrationOptions) -> dict[str, Any]:
    """Dry run: backup dry run plus what the restore would create/overwrite/keep. Writes nothing."""
    return core.plan_migration(resolve_endpoint(source), resolve_endpoint(target), options)


@task(name="start-migration", cache_policy=NO_CACHE, **RETRY_POLICY)
def start_migration_task(source: str, target: str, backup_path: str, options: core.MigrationOptions,
                         migration_id: str, signing_key_block: str | None = None) -> dict[str, Any]:
    """Write the migration's state file (<backup_path>/migrations/<id>.json)."""
    fs, root = storage.resolve(backup_path)
    state = core.start_migration(resolve_endpoint(source), resolve_endpoint(target), fs, root, options, migration_id,
                                 keyring=signing_keyring(signing_key_block))
    return {**state.summary(), "state_file": storage.unstrip(fs, core.state_path(root, migration_id))}


@task(name="record-migration-step", task_run_name="record-{step}", cache_policy=NO_CACHE, **RETRY_POLICY)
def record_step_task(backup_path: str, migration_id: str, step: str, counts: dict[str, Any] | None = None,
                     fields: dict[str, Any] | None = None, signing_key_block: str | None = None) -> dict[str, Any]:
    fs, root = storage.resolve(backup_path)
    return core.record_step(fs, root, migration_id, step, counts, keyring=signing_keyring(signing_key_block),
                            **(fields or {})).summary()


@task(name="take-pre-image", cache_policy=NO_CACHE, **RETRY_POLICY)
def pre_image_task(target: str, backup_path: str, options: core.MigrationOptions, snapshot_id: str,
                   signing_key_block: str | None = None) -> dict[str, Any]:
    """Snapshot the target's keys in scope (what a rollback puts back)."""
    fs, root = storage.resolve(backup_path)
    keyring = signing_keyring(signing_key_block)
    existing = open_snapshot(fs, storage.join(root, snapshot_id), verify=False, keyring=keyring) if fs.exists(
        storage.join(root, snapshot_id, "manifest.json")) else None
    if existing is not None:  # a retry after the commit: the pre-image is already there
        return {"snapshot": existing.url, "snapshot_id": snapshot_id, "keys": existing.totals["keys"]}
    return core.take_pre_image(resolve_endpoint(target), fs, root, options, snapshot_id, keyring).summary()


@task(name="judge-verification", cache_policy=NO_CACHE, **RETRY_POLICY)
def judge_verification_task(report: dict[str, Any], target: str, snapshot: str, pre_image: str,
                            options: core.MigrationOptions, signing_key_block: str | None = None) -> dict[str, Any]:
    """Verify's report judged for a migration: target-only keys from the pre-image are fine."""
    keyring = signing_keyring(signing_key_block)
    return core.judge_verification(report, resolve_endpoint(target), open_snapshot(snapshot, verify=False, keyring=keyring),
                                   open_snapshot(pre_image, verify=False, keyring=keyring), options)


@task(name="handle-migration-failure", cache_policy=NO_CACHE, **RETRY_POLICY)
def handle_failure_task(target: str, backup_path: str, migration_id: str, message: str,
                        rollback_on_failure: bool, signing_key_block: str | None = None,
                        patterns: list[str] | None = None) -> dict[str, Any]:
    """Roll the target back (resumable) when writes may have reached it, or record the failure.
    The rollback acts only within `patterns` (the flow's own) and those the state file records."""
    fs, root = storage.resolve(backup_path)
    keyring = signing_keyring(signing_key_block)
    state = core.MigrationState.load(fs, root, migration_id, keyring)
    text = core.handle_failure(resolve_endpoint(target), fs, root, state, rollback_on_failure, message,
                               patterns=patterns)
    return {"message": text, "summary": core.result_summary(fs, root, migration_id, keyring)}


@task(name="migration-summary", cache_policy=NO_CACHE, **RETRY_POLICY)
def summary_task(backup_path: str, migration_id: str, signing_key_block: str | None = None) -> dict[str, Any]:
    fs, root = storage.resolve(backup_path)
    return core.result_summary(fs, root, migration_id, signing_keyring(signing_key_block))
