"""Refuse deployments whose parameters would fail, before they are deployed or served.

Prefect checks parameter *types* when a run is created; this checks *values* (a batch size
of 0, an unknown compression, a cleanup without a backup path, a password in a URL) of every
flow with the very functions the flows use (`session_migration.parameters`), so a bad schedule
fails now, not at 2 a.m.

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
    """Raise InvalidParameter (one sentence) when the flow would refuse these parameters: the
    same secret check and the same parameters -> options translation the flow itself runs."""
    from flows._edge import refuse_secrets
    from session_migration.errors import InvalidParameter
    from session_migration.parameters import OPTIONS_FROM_PARAMS

    signature = inspect.signature(flow_fn.fn)
    unknown = set(parameters) - set(signature.parameters)
    if unknown:
        raise InvalidParameter(f"{flow_fn.name} has no parameter(s) {', '.join(sorted(unknown))}.")
    merged = {name: p.default for name, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}
    merged.update(parameters)
    refuse_secrets(merged)
    OPTIONS_FROM_PARAMS[flow_fn.fn.__name__](merged)


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
