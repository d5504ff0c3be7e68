"""Pure units: URLs, redaction, de-duplication, ids, progress estimate. No services."""

from __future__ import annotations

import random

import numpy as np
import pytest

from session_migration.budget import BATCH_BYTES, FIRST_ROWS, SPARSE_FACTOR, BatchBudget, rows_for
from session_migration.endpoints import RedisEndpoint
from session_migration.errors import AuthenticationFailed, InvalidParameter, ServerUnavailable, is_transient
from session_migration.redaction import redact_key
from session_migration.seen import SeenKeys
from session_migration.snapshot import check_snapshot_id, manifest_bytes, manifest_checksum, new_snapshot_id
from session_migration.sources.segments import scan_fraction


def test_url_parsing_and_password_free_display():
    ep = RedisEndpoint.from_url("rediss://app:p%40ss@cache.internal:6380/3")
    assert (ep.scheme, ep.host, ep.port, ep.db, ep.username, ep.password) == ("rediss", "cache.internal", 6380, 3, "app", "p@ss")
    assert ep.display_url == "rediss://app@cache.internal:6380/3"
    assert "p@ss" not in repr(ep)
    unix = RedisEndpoint.from_url("unix:///run/redis.sock?db=2")
    assert (unix.path, unix.db) == ("/run/redis.sock", 2)
    moved = ep.without_password("PW")
    assert moved.password is None and moved.parameter_url.endswith("?password_env=PW")
    assert "PW" not in moved.display_url  # messages name the server, not where its password comes from


def test_password_env(monkeypatch):
    monkeypatch.setenv("SESSION_MIGRATION_MY_PW", "from-env")
    assert RedisEndpoint.from_url("redis://h/0?password_env=SESSION_MIGRATION_MY_PW").resolved_password() == "from-env"


def test_unknown_url_option():
    with pytest.raises(InvalidParameter, match="Unknown URL option"):
        RedisEndpoint.from_url("redis://h/0?pasword=x")


def test_redaction_never_shows_a_whole_id():
    key = b"sess:Jv9SaLKjGf58rhbD3oQdGRKmY2NCv6pz"
    shown = redact_key(key)
    assert shown.startswith("sess:Jv9S…#") and "Jv9SaLKj" not in shown
    assert redact_key(key) == redact_key(key.decode()) != redact_key(b"sess:other")
    assert redact_key(b"PHPREDIS_SESSION:5gkpdbr4in4trp9vl67febagmt").startswith("PHPREDIS_SESSION:5gkp…")


def test_seen_keys_dedupes_across_and_within_batches():
    seen = SeenKeys()
    first = [f"k{i}".encode() for i in range(10_000)]
    assert seen.add_new(first).all()
    mask = seen.add_new([b"k5", b"new", b"new", b"k9999"])
    assert mask.tolist() == [False, True, False, False]
    assert len(seen) == 10_001
    for start in range(0, 50_000, 1000):  # many runs, merged as they grow
        seen.add_new([f"x{i}".encode() for i in range(start, start + 1000)])
    assert not seen.add_new([b"x0", b"x49999", b"k0"]).any()


def test_seen_keys_agrees_with_a_set_on_random_batches():
    rng = random.Random(7)
    keys = [rng.randbytes(rng.randrange(0, 20)) for _ in range(30_000)]
    seen, reference = SeenKeys(), set()
    for _ in range(200):  # batches of every size, repeats within and across batches; the table grows
        batch = [rng.choice(keys) for _ in range(rng.choice([1, 7, 100, 1000, 4000]))]
        expected = []
        for key in batch:
            expected.append(key not in reference)
            reference.add(key)
        assert seen.add_new(batch).tolist() == expected
    assert len(seen) == len(reference)
    probe = keys[:3000] + [b"never-added"]
    assert seen.contains(probe).tolist() == [k in reference for k in probe]


def test_seen_keys_long_probe_chains():
    # 300 digests that all hash to the same slot (and each twice): the vectorised rounds, then
    # the plain loop, walk one long chain of occupied slots.
    hi = np.arange(1, 301, dtype=np.uint64) << np.uint64(40)
    digests = np.stack([hi, hi + np.uint64(3)], axis=1).view(np.dtype("S16")).ravel()
    seen = SeenKeys()
    doubled = np.concatenate([digests, digests[::-1]])
    assert seen.add_new_digests(doubled).tolist() == [True] * 300 + [False] * 300
    assert not seen.add_new_digests(digests).any() and len(seen) == 300


