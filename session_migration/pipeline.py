"""The one place where a source meets a sink: `copy`, the loop every copy runs, and the backup
built on it (Redis -> snapshot).

`copy(reads, sink, take, ...)` groups a source's reads (consecutive reads of one pattern or
part, up to `group_rows` rows: de-duplication and counting cost about as much per call for
1,000 rows as for 10,000), lets `take` turn each group into the batches to write (de-duplicate,
count, select, rename, ...), writes them, and every `commit_rows` rows, at a read's boundary
(always a resume point), commits the sink and reports the position: that is where checkpoints
are saved. Backups (in this process and in worker processes), pre-images, restores and
transfers all copy this way.

A backup is resumable: every `part_rows` rows the part is finished and the checkpoint records
(for each unit: pattern, cursor; parts, counters). A unit of a standalone server is a SCAN
segment, of a Redis Cluster a master (`sources/cluster.py`). A small database is read and
written in this process (with a prefetch thread, units in turn); a large one by several worker
processes, one per unit (`backup_workers`). A cluster's backup ends with the re-walk of the
slots that moved during it, in this process. A backup started again with the same snapshot id continues after
its last completed part and produces the same rows as an uninterrupted run over the same data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import io
import posixpath
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__, parallel, storage
from .budget import GROUP_BYTES
from .checkpoint import BackupCheckpoint, load_checkpoint, remove_checkpoint
from .counters import BackupCounters
from .endpoints import RedisEndpoint
from .errors import InvalidParameter
from .preflight import check_snapshot_free
from .redis_glob import ScopeMatcher
from .options import BackupOptions
from .schema import FORMAT_NAME, FORMAT_VERSION, schema_description
from .seen import SeenKeys
from .signing import Keyring, resolve
from .state import differences
from .sinks import Sink
from .sinks.snapshot import SnapshotSink
from .manifest import MAX_PARTS, PURPOSE as MANIFEST_PURPOSE
from .snapshot import MANIFEST, PARTS, Snapshot, manifest_bytes, new_snapshot_id, open_snapshot, snapshot_dir
from .prefetch import prefetch
from .sources import Position, Read
from .sources.cluster import ClusterSource, open_source
from .sources.redis import RedisSource, ServerInfo
from .backup_workers import copy_in_processes, next_part_indexes, shareable
from .cluster import SLOTS, from_manifest
from .sources.segments import WHOLE, segment_fraction, split


@dataclass(frozen=True)
class BackupProgress:
    snapshot_id: str
    keys: int
    bytes: int
    vanished: int
    pattern: str
    pattern_index: int
    patterns: int
    fraction: float  # rough 0..1 estimate of the whole job
    parts: int


ProgressFn = Callable[[BackupProgress], None]


@dataclass
class BackupResult:
    snapshot_id: str
    url: str | None  # committed snapshot; None for a dry run
    counters: BackupCounters
    dry_run: bool = False
    resumed_parts: int = 0
    estimated_bytes: int | None = None
    manifest: dict[str, Any] | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """Plain JSON for `--json`, artifacts and notebooks."""
        data = {
            "snapshot": self.url,
            "snapshot_id": self.snapshot_id,
            "dry_run": self.dry_run,
            **self.counters.as_dict(),
        }
        if self.manifest:
            data["parts"] = len(self.manifest["parts"])
            data["snapshot_bytes"] = sum(p["bytes"] for p in self.manifest["parts"])
        if self.resumed_parts:
            data["resumed_parts"] = self.resumed_parts
        if self.estimated_bytes is not None:
            data["estimated_snapshot_bytes"] = self.estimated_bytes
        return data


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


# Below this many keys in the database, starting worker processes costs more than it saves.
PARALLEL_MIN_KEYS = 50_000
# Worker processes by default only from this many cores on: on 2 cores shared with the server,
# one process (a reading thread, Parquet encoding outside the GIL) already keeps both busy, and
# two were ~10% slower (digests to the coordinator, two imports; docs/benchmarks.md).
PARALLEL_MIN_CPUS = 4
PRESIZE_MAX_KEYS = 1 << 20  # the de-duplication table is allocated for up to this many keys (24 MB)


class _Job:
    """State of one backup run; `run_backup` is its only user."""

    def __init__(self, source: RedisSource | ClusterSource, options: BackupOptions, progress: ProgressFn | None):
        self.source = source
        self.cluster = isinstance(source, ClusterSource)
        self.options = options
        self.progress = progress
        self.dbsize = source.dbsize()
        # sized up front for the database (if not huge: it may hold far more than sessions), so
        # memory does not step up as the backup goes
        self.seen = SeenKeys(expected=min(self.dbsize, PRESIZE_MAX_KEYS))
        self.best_fraction = 0.0

    def workers(self, fs: fsspec.AbstractFileSystem) -> int:
        """How many processes a new backup uses (see `backup_workers`)."""
        if not shareable(fs):
            return 1
        if self.options.readers is not None:
            return self.options.readers
        return 2 if parallel.cpu_count() >= PARALLEL_MIN_CPUS and self.dbsize >= PARALLEL_MIN_KEYS else 1

    def units(self, fs: fsspec.AbstractFileSystem) -> int:
        """How many units a new backup has: a cluster's masters, else one per process."""
        return len(self.source.units) if self.cluster else self.workers(fs)

    def report(self, snapshot_id: str, counters: BackupCounters, positions: list[Position], parts: int) -> None:
        if not self.progress:
            return
        n = len(self.options.patterns)
        segments = [WHOLE] * len(positions) if self.cluster else split(len(positions))
        size = self.dbsize // len(positions) if self.cluster else self.dbsize
        fraction = sum(
            (min(index, n) + (segment_fraction(segment, cursor, size) if index < n else 0)) / n
            for segment, (index, cursor) in zip(segments, positions)
        ) / len(positions)
        self.best_fraction = max(self.best_fraction, fraction)  # never step backwards
        pattern_index = min(index for index, _cursor in positions)
        pattern = self.options.patterns[min(pattern_index, n - 1)]
        self.progress(BackupProgress(snapshot_id, counters.keys, counters.bytes, counters.vanished,
                                     pattern, pattern_index, n, self.best_fraction, parts))

    def reads(self, start: Position) -> Iterator[Read]:
        """The source's reads, fetched ahead by a thread of this process."""
        return prefetch(self.source.read(start))

    def take(self, group: list[Read], counters: BackupCounters) -> list[pa.RecordBatch]:
        """Count a group of reads and drop keys already written (SCAN repeats, overlapping
        patterns); the batches left, in order."""
        return dedupe_and_count(group, counters, self.options.patterns, self.seen.add_new)


