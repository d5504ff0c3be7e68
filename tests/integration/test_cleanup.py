"""Cleanup against a real server: categories, dry run, cap, pre-image, compare-and-delete, scope."""

from __future__ import annotations

import json
import time

import pytest

from helpers import state
from session_migration import open_snapshot, redact_key, storage
from session_migration.cleanup import CleanupCapExceeded, CleanupOptions, CleanupReport, _choose, _delete, run_cleanup
from session_migration.demo import OUT_OF_SCOPE, seed
from session_migration.endpoints import RedisEndpoint
from session_migration.errors import InvalidParameter
from session_migration.restore import restore
from session_migration.sinks.redis import RedisSink
from session_migration.sources.redis import RedisSource

pytestmark = pytest.mark.integration

HOUR = 3_600_000
SPRING = "spring:session:sessions:"


def plant(r) -> dict[str, list[bytes]]:
    """Sessions in every cleanup category, next to the demo's valid sessions."""
    now = int(time.time() * 1000)
    expired = f"{SPRING}11111111-2222-3333-4444-555555555555"
    r.hset(expired, mapping={"creationTime": str(now - 3 * HOUR), "lastAccessedTime": str(now - 2 * HOUR),
                             "maxInactiveInterval": "1800"})
    r.pexpire(expired, HOUR)  # Spring judges by lastAccessed + maxInactive: passed
    stale = "starsessions.0123456789abcdef0123456789abcdef"
    r.set(stale, json.dumps({"user": "u", "__metadata__": {"lifetime": 60, "created": time.time() - 7200,
                                                            "last_access": time.time() - 7200}}), px=HOUR)
    corrupt = "sess:corruptcorruptcorruptcorrupt00"
    r.set(corrupt, b"\xff\xfe not a session", px=HOUR)
    lock = "PHPREDIS_SESSION:abcdefabcdefabcdefabcdefab_LOCK"
    r.set(lock, "1")  # no TTL: never released
    orphan = f"{SPRING}expires:99999999-8888-7777-6666-555555555555"
    r.set(orphan, b"", px=HOUR)  # its session hash does not exist
    return {"expired": [expired.encode()], "stale": [stale.encode()], "corrupt": [corrupt.encode()],
            "locks": [lock.encode()], "orphans": [orphan.encode()]}


ALL = {"stale", "corrupt", "locks", "orphans"}


@pytest.fixture
def planted(valkey):
    """The demo's sessions plus one planted key per category. The demo's Rails cache entries
    carry the expiry they were captured with, so the demo alone already has expired sessions:
    those are removed first, so that the planted keys are all there is to clean."""
    r = valkey.client()
    seed(r, copies=2)
    baseline = run_cleanup(endpoint(valkey), CleanupOptions(include=ALL))
    assert set(baseline.candidates) <= {"expired"}
    for _pattern, batch in _choose(RedisSource(endpoint(valkey)), CleanupOptions(include=ALL),
                                    CleanupReport(source="", dry_run=True), int(time.time() * 1000)).batches:
        r.delete(*batch.column("key").to_pylist())
    return valkey, plant(r)


def endpoint(server):
    return RedisEndpoint.from_url(server.url)


def test_dry_run_reports_and_deletes_nothing(planted):
    server, keys = planted
    before = server.client().dbsize()
    report = run_cleanup(endpoint(server), CleanupOptions(include=ALL))
    assert report.dry_run and report.as_dict()["candidates"] == {c: 1 for c in keys}
    assert server.client().dbsize() == before
    assert report.examples["corrupt"][0].startswith("sess:corr…")  # redacted


def test_expired_only_by_default(planted):
    server, _ = planted
    report = run_cleanup(endpoint(server), CleanupOptions())
    assert report.as_dict()["candidates"] == {"expired": 1, "stale": 0, "corrupt": 0, "locks": 0, "orphans": 0}


