"""Restore against real servers: every type round-trips, TTL policies, conflicts, rename,
dry run, corrupt snapshots, DUMP fast path and fallback across versions, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import BINARY_KEYS, HOUR_MS, backdate_snapshot, seed_all_types, seed_binary, state
from session_migration import backup, open_snapshot, redact_key
from session_migration.errors import InvalidParameter, SnapshotInvalid, TerminalError
from session_migration.options import RestoreOptions
from session_migration.errors import RenameCollision, WriteConflict
from session_migration.restore import restore

pytestmark = pytest.mark.integration


def snap(server, tmp_path, **kw):
    kw.setdefault("patterns", ["sess:*"])
    result = backup(server.url, str(tmp_path / "snaps"), **kw)
    return result.url


def test_round_trip_every_type(server, tmp_path):
    src = server.client()
    seed_all_types(src)
    url = snap(server, tmp_path)
    before = state(src, "sess:*")
    src.flushall()
    result = restore(url, server.url)
    s = result.summary()
    assert s["rows"] == 7 and s["written"] == s["created"] == 7
    assert s["overwritten"] == 0 and s["expired_on_arrival"] == 0
    assert s["dump_restored"] == 1  # the stream (always dumped), same server
    assert s["typed_writes"] == 6
    assert state(src, "*") == before  # other:key not restored (not in the snapshot)
    assert b"sess:forever" in before and before[b"sess:forever"][2] == -1
    # checkpoint kept as a record, marked finished
    ckpt = json.loads(Path(result.checkpoint.removeprefix("file://")).read_text())
    assert ckpt["finished_at"] and len(ckpt["parts"]) == 1
    # writing again is idempotent: same state, all overwritten
    again = restore(url, server.url).summary()
    assert again["overwritten"] == 7 and again["created"] == 0
    assert state(src, "*") == before


def test_ttl_policies_and_min_ttl(valkey, tmp_path):
    r = valkey.client()
    r.set("sess:short", "s", px=30_000)
    r.set("sess:long", "l", px=10 * HOUR_MS)
    r.set("sess:none", "n")
    url = snap(valkey, tmp_path)
    captured = {row["key"]: row["expire_at_ms"] for row in open_snapshot(url).read_table().to_pylist()}
    assert captured[b"sess:short"] == r.pexpiretime("sess:short") and captured[b"sess:none"] is None
    backdate_snapshot(url, 10 * 60_000)  # taken 10 min ago: sess:short expired 9.5 min ago
    r.flushall()

    absolute = restore(url, valkey.url).summary()
    assert absolute["expired_on_arrival"] == 1 and absolute["written"] == 2
    assert not r.exists("sess:short")
    long_source = json.loads(Path(url.removeprefix("file://"), "manifest.json").read_text())
    assert r.pexpiretime("sess:long") == captured[b"sess:long"] - 10 * 60_000  # the snapshot's instant
    assert r.pexpiretime("sess:none") == -1

    r.flushall()
    relative = restore(url, valkey.url, ttl_policy="relative").summary()
    assert relative["written"] == 3 and relative["expired_on_arrival"] == 0
    assert 0 < r.pttl("sess:short") <= 30_000  # what it had left at the backup, started again
    assert 10 * HOUR_MS - 5000 < r.pttl("sess:long") <= 10 * HOUR_MS
    assert long_source["totals"]["with_ttl"] == 2

    r.flushall()
    none = restore(url, valkey.url, ttl_policy="none").summary()
    assert none["written"] == 3
    assert r.pttl("sess:short") == r.pttl("sess:long") == -1

    r.flushall()
    floor = restore(url, valkey.url, ttl_policy="relative", min_ttl_ms=60_000).summary()
    assert floor["below_min_ttl"] == 1 and floor["written"] == 2
    assert not r.exists("sess:short") and r.exists("sess:long", "sess:none") == 2


def test_on_conflict_replace_skip_fail(server, tmp_path):
    r = server.client()
    for i in range(10):
        r.set(f"sess:{i}", f"old-{i}", px=HOUR_MS)
    r.hset("sess:h", mapping={"a": "snapshot"})
    url = snap(server, tmp_path)
    r.flushall()
    r.set("sess:3", "target-3")
    r.hset("sess:h", mapping={"a": "target"})

    with pytest.raises(WriteConflict, match=r"2 key\(s\) this restore would write already exist") as info:
        restore(url, server.url, on_conflict="fail", batch_size=4)
    assert isinstance(info.value, TerminalError)
    assert redact_key(b"sess:3") in str(info.value)  # examples are redacted
    assert r.dbsize() == 2 and r.get("sess:3") == b"target-3"  # target untouched

    skipped = restore(url, server.url, on_conflict="skip", batch_size=4).summary()
    assert skipped["skipped_existing"] == 2 and skipped["created"] == 9
    assert r.get("sess:3") == b"target-3" and r.hget("sess:h", "a") == b"target"
    assert r.get("sess:4") == b"old-4"

    replaced = restore(url, server.url, batch_size=4).summary()
    assert replaced["overwritten"] == 11 and replaced["created"] == 0
    assert r.get("sess:3") == b"old-3" and r.hget("sess:h", "a") == b"snapshot"


def test_rename_prefix_laravel_10_to_11(valkey, tmp_path):
    r = valkey.client()
    old, new = "laravel_database_laravel_cache:", "laravel_database_laravel_cache_"
    for i in range(5):
        r.set(f"{old}sess{i}", f"v{i}", px=HOUR_MS)
    url = snap(valkey, tmp_path, patterns=[f"{old}*"])
    r.flushall()
    result = restore(url, valkey.url, rename_prefix=[old, new]).summary()
    assert result["created"] == 5
    assert sorted(r.keys("*")) == [f"{new}sess{i}".encode() for i in range(5)]
    assert r.pttl(f"{new}sess0") > 0


def test_colliding_rename_is_refused_before_any_write(valkey, tmp_path):
    r = valkey.client()
    r.set("sess:a:1", "x")
    r.set("sess:b:1", "y")
    url = snap(valkey, tmp_path)
    r.flushall()
    with pytest.raises(RenameCollision, match="collide"):
        restore(url, valkey.url, rename_prefix=["sess:a:", "sess:b:"])
    assert r.dbsize() == 0


def test_restore_patterns_select_rows(valkey, tmp_path):
    r = valkey.client()
    r.set("sess:a", "1")
    r.set("session:b", "2")
    url = snap(valkey, tmp_path, patterns=["sess:*", "session:*"])
    r.flushall()
    s = restore(url, valkey.url, patterns=["session:*"]).summary()
    assert s["not_selected"] == 1 and s["written"] == 1
    assert r.keys("*") == [b"session:b"]


def test_dry_run_writes_nothing(valkey, tmp_path):
    r = valkey.client()
    r.set("sess:gone", "s", px=60_000)
    for i in range(4):
        r.set(f"sess:{i}", "v", px=HOUR_MS)
    url = snap(valkey, tmp_path)
    backdate_snapshot(url, 10 * 60_000)  # taken 10 min ago: sess:gone has expired since
    r.flushall()
    r.set("sess:0", "already")
    s = restore(url, valkey.url, dry_run=True).summary()
    assert s["dry_run"] and s["written"] == 0
    assert (s["would_create"], s["would_overwrite"], s["expired_on_arrival"]) == (3, 1, 1)
    assert r.dbsize() == 1 and r.get("sess:0") == b"already"
    assert not (Path(url.removeprefix("file://")) / "restores").exists()
    skip = restore(url, valkey.url, dry_run=True, on_conflict="skip").summary()
    assert skip["would_skip_existing"] == 1 and skip["would_overwrite"] == 0


def test_corrupt_snapshot_refused_before_the_first_write(valkey, tmp_path):
    r = valkey.client()
    for i in range(50):
        r.set(f"sess:{i}", f"value-{i}")
    url = snap(valkey, tmp_path, part_rows=10, batch_size=10)
    parts = sorted((Path(url.removeprefix("file://")) / "parts").glob("part-*.parquet"))
    assert len(parts) >= 3  # SCAN pages vary in size, so the parts do too; the last is never the first
    part = parts[-1]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    r.flushall()
    with pytest.raises(SnapshotInvalid, match=f"part-checksum.*{part.name}"):
        restore(url, valkey.url)
    assert r.dbsize() == 0


def test_options_are_validated():
    with pytest.raises(InvalidParameter, match="ttl_policy"):
        RestoreOptions(ttl_policy="forever")
    with pytest.raises(InvalidParameter, match="on_conflict"):
        RestoreOptions(on_conflict="merge")
    with pytest.raises(InvalidParameter, match="rename_prefix"):
        RestoreOptions(rename_prefix=("a",))
    with pytest.raises(InvalidParameter, match="min_ttl_ms"):
        RestoreOptions(min_ttl_ms=-1)
    with pytest.raises(InvalidParameter, match="batch_size"):
        RestoreOptions(batch_size=0)


def test_dump_fast_path_redis7_to_valkey9(redis_server, valkey_server, tmp_path):
    src, dst = redis_server.client(), valkey_server.client()
    src.flushall()
    dst.flushall()
    seed_all_types(src)
    url = snap(redis_server, tmp_path, capture_dump=True)
    s = restore(url, valkey_server.url).summary()
    assert s["dump_restored"] == 7 and s["dump_fallbacks"] == 0 and s["typed_writes"] == 0
    assert state(dst) == state(src, "sess:*")


def test_dump_fallback_valkey9_to_redis7(redis_server, valkey_server, tmp_path):
    src, dst = valkey_server.client(), redis_server.client()
    src.flushall()
    dst.flushall()
    seed_all_types(src)
    src.xadd("sess:empty-stream", {b"a": b"b"}, id=b"1-1")
    src.xdel("sess:empty-stream", b"1-1")  # a stream whose entries were all deleted still exists
    url = snap(valkey_server, tmp_path, capture_dump=True)
    s = restore(url, redis_server.url).summary()
    assert s["dump_fallbacks"] == 8 and s["dump_restored"] == 0
    assert s["typed_writes"] == 8 and s["written"] == 8
    assert dst.type("sess:empty-stream") == b"stream" and dst.xlen("sess:empty-stream") == 0
    assert state(dst) == state(src, "sess:*")


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from session_migration.restore import restore

    def progress(event):
        if event.parts_done >= 1:
            os.kill(os.getpid(), signal.SIGKILL)  # a crash right after the first part

    restore(sys.argv[1], sys.argv[2], batch_size=50, progress=progress)
    """
)