def test_snapshot_ids_sort_by_time_and_are_checked():
    import datetime as dt

    a = new_snapshot_id(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    b = new_snapshot_id(dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc))
    assert a < b and check_snapshot_id(a) == a
    for bad in ("", "../x", "a/b", ".hidden", "x" * 200):
        with pytest.raises(InvalidParameter):
            check_snapshot_id(bad)


def test_manifest_checksum_detects_edits():
    import json

    manifest = json.loads(manifest_bytes({"a": 1, "b": [1, 2]}))
    assert manifest["manifest_sha256"] == manifest_checksum(manifest)
    manifest["a"] = 2
    assert manifest["manifest_sha256"] != manifest_checksum(manifest)


def test_transient_and_terminal():
    import redis

    assert is_transient(ServerUnavailable("x")) and is_transient(redis.exceptions.ConnectionError())
    assert not is_transient(AuthenticationFailed("x")) and not is_transient(InvalidParameter("x"))
    assert not is_transient(redis.exceptions.AuthenticationError()) and not is_transient(KeyError())


def test_scan_fraction_is_an_estimate_in_range():
    assert scan_fraction(0, 1000) == 0.0
    assert 0 < scan_fraction(512, 1024) <= 1.0
    assert scan_fraction(1, 1024) == 0.5  # reverse binary: the first bit set is half-way


@pytest.mark.parametrize("key, shown", [
    (b"sess:abcdefghij-klmnopqrstuvwxyz_0123456", "sess:abcd…"),
    (b"6c0a2f4e-5b7d-4e1a-9c3b-2a1f0e9d8c7b", "6c0a…"),
    (b"spring:session:sessions:3f1c7a52-9b1e-4c55-8a0e-1d2b3c4d5e6f", "spring:session:sessions:3f1c…"),
    (b"starsessions.759c1661f1bdbbad7f4c36f3c0ff8411", "starsessions.759c…"),
    (b"rack:session:2::1866230c20f9ff7ce511ac8d5e43d771df705b352e0e", "rack:session:2::1866…"),
    (b"sess:ab", "sess:…"),  # never more than a quarter of the id
])
def test_redaction_shows_the_store_prefix_and_four_id_characters(key, shown):
    assert redact_key(key).startswith(shown)


@pytest.mark.parametrize("lengths", ["same", "mixed", "empty keys"])
def test_resp_packing_round_trips_for_same_and_mixed_key_lengths(lengths):
    """Keys of one length take a single-join fast path; both paths must be exact RESP."""
    import hiredis

    from session_migration.sources import resp

    rng = random.Random(7)
    size = {"same": lambda: 37, "mixed": lambda: rng.randint(1, 60), "empty keys": lambda: 0}[lengths]
    keys = [bytes(rng.randrange(256) for _ in range(size())) for _ in range(500)]
    reader = hiredis.Reader()  # parses what we send as if it were a reply: an array per command
    reader.feed(resp.pack([b"MGET", *keys]) + resp.pack_per_key(b"PEXPIRETIME", keys))
    assert reader.gets() == [b"MGET", *keys]
    assert [reader.gets() for _ in keys] == [[b"PEXPIRETIME", k] for k in keys]
    assert reader.gets() is False  # nothing left over


@pytest.mark.parametrize("chunk_bytes", [1, 7, 16 << 10, 1 << 20])
def test_reply_reader_parses_every_reply_across_chunks_of_any_size(chunk_bytes):
    """The reader feeds hiredis 16 KB at a time from each chunk: replies that straddle slices
    or chunks, a whole megabyte of ~1 KB replies at once, and error replies all come out once,
    in order; `MORE` only when a chunk is used up."""
    import hiredis

    from session_migration.sources import resp

    rng = random.Random(11)
    values = [bytes(rng.randrange(256) for _ in range(rng.randint(0, 2100))) for _ in range(900)]
    wire = b"".join(b"$%d\r\n%s\r\n" % (len(v), v) for v in values) + b"-MOVED 12 127.0.0.1:7001\r\n:42\r\n"
    reader, replies = resp.ReplyReader(), []
    for start in range(0, len(wire), chunk_bytes):
        reader.feed(wire[start:start + chunk_bytes])
        while (reply := reader.gets()) is not resp.MORE:
            replies.append(reply)
    assert replies[:-2] == values
    assert isinstance(replies[-2], hiredis.ReplyError) and str(replies[-2]).startswith("MOVED 12")
    assert replies[-1] == 42