def test_apply_snapshots_then_deletes_and_can_be_undone(planted, tmp_path):
    server, keys = planted
    r = server.client()
    doomed = [k for group in keys.values() for k in group]
    before = state(r)
    untouched = {k: v for k, v in before.items() if k not in doomed}
    assert set(before) - set(untouched) == set(doomed)
    fs, root = storage.resolve(str(tmp_path))
    report = run_cleanup(endpoint(server), CleanupOptions(include=ALL, apply=True),
                         fs=fs, root=root)
    assert report.deleted == 5 and report.changed == report.gone == 0
    assert state(r) == untouched  # doomed keys gone; valid sessions and other keys intact
    assert all(r.exists(k) for k in OUT_OF_SCOPE)
    pre = open_snapshot(report.pre_image)
    assert sorted(pre.read_table(columns=["key"]).column("key").to_pylist()) == sorted(doomed)
    undo = restore(report.pre_image, server.url).summary()  # the undo
    assert undo["written"] == undo["created"] == 5
    assert state(r) == before  # type, value and expiry instant of every key, as before the cleanup


def test_cap_refuses_before_deleting(planted, tmp_path):
    server, _ = planted
    fs, root = storage.resolve(str(tmp_path))
    before = server.client().dbsize()
    with pytest.raises(CleanupCapExceeded, match="would delete 5 keys, more than the cap of 2"):
        run_cleanup(endpoint(server), CleanupOptions(include=ALL, apply=True,
                                                     max_delete=2), fs=fs, root=root)
    assert server.client().dbsize() == before and not list(tmp_path.iterdir())


def test_a_session_refreshed_after_the_scan_is_kept(planted):
    server, keys = planted
    r = server.client()
    options = CleanupOptions(include={"corrupt"})
    source = RedisSource(endpoint(server))
    report = CleanupReport(source=server.url, dry_run=False)
    chosen = _choose(source, options, report, int(time.time() * 1000))
    r.set(keys["corrupt"][0], b'{"cookie": {}}', px=HOUR)  # the application rewrote it meanwhile
    sink = RedisSink(endpoint(server))
    try:
        _delete(sink, chosen, options, report)
    finally:
        sink.close()
    assert report.changed == 1 and report.deleted == 1  # the refreshed one kept, the expired one deleted
    assert r.exists(keys["corrupt"][0])


def set_idle(r, key, seconds: int) -> None:
    """Give `key` an idle time of `seconds` through the protocol: RESTORE ... IDLETIME."""
    r.restore(key, 0, r.dump(key), replace=True, idletime=seconds)
    assert r.object("idletime", key) >= seconds


def test_max_age_judges_sessions_without_ttl_by_idle_time(valkey):
    r = valkey.client()
    idle, fresh = "sess:idleidleidleidleidleidleidleidle", "sess:freshfreshfreshfreshfreshfresh"
    for key in (idle, fresh):
        r.set(key, json.dumps({"cookie": {"expires": None}}))
    set_idle(r, idle, 3600)
    assert r.object("idletime", fresh) < 60
    report = run_cleanup(endpoint(valkey), CleanupOptions(patterns=("sess:*",), max_age_ms={"express": 60_000}))
    assert report.candidates["expired"] == 1
    assert report.examples["expired"] == [redact_key(idle)]


def test_scope_is_the_patterns(planted):
    server, _ = planted
    report = run_cleanup(endpoint(server), CleanupOptions(patterns=("sess:*",), include={"corrupt", "stale"}))
    assert report.as_dict()["candidates"] == {"expired": 0, "stale": 0, "corrupt": 1, "locks": 0, "orphans": 0}


@pytest.mark.parametrize("options, message", [
    ({"include": {"everything"}}, "Unknown cleanup category everything"),
    ({"max_delete": 0}, "max_delete must be"),
    ({"max_age_ms": {"express": -5}}, "max age for express"),
])
def test_bad_options(options, message):
    with pytest.raises(InvalidParameter, match=message):
        CleanupOptions(**options)


def test_apply_needs_a_backup_path(planted):
    server, _ = planted
    with pytest.raises(InvalidParameter, match="backup path"):
        run_cleanup(endpoint(server), CleanupOptions(apply=True))


def test_max_age_refused_where_reads_reset_idle_time(redis_server):
    redis_server.client().flushall()
    with pytest.raises(InvalidParameter, match="CLIENT NO-TOUCH"):
        run_cleanup(endpoint(redis_server), CleanupOptions(max_age_ms={"express": 500}))


def test_backup_leaves_idle_time_alone(valkey, tmp_path):
    from session_migration import backup

    r = valkey.client()
    r.set("sess:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "v")
    set_idle(r, "sess:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 3600)
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*"])
    assert result.counters.keys == 1  # the key was read...
    assert r.object("idletime", "sess:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") >= 3600  # ...and not touched
