"""Redis -> Redis transfer against real servers: every type both ways between Valkey 9 and
Redis 7.0, TTL instants, rename, on_conflict=fail, dry run, kill -9 and resume, a target
restarted mid-run, source == target, unreachable target."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from helpers import BINARY_KEYS, HOUR_MS, seed_all_types, seed_binary, state
from servers import _binary, free_port, start_server, wait_ready
from session_migration.endpoints import RedisEndpoint
from session_migration.errors import InvalidParameter, ServerUnavailable
from session_migration.errors import RenameCollision, WriteConflict
from session_migration.transfer import (
    TransferOptions, checkpoint_file, run_transfer, transfer,
)
from session_migration.verify import VerifyOptions, verify

pytestmark = pytest.mark.integration


def ep(server) -> RedisEndpoint:
    return RedisEndpoint.from_url(server.url)


def seed_many(r, n, prefix="sess:"):
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"{prefix}{i:05d}", os.urandom(40), px=2 * HOUR_MS + i)
    for i in range(20):
        pipe.hset(f"{prefix}h{i}", mapping={"a": "1", "b": os.urandom(8)})
    pipe.execute()


@pytest.fixture
def both(valkey_server, redis_server):
    valkey_server.client().flushall()
    redis_server.client().flushall()
    return {"valkey": valkey_server, "redis": redis_server}


@pytest.mark.parametrize("src_kind,dst_kind", [("redis", "valkey"), ("valkey", "redis")])
def test_every_type_both_directions(both, tmp_path, src_kind, dst_kind):
    src, dst = both[src_kind], both[dst_kind]
    seed_all_types(src.client())
    result = run_transfer(ep(src), ep(dst), TransferOptions(patterns=("sess:*",)), checkpoint_path=str(tmp_path))
    s = result.summary()
    assert s["keys"] == s["written"] == s["created"] == 7
    assert s["vanished"] == 0 and s["overwritten"] == 0 and not s["resumed"]
    if src_kind == "redis":
        assert s["dump_restored"] == 1 and s["dump_fallbacks"] == 0  # the stream: 7.0 payloads go forward
    else:
        assert s["dump_fallbacks"] == 1  # Valkey 9 payload refused by Redis 7.0: typed XADD instead
    assert state(dst.client()) == state(src.client(), "sess:*")  # same values, same expiry instants
    assert dst.client().exists("other:key") == 0  # out of scope: never written
    report = verify(ep(src), ep(dst), VerifyOptions(patterns=("sess:*",)))
    assert report.ok, report.as_dict()
    assert report.counts["OK"] == 7
    # the checkpoint is kept as a record, finished
    ckpt = json.loads(open(result.checkpoint.removeprefix("file://")).read())
    assert ckpt["finished_at"] and ckpt["counters"]["written"] == 7


@pytest.mark.parametrize("src_kind,dst_kind", [("redis", "valkey"), ("valkey", "redis")])
def test_binary_keys_and_values_both_directions(both, tmp_path, src_kind, dst_kind):
    """Keys, members and values with NUL, invalid UTF-8 and CR/LF arrive byte for byte, with
    their expiry instants."""
    src, dst = both[src_kind], both[dst_kind]
    seed_binary(src.client())
    before = state(src.client())
    assert sorted(before) == sorted(BINARY_KEYS.values())
    result = run_transfer(ep(src), ep(dst), TransferOptions(patterns=("sess:*",)), checkpoint_path=str(tmp_path))
    s = result.summary()
    assert s["keys"] == s["written"] == s["created"] == 5
    assert state(dst.client()) == before
    assert verify(ep(src), ep(dst), VerifyOptions(patterns=("sess:*",))).counts["OK"] == 5


def test_passwords_stay_out_of_the_checkpoint_and_the_summary(tmp_path):
    source = start_server("valkey", password="ckpt-source-pw-1")
    target = start_server("redis", password="ckpt-target-pw-2")
    try:
        seed_all_types(source.client())
        result = run_transfer(ep(source), ep(target), TransferOptions(patterns=("sess:*",)),
                              checkpoint_path=str(tmp_path))
        assert result.counters.written == 7 and target.client().dbsize() == 7
        written = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
        assert str(target.port) in written  # the checkpoint names the endpoints...
        shown = written + json.dumps(result.summary()) + repr(result)
        assert "ckpt-source-pw-1" not in shown and "ckpt-target-pw-2" not in shown  # ...never their passwords
    finally:
        source.stop()
        target.stop()


@pytest.mark.parametrize("src_kind,dst_kind", [("redis", "valkey"), ("valkey", "redis")])
def test_absolute_ttl_keeps_the_instant(both, tmp_path, src_kind, dst_kind):
    src, dst = both[src_kind], both[dst_kind]
    r = src.client()
    at = int(time.time() * 1000) + 5 * HOUR_MS + 123
    r.set("sess:a", "1")
    r.pexpireat("sess:a", at)
    r.hset("sess:h", mapping={"f": "v"})
    r.pexpireat("sess:h", at + 7)
    transfer(src.url, dst.url, patterns=["sess:*"], checkpoint_path=str(tmp_path))
    assert dst.client().pexpiretime("sess:a") == at
    assert dst.client().pexpiretime("sess:h") == at + 7


def test_ttl_policy_none_and_min_ttl(both, tmp_path):
    src, dst = both["redis"], both["valkey"]
    r = src.client()
    r.set("sess:long", "1", px=2 * HOUR_MS)
    r.set("sess:short", "1", px=5_000)
    result = transfer(src.url, dst.url, patterns=["sess:*"], min_ttl_ms=60_000, checkpoint_path=str(tmp_path))
    assert result.counters.below_min_ttl == 1 and result.counters.written == 1
    assert dst.client().exists("sess:short") == 0
    dst.client().flushall()
    transfer(src.url, dst.url, patterns=["sess:*"], ttl_policy="none", checkpoint_path=str(tmp_path))
    assert dst.client().pttl("sess:long") == -1 and dst.client().pttl("sess:short") == -1


def test_rename(both, tmp_path):
    src, dst = both["valkey"], both["redis"]
    r = src.client()
    r.set("laravel_database_laravel_cache:s1", "a", px=HOUR_MS)
    r.hset("laravel_database_laravel_cache:h", mapping={"x": "y"})
    result = transfer(src.url, dst.url, patterns=["laravel_database_laravel_cache:*"],
                      rename_prefix=["laravel_database_laravel_cache:", "laravel_database_laravel_cache_"],
                      checkpoint_path=str(tmp_path))
    assert result.counters.written == 2
    d = dst.client()
    assert sorted(d.keys("*")) == [b"laravel_database_laravel_cache_h", b"laravel_database_laravel_cache_s1"]
    assert d.get("laravel_database_laravel_cache_s1") == b"a"
    assert d.pexpiretime("laravel_database_laravel_cache_s1") == r.pexpiretime("laravel_database_laravel_cache:s1")


def test_one_keyspace_walk_reads_and_writes_only_keys_in_scope(both, tmp_path):
    """The keyspace is walked once and matched against every pattern here: keys outside the
    patterns are never read or written, keys matching two patterns are written once."""
    src, dst = both["valkey"], both["redis"]
    r = src.client()
    seed_many(r, 300)
    for i in range(200):
        r.set(f"cache:{i}", "not a session")
    r.set("session:flask", "f", px=HOUR_MS)
    result = transfer(src.url, dst.url, patterns=["sess:*", "session:*", "sess:h*"], batch_size=64,
                      checkpoint_path=str(tmp_path))
    assert result.counters.keys == result.counters.written == 321
    assert result.counters.scanned == 321 and result.counters.duplicates == 0
    assert dst.client().dbsize() == 321 and not dst.client().exists("cache:1")
    assert state(dst.client()) == {k: v for k, v in state(r).items() if not k.startswith(b"cache:")}


def test_checkpoint_of_a_per_pattern_walk_starts_again(both, tmp_path):
    """A checkpoint written by a version that walked once per pattern holds a position this walk
    cannot use: the transfer starts its walk again (writes are idempotent) and ends equal."""
    src, dst = both["redis"], both["valkey"]
    seed_many(src.client(), 500)
    options = TransferOptions(patterns=("sess:*",), batch_size=100)
    path = checkpoint_file(str(tmp_path), ep(src), ep(dst), options)
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as fh:
        json.dump({"source": ep(src).identity, "target": ep(dst).identity, "options": options.for_checkpoint(), "started_at": "x",
                   "preflight_passed": True, "pattern_index": 0, "cursor": 77, "counters": {"keys": 100}}, fh)
    result = run_transfer(ep(src), ep(dst), options, checkpoint_path=str(tmp_path))
    assert result.counters.keys == result.counters.written == 520
    assert state(dst.client()) == state(src.client())


def test_rename_collision_refused(both, tmp_path):
    src, dst = both["valkey"], both["redis"]
    r = src.client()
    r.set("sess:a:1", "x")
    r.set("sess:b:1", "y")
    with pytest.raises(RenameCollision):
        transfer(src.url, dst.url, patterns=["sess:*"], rename_prefix=["sess:a:", "sess:b:"],
                 checkpoint_path=str(tmp_path))
    assert dst.client().dbsize() == 0


def test_on_conflict_fail_leaves_target_untouched(both, tmp_path):
    src, dst = both["redis"], both["valkey"]
    seed_many(src.client(), 300)
    d = dst.client()
    d.set("sess:00150", "the target's own", ex=60)
    with pytest.raises(WriteConflict, match="1 key"):
        transfer(src.url, dst.url, patterns=["sess:*"], on_conflict="fail", checkpoint_path=str(tmp_path))
    assert d.dbsize() == 1 and d.get("sess:00150") == b"the target's own"
    assert not (tmp_path / "transfers").exists() or not list((tmp_path / "transfers").iterdir())
    # skip keeps the target's key and writes the rest
    result = transfer(src.url, dst.url, patterns=["sess:*"], on_conflict="skip", checkpoint_path=str(tmp_path))
    assert result.counters.skipped_existing == 1 and result.counters.written == 319
    assert d.get("sess:00150") == b"the target's own"


def test_dry_run_writes_nothing(both, tmp_path):
    src, dst = both["valkey"], both["redis"]
    seed_many(src.client(), 100)
    d = dst.client()
    d.set("sess:00001", "exists")
    result = transfer(src.url, dst.url, patterns=["sess:*"], dry_run=True, on_conflict="skip",
                      checkpoint_path=str(tmp_path / "ck"))
    s = result.summary()
    assert s["dry_run"] and s["keys"] == 120
    assert s["would_create"] == 119 and s["would_skip_existing"] == 1 and s["written"] == 0
    assert d.dbsize() == 1 and d.get("sess:00001") == b"exists"
    assert not (tmp_path / "ck").exists()  # not even a checkpoint


def test_source_equal_target_refused(valkey, tmp_path):
    with pytest.raises(InvalidParameter, match="same database"):
        transfer(valkey.url, valkey.url.replace("/0", "/0?password_env=UNUSED_VAR"), checkpoint_path=str(tmp_path))
    # another db of the same server is a different target
    valkey.client().set("sess:x", "1")
    result = transfer(valkey.url, valkey.url[:-1] + "1", patterns=["sess:*"], checkpoint_path=str(tmp_path))
    assert result.counters.written == 1 and valkey.client(db=1).get("sess:x") == b"1"


def test_unreachable_target_is_refused_before_anything_is_written(valkey, tmp_path):
    valkey.client().set("sess:x", "1")
    with pytest.raises(ServerUnavailable, match="Cannot reach"):
        transfer(valkey.url, f"redis://127.0.0.1:{free_port()}/0", checkpoint_path=str(tmp_path))
    assert not (tmp_path / "transfers").exists()


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from session_migration.endpoints import RedisEndpoint
    from session_migration.transfer import TransferOptions, run_transfer

    def progress(event):
        if event.checkpoints >= 1:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: a crash

    run_transfer(RedisEndpoint.from_url(sys.argv[1]), RedisEndpoint.from_url(sys.argv[2]),
                 TransferOptions(patterns=("sess:*",), batch_size=100), checkpoint_path=sys.argv[3],
                 progress=progress, checkpoint_every=500)
    """
)


