"""The backup flow under a real Prefect server: artifacts, parameters, retry policy."""

from __future__ import annotations

import pytest

from helpers import demo_keys_in_scope, read_flow_run, run_flow
from session_migration import open_snapshot
from session_migration.errors import InvalidParameter

pytestmark = [pytest.mark.flows, pytest.mark.integration]


def test_backup_flow_publishes_summary_and_progress(prefect_harness, valkey, tmp_path):
    from flows import backup_sessions
    from session_migration import demo

    counts = demo.seed(valkey.client(), copies=2)
    keys = counts["sessions"] + counts["companion_keys"]
    assert keys == demo_keys_in_scope(2)
    state, run_id = run_flow(backup_sessions, source=valkey.url, backup_path=str(tmp_path), batch_size=50)
    summary = state.result()
    snap = open_snapshot(summary["snapshot"])
    assert summary["keys"] == snap.totals["keys"] == keys
    assert summary["server"].startswith("valkey")
    run = read_flow_run(run_id, task_runs=2)
    assert run.run.state.is_completed()
    assert run.task_names() == ["back-up-sessions", "check-backup"]
    assert run.artifact_keys() == ["backup-progress", "backup-summary"]
    assert run.artifact("backup-progress").data == 100.0
    table = {row["metric"]: row["value"] for row in run.table("backup-summary")}
    assert (table["snapshot"], table["keys"]) == (summary["snapshot"], keys)


def test_password_never_becomes_a_flow_parameter(prefect_harness, tmp_path, monkeypatch):
    from flows import backup_sessions
    from servers import start_server

    server = start_server("valkey", password="flow-secret-9")
    try:
        server.client().set("sess:x", "v")
        with pytest.raises(InvalidParameter, match="holds a password"):
            backup_sessions(source=server.url, backup_path=str(tmp_path))
        monkeypatch.setenv("SESSION_MIGRATION_SRC_PW", "flow-secret-9")
        url = f"redis://127.0.0.1:{server.port}/0?password_env=SESSION_MIGRATION_SRC_PW"
        state, run_id = run_flow(backup_sessions, source=url, backup_path=str(tmp_path), patterns=["sess:*"])
        assert state.result()["keys"] == 1
        run = read_flow_run(run_id)
        assert run.run.parameters["source"] == url and len(run.artifacts) == 2
        assert "flow-secret-9" not in repr(run.run.parameters)
        assert all("flow-secret-9" not in repr(a.data) for a in run.artifacts)
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
