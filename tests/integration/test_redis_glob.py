"""Scope matching agrees with the server's own SCAN ... MATCH on awkward keys and patterns."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from session_migration.redis_glob import ScopeMatcher

pytestmark = pytest.mark.integration

KEYS = [
    b"", b"sess:abc", b"sess:", b"sess", b"session:1", b"session_9", b"a", b"ab", b"abc", b"a\nb", b"a\n", b"\n",
    b"a*b", b"a?b", b"a[b", b"a]b", b"a\\b", b"a-b", b"a^b", b"^", b"]", b"[", b"-", b"\\", b"x]y", b"x-y",
    b"caf\xc3\xa9", b"caf\xe9", b"\xff", b"\x80", b"\x00", b"a\x00b", b"a\xffb", b"Z", b"`", b"_", b"b",
    b"01234567-89ab-cdef-0123-456789abcdef", b"django.contrib.sessions.cacheX", b"p:1:django.contrib.sessions.cacheY",
]
PATTERNS = [
    "*", "**", "sess:*", "sess*", "sess:?*", "?", "??", "a*b", "a**b", "*b", "a?", "a\\*b", "a\\?b", "a\\b",
    "a\\\\b", "\\", "a\\", "[ab]", "[^ab]", "[a-c]", "[c-a]", "a[]]b", "a[]b", "[]", "[^]", "[", "[^", "a[",
    "a[b", "a[^", "[]a]", "[a-]", "[a-]b", "[a-]x]y", "[\\]]", "[\\-]", "[x\\]", "a[\\\\]b", "[-a]", "[a\\-c]",
    "[^a-z]", "*[0-9a-f]*", "*\n*", "a?b", "?\n", "caf?", "caf??", "caf\u00e9", "[\u00e9]", "caf[\u00e9]",
    "[a-\u00ff]", "*[\x7f-\x80]*", "a*\\", "*.contrib.sessions.*", "????????-????-????-????-????????????",
    "*django.contrib.sessions.cache*", "session[_:]*", "]", "^", "-", "[[]", "x[]-]y", "[^-]",
]


@pytest.fixture(scope="module")
def tricky(request):
    return KEYS + [bytes(random.Random(7).getrandbits(8) for _ in range(n)) for n in (1, 2, 3, 5, 8)]


def test_scope_matches_scan_match(server, tricky):
    client = server.client()
    for key in tricky:
        client.set(key, b"1")
    column = pa.array(tricky, pa.binary())
    for pattern in PATTERNS:
        by_server = set(client.scan_iter(match=pattern.encode("utf-8"), count=1000))
        matcher = ScopeMatcher([pattern])
        by_arrow = {k for k, hit in zip(tricky, matcher.mask(column)) if hit}
        by_python = {k for k in tricky if matcher.fullmatch(k)}
        assert by_arrow == by_server, pattern
        assert by_python == by_server, pattern


def test_several_patterns_and_the_empty_key():
    column = pa.array([b"", b"sess:1", b"x", b"session_2"], pa.binary())
    assert ScopeMatcher(["sess:*", "session_*"]).mask(column).tolist() == [False, True, False, True]
    assert ScopeMatcher(["*"]).mask(column).tolist() == [True, True, True, True]  # SCAN's shortcut for '*'
    assert ScopeMatcher(["**"]).mask(column).tolist() == [False, True, True, True]


def test_prefix_patterns_and_regex_patterns_together_match_as_the_server(server, tricky):
    """Literal heads (`sess:*`) are compared as prefixes and the rest go through RE2: together
    they select exactly the union of what the server matches pattern by pattern, in batches
    that one prefix covers entirely and in batches it does not."""
    from session_migration.patterns import DEFAULT_PATTERNS

    client = server.client()
    keys = tricky + [b"sess:" + bytes([b]) for b in range(256)] + [b"PHPREDIS_SESSION:\xff", b"caf\xc3\xa9:1"]
    for key in keys:
        client.set(key, b"1")
    for patterns in (list(DEFAULT_PATTERNS), ["sess:*", "caf\u00e9*", "a*b", "session_*"], ["sess:*", "sess*"]):
        by_server = set()
        for pattern in patterns:
            by_server |= set(client.scan_iter(match=pattern.encode("utf-8"), count=1000))
        matcher = ScopeMatcher(patterns)
        for batch in (keys, [k for k in keys if k.startswith(b"sess:")]):
            hits = matcher.mask(pa.array(batch, pa.binary()))
            assert {k for k, hit in zip(batch, hits) if hit} == by_server & set(batch), patterns
