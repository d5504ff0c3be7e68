"""Snapshot validation as a task: returns the report; data problems are not failures."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from session_migration import storage
from session_migration.validation import validate_snapshot

from .blocks import signing_keyring
from .policy import RETRY_POLICY


@task(name="validate-snapshot", cache_policy=NO_CACHE, **RETRY_POLICY)
def validate_snapshot_task(snapshot: str, check_rows: bool = True, signing_key_block: str | None = None) -> dict[str, Any]:
    fs, path = storage.resolve(snapshot)
    return validate_snapshot(fs, path, check_rows=check_rows, keyring=signing_keyring(signing_key_block)).as_dict()
