"""The commands docs/connections.md shows, run as a user would (a subprocess, both modes), against
a password-protected Sentinel setup: they work, and neither the master's nor the sentinels'
password is printed or becomes a flow parameter."""

from __future__ import annotations

import json

import pytest

from test_cli import cli, last_json

pytestmark = [pytest.mark.flows, pytest.mark.integration, pytest.mark.slow,
              pytest.mark.usefixtures("prefect_harness")]

DATA_PW, SENTINEL_PW = "cli-data-pw-81f", "cli-sentinel-pw-3d0"


@pytest.fixture(scope="module")
def guarded():
    from servers import start_sentinel_setup

    setup = start_sentinel_setup(password=DATA_PW, sentinel_password=SENTINEL_PW)
    client = setup.master().client()
    for i in range(300):
        client.set(f"sess:{i:03d}", f"v{i}", px=3_600_000)
    yield setup
    setup.stop()


@pytest.mark.parametrize("mode", ["direct", "flow"])
def test_a_backup_through_the_sentinels_with_both_passwords_typed_in_the_url(guarded, tmp_path, mode):
    from prefect.client.orchestration import get_client

    url = guarded.url(sentinel_password=SENTINEL_PW).replace("://", f"://:{DATA_PW}@", 1)
    done = cli("backup", url, str(tmp_path / "snapshots"), "--json", "--debug", mode=mode)
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout)["keys"] == 300
    assert DATA_PW not in done.stdout + done.stderr and SENTINEL_PW not in done.stdout + done.stderr
    with get_client(sync_client=True) as client:
        recorded = json.dumps([r.parameters for r in client.read_flow_runs(limit=200)])
    assert DATA_PW not in recorded and SENTINEL_PW not in recorded


def test_a_transfer_with_the_passwords_by_reference(guarded, valkey, tmp_path):
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in guarded.sentinels)
    source = (f"redis+sentinel://{hosts}/sessions/0?password_env=SESSION_MIGRATION_SOURCE_PASSWORD"
              "&sentinel_password_env=SESSION_MIGRATION_SOURCE_SENTINEL_PASSWORD")
    done = cli("transfer", source, valkey.url, "--json", mode="flow",
               env={"SESSION_MIGRATION_SOURCE_PASSWORD": DATA_PW, "SESSION_MIGRATION_SOURCE_SENTINEL_PASSWORD": SENTINEL_PW,
                    "SESSION_MIGRATION_STATE_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout)["written"] == 300 and valkey.client().dbsize() == 300


def test_a_backup_from_a_redis_database_block(valkey, tmp_path):
    from prefect_redis import RedisDatabase

    valkey.client().set("sess:from-block", "v")
    RedisDatabase(host="127.0.0.1", port=valkey.port, db=0).save("sessions-prod", overwrite=True)
    done = cli("backup", "redis-database/sessions-prod", str(tmp_path / "snapshots"), "--json", mode="flow")
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout)["keys"] == 1