def test_kill_9_then_resume(both, tmp_path):
    src, dst = both["redis"], both["valkey"]
    seed_many(src.client(), 3000)
    root = str(tmp_path / "ck")
    child = subprocess.run([sys.executable, "-c", CHILD, src.url, dst.url, root])
    assert child.returncode == -signal.SIGKILL
    options = TransferOptions(patterns=("sess:*",), batch_size=100)
    path = checkpoint_file(root, ep(src), ep(dst), options)
    ckpt = json.loads(open(path).read())
    assert ckpt["finished_at"] is None and ckpt["pattern_index"] == 0 and ckpt["cursor"] != 0
    assert 500 <= ckpt["counters"]["keys"] < 3020
    assert 0 < dst.client().dbsize() < 3020  # stopped mid-transfer

    result = run_transfer(ep(src), ep(dst), options, checkpoint_path=root, checkpoint_every=500)
    assert result.resumed
    assert result.counters.keys == 3020  # counted once: checkpoint + the rest
    assert result.counters.written == 3020
    assert dst.client().dbsize() == 3020
    report = verify(ep(src), ep(dst))
    assert report.ok and report.counts["OK"] == 3020, report.as_dict()
    assert state(dst.client()) == state(src.client())
    # finished: a re-run is a new transfer, every key overwritten with the same value
    again = run_transfer(ep(src), ep(dst), options, checkpoint_path=root)
    assert not again.resumed and again.counters.overwritten == 3020


