"""Helpers the restore and transfer flows share: their write options and their summary artifact."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_table_artifact

from session_migration.errors import InvalidParameter
from session_migration.options import RestoreOptions


def write_options(cls: type[RestoreOptions], *, patterns: list[str] | None, ttl_policy: str, min_ttl_seconds: int,
                  on_conflict: str, rename_prefix: list[str] | None, batch_size: int, dry_run: bool) -> RestoreOptions:
    """The flow's parameters as `cls` (RestoreOptions or TransferOptions)."""
    if isinstance(min_ttl_seconds, bool) or not isinstance(min_ttl_seconds, (int, float)):
        raise InvalidParameter(f"min_ttl_seconds must be a number of seconds; got {min_ttl_seconds!r}.")
    return cls(
        patterns=tuple(patterns) if patterns else None,
        ttl_policy=ttl_policy,
        min_ttl_ms=int(min_ttl_seconds * 1000),
        on_conflict=on_conflict,
        rename_prefix=tuple(rename_prefix) if rename_prefix is not None else None,
        batch_size=batch_size,
        dry_run=dry_run,
    )


def publish_summary(summary: dict[str, Any], keys: tuple[str, ...], name: str, description: str) -> None:
    """A metric/value table of `keys` present in `summary`, as `<name>-dry-run` or `<name>-summary`;
    `description` is formatted with the summary's fields (a dry run's is always "Dry run: nothing written")."""
    rows = [{"metric": k, "value": summary[k]} for k in keys if k in summary]
    create_table_artifact(
        key=f"{name}-dry-run" if summary.get("dry_run") else f"{name}-summary",
        table=rows,
        description="Dry run: nothing written" if summary.get("dry_run") else description.format_map(summary),
    )