def dedupe_and_count(group: list[Read], counters: BackupCounters, patterns: tuple[str, ...],
                     fresh: Callable[[list[bytes]], Any]) -> list[pa.RecordBatch]:
    """A backup's `take`: count what was scanned and vanished, keep the rows whose keys `fresh`
    says are new (a boolean mask; SCAN may repeat a key, two patterns may match it), count them
    by type, store and pattern. The batches left, in order."""
    batches = []
    for read in group:
        counters.scanned += read.scanned
        counters.vanished += read.vanished
        if read.rows:
            batches.append(read.batch)
    if not batches:
        return []
    rows = pa.Table.from_batches(batches)  # zero-copy: the batches become its chunks
    mask = fresh(rows.column("key").to_pylist())
    if not mask.all():
        counters.duplicates += int((~mask).sum())
        rows = rows.filter(pa.array(mask))
    for pattern, counted in _by_first_pattern(patterns, group[0].scope, rows):
        counters.add_batch(pattern, counted)
    return [batch for batch in rows.to_batches() if batch.num_rows]


def _by_first_pattern(patterns: tuple[str, ...], scope: int, rows: pa.Table) -> list[tuple[str, pa.Table]]:
    """`rows` found by pattern `scope`'s walk, split by the first pattern (in order) each key
    matches: what a walk of one pattern after the other counts. Walks side by side (worker
    processes, Dask units) can find a key by a later pattern first: a share's last SCAN page
    runs on into the next share, by as far as its COUNT takes it, which differs between walks."""
    if not scope or not rows.num_rows:
        return [(patterns[scope], rows)]
    keys = rows.column("key")
    earlier = _matcher(patterns[:scope]).mask(keys)
    if not earlier.any():
        return [(patterns[scope], rows)]
    out = [(patterns[scope], rows.filter(pa.array(~earlier)))]
    claimed = rows.filter(pa.array(earlier))
    for pattern in patterns[:scope]:
        first = _matcher((pattern,)).mask(claimed.column("key"))
        out.append((pattern, claimed.filter(pa.array(first))))
        claimed = claimed.filter(pa.array(~first))
    return [(pattern, part) for pattern, part in out if part.num_rows]


