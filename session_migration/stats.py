"""Snapshot statistics for audits, computed in one streamed pass over the parts.

    stats = compute_stats(open_snapshot(url))          # -> SnapshotStats; stats.as_dict() is JSON-safe

Memory stays flat whatever the snapshot size, except for two documented, bounded parts:

- value sizes: one int64 per row (8 bytes/row, 80 MB at 10M keys), so percentiles are exact
  (nearest rank), not estimated. The array is allocated once from the manifest's row counts.
- findings (non-valid keys): at most `max_findings` small dicts (default 100,000, ~50 MB);
  beyond that they are counted in `findings_total`, not kept. A finding's `reason` is one of
  the judges' fixed sentences, so the per-reason counts (`reasons`) stay a short table; what
  the parser said goes to its `detail` (at most 120 characters, control characters escaped).

Everything else is aggregates (counters per store/type/status, TTL and size buckets) and a
heap of the `TOP_K` largest keys. Counting, sizes and TTLs are vectorised over each Arrow
batch; only the session judgement (`classify_batch`) runs per row. Runs of row groups are
spread over one process per core (`parallel.map_ordered`) and their aggregates merged in row
order, so the result does not depend on the number of processes. Keys leave this module
redacted only.
"""

from __future__ import annotations

import datetime as dt
import heapq
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import parallel, storage
from .redaction import redact_key
from .sessions import SessionStatus
from .sessions.model import REDIS_TYPES
from .sessions.registry import classify_batch
from .snapshot import PARTS, READ_BUFFER_BYTES, PartInfo, Snapshot

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
TOP_K = 10
MAX_FINDINGS = 100_000
BATCH_ROWS = 10_000
SLICES_PER_WORKER = 4  # tasks a process gets, at least (parts are cut into runs of row groups)

STATUSES: tuple[str, ...] = tuple(s.value for s in SessionStatus)
UNKNOWN_STORE = "unknown"  # the name the manifest's by_store also uses for "no store"
OTHER_TYPE = "other"  # by_type's row for type names Redis does not have

