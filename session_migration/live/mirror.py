"""Make keys on the target what they are on the source, and find the keys where they differ.

`Mirror.apply(keys)` re-reads each key from the source (type, value, absolute expiry) and writes
it to the target, or deletes it there when the source no longer has it. Whatever event named the
key (set, del, expired, evicted, ...) does not matter, so a key applied twice, or late, ends the
same. Only keys matching the patterns are ever written or deleted (`RedisSink.unlink` checks).

`Mirror.repair_pass()` is the compare-and-repair pass: SCAN the source by pattern and apply
every key that is missing or different on the target, then SCAN the target and apply every key
the source does not have, except the keys the target held before the run started (`keep`: they
were never the source's to decide).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..budget import BatchBudget
from ..endpoints import RedisEndpoint
from ..redaction import redact_key
from ..redis_glob import ScopeMatcher
from ..seen import SeenKeys
from ..sinks.cluster import open_sink
from ..sources.cluster import open_source
from ..verify import canonical, ttl_close

MAX_EXAMPLES = 5
DIFFERENCES = ("MISSING", "EXTRA", "TYPE", "VALUE", "TTL")


@dataclass
class Applied:
    written: int = 0
    deleted: int = 0
    retry: list[bytes] | None = None  # keys that could not be read consistently: apply again later


class Mirror:
    """The source and target of a live run, as one object that can copy or compare keys."""

    def __init__(self, source: RedisEndpoint, target: RedisEndpoint, patterns: Sequence[str], *,
                 batch_size: int = 1000, keep: SeenKeys | None = None, ttl_tolerance_ms: int = 2000):
        self.patterns, self.keep, self.tolerance = tuple(patterns), keep, ttl_tolerance_ms
        self.budget = BatchBudget(batch_size)  # big values are read fewer at a time (see `budget`)
        self.scope = ScopeMatcher(self.patterns)
        self.source = open_source(source, patterns=self.patterns, batch_size=batch_size, walk="keyspace")
        self.target = open_source(target, patterns=self.patterns, batch_size=batch_size, walk="keyspace")
        self.sink = open_sink(target, replace=True)

    def close(self) -> None:
        for side in (self.sink, self.source, self.target):
            side.close()

    def in_scope(self, keys: Sequence[bytes]) -> list[bytes]:
        if not keys:
            return []
        mask = self.scope.mask(pa.array(keys, pa.binary()))
        return [k for k, m in zip(keys, mask.tolist()) if m]

    def apply(self, keys: Sequence[bytes]) -> Applied:
        """Make each key in scope on the target what it is on the source now."""
        keys = self.in_scope(list(dict.fromkeys(keys)))
        done = Applied()
        if not keys:
            return done
        batch = self.source.read_keys(keys).batch
        self.budget.saw_batch(len(keys), batch)
        if batch.num_rows:
            self.sink.write(batch)
            done.written = self.sink.commit().written
        present = set(batch.column("key").to_pylist())
        unread = [k for k in keys if k not in present]
        if unread:  # gone, or changing type faster than it could be read: tell the two apart
            exists = self.source.exists(unread)
            gone = [k for k, e in zip(unread, exists) if not e]
            done.retry = [k for k, e in zip(unread, exists) if e] or None
            done.deleted = self.sink.unlink(gone, self.scope)
        return done

    def differing(self, keys: Sequence[bytes], counts: Counter, examples: dict[str, list[str]]) -> list[bytes]:
        """The keys of `keys` that differ between source and target (counted by category in
        `counts`, "OK" for equal ones); a key on neither side is not counted."""
        if not keys:
            return []
        a = self.source.read_keys(keys).batch
        self.budget.saw_batch(len(keys), a)
        b = self.target.read_keys(keys).batch
        if _same_strings(a, b, self.tolerance):
            counts["OK"] += a.num_rows
            return []
        now_ms = self.source.now_ms()  # after both reads: a key that expired between them is not lost
        rows_a = {r["key"]: r for r in a.to_pylist()}
        rows_b = {r["key"]: r for r in b.to_pylist()}
        different = []
        for key in keys:
            ra, rb = rows_a.get(key), rows_b.get(key)
            if ra is None and rb is None:
                continue
            category = _category(ra, rb, self.tolerance, now_ms)
            counts[category] += 1
            if category not in ("OK", "EXPIRED"):
                different.append(key)
                _example(examples, category, key)
        return different

    def repair_pass(self, fix: bool = True) -> dict:
        """Compare every key in scope on both sides; with `fix`, apply the ones that differ.
        Returns the counts by category (before fixing) and how many keys were fixed."""
        counts: Counter = Counter()
        examples: dict[str, list[str]] = {}
        fixed = 0
        for _cursor, keys in self.source.keyspace_chunks(budget=self.budget):
            different = self.differing(keys, counts, examples)
            if fix and different:
                fixed += self.apply_all(different)
        for _cursor, keys in self.target.keyspace_chunks():
            if not keys:
                continue
            only_here = [k for k, e in zip(keys, self.source.exists(keys)) if not e]
            if only_here:  # asked again after the source: a key that expired between the two is on neither
                only_here = [k for k, e in zip(only_here, self.target.exists(only_here)) if e]
            if only_here and self.keep is not None:
                kept = self.keep.contains(only_here).tolist()
                counts["KEPT"] += sum(kept)
                only_here = [k for k, k_ in zip(only_here, kept) if not k_]
            counts["EXTRA"] += len(only_here)
            for key in only_here:
                _example(examples, "EXTRA", key)
            if fix and only_here:
                fixed += self.apply_all(only_here)
        return {"counts": {c: counts[c] for c in ("OK", *DIFFERENCES, "EXPIRED", "KEPT")}, "examples": examples,
                "fixed": fixed}

    @property
    def batch_rows(self) -> int:
        """Keys to read at a time: `batch_size`, fewer where values are big."""
        return self.budget.rows

    def in_batches(self, keys: Sequence[bytes]) -> Iterator[Sequence[bytes]]:
        """`keys` in slices of `batch_rows` (as it is when each slice is taken)."""
        start = 0
        while start < len(keys):
            rows = self.batch_rows
            yield keys[start:start + rows]
            start += rows

    def apply_all(self, keys: list[bytes]) -> int:
        """`apply`, batch by batch; how many changed."""
        return sum(self._apply_until_read(some) for some in self.in_batches(keys))

    def _apply_until_read(self, keys: list[bytes]) -> int:
        """`apply`, with the keys that changed type while read applied again; how many changed."""
        applied = 0
        for _ in range(3):  # keys changing type while read are read again, a few times
            done = self.apply(keys)
            applied += done.written + done.deleted
            if not done.retry:
                break
            keys = done.retry
        return applied


def _example(examples: dict[str, list[str]], category: str, key: bytes) -> None:
    shown = examples.setdefault(category, [])
    if len(shown) < MAX_EXAMPLES:
        shown.append(redact_key(key))


def _same_strings(a: pa.RecordBatch, b: pa.RecordBatch, tolerance: int) -> bool:
    """The common case, checked column-wise: the same string keys on both sides, in the same
    order, with equal values and expiry within the tolerance."""
    if a.num_rows != b.num_rows or not a.num_rows:
        return False
    if not (pc.all(pc.equal(a.column("type"), "string")).as_py() and pc.all(pc.equal(b.column("type"), "string")).as_py()):
        return False
    if not a.column("key").equals(b.column("key")) or not a.column("value").equals(b.column("value")):
        return False
    ea, eb = a.column("expire_at_ms"), b.column("expire_at_ms")
    if not pc.equal(pc.is_null(ea), pc.is_null(eb)).to_numpy(zero_copy_only=False).all():
        return False
    both = pc.and_(pc.is_valid(ea), pc.is_valid(eb))
    gap = pc.abs(pc.subtract(ea.filter(both), eb.filter(both))).to_numpy(zero_copy_only=False)
    return bool(np.all(gap <= tolerance))


def _category(a: dict | None, b: dict | None, tolerance: int, now_ms: int) -> str:
    one = a if b is None else b if a is None else None
    if one is not None and one["expire_at_ms"] is not None and one["expire_at_ms"] <= now_ms:
        return "EXPIRED"  # on one side only because it expired between the two reads
    if b is None:
        return "MISSING"
    if a is None:
        return "EXTRA"
    if a["type"] != b["type"]:
        return "TYPE"
    if canonical(a) != canonical(b):
        return "VALUE"
    return "OK" if ttl_close(a["expire_at_ms"], b["expire_at_ms"], tolerance) else "TTL"