@functools.lru_cache(maxsize=64)
def _matcher(patterns: tuple[str, ...]) -> ScopeMatcher:
    return ScopeMatcher(patterns)


def _groups(reads: Iterator[Read], rows: int) -> Iterator[list[Read]]:
    """Consecutive reads of one scope (pattern, part), until they hold `rows` rows or
    `GROUP_BYTES` bytes (see `budget`). A group ends at a read, so its last position is a valid
    resume point."""
    group: list[Read] = []
    held = held_bytes = 0
    for read in reads:
        if group and read.scope != group[0].scope:
            yield group
            group, held, held_bytes = [], 0, 0
        group.append(read)
        held += read.rows
        held_bytes += read.nbytes
        if held >= rows or held_bytes >= GROUP_BYTES:
            yield group
            group, held, held_bytes = [], 0, 0
    if group:
        yield group


def copy(reads: Iterator[Read], sink: Sink, take: Callable[[list[Read]], list[pa.RecordBatch]], *,
         group_rows: int, commit_rows: int | None = None, on_commit: Callable[[Position, Any], None] | None = None,
         on_group: Callable[[Position], None] | None = None) -> Position | None:
    """Copy `reads` into `sink`: the one loop (see the module's docstring).

    `take(group)` returns the batches to write for a group of reads; every `commit_rows`
    written rows (None: only at the end) and at the end, `sink.commit()` makes them durable and
    `on_commit(position, committed)` hears where the source goes on from and what the sink
    committed. `on_group(position)` follows every group (progress). On any exception, and on
    Ctrl-C, the sink drops what was not committed. Returns the last position."""
    position = None
    pending = 0
    try:
        for group in _groups(reads, group_rows):
            position = group[-1].position
            for batch in take(group):
                sink.write(batch)
                pending += batch.num_rows
            if commit_rows is not None and pending >= commit_rows:
                committed = sink.commit()
                pending = 0
                if on_commit:
                    on_commit(position, committed)
            if on_group:
                on_group(position)
        committed = sink.commit()
    except BaseException:
        sink.abort()
        raise
    if on_commit:
        on_commit(position, committed)
    return position


