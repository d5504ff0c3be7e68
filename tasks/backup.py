"""Backup tasks: a fast preflight that fails clearly, then the resumable copy itself."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from session_migration import storage
from session_migration.options import BackupOptions
from session_migration.pipeline import run_backup
from session_migration.preflight import check_backup

from .blocks import resolve_endpoint, signing_keyring
from .policy import RETRY_POLICY
from .progress import ProgressReporter


@task(name="check-backup", cache_policy=NO_CACHE, **RETRY_POLICY)
def check_backup_task(source: str, backup_path: str, options: BackupOptions) -> dict[str, Any]:
    """Reach the source, check the destination and the snapshot id, before any copying."""
    fs, root = storage.resolve(backup_path)
    return check_backup(resolve_endpoint(source), fs, root, options)


@task(name="back-up-sessions", cache_policy=NO_CACHE, **RETRY_POLICY)
def back_up_task(source: str, backup_path: str, options: BackupOptions,
                 signing_key_block: str | None = None) -> dict[str, Any]:
    """Copy the keys into the snapshot (signed when a key is configured). A retry resumes
    from the snapshot's checkpoint."""
    fs, root = storage.resolve(backup_path)
    reporter = ProgressReporter(key="backup-progress", description=f"Backup {options.snapshot_id}")
    result = run_backup(resolve_endpoint(source), fs, root, options, progress=reporter,
                        keyring=signing_keyring(signing_key_block))
    reporter.done()
    return result.summary()
