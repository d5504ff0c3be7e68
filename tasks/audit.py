"""Audit tasks: statistics over the parts that passed validation, then the report files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from session_migration import storage
from session_migration.audit import open_for_audit, read_report, write_audit_report
from session_migration.stats import SnapshotStats, compute_stats

from .policy import RETRY_POLICY


@task(name="compute-snapshot-stats", cache_policy=NO_CACHE, **RETRY_POLICY)
def compute_stats_task(snapshot: str, validation: dict[str, Any],
                       max_age_ms: Mapping[str, int] | None = None) -> SnapshotStats | None:
    """Stream the intact parts once; None when the manifest is unusable (nothing to count)."""
    fs, path = storage.resolve(snapshot)
    opened = open_for_audit(fs, path, validation)
    return None if opened is None else compute_stats(opened, max_age_ms=max_age_ms)


@task(name="write-audit-report", cache_policy=NO_CACHE, **RETRY_POLICY)
def write_report_task(snapshot: str, validation: dict[str, Any], stats: SnapshotStats | None,
                      output: str) -> dict[str, Any]:
    """Write the four report files; returns report.json's content plus `files` (kind -> URL)."""
    fs, path = storage.resolve(snapshot)
    out_fs, out_dir = storage.resolve(output)
    files = write_audit_report(open_for_audit(fs, path, validation), validation, stats, out_fs, out_dir)
    return {**read_report(out_fs, out_dir), "files": files}