def run_backup(
    endpoint: RedisEndpoint,
    fs: fsspec.AbstractFileSystem,
    root: str,
    options: BackupOptions,
    progress: ProgressFn | None = None,
    keyring: Keyring | None = None,
) -> BackupResult:
    """Back up the keys matching `options.patterns` into a snapshot under `root`; signed when
    a signing key is configured (`keyring`, default: the environment's)."""
    if options.dry_run:
        return _dry_run(endpoint, options, progress)
    keyring = resolve(keyring)
    snapshot_id = options.snapshot_id or new_snapshot_id()
    path = snapshot_dir(root, snapshot_id)
    storage.check_writable(fs, root)
    check_snapshot_free(fs, root, snapshot_id)
    source = open_source(endpoint, patterns=options.patterns, batch_size=options.batch_size,
                         preserve_ttl=options.preserve_ttl, capture_dump=options.capture_dump)
    try:
        job = _Job(source, options, progress)
        checkpoint = _start_or_resume(job, fs, path, snapshot_id, endpoint, options, keyring)
        resumed_parts = len(checkpoint.parts)
        _copy(job, fs, path, checkpoint)
        manifest = _commit(fs, path, checkpoint, source.info, endpoint, options, keyring, cluster=_cluster_manifest(job))
    finally:
        source.close()
    return BackupResult(
        snapshot_id=snapshot_id,
        url=storage.unstrip(fs, path),
        counters=checkpoint.counters,
        resumed_parts=resumed_parts,
        manifest=manifest,
    )


def _start_or_resume(job: _Job, fs, path: str, snapshot_id: str, endpoint: RedisEndpoint,
                     options: BackupOptions, keyring: Keyring) -> BackupCheckpoint:
    checkpoint = load_checkpoint(fs, path, keyring)
    run_id = job.source.run_id()
    if checkpoint is None:
        checkpoint = BackupCheckpoint(snapshot_id=snapshot_id, started_at=_now(),
                                      source=endpoint.display_url, options=options.for_manifest(),
                                      positions=[(0, 0)] * job.units(fs), source_run_id=run_id, keyring=keyring)
        if job.cluster:
            checkpoint.cluster = {"topology": job.source.topology.as_manifest(), "suspect": []}
        checkpoint.save(fs, path)
        return checkpoint
    check_same_backup(checkpoint, endpoint, options)
    from .backup_units import started_in_units

    if started_in_units(fs, path):
        raise InvalidParameter(f"Snapshot {snapshot_id} was started in units on a task runner (--dask); resume it "
                               "the same way (any Dask cluster that reaches the source and the snapshot will do).")
    if job.cluster != (checkpoint.cluster is not None):
        raise InvalidParameter(f"Snapshot {snapshot_id} was started on a {'' if checkpoint.cluster else 'non-'}cluster "
                               f"source and {endpoint.display_url} is {'' if job.cluster else 'not '}one; use a new snapshot id.")
    if checkpoint.source_run_id not in (None, run_id):
        # Another server answers now (a restart, or a failover behind a Sentinel URL; on a
        # cluster: a master restarted or a slot moved): the saved SCAN cursors mean nothing to
        # its hash table. Walk again from the start; the parts written stay, and the keys in
        # them are dropped as already written (below).
        checkpoint.positions = [(0, 0)] * len(checkpoint.positions)
    checkpoint.source_run_id = run_id
    if job.cluster:
        _resume_units(job.source, checkpoint, len(options.patterns))
    # Rebuild the de-duplication state from the parts already written.
    partial = Snapshot(fs=fs, path=path, manifest={}, parts=checkpoint.parts)
    partial.verify_parts()
    for batch in partial.iter_batches(columns=["key"]):
        job.seen.add_new(batch.column("key").to_pylist())
    return checkpoint


def _resume_units(source: ClusterSource, checkpoint: BackupCheckpoint, patterns: int) -> None:
    """Walk the units the checkpoint's walk started with, each at the address the cluster gives
    now (never one read from the checkpoint: it is untrusted, and would get the credentials);
    the slots whose owner changed since (and those seen moving before the stop) are re-walked
    at the end. A unit that is no longer a master cannot go on: all its slots are re-walked."""
    recorded = from_manifest(checkpoint.cluster["topology"])
    if len(recorded.nodes) != len(checkpoint.positions):
        raise InvalidParameter(f"The checkpoint of snapshot {checkpoint.snapshot_id} does not match its own cluster "
                               "record; delete that snapshot folder and start a new backup.")
    source.since(recorded)
    source.add_suspects(checkpoint.cluster["suspect"])
    masters = {node.node_id: node for node in source.topology.nodes}
    for index, node in enumerate(recorded.nodes):
        if node.node_id not in masters and checkpoint.positions[index][0] < patterns:
            source.add_suspects(s for first, last in node.slots for s in range(max(0, first), min(last, SLOTS - 1) + 1))
            checkpoint.positions[index] = (patterns, 0)
    source.units = tuple(masters.get(node.node_id, node) for node in recorded.nodes)  # a done unit is never read