def restart(server) -> None:
    """Start the server again on the same port with the same data dir (its AOF survives)."""
    args = [_binary(server.kind), "--port", str(server.port), "--bind", "127.0.0.1", "--save", "",
            "--dir", server.workdir, "--appendonly", "yes", "--appendfsync", "always"]
    server.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(server.port)


def persistent_target(kind="valkey"):
    return start_server(kind, extra=("--appendonly", "yes", "--appendfsync", "always"))


def test_target_restarted_mid_run(redis_server, tmp_path):
    redis_server.client().flushall()
    seed_many(redis_server.client(), 3000)
    target = persistent_target("valkey")
    try:
        options = TransferOptions(patterns=("sess:*",), batch_size=100)
        root = str(tmp_path)
        stopped = []

        def progress(event):
            if event.checkpoints >= 1 and not stopped:
                target.process.kill()  # the target dies (crash) mid-transfer
                target.process.wait()
                stopped.append(event.keys)

        with pytest.raises(ServerUnavailable):
            run_transfer(ep(redis_server), ep(target), options, checkpoint_path=root, progress=progress,
                         checkpoint_every=500)
        assert stopped
        restart(target)
        assert 0 < target.client().dbsize() < 3020
        result = run_transfer(ep(redis_server), ep(target), options, checkpoint_path=root, checkpoint_every=500)
        assert result.resumed and result.counters.keys == 3020
        report = verify(ep(redis_server), ep(target))
        assert report.ok and report.counts["OK"] == 3020, report.as_dict()
    finally:
        target.stop()


def test_source_restarted_before_resume_walks_again(valkey_server, tmp_path):
    """A SCAN cursor is only valid for the server process that gave it: after a source restart
    the resumed transfer starts its walk again (idempotent writes) and still ends equal."""
    valkey_server.client().flushall()
    source = persistent_target("redis")
    try:
        seed_many(source.client(), 2000)
        options = TransferOptions(patterns=("sess:*",), batch_size=100)

        class Crash(Exception):
            pass

        def progress(event):
            if event.checkpoints >= 1:
                raise Crash

        with pytest.raises(Crash):
            run_transfer(ep(source), ep(valkey_server), options, checkpoint_path=str(tmp_path), progress=progress,
                         checkpoint_every=300)
        source.process.kill()
        source.process.wait()
        restart(source)
        assert source.client().dbsize() == 2020
        result = run_transfer(ep(source), ep(valkey_server), options, checkpoint_path=str(tmp_path),
                              checkpoint_every=300)
        assert result.counters.keys == 2020 and result.counters.written == 2020
        assert result.counters.overwritten >= 300  # the keys of the first run were written again
        report = verify(ep(source), ep(valkey_server))
        assert report.ok and report.counts["OK"] == 2020, report.as_dict()
    finally:
        source.stop()
