"""Sentinel URLs against a real setup (a Redis master, its replica, three sentinels on loopback):
the master is found through the sentinels, and a failover forced in the middle of a backup or a
transfer is survived through the retry policy: the run reconnects to the new master and ends
with every key exactly once."""

from __future__ import annotations

import os

import pytest

from helpers import HOUR_MS, state
from servers import SentinelSetup, _role, free_port, start_sentinel_setup
from session_migration import open_snapshot
from session_migration.endpoints import RedisEndpoint
from session_migration.errors import AuthenticationFailed, ServerUnavailable
from session_migration.operations import backup_sessions, restore_sessions, transfer_sessions
from session_migration.options import BackupOptions, RestoreOptions, TransferOptions
from session_migration.runner import DirectRunner, Feedback

pytestmark = pytest.mark.integration

KEYS = 6000
TRANSFER_KEYS = 25_000


def seed(client, n: int = KEYS) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"sess:{i:05d}", os.urandom(40), px=2 * HOUR_MS + i)
    for i in range(10):
        pipe.hset(f"sess:h{i}", mapping={"a": "1", "b": os.urandom(8)})
        pipe.pexpire(f"sess:h{i}", HOUR_MS)
    pipe.set("other:key", b"out of scope")
    pipe.execute()
    replicas = client.info("replication")["connected_slaves"]
    if replicas:
        assert client.execute_command("WAIT", replicas, 10_000) == replicas  # on the replica too, before any failover


def snapshot_state(url: str) -> dict:
    """key -> (type, value, expire_at_ms) of a snapshot, asserting no key is in it twice."""
    rows = open_snapshot(url).read_table().to_pylist()
    keys = [row["key"] for row in rows]
    assert len(keys) == len(set(keys)), "a key was written twice"
    out = {}
    for row in rows:
        value = row["value"] if row["type"] == "string" else sorted(tuple(pair.values()) for pair in row["fields"])
        out[row["key"]] = (row["type"], value, row["expire_at_ms"])
    return out


def server_state(client) -> dict:
    return {key: (kind, value, expire if expire != -1 else None)
            for key, (kind, value, expire) in state(client, "sess:*").items()}


@pytest.fixture(scope="module")
def sentinel_setup():
    setup = start_sentinel_setup()
    yield setup
    setup.stop()


@pytest.fixture
def fresh_setup():
    """A setup of its own, for a test that moves the master."""
    setup = start_sentinel_setup()
    yield setup
    setup.stop()


class FailoverMidRun(Feedback):
    """Forces a failover from inside the run's progress callback once `ready(event)`, and waits
    there until it has happened. With `demoted`, the run then goes on against a demoted server
    (its connections killed); without, against the old master while it still takes writes
    (until the sentinels demote it, ~10 s later, and it drops them): the case a writer must
    not count as done."""

    def __init__(self, setup: SentinelSetup, ready, demoted: bool = True):
        self.setup, self.ready, self.demoted = setup, ready, demoted
        self.moved: tuple[int, int] | None = None
        self.retries: list = []

    def progress(self, key, description, event):
        if self.moved is None and self.ready(event):
            self.moved = self.setup.failover(demoted=self.demoted)
            if not self.demoted:
                assert _role(self.moved[0]) == "master"  # the window: two masters

    def retrying(self, retry):
        self.retries.append(retry)


def test_the_master_is_found_through_the_sentinels_and_a_backup_equals_one_by_plain_url(sentinel_setup, tmp_path):
    master = sentinel_setup.master()
    master.client().flushall()
    seed(master.client())
    endpoint = RedisEndpoint.from_url(sentinel_setup.url())
    assert endpoint.connect().connection_pool.get_master_address() == ("127.0.0.1", master.port)

    run = DirectRunner()
    options = BackupOptions(patterns=("sess:*",), batch_size=500, part_rows=2000)
    through_sentinels = backup_sessions(run, sentinel_setup.url(), str(tmp_path / "a"), options)
    plain = backup_sessions(run, master.url, str(tmp_path / "b"), options)
    assert through_sentinels["keys"] == plain["keys"] == KEYS + 10
    assert snapshot_state(through_sentinels["snapshot"]) == snapshot_state(plain["snapshot"])
    manifest = open_snapshot(through_sentinels["snapshot"]).manifest
    assert manifest["source"]["url"] == endpoint.display_url  # the sentinel form, not the master's address


