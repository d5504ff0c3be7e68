"""The restore writer against real servers: the columnar SET path (NX first, existing keys sent
again, replies checked in bulk, several batches in flight) mixed with the key-by-key path for
typed rows and DUMP payloads, with exact created / overwritten / skipped counts."""

from __future__ import annotations

import pyarrow as pa
import pytest

from helpers import HOUR_MS, seed_all_types, state
from session_migration import backup, redact_key
from session_migration.endpoints import RedisEndpoint
from session_migration.restore import restore
from session_migration.sinks import redis as sink_module
from session_migration.sinks.redis import RedisSink, WriteRefused

pytestmark = pytest.mark.integration


def strings(n: int, prefix: str = "sess:") -> tuple[pa.Array, pa.Array]:
    keys = pa.array([f"{prefix}{i:04d}".encode() for i in range(n)], pa.binary())
    values = pa.array([b"v\x00\xff\r\n%d" % i for i in range(n)], pa.binary())
    return keys, values


def test_mixed_batches_exact_counts_with_some_keys_existing(server, tmp_path):
    """Plain strings (columnar path), typed keys and a stream's DUMP (key-by-key path), strings
    without expiry, in small batches; some keys, of both kinds, already on the target."""
    r = server.client()
    seed_all_types(r)
    for i in range(40):
        r.set(f"sess:s{i:02d}", b"snap-%d" % i, px=HOUR_MS + i)
    url = backup(server.url, str(tmp_path / "snaps"), patterns=["sess:*"]).url
    expected = state(r, "sess:*")
    r.flushall()
    existing = [b"sess:s03", b"sess:s04", b"sess:s31", b"sess:hash", b"sess:forever"]
    for key in existing:
        r.set(key, b"target's own")

    skipped = restore(url, server.url, on_conflict="skip", batch_size=7).summary()
    assert skipped["rows"] == 47 and skipped["skipped_existing"] == len(existing)
    assert skipped["created"] == skipped["written"] == 47 - len(existing) and skipped["overwritten"] == 0
    assert all(r.get(key) == b"target's own" for key in existing)

    r.delete(b"sess:s10", b"sess:list")  # created again by the next run
    replaced = restore(url, server.url, batch_size=7).summary()
    assert replaced["created"] == 2 and replaced["overwritten"] == 45 and replaced["written"] == 47
    assert replaced["skipped_existing"] == 0
    assert replaced["typed_writes"] + replaced["dump_restored"] == 47
    assert state(r, "sess:*") == expected


def test_write_strings_nx_then_replace_across_batches_in_flight(valkey):
    r = valkey.client()
    keys, values = strings(300)
    for i in range(0, 300, 7):
        r.set(keys[i].as_py(), b"old")
    now = r.time()[0] * 1000
    pxat = pa.array([None if i % 5 == 0 else now + HOUR_MS + i for i in range(300)], pa.int64())
    sink = RedisSink(RedisEndpoint.from_url(valkey.url))
    try:
        counts = [sink.write_strings(keys[i : i + 50], values[i : i + 50], pxat[i : i + 50], replace=True)
                  for i in range(0, 300, 50)]
        counts.append(sink.flush())
        now_ms, exists = sink.probe([b"sess:0001"])  # the connection is usable again after the flush
    finally:
        sink.close()
    assert sum(c.created for c in counts) == 300 - 43 and sum(c.overwritten for c in counts) == 43
    assert sum(c.written for c in counts) == 300 and exists == [True] and now_ms >= now
    assert counts[0].written == 0  # its replies are read while a later batch is in flight
    assert r.mget(keys.to_pylist()) == values.to_pylist()
    assert r.pexpiretime("sess:0000") == -1 and r.pexpiretime("sess:0001") == now + HOUR_MS + 1


def test_write_strings_skip_keeps_existing(valkey):
    r = valkey.client()
    keys, values = strings(20)
    r.set("sess:0002", b"mine")
    sink = RedisSink(RedisEndpoint.from_url(valkey.url))
    try:
        assert sink.write_strings(keys, values, pa.nulls(20, pa.int64()), replace=False).written == 0
        counts = sink.flush()
    finally:
        sink.close()
    assert counts.created == 19 and counts.skipped_existing == 1 and counts.overwritten == 0
    assert r.get("sess:0002") == b"mine" and r.get("sess:0003") == values[3].as_py()


def test_a_batch_too_large_for_one_buffer_is_split(valkey, monkeypatch):
    monkeypatch.setattr(sink_module, "_MAX_PACKED_BYTES", 500)
    monkeypatch.setattr(sink_module, "_QUEUED_BATCHES", 1)  # the buffers beyond one are answered at once
    keys, values = strings(64)
    sink = RedisSink(RedisEndpoint.from_url(valkey.url))
    try:
        first = sink.write_strings(keys, values, pa.nulls(64, pa.int64()), replace=True)
        rest = sink.flush()
    finally:
        sink.close()
    assert first.created > 0 and first.created + rest.created == 64  # several buffers, all but one answered
    assert valkey.client().mget(keys.to_pylist()) == values.to_pylist()


def test_refused_set_names_the_key_redacted(valkey):
    r = valkey.client()
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", 1)
    sink = RedisSink(RedisEndpoint.from_url(valkey.url))
    try:
        keys, values = strings(5, prefix="sess:secret-session-id-")
        with pytest.raises(WriteRefused, match="OOM") as info:
            sink.write_strings(keys, values, pa.nulls(5, pa.int64()), replace=True)
            sink.flush()
    finally:
        sink.close()
        r.config_set("maxmemory", 0)
    assert redact_key(keys[0].as_py()) in str(info.value)
    assert "secret-session-id-0000" not in str(info.value)
