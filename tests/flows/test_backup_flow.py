"""The backup flow under a real Prefect server: artifacts, parameters, retry policy."""

from __future__ import annotations

import asyncio

import pytest

from session_migration import open_snapshot
from session_migration.errors import InvalidParameter

pytestmark = [pytest.mark.flows, pytest.mark.integration]


def _flow_runs_and_artifacts():
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    async def read():
        async with get_client() as client:
            runs = await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=5)
            artifacts = await client.read_artifacts()
            return runs, artifacts

    return asyncio.run(read())


def test_backup_flow_publishes_summary_and_progress(prefect_harness, valkey, tmp_path):
    from flows import backup_sessions
    from session_migration import demo

    demo.seed(valkey.client(), copies=2)
    summary = backup_sessions(source=valkey.url, backup_path=str(tmp_path), batch_size=50)
    snap = open_snapshot(summary["snapshot"])
    assert summary["keys"] == snap.totals["keys"] > 0
    assert summary["server"].startswith("valkey")
    runs, artifacts = _flow_runs_and_artifacts()
    assert runs[0].state.is_completed()
    keys = {a.key for a in artifacts}
    assert {"backup-summary", "backup-progress"} <= keys
    progress = [a for a in artifacts if a.key == "backup-progress"][0]
    assert progress.data == 100.0


def test_password_never_becomes_a_flow_parameter(prefect_harness, tmp_path, monkeypatch):
    from flows import backup_sessions
    from servers import start_server

    server = start_server("valkey", password="flow-secret-9")
    try:
        server.client().set("sess:x", "v")
        with pytest.raises(InvalidParameter, match="password inside a flow parameter"):
            backup_sessions(source=server.url, backup_path=str(tmp_path))
        monkeypatch.setenv("SESSION_MIGRATION_SRC_PW", "flow-secret-9")
        url = f"redis://127.0.0.1:{server.port}/0?password_env=SESSION_MIGRATION_SRC_PW"
        summary = backup_sessions(source=url, backup_path=str(tmp_path), patterns=["sess:*"])
        assert summary["keys"] == 1
        runs, artifacts = _flow_runs_and_artifacts()
        assert "flow-secret-9" not in repr(runs[0].parameters)
        assert all("flow-secret-9" not in repr(a.data) for a in artifacts)
    finally:
        server.stop()


def test_block_connection(prefect_harness, tmp_path):
    from pydantic import SecretStr

    from flows import backup_sessions
    from servers import start_server
    from tasks.blocks import RedisConnection

    server = start_server("valkey", password="block-secret")
    try:
        server.client().set("sess:y", "v")
        RedisConnection(url=f"redis://127.0.0.1:{server.port}/0", password=SecretStr("block-secret")).save(
            "test-source", overwrite=True)
        summary = backup_sessions(source="test-source", backup_path=str(tmp_path), patterns=["sess:*"])
        assert summary["keys"] == 1
    finally:
        server.stop()


def test_retry_policy_retries_only_transient_errors():
    from prefect.states import Failed

    from session_migration.errors import ServerUnavailable, SnapshotInvalid
    from tasks.policy import retry_transient

    assert retry_transient(None, None, Failed(data=ServerUnavailable("lost")))
    assert not retry_transient(None, None, Failed(data=SnapshotInvalid("bad")))
    assert not retry_transient(None, None, Failed(data=InvalidParameter("bad")))


def test_dry_run_flow_writes_nothing(prefect_harness, valkey, tmp_path):
    from flows import backup_sessions

    valkey.client().set("sess:a", "x" * 50)
    summary = backup_sessions(source=valkey.url, backup_path=str(tmp_path / "nothing"), dry_run=True)
    assert summary["dry_run"] and summary["snapshot"] is None and summary["keys"] == 1
    assert not (tmp_path / "nothing").exists()
