"""A connection may name a block of prefect-redis's `RedisDatabase` type (`redis-database/NAME`),
not only our own `RedisConnection`: its password is read inside the task that connects and is
never a parameter or a log line of the flow run."""

from __future__ import annotations

import time

import pytest

from session_migration.errors import InvalidParameter

pytestmark = [pytest.mark.flows, pytest.mark.integration]

SECRET = "rdb-block-secret-4c2e"


def _logs(flow_run_id, until: str, timeout: float = 30.0) -> str:
    """The flow run's log lines, read until one holds `until` (logs reach the server after the run)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            text = "\n".join(log.message for log in client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))))
            if until in text or time.monotonic() > deadline:
                return text
            time.sleep(0.2)


def test_a_redis_database_block_is_a_flows_source_and_its_password_stays_inside(prefect_harness, tmp_path):
    from prefect_redis import RedisDatabase
    from pydantic import SecretStr

    from flows import backup_sessions
    from helpers import read_flow_run, run_flow
    from servers import start_server
    from tasks.blocks import RedisConnection

    server = start_server("redis", password=SECRET)
    try:
        server.client().set("sess:from-block", "v")
        server.client().set("sess:other", "w")
        RedisDatabase(host="127.0.0.1", port=server.port, db=0, password=SecretStr(SECRET)).save(
            "sessions-store", overwrite=True)
        # our own block of the same name points elsewhere: the name alone means ours
        RedisConnection(url="redis://127.0.0.1:1/0").save("sessions-store", overwrite=True)

        state, run_id = run_flow(backup_sessions, source="redis-database/sessions-store",
                                 backup_path=str(tmp_path), patterns=["sess:*"])
        summary = state.result()
        assert summary["keys"] == 2
        record = read_flow_run(run_id)
        assert record.run.parameters["source"] == "redis-database/sessions-store"
        logs = _logs(run_id, "Backed up")
        assert "Backed up 2 keys" in logs
        assert SECRET not in str(record.run.parameters) and SECRET not in logs and SECRET not in record.text()
        manifest = (tmp_path / summary["snapshot_id"] / "manifest.json").read_text()
        assert SECRET not in manifest and f"127.0.0.1:{server.port}" in manifest
    finally:
        server.stop()


def test_a_name_that_is_only_a_redis_database_block_says_how_to_name_it(prefect_harness):
    from prefect_redis import RedisDatabase

    from tasks.blocks import load_endpoint

    RedisDatabase(host="127.0.0.1", port=1).save("only-prefect-redis", overwrite=True)
    with pytest.raises(InvalidParameter, match="name it redis-database/only-prefect-redis"):
        load_endpoint("only-prefect-redis")
    with pytest.raises(InvalidParameter, match="No RedisDatabase block named 'nowhere'"):
        load_endpoint("redis-database/nowhere")


def test_a_redis_database_blocks_connection_url_may_be_a_sentinel_url(prefect_harness):
    from prefect_redis import RedisDatabase
    from pydantic import SecretStr

    from tasks.blocks import load_endpoint

    RedisDatabase(connection_url=SecretStr(f"redis+sentinel://:{SECRET}@127.0.0.1:26379,127.0.0.1:26380/sessions/2")
                  ).save("behind-sentinels", overwrite=True)
    endpoint = load_endpoint("redis-database/behind-sentinels")
    assert endpoint.is_sentinel and endpoint.master_name == "sessions" and endpoint.db == 2
    assert endpoint.password == SECRET and SECRET not in endpoint.display_url
