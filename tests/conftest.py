from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network from the test servers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Server, free_port, start_server  # noqa: E402


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
def prefect_harness():
    """Flows run for real against a temporary Prefect server (prefect_test_harness)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