def test_replies_read_from_a_socket_into_one_reused_buffer_stay_whole():
    """`next_from` reads the socket into one buffer it reuses: replies larger than the buffer,
    and replies parsed before the buffer was overwritten, all come out whole and in order."""
    import socket
    import threading

    import redis

    from session_migration.sources import resp

    rng = random.Random(5)
    values = [rng.randbytes(rng.choice([0, 10, 1000, 5000, 70_000])) for _ in range(300)]
    wire = b"".join(b"$%d\r\n%s\r\n" % (len(v), v) for v in values)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        sender = threading.Thread(target=theirs.sendall, args=(wire,))
        sender.start()
        reader = resp.ReplyReader(bytearray(4096))
        replies = [reader.next_from(ours) for _ in values]
        sender.join()
        assert replies == values
        ours.settimeout(0.05)
        with pytest.raises(redis.exceptions.TimeoutError):  # nothing more sent
            reader.next_from(ours)
        theirs.close()
        with pytest.raises(redis.exceptions.ConnectionError, match="closed"):
            reader.next_from(ours)


def test_key_slots_agree_with_redis_py_for_plain_tagged_and_binary_keys():
    from redis.crc import key_slot

    from session_migration.cluster import key_slots

    rng = random.Random(7)
    plain = [b"sess:%032x" % rng.getrandbits(128) for _ in range(500)] + [b"", b"\x00\xff\r\n", b"}"]
    tagged = plain + [b"}{", b"sess:{user1}a", b"{}x", b"a{b}c{d}", b"{", b"x{y", b"sess:{\xff\x00}"]
    for keys in (plain, tagged):  # without a "{" anywhere, and with
        assert key_slots(keys).tolist() == [key_slot(k) for k in keys]


def test_batch_budget_follows_the_bytes_per_row_and_grows_back_slowly():
    assert rows_for(1024, 1000) == 1000 and rows_for(1 << 20, 1000) == 8 and rows_for(1 << 30, 1000) == 1
    assert rows_for(0, 1000) == 1000  # empty values: the batch size
    budget = BatchBudget(1000)
    assert budget.rows == FIRST_ROWS  # nothing seen yet
    budget.saw(FIRST_ROWS, FIRST_ROWS * (1 << 20))  # 1 MB values, on the wire: smaller at once
    assert budget.rows == BATCH_BYTES >> 20
    budget.saw(8, 8 * 100)  # then small ones on the wire: no growth before the batch is seen
    assert budget.rows == 8
    budget.saw(8, 8 * 100, decoded=True)  # and in the batch: back up twofold a read, not at once
    assert budget.rows == 16
    for _ in range(10):
        budget.saw(budget.rows, budget.rows * 100, decoded=True)
    assert budget.rows == 1000  # never above the batch size
    budget.saw(0, 0)  # a read of nothing teaches nothing
    assert budget.rows == 1000
    assert BatchBudget(10).rows == 10


def test_scan_count_asks_for_more_keys_where_the_pattern_matches_few():
    budget = BatchBudget(1000)
    assert budget.scan_count == FIRST_ROWS  # nothing known: a page about as big as the read
    for _ in range(6):
        budget.scanned(budget.scan_count, 0)  # a pattern that matches nothing here
    assert budget.scan_count == 1000  # SPARSE_FACTOR * 64 would be more: the batch size bounds it
    budget.saw(FIRST_ROWS, FIRST_ROWS * (1 << 20))  # 1 MB values: reads of 8 keys
    assert budget.scan_count == SPARSE_FACTOR * 8  # what a dense stretch may bring at once
    for _ in range(10):
        budget.scanned(budget.scan_count, budget.scan_count)  # every key matches
    assert budget.scan_count == 8
    budget.scanned(0, 5)  # a COUNT of 0 teaches nothing
    assert budget.scan_count == 8


def test_batch_budget_counts_what_was_read_beyond_the_wire_bytes_it_saw_first():
    """Hashes: the MGET of a read answers nil for them (a few bytes on the wire); their
    collections come in later round trips and show only in the decoded batch."""
    budget = BatchBudget(1000)
    budget.saw(64, 64 * 10)  # wire: MGET's nils and the expiries
    assert budget.rows == FIRST_ROWS
    budget.saw(64, 64 * (1 << 20), decoded=True)  # the batch: 1 MB hashes
    assert budget.rows == 8
    budget.saw(8, 8 * 10)  # the next read's wire bytes alone do not undo it
    assert budget.rows == 8
    budget.saw(8, 8 * 100, decoded=True)  # small hashes from now on
    assert budget.rows == 16
