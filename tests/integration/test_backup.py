"""The backup against real servers: every type, binary keys, TTLs, vanished and duplicate keys."""

from __future__ import annotations

import time

import pyarrow.compute as pc
import pytest

from session_migration import backup, open_snapshot
from session_migration.endpoints import RedisEndpoint
from session_migration.sources.redis import RedisSource

pytestmark = pytest.mark.integration


def rows_by_key(snapshot):
    return {r["key"]: r for r in snapshot.read_table().to_pylist()}


def test_every_type_binary_safe_with_absolute_expiry(server, tmp_path):
    r = server.client()
    now_ms = int(time.time() * 1000)
    binary_key = b"sess:\x00\xff\xfe bin\r\n"
    r.set(binary_key, b"\x00\x01\x02\xff", px=3_600_000)
    r.set(b"sess:empty", b"")
    r.hset(b"sess:hash", mapping={b"f\x00": b"v\xff", b"g": b""})
    r.rpush(b"sess:list", b"b", b"a", b"b")
    r.sadd(b"sess:set", b"y", b"x")
    r.zadd(b"sess:zset", {b"m1": 1.5, b"m2": -2.0, b"inf": float("inf")})
    stream_id = r.xadd(b"sess:stream", {b"f": b"v"})
    r.pexpire(b"sess:hash", 7_200_000)
    r.set(b"other:key", b"out of scope")

    result = backup(server.url, str(tmp_path), patterns=["sess:*"])
    snap = open_snapshot(result.url)
    rows = rows_by_key(snap)

    assert set(rows) == {binary_key, b"sess:empty", b"sess:hash", b"sess:list", b"sess:set", b"sess:zset", b"sess:stream"}
    assert rows[binary_key]["value"] == b"\x00\x01\x02\xff"
    assert rows[binary_key]["expire_at_ms"] == r.pexpiretime(binary_key)  # the server's own instant
    assert now_ms + 3_500_000 < rows[binary_key]["expire_at_ms"] <= now_ms + 3_600_000 + 5_000
    assert rows[b"sess:empty"]["value"] == b"" and rows[b"sess:empty"]["expire_at_ms"] is None
    assert {(p["field"], p["value"]) for p in rows[b"sess:hash"]["fields"]} == {(b"f\x00", b"v\xff"), (b"g", b"")}
    assert rows[b"sess:hash"]["expire_at_ms"] == r.pexpiretime(b"sess:hash")
    assert rows[b"sess:list"]["items"] == [b"b", b"a", b"b"]
    assert sorted(rows[b"sess:set"]["items"]) == [b"x", b"y"]
    assert {(m["member"], m["score"]) for m in rows[b"sess:zset"]["members"]} == {
        (b"m1", 1.5), (b"m2", -2.0), (b"inf", float("inf"))}
    assert [(e["id"], e["fields"]) for e in rows[b"sess:stream"]["entries"]] == [
        (stream_id, [b"f", b"v"])]  # field, value, field, value ...
    assert rows[b"sess:stream"]["dump"] == r.dump(b"sess:stream")  # streams always keep their DUMP payload
    assert all(rows[k]["dump"] is None for k in rows if k != b"sess:stream")
    totals = snap.totals
    assert totals["keys"] == 7 and totals["without_ttl"] == 5 and totals["with_ttl"] == 2
    assert totals["by_type"] == {"hash": 1, "list": 1, "set": 1, "stream": 1, "string": 2, "zset": 1}
    assert snap.manifest["source"]["server"] == server.kind


def test_ten_megabyte_value(valkey, tmp_path):
    big = bytes(range(256)) * (10 * 4096)  # 10 MiB
    valkey.client().set(b"sess:big", big)
    snap = open_snapshot(backup(valkey.url, str(tmp_path), patterns=["sess:*"]).url)
    assert snap.read_table().column("value")[0].as_py() == big


def test_vanished_keys_are_counted_not_written(valkey):
    r = valkey.client()
    for i in range(50):
        r.set(f"sess:{i}", "v")
    source = RedisSource(RedisEndpoint.from_url(valkey.url))
    _, keys = source.scan_page("sess:*", 0, 1000)
    r.delete(*keys[:10])
    result = source.read_keys(keys)
    assert result.vanished == 10
    assert result.batch.num_rows == 40
    assert set(result.batch.column("key").to_pylist()) == set(keys[10:])


def test_keys_expiring_mid_scan(server, tmp_path):
    r = server.client()
    pipe = r.pipeline()
    for i in range(3000):
        pipe.set(f"sess:{i:05d}", "v", px=1 + (i % 400))  # expire within 0.4 s, while scanning
    for i in range(500):
        pipe.set(f"sess:keep:{i}", "v", ex=3600)
    pipe.execute()
    result = backup(server.url, str(tmp_path), patterns=["sess:*"], batch_size=10)
    c = result.counters
    assert c.keys + c.vanished + c.duplicates == c.scanned
    table = open_snapshot(result.url).read_table()
    assert table.num_rows == c.keys
    keep = [k for k in table.column("key").to_pylist() if k.startswith(b"sess:keep:")]
    assert len(keep) == 500
    # Every written row carries an expiry: nothing was written with a lost TTL.
    assert table.column("expire_at_ms").null_count == 0


def test_overlapping_patterns_write_each_key_once(valkey, tmp_path):
    r = valkey.client()
    for i in range(200):
        r.set(f"sess:a{i}", "v")
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*", "sess:a1*"])
    keys = open_snapshot(result.url).read_table().column("key").to_pylist()
    assert len(keys) == len(set(keys)) == 200
    assert result.counters.duplicates == 111  # sess:a1, a10-a19, a100-a199