def check_same_backup(checkpoint: BackupCheckpoint, endpoint: RedisEndpoint, options: BackupOptions) -> None:
    """Refuse to resume a backup with another source or other options than it was started with."""
    recorded = {k: checkpoint.options.get(k) for k in options.identity()}
    if recorded != options.identity() or checkpoint.source != endpoint.display_url:
        differ = [differences(recorded, options.identity(), "options")] if recorded != options.identity() else []
        if checkpoint.source != endpoint.display_url:
            differ.append(differences(checkpoint.source, endpoint.display_url, "source"))
        raise InvalidParameter(
            f"Snapshot {checkpoint.snapshot_id} was started otherwise ({'; '.join(differ)}); resume it with the same "
            "source and options, or use a new snapshot id.")


def _copy(job: _Job, fs, path: str, checkpoint: BackupCheckpoint) -> None:
    if job.cluster:
        _copy_cluster(job, fs, path, checkpoint)
    elif len(checkpoint.positions) > 1:
        _copy_in_processes(job, fs, path, checkpoint)
    else:
        _copy_here(job, fs, path, checkpoint)
    if not checkpoint.parts:  # always at least one part, so readers always find the schema
        first = max(next_part_indexes([], len(checkpoint.positions)))
        checkpoint.parts.append(SnapshotSink(fs, path, first=first, compression=job.options.compression).empty_part())
    checkpoint.positions = [(len(job.options.patterns), 0)] * len(checkpoint.positions)
    job.report(checkpoint.snapshot_id, checkpoint.counters, checkpoint.positions, len(checkpoint.parts))


def _copy_in_processes(job: _Job, fs, path: str, checkpoint: BackupCheckpoint) -> None:
    counters = checkpoint.counters

    def report(positions: list[Position], rows: int) -> None:
        progress = dataclasses.replace(counters, keys=rows)  # bytes and the rest: as of the last part
        job.report(checkpoint.snapshot_id, progress, positions, len(checkpoint.parts))

    units = [(*job.source.unit_endpoint(i), WHOLE) for i in range(len(job.source.units))] if job.cluster else None
    copy_in_processes(job.source.endpoint, job.options, fs, path, checkpoint, job.seen, report, units=units)


def _copy_cluster(job: _Job, fs, path: str, checkpoint: BackupCheckpoint) -> None:
    """The masters (in worker processes, or here in turn), then the re-walk of the slots that
    moved (here); the suspect slots are saved with every part."""
    patterns = len(job.options.patterns)
    pending = [i for i, (index, _cursor) in enumerate(checkpoint.positions) if index < patterns]
    if len(pending) > 1 and job.workers(fs) > 1:
        _copy_in_processes(job, fs, path, checkpoint)
        job.source.observe()  # slots that changed owner while the workers walked
    _copy_units(job, fs, path, checkpoint)
    checkpoint.cluster["suspect"] = []


