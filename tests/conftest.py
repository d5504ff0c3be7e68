from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network from the test servers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Cluster, Server, free_port, start_cluster, start_server  # noqa: E402


@pytest.fixture(scope="session")
def valkey_server():
    server = start_server("valkey")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    server = start_server("redis")
    yield server
    server.stop()


@pytest.fixture(params=["valkey", "redis"])
def server(request) -> Server:
    """Each test using this runs against Valkey 9 and Redis 7.0, on an empty database."""
    srv: Server = request.getfixturevalue(f"{request.param}_server")
    srv.client().flushall()
    return srv


@pytest.fixture
def valkey(valkey_server) -> Server:
    valkey_server.client().flushall()
    return valkey_server


@pytest.fixture(scope="session")
def redis_cluster_servers():
    cluster = start_cluster("redis")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def valkey_cluster_servers():
    cluster = start_cluster("valkey")
    yield cluster
    cluster.stop()


@pytest.fixture(params=["valkey", "redis"])
def cluster(request) -> Cluster:
    """Each test using this runs against a 3-master Valkey 9 cluster and a Redis 7.0 one, emptied."""
    nodes: Cluster = request.getfixturevalue(f"{request.param}_cluster_servers")
    nodes.flushall()
    return nodes


@pytest.fixture(scope="session")
def dask_cluster():
    """A local Dask cluster as real processes: a scheduler and two workers of one thread each."""
    from servers import start_dask_cluster

    cluster = start_dask_cluster(workers=2)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def s3_bucket():
    """A real S3 API on loopback (moto's server) and a bucket; s3fs finds it through the env."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(endpoint_url=env["AWS_ENDPOINT_URL"])
    fs.mkdir("sessions-test")
    yield "s3://sessions-test"
    moto.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One real local Prefect server (SQLite) for the whole run, on a free loopback port.

    Flows in this process and CLI subprocesses (through PREFECT_API_URL) report to it, so no
    run pays for starting an ephemeral server of its own.
    """
    from servers import local_prefect_server

    with local_prefect_server(tmp_path_factory.mktemp("prefect-home")) as url:
        yield url


@pytest.fixture(scope="session")
def prefect_harness(prefect_server):
    """Flows in this process run for real against the shared local Prefect server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ["PREFECT_API_URL"] = prefect_server  # CLI subprocesses started by tests use it too
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        yield prefect_server
        _drain_prefect_workers()


def _drain_prefect_workers() -> None:
    """Send buffered logs and events before the server stops (as prefect_test_harness does),
    so the process does not spend its exit retrying a server that is gone."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain():
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:
            pass
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())
