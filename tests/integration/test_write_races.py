"""A second client changes a key between the decision and the write (issue 14). Decision and
write are split in the test (cleanup's `_choose` / `_delete`, the sink's probe / write), so
the race happens every time, at the same place; no timing."""

from __future__ import annotations

import json
import time

import pytest

from helpers import HOUR_MS, seed_all_types, state
from session_migration import backup
from session_migration.cleanup import CleanupOptions, CleanupReport, _choose, _delete
from session_migration.endpoints import RedisEndpoint
from session_migration.record import KeyRecord
from session_migration.restore import restore
from session_migration.sinks import redis as sink_module
from session_migration.sinks.redis import RedisSink, WriteItem
from session_migration.sources.redis import RedisSource

pytestmark = pytest.mark.integration

SPRING = "spring:session:sessions:"
SESSION = f"{SPRING}11111111-2222-3333-4444-555555555555"


def _spring_expired(r, key=SESSION):
    now = int(time.time() * 1000)
    r.hset(key, mapping={"creationTime": str(now - 3 * HOUR_MS), "lastAccessedTime": str(now - 2 * HOUR_MS),
                         "maxInactiveInterval": "1800", "sessionAttr:user": "alice"})
    r.pexpire(key, HOUR_MS)  # lastAccessed + maxInactive has passed: expired by its payload


def _plant(r):
    """One candidate of each kind the compare-and-delete digests: a hash, a set, a list, a string."""
    _spring_expired(r)
    r.sadd("spring:session:expirations:1700000000000", "not-an-expires-member", "expires:x")  # corrupt bucket
    r.pexpire("spring:session:expirations:1700000000000", HOUR_MS)
    r.rpush(f"{SPRING}99999999-8888-7777-6666-555555555555", "a", "b", "a")  # a session key holding a list: corrupt
    r.pexpire(f"{SPRING}99999999-8888-7777-6666-555555555555", HOUR_MS)
    r.set("sess:corruptcorruptcorruptcorrupt00", b"\xff not json", px=HOUR_MS)


def _cleanup_split(server, options, meanwhile):
    """Choose, let `meanwhile(r)` run, then compare-and-delete."""
    r = server.client()
    source = RedisSource(RedisEndpoint.from_url(server.url))
    report = CleanupReport(source=server.url, dry_run=False)
    try:
        chosen = _choose(source, options, report, int(time.time() * 1000))
        meanwhile(r)
        sink = RedisSink(RedisEndpoint.from_url(server.url))
        try:
            _delete(sink, chosen, options, report)
        finally:
            sink.close()
    finally:
        source.close()
    return report


CHANGES = {
    "hash field rewritten": lambda r: r.hset(SESSION, "sessionAttr:user", "bob"),  # expiry unchanged
    "hash field added": lambda r: r.hset(SESSION, "sessionAttr:cart", "1"),
    "set member added": lambda r: r.sadd("spring:session:expirations:1700000000000", "expires:y"),
    "list item replaced": lambda r: r.lset(f"{SPRING}99999999-8888-7777-6666-555555555555", 1, "c"),
    "string rewritten": lambda r: r.set("sess:corruptcorruptcorruptcorrupt00", b"\xfe still not json", keepttl=True),
    "string became a hash": lambda r: _retype(r, "sess:corruptcorruptcorruptcorrupt00"),
}


def _retype(r, key):
    """The same key, now a hash with the very same expiry."""
    expire = r.execute_command("PEXPIRETIME", key)
    r.delete(key)
    r.hset(key, "a", "b")
    r.pexpireat(key, expire)


def test_untouched_candidates_of_every_digested_type_are_deleted(server):
    """The control: Python's and the server's digests agree, so nothing unchanged is kept."""
    r = server.client()
    _plant(r)
    report = _cleanup_split(server, CleanupOptions(include={"corrupt"}), lambda r: None)
    assert (report.deleted, report.changed, report.gone) == (4, 0, 0)
    assert r.dbsize() == 0


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_candidate_changed_after_the_decision_is_kept(valkey, change):
    """Issue 14: hashes were compared by expiry only, so a rewritten session hash was deleted."""
    r = valkey.client()
    _plant(r)
    before = r.dbsize()
    report = _cleanup_split(valkey, CleanupOptions(include={"corrupt"}), CHANGES[change])
    assert (report.deleted, report.changed) == (3, 1), report
    assert r.dbsize() == before - 3


def test_a_session_chosen_for_idle_time_and_read_meanwhile_is_kept(valkey):
    """Issue 14: a session chosen for its idle time was deleted even if it was read in between."""
    r = valkey.client()
    keys = ["sess:idle0000000000000000000000000001", "sess:idle0000000000000000000000000002"]
    for key in keys:
        r.set(key, json.dumps({"cookie": {"expires": None}}))  # no TTL: judged by idle time
    deadline = time.monotonic() + 30
    while min(r.object("idletime", key) for key in keys) < 2:  # OBJECT IDLETIME counts whole seconds
        assert time.monotonic() < deadline, "the keys never became idle"
        time.sleep(0.1)
    options = CleanupOptions(patterns=("sess:*",), max_age_ms={"express": 1000})
    report = _cleanup_split(valkey, options, lambda r: r.get(keys[0]))  # the application used it
    assert report.candidates["expired"] == 2
    assert (report.deleted, report.changed) == (1, 1)
    assert r.exists(keys[0]) and not r.exists(keys[1])


