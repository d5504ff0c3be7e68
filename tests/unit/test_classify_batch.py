"""`classify_batch` gives, row for row, exactly what `classify` gives."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

from session_migration.record import KeyRecord
from session_migration.schema import RECORD_SCHEMA
from session_migration.sessions import classify
from session_migration.sessions.registry import classify_batch

import session_cases as c
from session_cases import DAY_MS, NOW_MS
from test_sessions import _variant_cases


def to_batch(records: list[KeyRecord]) -> pa.RecordBatch:
    def listed(value, convert):
        return None if value is None else [convert(v) for v in value]

    return pa.RecordBatch.from_pydict({
        "key": [r.key for r in records],
        "type": [r.type for r in records],
        "value": [r.value for r in records],
        "fields": [listed(r.fields, lambda p: {"field": p[0], "value": p[1]}) for r in records],
        "items": [listed(r.items, bytes) for r in records],
        "members": [listed(r.members, lambda m: {"member": m[0], "score": m[1]}) for r in records],
        "entries": [listed(r.entries, lambda e: {"id": e[0], "fields": list(e[1])}) for r in records],
        "dump": [r.dump for r in records],
        "expire_at_ms": [r.expire_at_ms for r in records],
        "size_bytes": [r.size_bytes for r in records],
        "db": [r.db for r in records],
        "store": [r.store for r in records],
    }, schema=RECORD_SCHEMA)


def all_records() -> list[KeyRecord]:
    """Fixtures, variants and hostile input, each also with no recorded store, the store
    classify finds, and "express" recorded whatever the payload (the batch's shortcut)."""
    base = [f.record() for f in c.load_fixtures()]
    base += [case.values[0] for case in _variant_cases()]
    base += [record for _name, record in c.hostile_records()]
    base += [c.rec(b"sess:x", c.express_value(c.iso(NOW_MS - DAY_MS)), ttl_ms=None),  # stale: expires passed, no TTL
             c.rec(b"sess:x", c.express_value(c.iso(NOW_MS - DAY_MS)), ttl_ms=-1),  # TTL passed
             c.rec(b"x:DataProtection-Keys", b'{"cookie":{}}', store="express")]
    out = []
    for record in base:
        found = classify(record, NOW_MS).store
        for store in {record.store, None, found, "express", "flask"}:
            out.append(dataclasses.replace(record, store=store))
    return out


@pytest.mark.parametrize("now_ms", [NOW_MS, NOW_MS + 400 * DAY_MS])
def test_batch_equals_row_by_row(now_ms):
    records = all_records()
    limits = {"aiohttp": DAY_MS}
    expected = [classify(r, now_ms, limits) for r in records]
    for start in range(0, len(records), 500):  # several batches, like the stats read them
        got = classify_batch(to_batch(records[start:start + 500]), now_ms, limits)
        for i, want in enumerate(expected[start:start + 500]):
            assert (got.stores[i], got.statuses[i], got.reasons[i], got.details[i]) == (
                want.store, want.status, want.reason, want.detail), records[start + i]


def test_projection_without_optional_columns():
    records = [c.rec(b"sess:a", c.express_value(c.iso(NOW_MS + DAY_MS)), store="express"),
               c.rec(b"session:b", b'{"x": 1}')]
    batch = to_batch(records).select(["key", "type", "value", "expire_at_ms"])
    got = classify_batch(batch, NOW_MS)
    want = [classify(dataclasses.replace(r, store=None), NOW_MS) for r in records]
    assert list(zip(got.stores, got.statuses, got.reasons)) == [(w.store, w.status, w.reason) for w in want]


def test_malicious_pickles_in_a_batch_are_corrupt_and_never_run(tmp_path):
    """Pickles that would run code on load, under Django's and Flask's keys, with the store the
    backup recorded (the batch's fast path) and without one: each is judged corrupt, naming the
    callable it refused, and nothing of it runs."""
    from session_migration.sessions import SessionStatus

    marker = tmp_path / "pwned"
    pickles = c.evil_pickles(marker)
    records, callables = [], []
    for payload, callable_name in pickles.values():
        for key, store in ((b":1:django.contrib.sessions.cacheevil", "django"), (b"session:evil", "flask")):
            for recorded in (store, None):
                records.append(c.rec(key, payload, store=recorded))
                callables.append(callable_name)
    got = classify_batch(to_batch(records), NOW_MS)
    assert not marker.exists()
    assert got.statuses == [SessionStatus.CORRUPT] * len(records) == [SessionStatus.CORRUPT] * 16
    assert got.stores == [r.store or ("django" if b"django" in r.key else "flask") for r in records]
    for reason, detail, callable_name in zip(got.reasons, got.details, callables):
        assert "not executed" in reason and callable_name in detail, (reason, detail)  # a fixed sentence; the name apart
