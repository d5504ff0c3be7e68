"""Snapshot statistics for audits, computed in one streamed pass over the parts.

    stats = compute_stats(open_snapshot(url))          # -> SnapshotStats; stats.as_dict() is JSON-safe

Memory stays flat whatever the snapshot size, except for two documented, bounded parts:

- value sizes: one int64 per row (8 bytes/row, 80 MB at 10M keys), so percentiles are exact
  (nearest rank), not estimated. The array is allocated once from the manifest's row counts.
- findings (non-valid keys): at most `max_findings` small dicts (default 100,000, ~40 MB);
  beyond that they are counted in `findings_total`, not kept.

Everything else is aggregates (counters per store/type/status, TTL and size buckets) and a
heap of the `TOP_K` largest keys. Counting, sizes and TTLs are vectorised over a small pandas
DataFrame per batch; only `classify` runs per row. Keys leave this module redacted only.
"""

from __future__ import annotations

import datetime as dt
import heapq
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from fsspec.implementations.memory import MemoryFileSystem

from .record import records_from_batch
from .redaction import redact_key
from .sessions import SessionStatus, classify
from .snapshot import Snapshot

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
TOP_K = 10
MAX_FINDINGS = 100_000
BATCH_ROWS = 10_000

STATUSES: tuple[str, ...] = tuple(s.value for s in SessionStatus)
UNKNOWN_STORE = "unknown"  # the name the manifest's by_store also uses for "no store"

# Remaining lifetime buckets; a key whose expiry is at or before `now` is expired (as in classify).
TTL_BUCKETS: tuple[str, ...] = ("expired", "<1h", "1-6h", "6-24h", "1-7d", ">7d", "no TTL")
_TTL_EDGES = np.array([1, HOUR_MS, 6 * HOUR_MS, DAY_MS, 7 * DAY_MS], dtype=np.int64)

# Value size buckets (powers of four): readable on a log scale, stable across snapshots.
SIZE_BUCKETS: tuple[str, ...] = (
    "<64 B", "64-256 B", "256 B-1 KiB", "1-4 KiB", "4-16 KiB", "16-64 KiB", "64 KiB-1 MiB", ">=1 MiB",
)
_SIZE_EDGES = np.array([64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 1 << 20], dtype=np.int64)

# Only what classify and the counters read: never `dump`, `members` or `entries`.
COLUMNS: tuple[str, ...] = ("key", "type", "value", "fields", "items", "expire_at_ms", "size_bytes", "store")