@pytest.mark.parametrize("readers", [1, 2])  # in this process, and in two worker processes
def test_a_failover_in_the_middle_of_a_backup_is_survived(fresh_setup, tmp_path, readers):
    seed(fresh_setup.master().client())
    feedback = FailoverMidRun(fresh_setup, lambda event: event.parts >= 1)
    options = BackupOptions(patterns=("sess:*",), batch_size=100, part_rows=1000, readers=readers)
    summary = backup_sessions(DirectRunner(feedback), fresh_setup.url(), str(tmp_path), options)

    old, new = feedback.moved
    assert old != new and fresh_setup.master_port() == new  # the master really moved
    assert feedback.retries, "the failover did not reach the backup"
    assert summary["resumed_parts"] >= 1  # parts written before the failover were kept
    assert summary["keys"] == KEYS + 10
    assert snapshot_state(summary["snapshot"]) == server_state(fresh_setup.master().client())


def test_a_failover_of_the_source_in_the_middle_of_a_transfer_is_survived(fresh_setup, valkey, tmp_path):
    seed(fresh_setup.master().client(), TRANSFER_KEYS)  # a checkpoint every 10,000 keys: two before the end
    feedback = FailoverMidRun(fresh_setup, lambda event: event.checkpoints >= 1)
    options = TransferOptions(patterns=("sess:*",), batch_size=100)
    summary = transfer_sessions(DirectRunner(feedback), fresh_setup.url(), valkey.url, options,
                                checkpoint_path=str(tmp_path))
    old, new = feedback.moved
    assert old != new and fresh_setup.master_port() == new
    assert feedback.retries, "the failover did not reach the transfer"
    assert summary["keys"] == TRANSFER_KEYS + 10 and summary["duplicates"] == 0
    assert server_state(valkey.client()) == server_state(fresh_setup.master().client())
    assert valkey.client().exists("other:key") == 0


def test_a_failover_of_the_target_in_the_middle_of_a_restore_loses_no_write(fresh_setup, valkey, tmp_path):
    """The failover lands in the middle of a part, and the restore goes on writing that part to
    the old master, which takes the writes and drops them when demoted: the part is not recorded
    as done (no replica confirmed its writes) and is written again to the new master."""
    seed(valkey.client())
    snapshot = backup_sessions(DirectRunner(), valkey.url, str(tmp_path / "snapshots"),
                               BackupOptions(patterns=("sess:*",), part_rows=1000))["snapshot"]
    feedback = FailoverMidRun(fresh_setup, lambda event: event.parts_done >= 1 and 0 < event.keys < 1000, demoted=False)
    summary = restore_sessions(DirectRunner(feedback), snapshot, fresh_setup.url(), RestoreOptions(batch_size=200))
    old, new = feedback.moved
    assert feedback.retries, "the failover did not reach the restore"
    fresh_setup.wait_demoted(old, new)  # the old master drops what it took after the promotion
    expected = snapshot_state(snapshot)
    assert len(expected) == KEYS + 10
    assert server_state(fresh_setup.master().client()) == expected
    assert summary["rows"] == KEYS + 10


def test_a_failover_of_the_target_in_the_middle_of_a_transfer_loses_no_write(fresh_setup, valkey, tmp_path):
    seed(valkey.client(), TRANSFER_KEYS)
    feedback = FailoverMidRun(fresh_setup, lambda event: event.checkpoints >= 1, demoted=False)
    transfer_sessions(DirectRunner(feedback), valkey.url, fresh_setup.url(), TransferOptions(patterns=("sess:*",)),
                      checkpoint_path=str(tmp_path))
    old, new = feedback.moved
    assert feedback.retries, "the failover did not reach the transfer"
    fresh_setup.wait_demoted(old, new)
    assert server_state(fresh_setup.master().client()) == server_state(valkey.client())
    assert fresh_setup.master().client().exists("other:key") == 0


