"""Refuse deployments whose parameters would fail, before they are deployed or served.

Prefect checks parameter *types* when a run is created; this checks *values* (a batch size
of 0, an unknown compression, a cleanup without a backup path, a password in a URL) with
the same option classes the flows use, so a bad schedule fails now, not at 2 a.m.

    python deployments/check_parameters.py deployments/prefect.yaml
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def check(flow_fn, parameters: dict[str, Any]) -> None:
    """Raise InvalidParameter (one sentence) when the flow would refuse these parameters."""
    from session_migration.cleanup import CleanupOptions, parse_max_age
    from session_migration.endpoints import RedisEndpoint
    from session_migration.errors import InvalidParameter
    from session_migration.options import BackupOptions
    from session_migration.retention import RetentionOptions

    signature = inspect.signature(flow_fn.fn)
    unknown = set(parameters) - set(signature.parameters)
    if unknown:
        raise InvalidParameter(f"{flow_fn.name} has no parameter(s) {', '.join(sorted(unknown))}.")
    merged = {name: p.default for name, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}
    merged.update(parameters)
    for name in ("source", "target"):
        value = merged.get(name)
        if isinstance(value, str) and "://" in value and RedisEndpoint.from_url(value).has_inline_password:
            raise InvalidParameter(f"{flow_fn.name}: {name} holds a password; name a RedisConnection block instead.")
    if flow_fn.name == "backup-sessions":
        BackupOptions(patterns=tuple(merged["patterns"]) if merged.get("patterns") else BackupOptions().patterns,
                      batch_size=merged["batch_size"], compression=merged["compression"], part_rows=merged["part_rows"])
    elif flow_fn.name == "cleanup-expired-sessions":
        if merged.get("apply") and not merged.get("backup_path"):
            raise InvalidParameter("cleanup-expired-sessions: apply needs a backup_path.")
        CleanupOptions(include=frozenset(merged.get("include") or ()), max_age_ms=parse_max_age(merged.get("max_age")),
                       max_delete=merged["max_delete"], batch_size=merged["batch_size"])
    elif flow_fn.name == "prune-snapshots":
        RetentionOptions(keep_last=merged.get("keep_last"), keep_days=merged.get("keep_days"))


def check_file(path: str) -> list[str]:
    """Check every deployment of a prefect.yaml; returns the problems (empty = all good)."""
    import yaml
    from prefect.flows import load_flow_from_entrypoint

    from session_migration.errors import SessionMigrationError

    spec = yaml.safe_load(Path(path).read_text())
    problems = []
    for deployment in spec.get("deployments", []):
        flow_fn = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        try:
            check(flow_fn, deployment.get("parameters") or {})
        except (SessionMigrationError, ValueError) as exc:
            problems.append(f"{deployment['name']}: {exc}")
    return problems


if __name__ == "__main__":
    problems = check_file(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "deployments" / "prefect.yaml"))
    for problem in problems:
        print(f"refused: {problem}", file=sys.stderr)
    print("all deployment parameters are valid" if not problems else f"{len(problems)} deployment(s) refused")
    sys.exit(1 if problems else 0)
