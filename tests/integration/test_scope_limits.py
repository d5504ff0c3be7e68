"""Scope patterns from any source are limited in number and size, and matching stays in RE2
(issue 14: ~2,000 patterns from a manifest made RE2 refuse, and the Python fallback then
backtracked exponentially). Real Valkey for the snapshot; no clocks: "refused quickly" is
counted in patterns read."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pytest

from session_migration import backup
from session_migration.restore import restore
from session_migration.cleanup import CleanupOptions
from session_migration.errors import InvalidParameter, SnapshotInvalid
from session_migration.options import BackupOptions
from session_migration.patterns import MAX_PATTERN_BYTES, MAX_PATTERNS, check_patterns
from session_migration.redis_glob import ScopeMatcher
from session_migration.snapshot import manifest_bytes
from session_migration.validation import validate_snapshot
from session_migration import storage

pytestmark = pytest.mark.integration

MANY = 5_000


class CountingPatterns:
    """An iterable of MANY patterns that counts how many were taken from it."""

    def __init__(self) -> None:
        self.taken = 0

    def __iter__(self):
        for i in range(MANY):
            self.taken += 1
            yield f"sess{i}:*"


@pytest.mark.parametrize("make", [
    lambda p: check_patterns(p),
    lambda p: BackupOptions(patterns=p),
    lambda p: CleanupOptions(patterns=p),
    lambda p: ScopeMatcher(p),  # what manifests and state files go through
], ids=["check_patterns", "backup options", "cleanup options", "scope matcher"])
def test_five_thousand_patterns_are_refused_after_reading_the_limit(make):
    patterns = CountingPatterns()
    with pytest.raises(InvalidParameter, match=f"More than {MAX_PATTERNS} key patterns"):
        make(patterns)
    assert patterns.taken == MAX_PATTERNS + 1


def test_a_pattern_longer_than_the_limit_is_refused():
    with pytest.raises(InvalidParameter, match=f"longer than {MAX_PATTERN_BYTES} bytes"):
        ScopeMatcher(["sess:" + "é" * MAX_PATTERN_BYTES])  # counted in bytes, not characters
    ScopeMatcher(["s" * MAX_PATTERN_BYTES])  # the limit itself is allowed


def test_matching_never_uses_pythons_backtracking_engine(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("re.compile was called: a backtracking matcher")

    monkeypatch.setattr(re, "compile", refuse)
    evil = "*a" * 12 + "b"  # exponential for a backtracking matcher on a run of a's
    matcher = ScopeMatcher(["sess:*", evil, "*a*a*a*c"])
    keys = pa.array([b"sess:1", b"a" * 64, b"a" * 63 + b"b", b"xaxaxac", b""], pa.binary())
    assert matcher.mask(keys).tolist() == [True, False, True, True, False]
    assert matcher.fullmatch(b"a" * 40 + b"b") and not matcher.fullmatch(b"a" * 40)


@pytest.mark.parametrize("re2_refuses", [False, True])
def test_the_largest_allowed_scope_matches_in_re2(monkeypatch, re2_refuses):
    """256 patterns of ~512 bytes in one expression; if RE2 ever refuses one that large, one
    RE2 pass per pattern gives the same answer (never another engine)."""
    from session_migration import redis_glob

    if re2_refuses:
        matches = redis_glob._matches

        def refusing(keys, expression):
            if expression.count("|") > 1:
                raise pa.ArrowInvalid("pattern too large - compile failed")
            return matches(keys, expression)

        monkeypatch.setattr(redis_glob, "_matches", refusing)
    patterns = [f"k{i:03d}:" + "[a-f0-9]" * 63 + "*" for i in range(MAX_PATTERNS)]
    assert all(len(p) <= MAX_PATTERN_BYTES for p in patterns)
    matcher = ScopeMatcher(patterns)
    keys = pa.array([f"k{i:03d}:".encode() + b"a" * 63 + b"-tail" for i in range(0, 300, 7)] + [b"k001:zz"], pa.binary())
    expected = np.array([i < MAX_PATTERNS for i in range(0, 300, 7)] + [False])
    assert (matcher.mask(keys) == expected).all()
    assert (matcher.mask(keys) == expected).all()  # and again, after any split


def _snapshot_with_scope(valkey, tmp_path, patterns):
    valkey.client().set("sess:a", "1")
    result = backup(valkey.url, str(tmp_path / "snapshots"), patterns=["sess:*"])
    path = tmp_path / "snapshots" / result.snapshot_id / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["scope"]["patterns"] = patterns
    path.write_bytes(manifest_bytes(manifest))  # re-checksummed: only the scope is hostile
    return result.url


def test_a_manifest_declaring_five_thousand_patterns_is_reported_and_refused(valkey, tmp_path):
    url = _snapshot_with_scope(valkey, tmp_path, [f"sess{i}:*" for i in range(MANY)])
    fs, path = storage.resolve(url)
    report = validate_snapshot(fs, path)
    # the manifest's schema allows at most MAX_PATTERNS patterns: checked before anything reads it
    assert [p.code for p in report.problems] == ["manifest-schema"]
    assert "scope.patterns" in report.problems[0].message and str(MAX_PATTERNS) in report.problems[0].message
    assert report.rows_checked == 0
    target = valkey.client(db=1)
    with pytest.raises(SnapshotInvalid):
        restore(url, valkey.url[:-1] + "1")
    assert target.dbsize() == 0
