"""Compare two stores, or a snapshot and a store, key by key and in both directions.

Every key lands in one category (as RIOT's compare does):

    OK        same type, value and expiry (within `ttl_tolerance_ms`)
    MISSING   in A, not in B
    EXTRA     in B, not in A
    TYPE      different Redis types
    VALUE     same type, different content
    TTL       same content, expiry differs by more than the tolerance (or only one side has one)
    EXPIRED   in A with an expiry already past: not expected in B, not a mismatch

A is walked with its values; B is read for the same keys. The EXTRA direction then scans B's
keys and checks them against A (a compact digest set when A is a snapshot, EXISTS when A is a
store). With `sample`, a key is compared when a hash of it falls under the rate, the same
rule on both sides, so a sample is reproducible.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .endpoints import RedisEndpoint
from .errors import InvalidParameter
from .options import VerifyOptions
from .redaction import redact_key
from .redis_glob import ScopeMatcher
from .seen import SeenKeys
from .snapshot import Snapshot
from .sources.cluster import open_source
from .sources.redis import RedisSource

CATEGORIES = ("OK", "MISSING", "EXTRA", "TYPE", "VALUE", "TTL", "EXPIRED")
MISMATCHES = ("MISSING", "EXTRA", "TYPE", "VALUE", "TTL")
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class VerifyProgress:
    keys: int  # keys of A compared so far
    fraction: float  # rough 0..1 estimate: A's keys against its size, then B's scan for EXTRA keys


ProgressFn = Callable[[VerifyProgress], None]
_A_SHARE = 0.9  # of the progress bar: walking A; the rest is the EXTRA scan of B


@dataclass
class VerifyReport:
    a: str
    b: str
    patterns: list[str]
    sample: float | None
    ttl_tolerance_ms: int | None
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.counts[c] for c in MISMATCHES)

    def record(self, category: str, key: bytes) -> None:
        self.counts[category] += 1
        if category != "OK":
            shown = self.examples.setdefault(category, [])
            if len(shown) < MAX_EXAMPLES:
                shown.append(redact_key(key))

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "ok": self.ok, "patterns": self.patterns, "sample": self.sample,
            "ttl_tolerance_ms": self.ttl_tolerance_ms,
            "counts": {c: self.counts[c] for c in CATEGORIES},
            "mismatches": sum(self.counts[c] for c in MISMATCHES),
            "examples": self.examples,
        }


def canonical(row: dict[str, Any]) -> Any:
    """A row's content in a form where equal data compares equal (sets and hashes unordered)."""
    kind = row["type"]
    if kind == "string":
        return row["value"]
    if kind == "hash":
        return sorted((p["field"], p["value"]) for p in row["fields"] or ())
    if kind == "list":
        return list(row["items"] or ())
    if kind == "set":
        return sorted(row["items"] or ())
    if kind == "zset":
        return sorted((m["member"], m["score"]) for m in row["members"] or ())
    if kind == "stream":
        return [(e["id"], list(e["fields"])) for e in row["entries"] or ()]
    return None


def _sampled(keys: Sequence[bytes], rate: float | None) -> list[bool]:
    if rate is None or rate >= 1:
        return [True] * len(keys)
    limit = int(rate * 2**64)
    return [int.from_bytes(hashlib.blake2b(k, digest_size=8).digest(), "big") < limit for k in keys]


