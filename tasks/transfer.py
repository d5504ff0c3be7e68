"""Transfer tasks: a preflight that writes nothing but the checkpoint, then one coarse copy task.

Source and target are connection strings (password-free URLs or RedisConnection block names),
resolved inside each task. The copy task is one task for the whole transfer: it saves its SCAN
position to a durable checkpoint every few thousand keys, so a retry (only transient errors are
retried: connection lost, LOADING, ...) resumes after the last checkpoint instead of starting over.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from session_migration import transfer as core
from session_migration.transfer import TransferOptions

from .blocks import resolve_endpoint
from .policy import RETRY_POLICY
from .progress import ProgressReporter


@task(name="check-transfer", cache_policy=NO_CACHE, **RETRY_POLICY)
def check_transfer_task(source: str, target: str, options: TransferOptions,
                        checkpoint_path: str | None = None) -> dict[str, Any]:
    """Refuse source == target, rename collisions and (on_conflict=fail) existing keys; start or
    resume the checkpoint. A dry run's plan is returned here; nothing is written."""
    return core.check_transfer(resolve_endpoint(source), resolve_endpoint(target), options,
                               checkpoint_path=checkpoint_path)


@task(name="transfer", cache_policy=NO_CACHE, **RETRY_POLICY)
def transfer_task(source: str, target: str, options: TransferOptions, checkpoint_path: str | None = None,
                  checkpoint_every: int = core.CHECKPOINT_EVERY_KEYS) -> dict[str, Any]:
    """Copy every key in scope, resuming from the checkpoint; returns the totals."""
    reporter = ProgressReporter(key="transfer-progress", description="Transfer")
    result = core.run_transfer(resolve_endpoint(source), resolve_endpoint(target), options,
                               checkpoint_path=checkpoint_path, progress=reporter,
                               checkpoint_every=checkpoint_every)
    reporter.done()
    return result.summary()