def _copy_units(job: _Job, fs, path: str, checkpoint: BackupCheckpoint) -> None:
    """The units still to walk, in turn, and the re-walk, through one copy loop; a position is
    (unit, that unit's position), the re-walk's unit the number of units."""
    options, source = job.options, job.source
    done = (len(options.patterns), 0)
    sink = SnapshotSink(fs, path, first=max(next_part_indexes(checkpoint.parts, 1)), compression=options.compression,
                        row_group_rows=options.row_group_rows)

    def positions(position) -> list[Position]:
        unit, within = position
        return [done if u < unit else within if u == unit else p for u, p in enumerate(checkpoint.positions)]

    def part_done(position, parts: list) -> None:
        if parts:
            checkpoint.parts.extend(parts)
            checkpoint.positions = positions(position)
            checkpoint.cluster["suspect"] = sorted(set(checkpoint.cluster["suspect"]) | set(source.suspects))
            checkpoint.save(fs, path)

    starts = dict(enumerate(checkpoint.positions))
    reads = (dataclasses.replace(read, position=(unit, read.position)) for unit, read in source.unit_reads(starts))
    copy(prefetch(reads), sink, lambda group: job.take(group, checkpoint.counters),
         group_rows=min(options.row_group_rows, options.part_rows), commit_rows=options.part_rows,
         on_commit=part_done,
         on_group=lambda position: job.report(checkpoint.snapshot_id, checkpoint.counters, positions(position),
                                              len(checkpoint.parts)))


def _copy_here(job: _Job, fs, path: str, checkpoint: BackupCheckpoint) -> None:
    options = job.options
    sink = SnapshotSink(fs, path, first=len(checkpoint.parts), compression=options.compression,
                        row_group_rows=options.row_group_rows)

    def part_done(position: Position, parts: list) -> None:
        if parts:
            checkpoint.parts.extend(parts)
            checkpoint.positions = [position]
            checkpoint.save(fs, path)

    copy(job.reads(checkpoint.positions[0]), sink, lambda group: job.take(group, checkpoint.counters),
         group_rows=min(options.row_group_rows, options.part_rows), commit_rows=options.part_rows,
         on_commit=part_done,
         on_group=lambda position: job.report(checkpoint.snapshot_id, checkpoint.counters, [position],
                                              len(checkpoint.parts)))


def _cluster_manifest(job: _Job) -> list[dict[str, Any]] | None:
    """The cluster's topology at the end of the backup, each master with its server and version."""
    if not job.cluster:
        return None
    return [{**node, **info} for node, info in zip(job.source.topology.as_manifest(), job.source.server_infos())]


