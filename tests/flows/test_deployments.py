"""The deployments, for real: a local Prefect server, a process work pool, `prefect deploy`,
a worker that runs the nightly backup, and the run's artifacts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
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


@pytest.fixture
def own_prefect_server(tmp_path_factory):
    """A server of its own: the deployments' schedules create runs that other tests must not see."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from servers import local_prefect_server

    with local_prefect_server(tmp_path_factory.mktemp("deploy-prefect-home")) as url:
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
            from conftest import _drain_prefect_workers

            _drain_prefect_workers()


def test_deploy_and_run_through_a_worker(own_prefect_server, valkey, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from tasks.blocks import RedisConnection

    valkey.client().set("sess:abcdabcdabcdabcdabcdabcdabcdabcd", '{"cookie": {}}', ex=600)
    RedisConnection(url=valkey.url).save("session-store-source", overwrite=True)
    env = {**os.environ, "PREFECT_API_URL": own_prefect_server, "PWD": str(ROOT)}
    prefect("work-pool", "create", "sessions", "--type", "process", "--overwrite", env=env)
    prefect("--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml", env=env)

    run = run_deployment("backup-sessions/nightly-backup", parameters={"backup_path": str(tmp_path)}, timeout=0)
    prefect("worker", "start", "--pool", "sessions", "--run-once", env=env, timeout=600)

    async def outcome():
        async with get_client() as client:
            flow_run = await client.read_flow_run(run.id)
            deployments = await client.read_deployments()
            artifacts = await client.read_artifacts()
            return flow_run, deployments, [a for a in artifacts if a.flow_run_id == run.id]

    flow_run, deployments, artifacts = asyncio.run(outcome())
    assert flow_run.state.is_completed(), flow_run.state
    assert {d.name for d in deployments} >= {"nightly-backup", "daily-cleanup", "daily-prune", "on-demand-restore",
                                             "on-demand-migration"}
    assert {a.key for a in artifacts} >= {"backup-summary", "backup-progress"}
    assert len(list(tmp_path.glob("*/manifest.json"))) == 1


def test_serve_builds_the_same_deployments():
    from serve import build_deployments

    names = {d.name for d in build_deployments()}
    assert names == {"nightly-backup", "nightly-audit", "daily-cleanup", "daily-prune", "on-demand-restore", "on-demand-migration"}
