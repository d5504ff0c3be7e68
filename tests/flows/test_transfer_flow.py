"""The transfer flow under a real Prefect server: preflight + one coarse task, artifacts, dry run,
a target killed and restarted mid-run (the task's retry resumes from the checkpoint), the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from helpers import read_flow_run, run_flow
from servers import _binary, start_server
from session_migration.endpoints import RedisEndpoint
from session_migration.errors import InvalidParameter
from session_migration.verify import verify

pytestmark = [pytest.mark.flows, pytest.mark.integration]


def _seed(r, n, prefix="sess:"):
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"{prefix}{i:06d}", os.urandom(30), ex=7200)
    pipe.hset(f"{prefix}hash", mapping={"a": "1"})
    pipe.execute()


def test_transfer_flow_dry_run_then_run(prefect_harness, valkey_server, redis_server, tmp_path):
    from flows.transfer import transfer_sessions

    valkey_server.client().flushall()
    redis_server.client().flushall()
    _seed(valkey_server.client(), 250)
    redis_server.client().set("sess:000001", "exists")

    state, plan_id = run_flow(transfer_sessions, source=valkey_server.url, target=redis_server.url, dry_run=True,
                              checkpoint_path=str(tmp_path / "ck"))
    plan = state.result()
    assert plan["dry_run"] and plan["would_create"] == 250 and plan["would_overwrite"] == 1
    assert redis_server.client().dbsize() == 1 and not (tmp_path / "ck").exists()
    dry = read_flow_run(plan_id, task_runs=1)
    assert dry.task_names() == ["check-transfer"] and dry.artifact_keys() == ["transfer-dry-run"]

    state, run_id = run_flow(transfer_sessions, source=valkey_server.url, target=redis_server.url,
                             patterns=["sess:*"], on_conflict="skip", checkpoint_path=str(tmp_path / "ck"))
    summary = state.result()
    assert summary["keys"] == 251 and summary["created"] == 250 and summary["skipped_existing"] == 1
    assert summary["source_server"].startswith("valkey") and summary["target_server"].startswith("redis")
    assert redis_server.client().get("sess:000001") == b"exists"

    run = read_flow_run(run_id, task_runs=2)
    assert run.run.state.is_completed()
    assert run.task_names() == ["check-transfer", "transfer"]
    assert run.artifact_keys() == ["transfer-progress", "transfer-summary"]
    assert run.artifact("transfer-progress").data == 100.0
    table = {row["metric"]: row["value"] for row in run.table("transfer-summary")}
    assert (table["keys"], table["created"], table["skipped_existing"]) == (251, 250, 1)


def test_transfer_flow_refuses_bad_parameters(prefect_harness, valkey):
    from flows.transfer import transfer_sessions

    with pytest.raises(InvalidParameter, match="same database"):
        transfer_sessions(source=valkey.url, target=valkey.url)
    with pytest.raises(InvalidParameter, match="holds a password"):
        transfer_sessions(source=valkey.url, target=f"redis://:pw-secret@127.0.0.1:{valkey.port}/1")
    with pytest.raises(InvalidParameter, match="on_conflict"):
        transfer_sessions(source=valkey.url, target=valkey.url[:-1] + "1", on_conflict="maybe")


@pytest.mark.slow
def test_target_restarted_mid_run_task_retry_resumes(prefect_harness, redis_server, tmp_path):
    """The target crashes after the first checkpoint and stays down past redis-py's own
    reconnect attempts; it comes back on the same port (its AOF survives) once Prefect has
    scheduled the retry; the retried task resumes from the checkpoint and the stores end up equal."""
    from flows.transfer import transfer_sessions
    from tasks.progress import subscribe

    redis_server.client().flushall()
    _seed(redis_server.client(), 25_000)
    target = start_server("valkey", extra=("--appendonly", "yes", "--appendfsync", "always"))
    events = []
    restarts: list[threading.Thread] = []
    stopping = threading.Event()
    lock = threading.Lock()  # the test's end and the restart never interleave: no server outlives the test

    def restart_later(task_run_id):
        """Bring the target back once Prefect has scheduled this task run's retry (or after 12 s)."""
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound
        from prefect.settings import PREFECT_API_URL, temporary_settings

        deadline = time.monotonic() + 12  # well inside the retries (2 + 4 + 8 s and reconnects)
        with temporary_settings({PREFECT_API_URL: prefect_harness}), get_client(sync_client=True) as client:
            while time.monotonic() < deadline and not stopping.is_set():
                try:
                    if client.read_task_run(task_run_id).state_name in ("AwaitingRetry", "Retrying"):
                        break
                except ObjectNotFound:  # task runs reach the server as events, a little later
                    pass
                stopping.wait(0.2)
        args = [_binary("valkey"), "--port", str(target.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", target.workdir, "--appendonly", "yes", "--appendfsync", "always"]
        with lock:
            if not stopping.is_set():
                target.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listener(event):
        if getattr(event, "checkpoints", 0) >= 1 and not events:
            from prefect.runtime import task_run

            events.append(event.keys)
            target.process.kill()
            target.process.wait()
            restarts.append(threading.Thread(target=restart_later, args=(task_run.id,)))
            restarts[-1].start()

    unsubscribe = subscribe(listener)
    try:
        state, run_id = run_flow(transfer_sessions, source=redis_server.url, target=target.url, patterns=["sess:*"],
                                 checkpoint_path=str(tmp_path))
        summary = state.result()
        assert events, "the target was never stopped"
        assert summary["resumed"] and summary["keys"] == 25_001
        run = read_flow_run(run_id, task_runs=2)
        [copy] = [t for t in run.task_runs if t.name.startswith("transfer")]
        assert copy.run_count >= 2  # failed once (ServerUnavailable, transient), retried, resumed
        report = verify(RedisEndpoint.from_url(redis_server.url), RedisEndpoint.from_url(target.url))
        assert report.ok and report.counts["OK"] == 25_001, report.as_dict()
    finally:
        unsubscribe()
        with lock:
            stopping.set()
        for thread in restarts:
            thread.join()
        target.stop()


@pytest.mark.slow
def test_cli_transfer_with_passwords(valkey, tmp_path):
    valkey.client().set("sess:a", "1", ex=3600)
    valkey.client().hset("sess:h", mapping={"f": "v"})
    server = start_server("redis", password="transfer-secret-7")
    try:
        def cli(*args):
            return subprocess.run([sys.executable, "-m", "session_migration_cli", "transfer", valkey.url, server.url,
                                   "--checkpoint-path", str(tmp_path), *args],
                                  capture_output=True, text=True, env=dict(os.environ), timeout=300)

        dry = cli("--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout.strip().splitlines()[-1])["would_create"] == 2
        assert server.client().dbsize() == 0
        done = cli("--pattern", "sess:*", "--rename-prefix", "sess:", "app:sess:", "--json", "--verbose")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["created"] == 2
        assert "transfer-secret-7" not in done.stdout + done.stderr
        assert "transfer-secret-7" not in "".join(p.read_text() for p in (tmp_path / "transfers").iterdir())
        assert server.client().get("app:sess:a") == b"1"
        bad = cli("--on-conflict", "fail", "--json", "--rename-prefix", "sess:", "app:sess:")
        assert bad.returncode == 1
        assert "already exist" in json.loads(bad.stdout.strip().splitlines()[-1])["error"]
    finally:
        server.stop()