def test_an_orphan_whose_session_came_back_is_kept(valkey):
    r = valkey.client()
    marker = f"{SPRING}expires:11111111-2222-3333-4444-555555555555"
    r.set(marker, b"", px=HOUR_MS)
    report = _cleanup_split(valkey, CleanupOptions(include={"orphans"}), _spring_expired)
    assert report.candidates["orphans"] == 1 and (report.deleted, report.changed) == (0, 1)
    assert r.exists(marker)


# -- restore and transfer: on_conflict skip/fail -----------------------------------------------

def _items(r, pxat):
    """One typed row of every kind, as a snapshot would hold them (not yet on the target)."""
    return [
        WriteItem(b"sess:hash", KeyRecord(b"sess:hash", "hash", fields=((b"a", b"1"), (b"b", b"2"))), pxat),
        WriteItem(b"sess:list", KeyRecord(b"sess:list", "list", items=(b"x", b"y", b"x")), pxat),
        WriteItem(b"sess:set", KeyRecord(b"sess:set", "set", items=(b"m1", b"m2")), None),
        WriteItem(b"sess:zset", KeyRecord(b"sess:zset", "zset", members=((b"a", 1.5), (b"b", -2.0))), pxat),
        WriteItem(b"sess:stream", KeyRecord(b"sess:stream", "stream", entries=((b"1-1", (b"f", b"v")),
                                                                               (b"2-5", (b"g", b"w", b"h", b"z"))),), pxat),
        WriteItem(b"sess:empty-stream", KeyRecord(b"sess:empty-stream", "stream", entries=()), pxat),
        WriteItem(b"sess:str", KeyRecord(b"sess:str", "string", value=b"snapshot's"), pxat),
    ]


@pytest.mark.parametrize("kind", ["hash", "list", "set", "zset", "stream", "empty-stream", "str"])
def test_skip_never_overwrites_a_key_created_after_the_probe(server, kind):
    """Issue 14: for non-strings, skip/fail wrote MULTI DEL ... whatever the target held by then."""
    r = server.client()
    r.flushall()
    pxat = int(r.time()[0]) * 1000 + HOUR_MS
    sink = RedisSink(RedisEndpoint.from_url(server.url))
    try:
        items = _items(r, pxat)
        _, exists = sink.probe([item.key for item in items])
        assert not any(exists)
        theirs = f"sess:{kind}".encode()
        r.set(theirs, b"created by the application after the probe")  # the race, every time
        counts = sink.write_items(items, exists, replace=False)
    finally:
        sink.close()
    assert r.get(theirs) == b"created by the application after the probe" and r.ttl(theirs) == -1
    assert counts.skipped_existing == 1 and counts.created == counts.written == len(items) - 1
    assert r.type(b"sess:hash") == (b"string" if kind == "hash" else b"hash")
    if kind != "hash":
        assert r.hgetall(b"sess:hash") == {b"a": b"1", b"b": b"2"} and r.execute_command("PEXPIRETIME", b"sess:hash") == pxat
    if kind != "stream":
        assert [e[0] for e in r.xrange(b"sess:stream")] == [b"1-1", b"2-5"]
    if kind != "empty-stream":
        assert r.type(b"sess:empty-stream") == b"stream" and r.xlen(b"sess:empty-stream") == 0


def test_skip_keeps_a_key_created_after_the_probe_in_a_dump_restore(valkey):
    r = valkey.client()
    r.rpush(b"sess:l", b"a")
    dump = r.dump(b"sess:l")
    r.flushall()
    sink = RedisSink(RedisEndpoint.from_url(valkey.url))
    try:
        item = WriteItem(b"sess:l", KeyRecord(b"sess:l", "list", items=(b"a",), dump=dump), None)
        _, exists = sink.probe([b"sess:l"])
        r.set(b"sess:l", b"theirs")
        counts = sink.write_items([item], exists, replace=False)
    finally:
        sink.close()
    assert counts.skipped_existing == 1 and r.get(b"sess:l") == b"theirs"


@pytest.mark.parametrize("on_conflict", ["skip", "fail"])
def test_restore_keeps_keys_that_appear_between_its_probe_and_its_write(valkey, tmp_path, monkeypatch, on_conflict):
    """The same race through a whole restore: the sink's probe is followed, every time, by a
    second client creating the keys the restore is about to write."""
    r = valkey.client()
    seed_all_types(r)
    url = backup(valkey.url, str(tmp_path / "snaps"), patterns=["sess:*"]).url
    expected = state(r, "sess:*")
    r.flushall()
    target = valkey.client(db=1)
    probe = sink_module.RedisSink.probe

    def probe_then_race(self, keys):
        seen = probe(self, keys)
        for key in keys:
            target.set(key, b"theirs")
        return seen

    monkeypatch.setattr(sink_module.RedisSink, "probe", probe_then_race)
    result = restore(url, valkey.url[:-1] + "1", on_conflict=on_conflict).summary()
    theirs = {k for k in expected if target.type(k) == b"string" and target.get(k) == b"theirs"}
    typed = {k for k, (kind, _, _) in expected.items() if kind != "string"}
    assert typed <= theirs  # probed key by key just before their write ("fail" also probes every row first)
    assert result["skipped_existing"] == len(theirs)
    assert {k: v for k, v in state(target, "sess:*").items() if k not in theirs} == {
        k: v for k, v in expected.items() if k not in theirs}
