"""`verify_sessions`: compare two stores, or a snapshot and a store, and publish the result."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from session_migration.verify import CATEGORIES, VerifyOptions
from tasks.verify import verify_task


@flow(name="verify-sessions")
def verify_sessions(
    a: str,
    b: str,
    patterns: list[str] | None = None,
    ttl_tolerance_ms: int | None = 2_000,
    sample: float | None = None,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Compare A and B key by key, both directions: OK, MISSING, EXTRA, TYPE, VALUE, TTL.

    Args:
        a, b: a Redis URL (no password; ?password_env=VAR), a RedisConnection block name, or a snapshot folder/URL.
        patterns: keys to compare; default: the snapshot's scope, or every known session store.
        ttl_tolerance_ms: allowed expiry difference (TTLs count down during a copy); None: ignore expiry.
        sample: compare only this fraction of keys (reproducible hash sample); None: every key.
    """
    options = VerifyOptions(patterns=tuple(patterns) if patterns else None, ttl_tolerance_ms=ttl_tolerance_ms,
                            sample=sample, batch_size=batch_size)
    report = verify_task(a, b, options)
    create_table_artifact(key="verify-counts", table=[{"category": c, "keys": report["counts"][c]} for c in CATEGORIES],
                          description=f"{report['a']} vs {report['b']}: {'OK' if report['ok'] else 'MISMATCH'}")
    lines = [f"# Verify: {'OK' if report['ok'] else 'MISMATCH'}", "", f"- A: `{report['a']}`", f"- B: `{report['b']}`"]
    for category, keys in report["examples"].items():
        lines.append(f"- {category} examples: " + ", ".join(f"`{k}`" for k in keys))
    create_markdown_artifact(key="verify-report", markdown="\n".join(lines))
    return report
