"""Keys that are not strings, read with packed commands
(`RedisSource._read_typed`): a key that changes type, or vanishes, between its TYPE and
its read is read again or counted as vanished, never recorded with the wrong type."""

from __future__ import annotations

import pytest

from session_migration.endpoints import resolve_connection
from session_migration.sources import redis as redis_source
from session_migration.sources.redis import RedisSource

pytestmark = pytest.mark.integration


def test_a_key_that_changes_type_or_vanishes_between_type_and_read(server, monkeypatch):
    r = server.client()
    r.hset("sess:turns", mapping={"a": "1"})
    r.hset("sess:goes", mapping={"b": "2"})
    r.zadd("sess:stays", {"m": 2.5})
    execute = redis_source.resp.execute
    calls = []

    def execute_then_change(client, packed, replies):
        answer = execute(client, packed, replies)
        calls.append(packed.split(b"\r\n")[2])  # the first command's name
        if len(calls) == 2:  # after the TYPE round trip of the typed read, before its reads
            r.delete("sess:turns", "sess:goes")
            r.rpush("sess:turns", "x", "y")
        return answer

    monkeypatch.setattr(redis_source.resp, "execute", execute_then_change)
    source = RedisSource(resolve_connection(server.url), patterns=["sess:*"])
    try:
        result = source.read_keys([b"sess:turns", b"sess:goes", b"sess:stays"])
    finally:
        source.close()
    rows = {row["key"]: row for row in result.batch.to_pylist()}
    assert calls[:2] == [b"MGET", b"TYPE"] and calls.count(b"TYPE") == 2  # the type change was read again
    assert result.vanished == 1 and set(rows) == {b"sess:turns", b"sess:stays"}
    assert rows[b"sess:turns"]["type"] == "list" and rows[b"sess:turns"]["items"] == [b"x", b"y"]
    assert rows[b"sess:stays"]["members"] == [{"member": b"m", "score": 2.5}]
