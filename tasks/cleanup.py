"""Cleanup as one task: classify, and with apply snapshot then compare-and-delete."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from session_migration import storage
from session_migration.cleanup import CleanupOptions, run_cleanup

from .blocks import resolve_endpoint, signing_keyring
from .policy import RETRY_POLICY


@task(name="clean-up-sessions", cache_policy=NO_CACHE, **RETRY_POLICY)
def cleanup_task(source: str, options: CleanupOptions, backup_path: str | None,
                 signing_key_block: str | None = None) -> dict[str, Any]:
    fs, root = storage.resolve(backup_path) if backup_path else (None, None)
    return run_cleanup(resolve_endpoint(source), options, fs=fs, root=root,
                       keyring=signing_keyring(signing_key_block)).as_dict()
