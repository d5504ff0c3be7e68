"""The deployments, for real: the suite's Prefect server, a process work pool, `prefect deploy`,
one worker that runs every deployment of prefect.yaml, and each run's own artifacts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.flows, pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deployments"))


def prefect(*args, env, timeout=300):
    done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_every_deployment_parameter_set_is_valid():
    from check_parameters import check_file

    assert check_file(str(ROOT / "deployments" / "prefect.yaml")) == []


def test_a_bad_schedule_parameter_is_refused(tmp_path):
    from check_parameters import check_file

    bad = (ROOT / "deployments" / "prefect.yaml").read_text().replace("batch_size: 1000", "batch_size: 0")
    (tmp_path / "prefect.yaml").write_text(bad)
    problems = check_file(str(tmp_path / "prefect.yaml"))
    assert problems == ["nightly-backup: batch_size must be a whole number from 1 to 100,000; got 0."]


def deployments() -> dict[str, str]:
    """Every deployment of prefect.yaml, as `run_deployment` names it: name -> "flow/name"."""
    import importlib

    import yaml

    named = {}
    for deployment in yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())["deployments"]:
        path, function = deployment["entrypoint"].split(":")
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), function)
        named[deployment["name"]] = f"{flow.name}/{deployment['name']}"
    return named


def _ident() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def stores(valkey_server, redis_server, tmp_path):
    """What every deployment of prefect.yaml works on, arranged so that runs going on at the
    same time never touch one another's keys or files: each gets a folder of its own, and the
    cleanup a database of its own (its deletes would race the backup and the migration). The
    parameters that name those are the only ones a test run overrides.

    - source (block session-store-source): Valkey db 0, sessions in scope plus one key outside it;
    - target (block session-store-target): Redis db 0, one session of its own and one key outside scope;
    - cleanup source: Valkey db 1, a lock without TTL, an orphan Spring companion, a live session;
    - a snapshot of `app:` keys (outside every session pattern, so the migration writing to the
      same target never sees them) for the restore;
    - eight snapshots finished 20 days ago for the prune.
    """
    from session_migration import backup
    from tasks.blocks import RedisConnection

    from helpers import rewrite_snapshot

    valkey_server.client().flushall()
    redis_server.client().flushall()
    source, target = valkey_server.client(), redis_server.client()
    sessions = [f"sess:{_ident()}" for _ in range(5)]
    for key in sessions:
        source.set(key, json.dumps({"cookie": {"expires": None}, "user": "u"}), ex=3600)
    source.set("cache:user:1", "{}")
    target.set(f"sess:{_ident()}", json.dumps({"cookie": {"expires": None}}), ex=3600)
    target.set("cache:user:2", "{}")

    cleanup = valkey_server.client(db=1)
    lock = f"PHPREDIS_SESSION:{_ident()}_LOCK"
    orphan = f"spring:session:sessions:expires:{uuid.uuid4()}"
    kept = f"sess:{_ident()}"
    cleanup.set(lock, "1")
    cleanup.set(orphan, b"", ex=3600)
    cleanup.set(kept, json.dumps({"cookie": {"expires": None}}), ex=3600)

    apps = valkey_server.client(db=2)
    for i in range(3):
        apps.set(f"app:{i}", f"v{i}", ex=3600)
    restore_snapshot = backup(valkey_server.url[:-1] + "2", str(tmp_path / "restore-from"), patterns=["app:*"]).url
    audited = backup(valkey_server.url, str(tmp_path / "audit"), patterns=["sess:*"]).url  # the newest there

    prune_ids = [f"20260101T00000{i}Z-prune{i}" for i in range(8)]
    for snapshot_id in prune_ids:
        url = backup(valkey_server.url, str(tmp_path / "prune"), patterns=["sess:*"], snapshot_id=snapshot_id).url
        rewrite_snapshot(url, earlier_ms=20 * 86_400_000)  # finished 20 days ago: older than keep_days
    RedisConnection(url=valkey_server.url).save("session-store-source", overwrite=True)
    RedisConnection(url=redis_server.url).save("session-store-target", overwrite=True)
    return {"source": source, "target": target, "sessions": sessions, "cleanup": cleanup, "lock": lock,
            "orphan": orphan, "kept": kept, "restore_snapshot": restore_snapshot, "prune_ids": prune_ids,
            "audited": audited,
            "cleanup_url": valkey_server.url[:-1] + "1"}


@contextlib.contextmanager
def worker(env):
    """One process worker on the pool, polling every second for runs due now; on the way out
    it is stopped with every flow run process it started, whatever happened."""
    process = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "sessions"], cwd=ROOT,
                               env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "0"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # and whatever of its group is left
        process.wait()


def wait_for_final_states(run_ids, timeout=600.0) -> None:
    """Until every flow run of `run_ids` is in a final state (completed, failed, crashed, ...)."""
    from prefect.client.orchestration import get_client

    async def poll():
        async with get_client() as client:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                states = [(await client.read_flow_run(run_id)).state for run_id in run_ids]
                if all(state and state.is_final() for state in states):
                    return
                await asyncio.sleep(0.25)

    asyncio.run(poll())


def test_every_deployment_runs_through_a_worker(prefect_harness, stores, tmp_path):
    """Every deployment of prefect.yaml, deployed to the suite's Prefect server and run by one
    process worker (the runs created back to back, then run side by side): each completes and
    does what its parameters say."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment
    from prefect.workers.process import ProcessWorker

    from helpers import read_flow_run
    from session_migration import list_snapshots

    async def create_pool():
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(
                name="sessions", type="process", base_job_template=ProcessWorker.get_default_base_job_template()),
                overwrite=True)

    async def pause_schedules():
        """No scheduled run of these deployments may come due while the worker polls."""
        async with get_client() as client:
            for full_name in deployments().values():
                await client.pause_deployment((await client.read_deployment_by_name(full_name)).id)

    env = {**os.environ, "PREFECT_API_URL": prefect_harness, "PWD": str(ROOT)}
    asyncio.run(create_pool())
    with worker(env):  # it starts while the deployments are deployed
        prefect("--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml", env=env)
        asyncio.run(pause_schedules())
        overrides = {
            "nightly-backup": {"backup_path": str(tmp_path / "nightly")},
            "nightly-audit": {"backup_path": str(tmp_path / "audit")},
            "daily-cleanup": {"source": stores["cleanup_url"], "backup_path": str(tmp_path / "cleanup")},
            "daily-prune": {"backup_path": str(tmp_path / "prune")},
            "on-demand-migration": {"backup_path": str(tmp_path / "migrations")},
            # no signing key here: a restore writes only the operator's patterns (or the session ones)
            "on-demand-restore": {"snapshot": stores["restore_snapshot"], "patterns": ["app:*"]},
        }
        assert sorted(overrides) == sorted(deployments())  # a new deployment needs its run here
        runs = {name: run_deployment(full_name, parameters=overrides[name], timeout=0)
                for name, full_name in deployments().items()}
        wait_for_final_states([run.id for run in runs.values()])
    done = {name: read_flow_run(run.id) for name, run in runs.items()}
    for name, record in done.items():
        assert record.run.state.is_completed(), (name, record.run.state)

    backups = list_snapshots(str(tmp_path / "nightly"))
    assert len(backups) == 1 and backups[0].totals["keys"] == 5
    assert done["nightly-backup"].artifact_keys() == ["backup-progress", "backup-summary"]

    cleanup = stores["cleanup"]
    assert sorted(cleanup.keys("*")) == [stores["kept"].encode()]  # the lock and the orphan are gone
    [pre_image] = list_snapshots(str(tmp_path / "cleanup"))
    assert sorted(pre_image.read_table(columns=["key"]).column("key").to_pylist()) == sorted(
        [stores["lock"].encode(), stores["orphan"].encode()])
    assert done["daily-cleanup"].artifact_keys() == ["cleanup-progress", "cleanup-report", "cleanup-summary"]

    audit_dir = Path(stores["audited"].removeprefix("file://")) / "audit"
    assert json.loads((audit_dir / "report.json").read_text())["keys"] == 5
    assert done["nightly-audit"].artifact_keys() == ["audit-by-store", "audit-report"]

    prune_ids = stores["prune_ids"]
    assert [s.snapshot_id for s in list_snapshots(str(tmp_path / "prune"))] == prune_ids[1:]  # keep_last 7
    assert done["daily-prune"].artifact_keys() == ["prune-snapshots"]
    assert {r["snapshot_id"]: r["action"] for r in done["daily-prune"].table("prune-snapshots")} == {
        **{i: "keep" for i in prune_ids[1:]}, prune_ids[0]: "deleted"}

    target = stores["target"]
    assert [target.get(k) for k in stores["sessions"]] == [stores["source"].get(k) for k in stores["sessions"]]
    [state_file] = (tmp_path / "migrations" / "migrations").glob("*.json")
    migration = json.loads(state_file.read_text())
    assert migration["step"] == "done" and migration["verify"]["counts"]["OK"] == 5
    assert migration["verify"]["kept_target_only"] == 1  # the target's own session
    assert done["on-demand-migration"].artifact_keys() == [
        "backup-progress", "migration-report", "migration-restore-progress", "migration-verify-progress"]

    assert sorted(target.keys("app:*")) == [b"app:0", b"app:1", b"app:2"] and target.get("app:2") == b"v2"
    assert done["on-demand-restore"].artifact_keys() == ["restore-progress", "restore-summary"]
    assert not (ROOT / "snapshots").exists()  # nothing ran with the checkout-relative defaults


def test_serve_builds_the_same_deployments():
    from serve import build_deployments

    assert sorted(d.name for d in build_deployments()) == sorted(deployments())
