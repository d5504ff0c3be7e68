"""`verify_sessions`: compare two stores, or a snapshot and a store, and publish the result."""

from __future__ import annotations

from typing import Any

from session_migration import parameters
from session_migration.verify import CATEGORIES

from ._artifacts import code, markdown, table
from ._edge import PREFECT, ConnectionOrSnapshot, session_flow


@session_flow(name="verify-sessions")
def verify_sessions(
    a: ConnectionOrSnapshot,
    b: ConnectionOrSnapshot,
    patterns: list[str] | None = None,
    ttl_tolerance_ms: int | None = 2_000,
    sample: float | None = None,
    batch_size: int = 1000,
    signing_key_block: str | None = None,
    storage_block: str | None = None,
) -> dict[str, Any]:
    """Compare A and B key by key, both directions: OK, MISSING, EXTRA, TYPE, VALUE, TTL.

    Args:
        a: a Redis URL (no password; ?password_env=VAR), a RedisConnection block name, or a snapshot folder/URL.
        b: the same kinds; at least one side is a store.
        patterns: keys to compare; default: the snapshot's scope, or every known session store.
        ttl_tolerance_ms: allowed expiry difference (TTLs count down during a copy); None: ignore expiry.
        sample: compare only this fraction of keys (reproducible hash sample); None: every key.
        batch_size: keys per SCAN page and pipelined read.
        signing_key_block: name of a Prefect Secret block holding the signing key (docs/snapshot-format.md);
            default: SESSION_MIGRATION_SIGNING_KEY from the environment, if set.
        storage_block: name of a SnapshotStorage block whose storage options (credentials, endpoint)
            open the snapshot filesystem; default: fsspec's own configuration and the environment.
    """
    report = parameters.run_operation("verify_sessions", PREFECT, locals())
    table("verify-counts", [{"category": c, "keys": report["counts"][c]} for c in CATEGORIES],
          f"{report['a']} vs {report['b']}: {'OK' if report['ok'] else 'MISMATCH'}")
    lines = [f"# Verify: {'OK' if report['ok'] else 'MISMATCH'}", "", f"- A: `{report['a']}`", f"- B: `{report['b']}`"]
    for category, keys in report["examples"].items():
        lines.append(f"- {category} examples: " + ", ".join(code(k) for k in keys))
    markdown("verify-report", lines)
    return report