# Remaining lifetime buckets; a key whose expiry is at or before `now` is expired (as in classify).
TTL_BUCKETS: tuple[str, ...] = ("TTL passed", "<1h", "1-6h", "6-24h", "1-7d", ">7d", "no TTL")
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
    findings: list[dict[str, str]] = field(default_factory=list)  # redacted key, store, status, reason, detail

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
    """The running aggregates of consecutive rows (a slice of a part, or merged slices); `finish` makes `SnapshotStats`."""

    def __init__(self, snapshot_id: str, now_ms: int, max_findings: int, first_row: int = 0, rows: int = 0) -> None:
        self.stats = SnapshotStats(snapshot_id=snapshot_id, as_of_ms=now_ms, max_findings=max_findings)
        self.first_row = first_row  # row number of this accumulator's first row in the whole snapshot
        self.now_ms = now_ms
        # Sized from the row counts of the manifest or the Parquet footer; grown if ever short.
        self.sizes = np.empty(rows, dtype=np.int64)
        self.by_type: Counter[str] = Counter()
        self.pairs: Counter[tuple[str | None, SessionStatus]] = Counter()
        self.reasons: Counter[tuple[str, str, str]] = Counter()
        self.ttl = np.zeros(len(TTL_BUCKETS), dtype=np.int64)
        self.size_hist = np.zeros(len(SIZE_BUCKETS), dtype=np.int64)
        self.top: list[tuple[int, int, dict[str, Any]]] = []  # (size, -row, entry): min-heap, ties keep the earlier row

    def add(self, batch: pa.RecordBatch, max_age_ms: Mapping[str, int] | None) -> None:
        start, n = self.stats.keys, batch.num_rows
        verdicts = classify_batch(batch, self.now_ms, max_age_ms)
        stores = verdicts.stores
        self.pairs.update(zip(stores, verdicts.statuses))  # store None and enum statuses: named in `finish`
        self._findings(batch, stores, verdicts.statuses, verdicts.reasons, verdicts.details)
        types = pc.value_counts(batch.column("type"))
        self.by_type.update(dict(zip(types.field("values").to_pylist(), types.field("counts").to_pylist())))
        self._ttl(batch.column("expire_at_ms"))
        sizes = batch.column("size_bytes").to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        self.size_hist += np.bincount(np.searchsorted(_SIZE_EDGES, sizes, side="right"), minlength=len(SIZE_BUCKETS))
        self._store_sizes(start, sizes)
        self._top(batch, sizes, stores, start)
        self.stats.keys += n
        self.stats.bytes += int(sizes.sum())

    def _findings(self, batch: pa.RecordBatch, stores: list[str | None], statuses: list[SessionStatus],
                  reasons: list[str], details: list[str]) -> None:
        if statuses.count(SessionStatus.VALID) == len(statuses):  # the usual batch: one pass in C
            return
        findings, cap = self.stats.findings, self.stats.max_findings
        for i, status in enumerate(statuses):
            if status is SessionStatus.VALID:
                continue
            store = stores[i] or UNKNOWN_STORE
            self.stats.findings_total += 1
            self.reasons[(store, status.value, reasons[i])] += 1
            if len(findings) < cap:
                findings.append({"redacted_key": redact_key(batch.column("key")[i].as_py()), "store": store,
                                 "status": status.value, "reason": reasons[i], "detail": details[i]})

    def _ttl(self, expire: pa.Array) -> None:
        has = np.asarray(expire.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        remaining = pc.fill_null(expire, 0).to_numpy()[has] - self.now_ms
        self.ttl[:-1] += np.bincount(np.searchsorted(_TTL_EDGES, remaining, side="right"), minlength=len(TTL_BUCKETS) - 1)
        self.ttl[-1] += int((~has).sum())
        self.stats.expiring_within_1h += int(((remaining > 0) & (remaining <= HOUR_MS)).sum())
        self.stats.expiring_within_24h += int(((remaining > 0) & (remaining <= DAY_MS)).sum())

    def _store_sizes(self, start: int, sizes: np.ndarray) -> None:
        end = start + len(sizes)
        if end > len(self.sizes):  # only if a part holds more rows than its manifest says
            self.sizes = np.resize(self.sizes, max(end, 2 * len(self.sizes)))
        self.sizes[start:end] = sizes

    def _top(self, batch: pa.RecordBatch, sizes: np.ndarray, stores: list[str | None], start: int) -> None:
        picks = np.arange(len(sizes))
        if len(sizes) > TOP_K:  # the batch's own top K, ties to the earliest rows (as the heap breaks them)
            kth = np.partition(sizes, -TOP_K)[-TOP_K]
            above = np.flatnonzero(sizes > kth)
            picks = np.concatenate([above, np.flatnonzero(sizes == kth)[: TOP_K - len(above)]])
        for i in picks.tolist():
            item = (int(sizes[i]), -(self.first_row + start + i))
            if len(self.top) == TOP_K and item <= self.top[0][:2]:
                continue
            entry = {"redacted_key": redact_key(batch.column("key")[i].as_py()), "size_bytes": item[0],
                     "type": batch.column("type")[i].as_py(), "store": stores[i] or UNKNOWN_STORE}
            (heapq.heapreplace if len(self.top) == TOP_K else heapq.heappush)(self.top, (*item, entry))

    def merge(self, other: _Accumulator) -> None:
        """Fold in the accumulator of the rows that follow this one's."""
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
        by_type: Counter[str] = Counter()
        for name, count in self.by_type.items():  # a snapshot's type column could hold any text
            by_type[name if name in REDIS_TYPES else OTHER_TYPE] += count
        s.by_type = dict(sorted(by_type.items()))
        s.by_status = {status: 0 for status in STATUSES}
        s.by_store = {}
        pairs: Counter[tuple[str, str]] = Counter()
        for (store, status), count in self.pairs.items():
            pairs[(store or UNKNOWN_STORE, status.value)] += count
        for (store, status), count in sorted(pairs.items()):
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
    mapper: parallel.Mapper = parallel.map_ordered,
) -> SnapshotStats:
    """Stream every part of `snapshot` once and return its audit statistics.

    `now_ms` (default: now) is the instant TTLs and session expiry are judged against;
    `max_age_ms` passes per-store maximum ages to `classify` (e.g. aiohttp's max_age).
    Only the parts listed in `snapshot.parts` are read, so a caller may leave out parts that
    failed validation. `workers` processes (default: one per core, one process for small
    snapshots) share runs of row groups, or whatever `mapper` runs `slice_stats` with (a task
    per slice on a Dask cluster); the result is the same whatever their number.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else int(now_ms)
    rows = sum(p.rows for p in snapshot.parts)
    n = parallel.worker_count(workers, rows)
    # Several slices a process, so a process slowed down by other work gets fewer of them.
    slices = 1 if n < 2 else -(-SLICES_PER_WORKER * n // max(1, len(snapshot.parts)))
    tasks, first_row = [], 0
    for part in snapshot.parts:
        tasks += [(snapshot.fs, snapshot.path, snapshot.snapshot_id, part, first_row, (k, slices), now_ms, max_age_ms,
                   max_findings, batch_size) for k in range(slices)]
        first_row += part.rows
    total = _Accumulator(snapshot.snapshot_id, now_ms, max_findings, rows=rows)
    for acc in mapper(slice_stats, tasks, n, snapshot.fs):  # in row order: findings keep it
        total.merge(acc)
    return total.finish(snapshot)


def slice_stats(fs, path: str, snapshot_id: str, part: PartInfo, part_first_row: int, slice_: tuple[int, int],
                 now_ms: int, max_age_ms, max_findings: int, batch_size: int) -> _Accumulator:
    """The aggregates of slice k of n of a part (a contiguous run of its row groups)."""
    k, n = slice_
    with fs.open(storage.join(path, PARTS, part.name), "rb") as fh:
        pf = pq.ParquetFile(fh, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
        groups = pf.metadata.num_row_groups
        mine = list(range(k * groups // n, (k + 1) * groups // n))
        before = sum(pf.metadata.row_group(g).num_rows for g in range(mine[0] if mine else 0))
        acc = _Accumulator(snapshot_id, now_ms, max_findings, part_first_row + before,
                           rows=sum(pf.metadata.row_group(g).num_rows for g in mine))
        if mine:
            for batch in pf.iter_batches(batch_size=batch_size, columns=list(COLUMNS), row_groups=mine):
                acc.add(batch, max_age_ms)
    return acc