def test_no_sentinel_reachable_or_an_unknown_master_is_one_clear_transient_error(sentinel_setup):
    dead = [free_port(), free_port()]
    url = f"redis+sentinel://127.0.0.1:{dead[0]},127.0.0.1:{dead[1]}/sessions/0?sentinel_password=s3cr3t-sentinel"
    with pytest.raises(ServerUnavailable) as info:
        RedisEndpoint.from_url(url).connect()
    text = str(info.value)
    assert f"127.0.0.1:{dead[0]}" in text and f"127.0.0.1:{dead[1]}" in text and "'sessions'" in text
    assert "s3cr3t-sentinel" not in text

    # the first sentinel is down: the next one answers
    live = sentinel_setup.sentinels[0].port
    skipping = RedisEndpoint.from_url(f"redis+sentinel://127.0.0.1:{dead[0]},127.0.0.1:{live}/sessions/0").connect()
    assert skipping.ping()

    with pytest.raises(ServerUnavailable, match="names a master 'nobody'"):
        RedisEndpoint.from_url(f"redis+sentinel://127.0.0.1:{live}/nobody/0").connect()


def test_a_wrong_data_password_is_refused_without_showing_it(sentinel_setup):
    url = sentinel_setup.url().replace("://", "://app:wrong-pw-123@", 1)
    with pytest.raises(AuthenticationFailed) as info:
        RedisEndpoint.from_url(url).connect()
    assert "wrong-pw-123" not in str(info.value) and "redis+sentinel://app@" in str(info.value)


DATA_PASSWORD, SENTINEL_PASSWORD = "data-pw-5e1f0c", "sentinel-pw-9a7c2b"


def test_the_masters_and_the_sentinels_passwords_are_apart_and_never_shown(tmp_path, caplog, monkeypatch):
    """The URL's user info is the master's password; the sentinels' own is an option (inline, a
    secret, or by reference). Neither reaches a sentence, a log line, the manifest or a result."""
    import json
    import logging

    setup = start_sentinel_setup(password=DATA_PASSWORD, sentinel_password=SENTINEL_PASSWORD)
    try:
        seed(setup.master().client(), 200)
        with_data_password = setup.url().replace("://", f"://:{DATA_PASSWORD}@", 1)
        said: list[str] = []

        class Said(Feedback):
            def say(self, text):
                said.append(text)

        with caplog.at_level(logging.DEBUG):
            summary = backup_sessions(DirectRunner(Said()), f"{with_data_password}?sentinel_password={SENTINEL_PASSWORD}",
                                      str(tmp_path), BackupOptions(patterns=("sess:*",)))
        assert summary["keys"] == 210
        manifest = (tmp_path / summary["snapshot_id"] / "manifest.json").read_text()
        for text in (*said, caplog.text, manifest, json.dumps(summary)):
            assert DATA_PASSWORD not in text and SENTINEL_PASSWORD not in text

        monkeypatch.setenv("SESSION_MIGRATION_SENTINELS_PW", SENTINEL_PASSWORD)
        by_reference = f"{with_data_password}?sentinel_password_env=SESSION_MIGRATION_SENTINELS_PW"
        assert RedisEndpoint.from_url(by_reference).connect().dbsize() == 211

        for wrong in (with_data_password, f"{with_data_password}?sentinel_password={DATA_PASSWORD}"):
            with pytest.raises(AuthenticationFailed, match="sentinel_password") as info:  # terminal: not retried
                RedisEndpoint.from_url(wrong).connect()
            assert DATA_PASSWORD not in str(info.value) and SENTINEL_PASSWORD not in str(info.value)
        with pytest.raises(AuthenticationFailed) as info:  # the sentinels' password is not the master's
            RedisEndpoint.from_url(setup.url(sentinel_password=SENTINEL_PASSWORD)).connect()
        assert SENTINEL_PASSWORD not in str(info.value)
    finally:
        setup.stop()