def verify(a: Snapshot | RedisEndpoint, b: RedisEndpoint, options: VerifyOptions = VerifyOptions(),
           progress: ProgressFn | None = None) -> VerifyReport:
    """Compare A (a snapshot or a store) with the store B."""
    if isinstance(a, RedisEndpoint) and a.same_server(b):
        raise InvalidParameter(f"A and B are the same database ({b.display_url}); compare two different ones.")
    patterns = options.patterns or (
        tuple(a.manifest["scope"]["patterns"]) if isinstance(a, Snapshot) else None
    )
    if patterns is None:
        from .patterns import DEFAULT_PATTERNS

        patterns = DEFAULT_PATTERNS
    a_name = a.url if isinstance(a, Snapshot) else a.display_url
    report = VerifyReport(a=a_name, b=b.display_url, patterns=list(patterns), sample=options.sample,
                          ttl_tolerance_ms=options.ttl_tolerance_ms)
    target = open_source(b)
    try:
        a_source = open_source(a) if isinstance(a, RedisEndpoint) else None
    except BaseException:
        target.close()
        raise
    try:
        a_size = a_source.dbsize() if a_source is not None else int(a.totals.get("keys", 0))
        seen_in_a = SeenKeys()
        for batch in _a_batches(a, a_source, patterns, options):
            _compare(batch, target, seen_in_a, options, report)
            if progress:
                progress(VerifyProgress(len(seen_in_a), _A_SHARE * min(1.0, len(seen_in_a) / max(1, a_size))))
        _extra(target, a_source, seen_in_a, patterns, options, report, progress)
    finally:
        target.close()
        if a_source:
            a_source.close()
    return report


def _a_batches(a, a_source: RedisSource | None, patterns, options: VerifyOptions) -> Iterator[pa.RecordBatch]:
    if a_source is not None:
        for chunk in a_source.read_chunks(patterns, options.batch_size):
            if chunk.result is not None:
                yield chunk.result.batch
        return
    scope = ScopeMatcher(patterns)
    for batch in a.iter_batches(batch_size=options.batch_size):
        wanted = scope.mask(batch.column("key"))
        yield batch if wanted.all() else batch.filter(pa.array(wanted))


def _compare(batch: pa.RecordBatch, target: RedisSource, seen_in_a: SeenKeys, options: VerifyOptions,
             report: VerifyReport) -> None:
    keys = batch.column("key").to_pylist()
    fresh = seen_in_a.add_new(keys)  # A may repeat a key (SCAN); compare it once
    take = [f and s for f, s in zip(fresh.tolist(), _sampled(keys, options.sample))]
    rows = [r for r, t in zip(batch.to_pylist(), take) if t]
    if not rows:
        return
    found = {r["key"]: r for r in target.read_keys([r["key"] for r in rows]).batch.to_pylist()}
    now_ms = int(time.time() * 1000)  # after B's read: a key that expired before it is EXPIRED, not MISSING
    for row in rows:
        key = row["key"]
        other = found.get(key)
        if row["expire_at_ms"] is not None and row["expire_at_ms"] <= now_ms:
            report.record("EXPIRED", key)
        elif other is None:
            report.record("MISSING", key)
        elif other["type"] != row["type"]:
            report.record("TYPE", key)
        elif canonical(other) != canonical(row):
            report.record("VALUE", key)
        elif not ttl_close(row["expire_at_ms"], other["expire_at_ms"], options.ttl_tolerance_ms):
            report.record("TTL", key)
        else:
            report.record("OK", key)


def ttl_close(a: int | None, b: int | None, tolerance: int | None) -> bool:
    if tolerance is None or (a is None and b is None):
        return True
    if a is None or b is None:
        return False
    return abs(a - b) <= tolerance


def _extra(target: RedisSource, a_source: RedisSource | None, seen_in_a: SeenKeys, patterns,
           options: VerifyOptions, report: VerifyReport, progress: ProgressFn | None) -> None:
    """Keys in B (in scope, sampled) that A does not have."""
    b_size, scanned = target.dbsize() if progress else 0, 0
    for _index, _cursor, keys in target.key_chunks(patterns, options.batch_size):
        scanned += len(keys)
        if progress:
            share = min(1.0, scanned / max(1, b_size))
            progress(VerifyProgress(len(seen_in_a), _A_SHARE + (1 - _A_SHARE) * share))
        keys = [k for k, s in zip(keys, _sampled(keys, options.sample)) if s]
        if not keys:
            continue
        known = seen_in_a.contains(keys).tolist()
        unknown = [k for k, kn in zip(keys, known) if not kn]
        if unknown and a_source is not None:
            # A is a live store: a key may have been created in A after A was walked.
            unknown = [k for k, e in zip(unknown, a_source.exists(unknown)) if not e]
        for key in dict.fromkeys(unknown):
            report.record("EXTRA", key)
