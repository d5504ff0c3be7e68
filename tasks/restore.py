"""Restore tasks: a preflight that writes nothing, then one task per snapshot part, then the total.

The target is always a connection string (password-free URL or RedisConnection block name),
resolved inside each task: a client object would make the task unhashable and leak nothing
useful into Prefect's records. Each part task is idempotent and the core skips parts the
restore checkpoint already records, so a retried task or a re-run flow resumes.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from session_migration import restore as core
from session_migration.options import RestoreOptions

from .blocks import resolve_endpoint, signing_keyring
from .policy import RETRY_POLICY


@task(name="check-restore", cache_policy=NO_CACHE, **RETRY_POLICY)
def check_restore_task(snapshot: str, target: str, options: RestoreOptions, signing_key_block: str | None = None,
                       allow_unsigned: bool = False) -> dict[str, Any]:
    """Validate the snapshot, refuse colliding renames and (on_conflict=fail) existing keys,
    start or resume the checkpoint. A dry run's plan is returned here; nothing is written."""
    return core.check_restore(snapshot, resolve_endpoint(target), options,
                              keyring=signing_keyring(signing_key_block, allow_unsigned))


@task(name="restore-part", task_run_name="restore-{part_name}", cache_policy=NO_CACHE, **RETRY_POLICY)
def restore_part(snapshot: str, target: str, part_name: str, options: RestoreOptions,
                 signing_key_block: str | None = None, allow_unsigned: bool = False) -> dict[str, Any]:
    """Write one part into the target (checksum checked first); skipped when already done."""
    return core.restore_part(snapshot, resolve_endpoint(target), part_name, options,
                             keyring=signing_keyring(signing_key_block, allow_unsigned))


@task(name="finish-restore", cache_policy=NO_CACHE, **RETRY_POLICY)
def finish_restore_task(snapshot: str, target: str, options: RestoreOptions, resumed_parts: int = 0,
                        server: str | None = None, signing_key_block: str | None = None,
                        allow_unsigned: bool = False) -> dict[str, Any]:
    """Check every part is written, mark the checkpoint finished, return the totals."""
    result = core.finish_restore(snapshot, resolve_endpoint(target), options, resumed_parts=resumed_parts, server=server,
                                 keyring=signing_keyring(signing_key_block, allow_unsigned))
    return result.summary()
