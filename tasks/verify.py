"""Verification as a task: compares, returns the report; mismatches are data, not failures."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from session_migration.endpoints import SCHEMES
from session_migration.snapshot import Snapshot, open_snapshot
from session_migration.verify import VerifyOptions, verify

from .blocks import resolve_endpoint
from .policy import RETRY_POLICY


def resolve_side(text: str) -> Snapshot | Any:
    """A store (Redis URL or block name) or a snapshot (a folder/URL holding manifest.json)."""
    scheme = text.split("://", 1)[0].lower() if "://" in text else None
    if scheme in SCHEMES or (scheme is None and not _looks_like_path(text)):
        return resolve_endpoint(text)
    return open_snapshot(text)


def _looks_like_path(text: str) -> bool:
    return "/" in text or text.startswith(".")


@task(name="verify-sessions", cache_policy=NO_CACHE, **RETRY_POLICY)
def verify_task(a: str, b: str, options: VerifyOptions) -> dict[str, Any]:
    side_a, side_b = resolve_side(a), resolve_side(b)
    swapped = isinstance(side_b, Snapshot)
    if swapped:
        if isinstance(side_a, Snapshot):
            from session_migration.errors import InvalidParameter

            raise InvalidParameter("Both sides are snapshots; compare a snapshot with a store, or two stores.")
        side_a, side_b = side_b, side_a
    report = verify(side_a, side_b, options).as_dict()
    if swapped:  # report in the caller's terms: MISSING means "in A, not in B"
        counts, examples = report["counts"], report["examples"]
        counts["MISSING"], counts["EXTRA"] = counts["EXTRA"], counts["MISSING"]
        examples["MISSING"], examples["EXTRA"] = examples.pop("EXTRA", []), examples.pop("MISSING", [])
        report["a"], report["b"] = report["b"], report["a"]
    return report