def test_kill_9_then_rerun_resumes(valkey_server, redis_server, tmp_path):
    src, dst = valkey_server.client(), redis_server.client()
    src.flushall()
    dst.flushall()
    pipe = src.pipeline()
    for i in range(1000):
        pipe.set(f"sess:{i:04d}", os.urandom(20), px=HOUR_MS)
    for i in range(10):
        pipe.rpush(f"sess:l{i}", "a", "b")
    pipe.execute()
    url = snap(valkey_server, tmp_path, part_rows=300, batch_size=100)
    child = subprocess.run([sys.executable, "-c", CHILD, url, redis_server.url])
    assert child.returncode == -signal.SIGKILL
    ckpt_dir = Path(url.removeprefix("file://")) / "restores"
    (ckpt_file,) = ckpt_dir.glob("*.json")
    ckpt = json.loads(ckpt_file.read_text())
    assert list(ckpt["parts"]) == ["part-00000.parquet"] and ckpt["finished_at"] is None
    assert 0 < dst.dbsize() < 1010

    result = restore(url, redis_server.url, batch_size=50)
    assert result.resumed_parts == 1 and result.parts == len(open_snapshot(url).parts) >= 2
    assert result.counters.rows == 1010 and result.counters.written == 1010
    assert state(dst) == state(src, "sess:*")


