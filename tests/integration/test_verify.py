"""verify: every category, both directions, store/store and snapshot/store, sampling."""

from __future__ import annotations

import pytest

from helpers import expire_in_snapshot, now_ms
from session_migration import backup, open_snapshot
from session_migration.endpoints import RedisEndpoint
from session_migration.errors import InvalidParameter
from session_migration.redaction import redact_key
from session_migration.verify import VerifyOptions, verify

pytestmark = pytest.mark.integration


def fill(client, n=50):
    pipe = client.pipeline()
    for i in range(n):
        pipe.set(f"sess:{i:03d}", f"v{i}", ex=3600)
    pipe.hset("sess:h", mapping={"a": "1", "b": "2"})
    pipe.sadd("sess:s", "x", "y", "z")
    pipe.zadd("sess:z", {"m": 1.0})
    pipe.rpush("sess:l", "1", "2")
    pipe.execute()


def test_identical_stores_are_ok(valkey_server, redis_server):
    a, b = valkey_server.client(), redis_server.client()
    a.flushall(), b.flushall()
    fill(a), fill(b)
    report = verify(RedisEndpoint.from_url(valkey_server.url), RedisEndpoint.from_url(redis_server.url),
                    VerifyOptions(patterns=("sess:*",)))
    assert report.ok and report.counts["OK"] == 54, report.as_dict()


def test_every_mismatch_category(valkey_server, redis_server):
    a, b = valkey_server.client(), redis_server.client()
    a.flushall(), b.flushall()
    fill(a), fill(b)
    b.delete("sess:000")  # MISSING
    b.set("sess:extra", "new")  # EXTRA
    b.delete("sess:h"), b.set("sess:h", "now a string")  # TYPE
    b.sadd("sess:s", "w")  # VALUE
    b.expire("sess:001", 60)  # TTL (3600 s on A)
    b.persist("sess:002")  # TTL: only A has one
    a.set("sess:gone", "v")
    a.pexpireat("sess:gone", now_ms() - 1000)  # an expiry in the past: the server deletes the key at once
    assert a.exists("sess:gone") == 0
    report = verify(RedisEndpoint.from_url(valkey_server.url), RedisEndpoint.from_url(redis_server.url),
                    VerifyOptions(patterns=("sess:*",)))
    counts = report.as_dict()["counts"]
    # A store never shows an expired key, so EXPIRED only comes from a snapshot (test below).
    assert counts == {"OK": 49, "MISSING": 1, "EXTRA": 1, "TYPE": 1, "VALUE": 1, "TTL": 2, "EXPIRED": 0}
    assert not report.ok
    assert report.examples["MISSING"] == [redact_key(b"sess:000")]  # examples are redacted


def test_snapshot_against_store_and_sampling(valkey_server, redis_server, tmp_path):
    a, b = valkey_server.client(), redis_server.client()
    a.flushall(), b.flushall()
    fill(a, 2000), fill(b, 2000)
    snap = open_snapshot(backup(valkey_server.url, str(tmp_path), patterns=["sess:*"]).url)
    target = RedisEndpoint.from_url(redis_server.url)
    assert verify(snap, target).ok
    b.delete("sess:1234")
    full = verify(snap, target)
    assert full.counts["MISSING"] == 1 and full.counts["OK"] == 2003
    sampled = verify(snap, target, VerifyOptions(sample=0.1))
    assert 100 < sampled.counts["OK"] < 320
    assert sampled.as_dict() == verify(snap, target, VerifyOptions(sample=0.1)).as_dict()  # reproducible


def test_a_row_expired_in_the_snapshot_is_expired_not_a_mismatch(valkey_server, redis_server, tmp_path):
    """A snapshot row whose expiry has passed is EXPIRED, whether B still holds the key
    (not EXTRA, not TTL) or not (not MISSING)."""
    a, b = valkey_server.client(), redis_server.client()
    a.flushall(), b.flushall()
    fill(a), fill(b)
    url = backup(valkey_server.url, str(tmp_path), patterns=["sess:*"]).url
    expire_in_snapshot(url, [b"sess:000", b"sess:001"], now_ms() - 1000)
    b.delete("sess:001")
    assert b.exists("sess:000") == 1 and b.pttl("sess:000") > 0  # present and alive in B
    report = verify(open_snapshot(url), RedisEndpoint.from_url(redis_server.url))
    assert report.as_dict()["counts"] == {"OK": 52, "MISSING": 0, "EXTRA": 0, "TYPE": 0, "VALUE": 0, "TTL": 0,
                                          "EXPIRED": 2}
    assert report.ok


def test_same_database_refused(valkey_server):
    ep = RedisEndpoint.from_url(valkey_server.url)
    with pytest.raises(InvalidParameter, match="same database"):
        verify(ep, ep)


def test_bad_options():
    with pytest.raises(InvalidParameter, match="sample must be"):
        VerifyOptions(sample=0)
    with pytest.raises(InvalidParameter, match="ttl_tolerance_ms"):
        VerifyOptions(ttl_tolerance_ms=-1)
