"""Retention as a task."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from session_migration import storage
from session_migration.retention import RetentionOptions, prune_snapshots

from .blocks import signing_keyring
from .policy import RETRY_POLICY


@task(name="prune-snapshots", cache_policy=NO_CACHE, **RETRY_POLICY)
def prune_task(backup_path: str, options: RetentionOptions, signing_key_block: str | None = None) -> dict[str, Any]:
    fs, root = storage.resolve(backup_path)
    return prune_snapshots(fs, root, options, keyring=signing_keyring(signing_key_block)).as_dict()
