"""A password inside a connection parameter never reaches Prefect: it is refused before any
flow run exists, whether the flow is called directly or a deployment's run is requested."""

from __future__ import annotations

import pytest

from session_migration.errors import InvalidParameter

pytestmark = [pytest.mark.flows, pytest.mark.integration]

SECRET = "never-stored-7d1f"


def _runs() -> tuple[int, list[str]]:
    """How many flow runs the server has, and the parameters of the newest 200."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        newest = client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=200)
        return client.count_flow_runs(), [json.dumps(r.parameters) for r in newest]


@pytest.mark.parametrize("call", ["backup", "transfer", "verify", "migration"])
def test_a_direct_flow_call_with_a_password_creates_no_run(prefect_harness, tmp_path, call):
    from flows import backup_sessions, full_migration, transfer_sessions, verify_sessions

    url = f"redis://:{SECRET}@127.0.0.1:1/0"
    before, _ = _runs()
    with pytest.raises(InvalidParameter, match="No flow run was created"):
        {
            "backup": lambda: backup_sessions(source=url, backup_path=str(tmp_path)),
            "transfer": lambda: transfer_sessions("redis://127.0.0.1:2/0", url),
            "verify": lambda: verify_sessions(a=str(tmp_path), b=f"redis://127.0.0.1:1/0?ssl_password={SECRET}"),
            "migration": lambda: full_migration(url, "redis://127.0.0.1:2/0", str(tmp_path)),
        }[call]()
    count, recorded = _runs()
    assert count == before and not any(SECRET in p for p in recorded)


def test_a_deployment_run_with_a_password_is_refused_by_the_server(prefect_harness, tmp_path):
    from prefect.deployments import run_deployment

    from flows import backup_sessions

    deployment = backup_sessions.to_deployment(name="secret-check", parameters={"backup_path": str(tmp_path)})
    deployment.apply()
    before, _ = _runs()
    with pytest.raises(Exception, match="pattern|does not match") as refused:
        run_deployment("backup-sessions/secret-check", parameters={"source": f"redis://app:{SECRET}@127.0.0.1:1/0"},
                       timeout=0)
    assert "409" in str(refused.value) or "Validation" in type(refused.value).__name__ or "pattern" in str(refused.value)
    count, recorded = _runs()
    assert count == before and not any(SECRET in p for p in recorded)
    # the same deployment takes a password-free URL (its password in the worker's environment)
    accepted = run_deployment("backup-sessions/secret-check", timeout=0,
                              parameters={"source": "redis://127.0.0.1:1/0?password_env=SESSION_MIGRATION_PW"})
    assert accepted.id is not None


def test_a_run_started_without_the_parameter_schema_stops_at_its_first_line(prefect_harness, tmp_path):
    """What remains possible (a run created with enforce_parameter_schema off, which Prefect's
    engine starts without the flow's own __call__): the run fails before any task runs, and
    never connects with the password."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    from flows import backup_sessions

    state = run_flow(backup_sessions, parameters={"source": f"redis://:{SECRET}@127.0.0.1:1/0",
                                                  "backup_path": str(tmp_path)}, return_type="state")
    assert state.is_failed()
    with pytest.raises(InvalidParameter, match="stops here, before any connection"):
        state.result()
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=_of_run(state.state_details.flow_run_id))
    assert tasks == []


def _of_run(run_id):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