def test_reads_are_deduplicated_and_counted_a_group_at_a_time(valkey):
    from session_migration.counters import BackupCounters
    from session_migration.options import BackupOptions
    from session_migration.pipeline import _groups, _Job
    from session_migration.sources import Read

    r = valkey.client()
    for key in ("sess:a", "sess:b", "sess:c", "other:x"):
        r.set(key, "v")
    source = RedisSource(RedisEndpoint.from_url(valkey.url))

    def read(scope, cursor, scanned, keys):
        got = source.read_keys(keys) if keys else None
        return Read((scope, cursor), got.batch if got else None, scope=scope, scanned=scanned,
                    vanished=got.vanished if got else 0)

    try:
        job = _Job(source, BackupOptions(patterns=("sess:*", "other:*")), None)
        reads = [
            read(0, 5, 2, [b"sess:a", b"sess:b"]),
            read(0, 9, 0, []),
            read(0, 0, 3, [b"sess:b", b"sess:c", b"sess:gone"]),  # SCAN repeated sess:b
            read(1, 0, 1, [b"other:x"]),
        ]
        groups = list(_groups(iter(reads), rows=10))
        assert [[rd.position[1] for rd in g] for g in groups] == [[5, 9, 0], [0]]  # a new pattern, a new group
        assert [len(g) for g in _groups(iter(reads), rows=2)] == [1, 2, 1]  # full at 2 rows
        counters = BackupCounters()
        batches = job.take(groups[0], counters)
        assert [k for b in batches for k in b.column("key").to_pylist()] == [b"sess:a", b"sess:b", b"sess:c"]
        assert (counters.scanned, counters.keys, counters.duplicates, counters.vanished) == (5, 3, 1, 1)
        assert counters.by_pattern == {"sess:*": {"keys": 3, "bytes": 3}}
        assert job.take([read(0, 0, 1, [])], counters) == []
    finally:
        source.close()


def test_default_patterns_leave_other_keys_out(valkey, tmp_path):
    from session_migration import demo

    counts = demo.seed(valkey.client(), copies=2)
    snap = open_snapshot(backup(valkey.url, str(tmp_path)).url)
    keys = set(snap.read_table(columns=["key"]).column("key").to_pylist())
    assert not keys & set(demo.OUT_OF_SCOPE)
    assert len(keys) == counts["sessions"] + counts["companion_keys"]


def test_no_ttl_option_drops_expiry(valkey, tmp_path):
    valkey.client().set("sess:x", "v", ex=100)
    table = open_snapshot(backup(valkey.url, str(tmp_path), patterns=["sess:*"], preserve_ttl=False).url).read_table()
    assert table.column("expire_at_ms").null_count == 1


def test_dry_run_writes_nothing_and_estimates(valkey, tmp_path):
    r = valkey.client()
    for i in range(300):
        r.set(f"sess:{i}", "x" * 100)
    r.hset("spring:session:sessions:1", "creationTime", "1")
    result = backup(valkey.url, str(tmp_path / "root"), dry_run=True)
    assert not (tmp_path / "root").exists()
    assert result.url is None and result.dry_run
    assert result.counters.by_type == {"string": 300, "hash": 1}
    assert result.counters.by_pattern["sess:*"] == {"keys": 300, "bytes": 30_000}
    assert 0 < result.estimated_bytes < 30_000


def test_capture_dump_keeps_payloads(valkey, tmp_path):
    valkey.client().set("sess:x", "v")
    table = open_snapshot(backup(valkey.url, str(tmp_path), patterns=["sess:*"], capture_dump=True).url).read_table()
    assert table.column("dump")[0].as_py().startswith(b"\x00\x01v")


def test_many_parts_and_snapshot_listing(valkey, tmp_path):
    from session_migration import list_snapshots

    r = valkey.client()
    pipe = r.pipeline()
    for i in range(5000):
        pipe.set(f"sess:{i}", "v")
    pipe.execute()
    first = backup(valkey.url, str(tmp_path), patterns=["sess:*"], part_rows=1000)
    second = backup(valkey.url, str(tmp_path), patterns=["sess:*"])
    snap = open_snapshot(first.url)
    # a part ends at the first read boundary after part_rows rows
    assert len(snap.parts) >= 3 and sum(p.rows for p in snap.parts) == 5000
    assert all(p.rows >= 1000 for p in snap.parts[:-1])
    listed = list_snapshots(str(tmp_path))
    assert [s.snapshot_id for s in listed] == sorted([first.snapshot_id, second.snapshot_id])
    assert pc.sum(snap.read_table().column("size_bytes")).as_py() == 5000


def test_a_key_set_to_a_string_between_the_two_reads_is_read_as_a_string(server):
    """The batched read takes non-strings (MGET said nil) to a TYPE and a typed read; a key an
    application turned into a string in between is read as the string it now is."""
    from session_migration.endpoints import RedisEndpoint
    from session_migration.sources.redis import RedisSource, _Rows

    r = server.client()
    r.set("sess:now-a-string", b"fresh", px=60_000)
    source = RedisSource(RedisEndpoint.from_url(server.url), patterns=("sess:*",))
    try:
        rows = _Rows()
        vanished = source._read_typed([b"sess:now-a-string"], rows, [])
        batch = rows.to_batch(0)
    finally:
        source.close()
    assert vanished == 0
    assert batch.column("type").to_pylist() == ["string"] and batch.column("value").to_pylist() == [b"fresh"]