def _commit(fs, path: str, checkpoint: BackupCheckpoint, info: ServerInfo, endpoint: RedisEndpoint,
            options: BackupOptions, keyring: Keyring, cluster: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Remove stray part files, write the (signed) manifest, the commit marker; drop the checkpoint."""
    if len(checkpoint.parts) > MAX_PARTS:
        raise InvalidParameter(f"The snapshot would have {len(checkpoint.parts):,} parts, more than the format's "
                               f"{MAX_PARTS:,}; back up with a larger part_rows.")
    listed = {p.name for p in checkpoint.parts}
    parts_dir = storage.join(path, PARTS)
    if fs.exists(parts_dir):
        for entry in fs.ls(parts_dir, detail=False):
            if entry.rstrip("/").rsplit("/", 1)[-1] not in listed:
                fs.rm_file(entry)
        storage.sync_directory(fs, parts_dir)  # the parts' names durable before the manifest names them
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "snapshot_id": checkpoint.snapshot_id,
        "started_at": checkpoint.started_at,
        "finished_at": _now(),
        "tool": "redis-session-migration",
        "tool_version": __version__,
        "source": {"url": endpoint.display_url, **info.as_dict(), **({"cluster": cluster} if cluster else {})},
        "scope": {"patterns": list(options.patterns), "dbs": [endpoint.db]},
        "options": options.for_manifest(),
        "parts": [p.as_dict() for p in checkpoint.parts],
        "totals": checkpoint.counters.as_dict(),
        "schema": schema_description(),
    }
    storage.write_atomic(fs, storage.join(path, MANIFEST), manifest_bytes(keyring.sign(manifest, MANIFEST_PURPOSE)))
    storage.sync_directory(fs, posixpath.dirname(path))  # and the snapshot's own name in its root
    remove_checkpoint(fs, path)
    return open_snapshot(fs, path, verify=False, keyring=keyring).manifest


def write_snapshot(
    fs: fsspec.AbstractFileSystem,
    root: str,
    reads: Iterable[Read],
    endpoint: RedisEndpoint,
    info: ServerInfo,
    options: BackupOptions,
    keyring: Keyring | None = None,
) -> BackupResult:
    """Copy `reads` (of `options.patterns`, `Read.scope` the pattern index) into a new
    snapshot and commit it: the pre-image of a cleanup or a migration. Not resumable: these
    snapshots are small and written just before a change."""
    keyring = resolve(keyring)
    snapshot_id = options.snapshot_id or new_snapshot_id()
    path = snapshot_dir(root, snapshot_id)
    storage.check_writable(fs, root)
    check_snapshot_free(fs, root, snapshot_id)
    checkpoint = BackupCheckpoint(snapshot_id=snapshot_id, started_at=_now(), source=endpoint.display_url,
                                  options=options.for_manifest())
    seen = SeenKeys()
    sink = SnapshotSink(fs, path, compression=options.compression, row_group_rows=options.row_group_rows)
    copy(iter(reads), sink, lambda group: dedupe_and_count(group, checkpoint.counters, options.patterns, seen.add_new),
         group_rows=options.row_group_rows, commit_rows=options.part_rows,
         on_commit=lambda _position, parts: checkpoint.parts.extend(parts))
    if not checkpoint.parts:
        checkpoint.parts.append(sink.empty_part())
    manifest = _commit(fs, path, checkpoint, info, endpoint, options, keyring)
    return BackupResult(snapshot_id=snapshot_id, url=storage.unstrip(fs, path), counters=checkpoint.counters,
                        manifest=manifest)


# How many rows of a dry run are compressed for real to estimate the snapshot's size.
_ESTIMATE_SAMPLE_ROWS = 50_000


class _Sample:
    """A dry run's sink: keeps the first rows, to compress them for real for the size estimate."""

    def __init__(self, rows: int):
        self.batches: list[pa.RecordBatch] = []
        self.wanted = rows

    def write(self, batch: pa.RecordBatch) -> None:
        if self.wanted > 0:
            self.batches.append(batch)
            self.wanted -= batch.num_rows

    def commit(self) -> list:
        return []

    def abort(self) -> None:
        pass

    def compressed_ratio(self, compression: str) -> tuple[float, int]:
        """(compressed bytes per payload byte, compressed bytes) of the sample."""
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_batches(self.batches), buf,
                       compression=None if compression == "none" else compression)
        payload = sum(b.column("size_bytes").to_numpy().sum() for b in self.batches)
        return buf.tell() / max(1, payload), buf.tell()


def _dry_run(endpoint: RedisEndpoint, options: BackupOptions, progress: ProgressFn | None) -> BackupResult:
    """Scan and read exactly as a backup would, write nothing, and estimate the snapshot size."""
    source = open_source(endpoint, patterns=options.patterns, batch_size=options.batch_size,
                         preserve_ttl=options.preserve_ttl, capture_dump=options.capture_dump)
    counters = BackupCounters()
    sample = _Sample(_ESTIMATE_SAMPLE_ROWS)
    try:
        job = _Job(source, options, progress)
        copy(job.reads((0, 0)), sample, lambda group: job.take(group, counters),
             group_rows=min(options.row_group_rows, options.part_rows),
             on_group=lambda position: job.report("dry-run", counters, [position], 0))
    finally:
        source.close()
    estimate = 0
    if sample.batches:
        ratio, compressed = sample.compressed_ratio(options.compression)
        estimate = int(ratio * counters.bytes) if counters.bytes else compressed
    return BackupResult(snapshot_id=options.snapshot_id or "dry-run", url=None, counters=counters,
                        dry_run=True, estimated_bytes=estimate)