@dataclass
class SnapshotStats:
    snapshot_id: str
    as_of_ms: int  # the "now" every TTL and status was judged against
    keys: int = 0
    bytes: int = 0
    parts_read: list[str] = field(default_factory=list)
    by_type: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    by_store: dict[str, dict[str, int]] = field(default_factory=dict)  # store -> status -> count
    ttl_buckets: dict[str, int] = field(default_factory=dict)
    size_buckets: dict[str, int] = field(default_factory=dict)
    size_percentiles: dict[str, int | None] = field(default_factory=dict)  # p50, p90, p99, max
    largest_keys: list[dict[str, Any]] = field(default_factory=list)  # redacted key, size_bytes, type, store
    without_ttl: int = 0
    expiring_within_1h: int = 0
    expiring_within_24h: int = 0
    vanished: int = 0
    duplicates: int = 0
    findings_total: int = 0
    # Non-valid keys per (store, status, reason), over ALL findings: reasons are fixed sentences, so this stays small.
    reasons: list[dict[str, Any]] = field(default_factory=list)
    max_findings: int = MAX_FINDINGS
    findings: list[dict[str, str]] = field(default_factory=list)  # redacted key, store, status, reason

    @property
    def as_of(self) -> str:
        return dt.datetime.fromtimestamp(self.as_of_ms / 1000, dt.timezone.utc).isoformat(timespec="seconds")

    @property
    def findings_truncated(self) -> bool:
        return self.findings_total > len(self.findings)

    def as_dict(self, include_findings: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data["as_of"] = self.as_of
        data["findings_truncated"] = self.findings_truncated
        if not include_findings:
            del data["findings"]
        return data


class _Accumulator:
    """The running aggregates of one pass; `finish` turns them into `SnapshotStats`."""

    def __init__(self, snapshot: Snapshot, now_ms: int, max_findings: int, first_row: int = 0) -> None:
        self.stats = SnapshotStats(snapshot_id=snapshot.snapshot_id, as_of_ms=now_ms, max_findings=max_findings)
        self.first_row = first_row  # row number of this accumulator's first row in the whole snapshot
        self.now_ms = now_ms
        # Sized from the manifest (rows were verified by open/validate); grown if ever short.
        self.sizes = np.empty(sum(p.rows for p in snapshot.parts), dtype=np.int64)
        self.by_type: Counter[str] = Counter()
        self.pairs: Counter[tuple[str, str]] = Counter()
        self.reasons: Counter[tuple[str, str, str]] = Counter()
        self.ttl = np.zeros(len(TTL_BUCKETS), dtype=np.int64)
        self.size_hist = np.zeros(len(SIZE_BUCKETS), dtype=np.int64)
        self.top: list[tuple[int, int, dict[str, Any]]] = []  # (size, -row, entry): min-heap, ties keep the earlier row

    def add(self, batch: pa.RecordBatch, max_age_ms: Mapping[str, int] | None) -> None:
        start, n = self.stats.keys, batch.num_rows
        stores, statuses = self._classify(batch, max_age_ms)
        frame = pd.DataFrame({
            "type": batch.column("type").to_numpy(zero_copy_only=False),
            "size": batch.column("size_bytes").to_numpy(zero_copy_only=False).astype(np.int64, copy=False),
            "expire": batch.column("expire_at_ms").to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get),
            "store": stores,
            "status": statuses,
        })
        self.by_type.update(frame["type"].value_counts().to_dict())
        self.pairs.update(frame.groupby(["store", "status"]).size().to_dict())
        self._ttl(frame["expire"])
        sizes = frame["size"].to_numpy()
        self.size_hist += np.bincount(np.searchsorted(_SIZE_EDGES, sizes, side="right"), minlength=len(SIZE_BUCKETS))
        self._store_sizes(start, sizes)
        self._top(batch, frame, start)
        self.stats.keys += n
        self.stats.bytes += int(sizes.sum())

    def _classify(self, batch: pa.RecordBatch, max_age_ms: Mapping[str, int] | None) -> tuple[list[str], list[str]]:
        stores, statuses = [], []
        findings, cap = self.stats.findings, self.stats.max_findings
        for record in records_from_batch(batch):
            verdict = classify(record, self.now_ms, max_age_ms)
            store, status = verdict.store or UNKNOWN_STORE, verdict.status.value
            stores.append(store)
            statuses.append(status)
            if verdict.status is not SessionStatus.VALID:
                self.stats.findings_total += 1
                self.reasons[(store, status, verdict.reason)] += 1
                if len(findings) < cap:
                    findings.append({"redacted_key": redact_key(record.key), "store": store,
                                     "status": status, "reason": verdict.reason})
        return stores, statuses

    def _ttl(self, expire: pd.Series) -> None:
        has = expire.notna().to_numpy()
        remaining = expire[has].to_numpy(dtype=np.int64) - self.now_ms
        self.ttl[:-1] += np.bincount(np.searchsorted(_TTL_EDGES, remaining, side="right"), minlength=len(TTL_BUCKETS) - 1)
        self.ttl[-1] += int((~has).sum())
        self.stats.expiring_within_1h += int(((remaining > 0) & (remaining <= HOUR_MS)).sum())
        self.stats.expiring_within_24h += int(((remaining > 0) & (remaining <= DAY_MS)).sum())

    def _store_sizes(self, start: int, sizes: np.ndarray) -> None:
        end = start + len(sizes)
        if end > len(self.sizes):  # only if a part holds more rows than its manifest says
            self.sizes = np.resize(self.sizes, max(end, 2 * len(self.sizes)))
        self.sizes[start:end] = sizes

    def _top(self, batch: pa.RecordBatch, frame: pd.DataFrame, start: int) -> None:
        sizes = frame["size"].to_numpy()
        picks = np.argpartition(sizes, -TOP_K)[-TOP_K:] if len(sizes) > TOP_K else np.arange(len(sizes))
        for i in picks.tolist():
            item = (int(sizes[i]), -(self.first_row + start + i))
            if len(self.top) == TOP_K and item <= self.top[0][:2]:
                continue
            entry = {"redacted_key": redact_key(batch.column("key")[i].as_py()), "size_bytes": item[0],
                     "type": frame["type"].iat[i], "store": frame["store"].iat[i]}
            (heapq.heapreplace if len(self.top) == TOP_K else heapq.heappush)(self.top, (*item, entry))

    def merge(self, other: _Accumulator) -> None:
        """Fold in the accumulator of the parts that follow this one's."""
        s, o = self.stats, other.stats
        self._store_sizes(s.keys, other.sizes[: o.keys])
        s.keys += o.keys
        s.bytes += o.bytes
        s.expiring_within_1h += o.expiring_within_1h
        s.expiring_within_24h += o.expiring_within_24h
        s.findings_total += o.findings_total
        s.findings.extend(o.findings[: max(0, s.max_findings - len(s.findings))])
        self.by_type.update(other.by_type)
        self.pairs.update(other.pairs)
        self.reasons.update(other.reasons)
        self.ttl += other.ttl
        self.size_hist += other.size_hist
        for item in other.top:
            if len(self.top) < TOP_K:
                heapq.heappush(self.top, item)
            elif item[:2] > self.top[0][:2]:
                heapq.heapreplace(self.top, item)

    def finish(self, snapshot: Snapshot) -> SnapshotStats:
        s = self.stats
        s.parts_read = [p.name for p in snapshot.parts]
        s.by_type = dict(sorted(self.by_type.items()))
        s.by_status = {status: 0 for status in STATUSES}
        s.by_store = {}
        for (store, status), count in sorted(self.pairs.items()):
            s.by_store.setdefault(store, {st: 0 for st in STATUSES})[status] = int(count)
            s.by_status[status] += int(count)
        s.ttl_buckets = dict(zip(TTL_BUCKETS, (int(x) for x in self.ttl)))
        s.without_ttl = s.ttl_buckets["no TTL"]
        s.size_buckets = dict(zip(SIZE_BUCKETS, (int(x) for x in self.size_hist)))
        s.size_percentiles = _percentiles(self.sizes[: s.keys])
        s.reasons = [{"store": st, "status": status, "reason": reason, "count": n}
                     for (st, status, reason), n in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
        s.largest_keys = [entry for *_, entry in sorted(self.top, key=lambda t: t[:2], reverse=True)]
        totals = snapshot.manifest.get("totals", {})
        s.vanished, s.duplicates = int(totals.get("vanished", 0)), int(totals.get("duplicates", 0))
        return s


def _percentiles(sizes: np.ndarray) -> dict[str, int | None]:
    if not len(sizes):
        return {"p50": None, "p90": None, "p99": None, "max": None}
    # Nearest rank ("inverted_cdf"): every percentile is a size some key really has.
    p50, p90, p99 = np.percentile(sizes, [50, 90, 99], method="inverted_cdf")
    return {"p50": int(p50), "p90": int(p90), "p99": int(p99), "max": int(sizes.max())}


def compute_stats(
    snapshot: Snapshot,
    now_ms: int | None = None,
    max_age_ms: Mapping[str, int] | None = None,
    *,
    max_findings: int = MAX_FINDINGS,
    batch_size: int = BATCH_ROWS,
    workers: int | None = None,
) -> SnapshotStats:
    """Stream every part of `snapshot` once and return its audit statistics.

    `now_ms` (default: now) is the instant TTLs and session expiry are judged against;
    `max_age_ms` passes per-store maximum ages to `classify` (e.g. aiohttp's max_age).
    Only the parts listed in `snapshot.parts` are read, so a caller may leave out parts that
    failed validation. `workers` processes (default: one per core) share the parts.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else int(now_ms)
    groups = _part_groups(snapshot, workers if workers is not None else (os.cpu_count() or 1))
    if len(groups) < 2 or isinstance(snapshot.fs, MemoryFileSystem):  # memory:// lives in this process only
        acc = _accumulate(snapshot, snapshot.parts, 0, now_ms, max_age_ms, max_findings, batch_size)
        return acc.finish(snapshot)
    # classify is pure Python: one process per core over disjoint groups of parts, merged in order.
    context = multiprocessing.get_context("spawn")  # never fork a process that runs Prefect's threads
    with ProcessPoolExecutor(max_workers=len(groups), mp_context=context) as pool:
        futures = [pool.submit(_accumulate, snapshot, parts, first_row, now_ms, max_age_ms, max_findings, batch_size)
                   for parts, first_row in groups]
        accs = [f.result() for f in futures]
    for other in accs[1:]:
        accs[0].merge(other)
    return accs[0].finish(snapshot)


def _part_groups(snapshot: Snapshot, workers: int) -> list[tuple[list, int]]:
    """Split the parts into at most `workers` contiguous groups of similar row counts."""
    parts = list(snapshot.parts)
    if workers < 2 or len(parts) < 2:
        return [(parts, 0)]
    total = sum(p.rows for p in parts)
    groups, current, first_row, seen = [], [], 0, 0
    for part in parts:
        current.append(part)
        seen += part.rows
        if len(groups) < workers - 1 and seen >= total * (len(groups) + 1) / workers:
            groups.append((current, first_row))
            current, first_row = [], seen
    if current:
        groups.append((current, first_row))
    return groups


def _accumulate(snapshot: Snapshot, parts: list, first_row: int, now_ms: int, max_age_ms, max_findings: int,
                batch_size: int) -> _Accumulator:
    subset = Snapshot(fs=snapshot.fs, path=snapshot.path, manifest=snapshot.manifest, parts=list(parts))
    acc = _Accumulator(subset, now_ms, max_findings, first_row)
    for batch in subset.iter_batches(columns=COLUMNS, batch_size=batch_size):
        acc.add(batch, max_age_ms)
    return acc
