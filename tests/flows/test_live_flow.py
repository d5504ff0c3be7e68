"""Live runs as Prefect flows: `live=True` with `live_until`, the steps as tasks, the changes
made while the flow follows reach the target."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from helpers import read_flow_run, run_flow
from session_migration.endpoints import RedisEndpoint
from session_migration.options import VerifyOptions
from session_migration.verify import verify

pytestmark = [pytest.mark.flows, pytest.mark.integration]


def _changes_for(server, seconds: float) -> threading.Thread:
    """Create, refresh and delete sessions on `server` for `seconds`, from a thread."""
    def write() -> None:
        client, end, i = server.client(), time.monotonic() + seconds, 0
        while time.monotonic() < end:
            client.set(f"sess:live{i % 300:04d}", f"v{i}", px=600_000)
            if i % 7 == 0:
                client.delete(f"sess:{i % 500:06d}")
            i += 1
            time.sleep(0.002)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def _equal(a, b) -> None:
    report = verify(RedisEndpoint.from_url(a.url), RedisEndpoint.from_url(b.url), VerifyOptions(patterns=("sess:*",)))
    assert report.ok, report.as_dict()


def _fresh(source, target, n: int) -> None:
    """Both servers emptied, `n` sessions on the source."""
    for server in (source, target):
        server.client().flushall()
    pipe = source.client().pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"sess:{i:06d}", f"user={i}", px=600_000)
    pipe.execute()


def test_transfer_flow_follows_until_live_until(prefect_harness, valkey_server, redis_server, tmp_path):
    from flows.transfer import transfer_sessions

    _fresh(valkey_server, redis_server, 2_000)
    writer = _changes_for(valkey_server, 5)
    state, run_id = run_flow(transfer_sessions, source=valkey_server.url, target=redis_server.url,
                             patterns=["sess:*"], checkpoint_path=str(tmp_path / "ck"), live=True, live_until="8s")
    writer.join()
    summary = state.result()
    live = summary["live"]
    assert live["stopped_by"] == "live_until" and live["changes"] > 0 and live["verify"]["ok"], live
    run = read_flow_run(run_id, task_runs=4)
    assert run.task_names() == ["check-transfer", "follow-transfer", "start-live-transfer", "transfer"]
    _equal(valkey_server, redis_server)


def test_migration_flow_follows_then_audits(prefect_harness, valkey_server, redis_server, tmp_path):
    from flows.migration import full_migration

    _fresh(valkey_server, redis_server, 2_000)
    writer = _changes_for(valkey_server, 6)
    state, run_id = run_flow(full_migration, source=valkey_server.url, target=redis_server.url,
                             backup_path=str(tmp_path / "snaps"), patterns=["sess:*"], live=True, live_until="9s")
    writer.join()
    summary = state.result()
    assert summary["ok"] and summary["step"] == "done" and summary["audit"]["html"]
    assert summary["live"]["stopped_by"] == "live_until" and summary["live"]["verify"]["ok"], summary["live"]
    assert summary["live"]["changes"] > 0
    names = read_flow_run(run_id).task_names()
    assert "start-live-migration" in names and "follow-migration" in names
    _equal(valkey_server, redis_server)


def test_bad_live_parameters_fail_the_flow_before_any_write(prefect_harness, valkey_server, redis_server, tmp_path):
    from flows.transfer import transfer_sessions
    from session_migration.errors import InvalidParameter

    redis_server.client().flushall()
    state, _ = run_flow(transfer_sessions, source=valkey_server.url, target=redis_server.url, patterns=["sess:*"],
                        checkpoint_path=str(tmp_path / "ck"), live=True, on_conflict="skip")
    with pytest.raises(InvalidParameter, match="on_conflict=replace"):
        state.result()
    assert redis_server.client().dbsize() == 0


def test_cancelling_the_flow_run_stops_following_cleanly(prefect_harness, valkey_server, redis_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    from flows.transfer import transfer_sessions
    from session_migration.runner import Feedback
    from tasks.progress import subscribe

    _fresh(valkey_server, redis_server, 500)

    class Heard(Feedback):
        run_id: str | None = None
        following = threading.Event()

        def run_started(self, run_id: str) -> None:
            self.run_id = run_id

        def say(self, text: str) -> None:
            if text.startswith("Now following"):
                self.following.set()

    heard = Heard()
    unsubscribe = subscribe(heard)
    outcome: dict = {}
    context = contextvars.copy_context()  # the harness's Prefect settings, in the flow's thread too
    runner = threading.Thread(target=lambda: context.run(lambda: outcome.update(state=transfer_sessions(
        source=valkey_server.url, target=redis_server.url, patterns=["sess:*"], checkpoint_path=str(tmp_path / "ck"),
        live=True, return_state=True))))
    runner.start()
    try:
        assert heard.following.wait(60), "the flow never started following"
        valkey_server.client().set("sess:after-copy", "v", px=600_000)
        time.sleep(1)
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(heard.run_id, Cancelling(), force=True)
        runner.join(60)
        assert not runner.is_alive(), "the flow kept following after its run was cancelled"
    finally:
        unsubscribe()
    state = outcome["state"]
    assert state.is_cancelled() and "Cancelled while following" in state.message and "final verify OK" in state.message
    table = {row["metric"]: row["value"] for row in read_flow_run(state.state_details.flow_run_id).table("transfer-live")}
    assert table["stopped_by"] == "cancelled" and table["final_verify"] == "OK" and table["changes"] >= 1, table
    assert redis_server.client().get("sess:after-copy") == b"v"