def test_restore_from_memory_filesystem(valkey, tmp_path):
    import uuid

    r = valkey.client()
    seed_all_types(r)
    before = state(r, "sess:*")
    root = f"memory://restore-{uuid.uuid4().hex[:8]}"
    url = backup(valkey.url, root, patterns=["sess:*"]).url
    r.flushall()
    result = restore(url, valkey.url)
    assert result.counters.written == 7 and result.checkpoint.startswith("memory://")
    assert state(r) == before


@pytest.mark.parametrize("capture_dump", [False, True], ids=["typed", "dump"])
def test_binary_keys_and_values_round_trip(server, tmp_path, capture_dump):
    """Keys, members and values with NUL, invalid UTF-8 and CR/LF come back byte for byte,
    through typed writes and through RESTORE of DUMP payloads."""
    r = server.client()
    seed_binary(r)
    before = state(r)
    assert sorted(before) == sorted(BINARY_KEYS.values())
    url = snap(server, tmp_path, capture_dump=capture_dump)
    r.flushall()
    s = restore(url, server.url).summary()
    assert s["rows"] == s["written"] == s["created"] == 5
    assert (s["dump_restored"], s["typed_writes"]) == ((5, 0) if capture_dump else (0, 5))
    assert state(r) == before


def test_restore_from_s3(s3_bucket, valkey, tmp_path):
    """A snapshot on S3 (moto's server) restores like a local one; the checkpoint lives next to it."""
    import uuid

    r = valkey.client()
    seed_all_types(r)
    seed_binary(r)
    before = state(r, "sess:*")
    assert len(before) == 12
    url = backup(valkey.url, f"{s3_bucket}/restore-{uuid.uuid4().hex[:8]}", patterns=["sess:*"]).url
    assert url.startswith("s3://")
    r.flushall()
    result = restore(url, valkey.url, batch_size=4)
    assert result.counters.rows == result.counters.written == 12
    assert result.checkpoint.startswith(f"{url}/restores/")
    assert state(r) == before
    again = restore(url, valkey.url).summary()  # idempotent from S3 as from a folder
    assert again["overwritten"] == 12 and state(r) == before


def test_a_part_replaced_after_the_check_is_refused_when_it_is_written(valkey, tmp_path):
    """A part checked by check_restore is not hashed again when written unchanged, but one
    replaced in between (same size, other bytes) is refused before any of its rows is written."""
    from session_migration.restore import check_restore, restore_part
    from session_migration.endpoints import RedisEndpoint

    client = valkey.client()
    for i in range(50):
        client.set(f"sess:{i}", f"value-{i}", ex=3600)
    url = snap(valkey, tmp_path)
    client.flushall()
    target, options = RedisEndpoint.from_url(valkey.url), RestoreOptions()
    check = check_restore(url, target, options)
    (part_name,) = check["parts"]
    part = Path(url.removeprefix("file://")) / "parts" / part_name
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(SnapshotInvalid, match="fails its sha256 check"):
        restore_part(url, target, part_name, options)
    assert client.dbsize() == 0
    part.write_bytes(bytes(data[: len(data) // 2]) + bytes([data[len(data) // 2] ^ 0xFF]) + bytes(data[len(data) // 2 + 1:]))
    check = check_restore(url, target, options)
    assert restore_part(url, target, part_name, options)["written"] == 50
