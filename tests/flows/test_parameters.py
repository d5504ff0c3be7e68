"""One default per option: a flow's parameter defaults give exactly the options' own defaults,
and the CLI's help shows the same ones (both read them from `session_migration.options`)."""

from __future__ import annotations

import inspect

import pytest

pytestmark = [pytest.mark.flows]

# What an option set needs beyond defaults, to exist at all (prune needs a rule).
REQUIRED = {"prune_snapshots": {"keep_last": 3}}


@pytest.mark.parametrize("name", ["backup_sessions", "restore_sessions", "transfer_sessions", "verify_sessions",
                                  "validate_snapshot", "audit_report", "cleanup_expired_sessions", "prune_snapshots",
                                  "full_migration"])
def test_flow_defaults_are_the_options_defaults(name):
    import flows
    from session_migration.parameters import OPTIONS_FROM_PARAMS

    flow = getattr(flows, name)
    defaults = {p.name: p.default for p in inspect.signature(flow.fn).parameters.values()
                if p.default is not inspect.Parameter.empty}
    build = OPTIONS_FROM_PARAMS[name]
    assert build({**defaults, **REQUIRED.get(name, {})}) == build(REQUIRED.get(name, {}))
