"""A backup in units, one per SCAN segment: steps a task runner can run anywhere at once.

With a task runner that spreads tasks over processes or machines (Prefect's Dask task runner,
`--dask`), a backup is three kinds of steps instead of one:

1. `start_units`: the snapshot's checkpoint (`checkpoint.json`) is created, or read back to
   resume; its `positions` (one per unit) fix the number of units.
2. `back_up_unit`, once per unit, anywhere, all at the same time: unit `w` of `n` walks SCAN
   segment `w` of `n` of each pattern (`sources/segments.py`), drops the keys it already
   wrote itself, writes its own parts (numbered w, w+n, w+2n, ... as `backup_workers` does)
   and, after each part, its own checkpoint `units/<w>-of-<n>.json` (position, parts,
   counters). Run again (a retry, a rerun with the same snapshot id) it goes on after its last
   part; a finished unit returns at once.
3. `commit_units`, once every unit is done. A key can be in two units' parts (the last SCAN
   call of a segment runs on into the next one, and on a tiny Valkey table segments share
   buckets), so one pass over the parts' keys, in unit order, finds the repeats, writes the
   few parts that hold one again without it (under a new part name: the unit checkpoints
   still name the old file, so a commit cut short starts over cleanly) and takes back what
   they counted (each part records which pattern's walk wrote which of its rows). Then the
   manifest, last, and the unit checkpoints go.

A unit is a small description (`BackupUnit`: index and count), resolved to a segment inside
the step: it travels to a worker as two numbers, and can later name a cluster node's segment.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import storage
from .backup_workers import _PART_INDEX, next_part_indexes, shareable
from .checkpoint import BackupCheckpoint, load_checkpoint
from .counters import BackupCounters
from .endpoints import RedisEndpoint, translate_redis_errors
from .errors import InvalidParameter
from .options import BackupOptions
from .pipeline import PRESIZE_MAX_KEYS, BackupResult, _commit, _now, check_same_backup, copy, dedupe_and_count
from .prefetch import prefetch
from .preflight import check_snapshot_free
from .seen import SeenKeys
from .signing import Keyring, resolve
from .sinks.snapshot import PartWriter, SnapshotSink
from .snapshot import PARTS, PartInfo, Snapshot, snapshot_dir
from .sources.redis import RedisSource, server_info
from .sources.segments import Segment, split
from .state import StateFile

UNITS = "units"  # <snapshot>/units/<w>-of-<n>.json: each unit's own checkpoint, until the commit


@dataclass(frozen=True)
class BackupUnit:
    """Unit `index` of `count`: SCAN segment `index` of `count` of every pattern's walk."""

    index: int
    count: int

    @property
    def segment(self) -> Segment:
        return split(self.count)[self.index]

    @property
    def name(self) -> str:
        return f"{self.index}-of-{self.count}"


@dataclass
class UnitCheckpoint(StateFile):
    snapshot_id: str
    index: int
    count: int
    position: tuple[int, int] = (0, 0)  # (pattern index, cursor) to go on from; cursor 0: the segment's start
    parts: list[PartInfo] = field(default_factory=list)
    runs: list[list[list[int]]] = field(default_factory=list)  # per part: [pattern index, rows] in row order
    counters: BackupCounters = field(default_factory=BackupCounters)
    done: bool = False
    keyring: Keyring | None = field(default=None, repr=False, compare=False)  # signs it; never written

    kind = "backup unit checkpoint"
    purpose = "backup-unit-checkpoint"
    remedy = "delete that snapshot folder and start a new backup"

    def to_dict(self) -> dict[str, Any]:
        return {"snapshot_id": self.snapshot_id, "index": self.index, "count": self.count,
                "position": list(self.position), "parts": [p.as_dict() for p in self.parts], "runs": self.runs,
                "counters": self.counters.as_dict(), "done": self.done}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnitCheckpoint:
        index, cursor = data["position"]
        return cls(snapshot_id=data["snapshot_id"], index=int(data["index"]), count=int(data["count"]),
                   position=(int(index), int(cursor)), parts=[PartInfo(**p) for p in data["parts"]],
                   runs=[[[int(scope), int(rows)] for scope, rows in part] for part in data["runs"]],
                   counters=BackupCounters.from_dict(data["counters"]), done=bool(data["done"]))

    def _checked(self) -> UnitCheckpoint:
        if len(self.runs) != len(self.parts) or any(sum(r for _s, r in runs) != part.rows
                                                    for runs, part in zip(self.runs, self.parts)):
            raise ValueError("its parts and their pattern runs disagree")
        if not 0 <= self.index < self.count:
            raise ValueError("its unit index is out of range")
        return self

    def save(self, fs: fsspec.AbstractFileSystem, snapshot_path: str) -> None:
        self.write(fs, unit_path(snapshot_path, BackupUnit(self.index, self.count)))


def unit_path(snapshot_path: str, unit: BackupUnit) -> str:
    return storage.join(snapshot_path, UNITS, f"{unit.name}.json")


def started_in_units(fs: fsspec.AbstractFileSystem, snapshot_path: str) -> bool:
    """Whether some unit of this unfinished snapshot has written its checkpoint."""
    folder = storage.join(snapshot_path, UNITS)
    return fs.exists(folder) and bool(fs.ls(folder, detail=False))


def _plan(fs: fsspec.AbstractFileSystem, path: str, snapshot_id: str, endpoint: RedisEndpoint,
          options: BackupOptions, keyring: Keyring) -> BackupCheckpoint:
    checkpoint = load_checkpoint(fs, path, keyring)
    if checkpoint is None:
        raise InvalidParameter(f"Snapshot {snapshot_id} has no checkpoint at {storage.unstrip(fs, path)}: its units "
                               "run only after the backup started (start_units).")
    check_same_backup(checkpoint, endpoint, options)
    return checkpoint


def _unit_record(fs: fsspec.AbstractFileSystem, path: str, plan: BackupCheckpoint, unit: BackupUnit,
                 keyring: Keyring) -> UnitCheckpoint:
    where = unit_path(path, unit)
    record = UnitCheckpoint.read(fs, where, keyring)
    if record is None:  # a unit that has not begun starts where a process-started backup left its segment
        return UnitCheckpoint(plan.snapshot_id, unit.index, unit.count, position=plan.positions[unit.index],
                              keyring=keyring)
    record.check_belongs(fs, where, snapshot_id=plan.snapshot_id, index=unit.index, count=unit.count)
    return record


# -- the steps -----------------------------------------------------------------------------------


def start_units(endpoint: RedisEndpoint, fs: fsspec.AbstractFileSystem, root: str, options: BackupOptions,
                units: int, keyring: Keyring | None = None) -> dict[str, Any]:
    """Create (or, for a resumed snapshot, check) the checkpoint that fixes the units; returns
    the units to run, as (index, count) pairs."""
    if options.snapshot_id is None:
        raise InvalidParameter("A backup in units needs its snapshot id fixed before it starts.")
    if not shareable(fs):
        raise InvalidParameter("A backup in units writes its parts from other processes, which do not see this "
                               "process's memory:// filesystem; use a folder every worker shares, or an object store.")
    _refuse_a_cluster(endpoint)
    keyring = resolve(keyring)
    path = snapshot_dir(root, options.snapshot_id)
    storage.check_writable(fs, root)
    check_snapshot_free(fs, root, options.snapshot_id)
    checkpoint = load_checkpoint(fs, path, keyring)
    if checkpoint is None:
        split(units)  # a power of two, or one clear sentence
        checkpoint = BackupCheckpoint(snapshot_id=options.snapshot_id, started_at=_now(), source=endpoint.display_url,
                                      options=options.for_manifest(), positions=[(0, 0)] * units, keyring=keyring)
        checkpoint.save(fs, path)
    check_same_backup(checkpoint, endpoint, options)
    count = len(checkpoint.positions)  # a resumed snapshot keeps the units it was started with
    records = [_unit_record(fs, path, checkpoint, BackupUnit(i, count), keyring) for i in range(count)]
    return {"snapshot_id": options.snapshot_id, "units": [[i, count] for i in range(count)],
            "resumed_parts": len(checkpoint.parts) + sum(len(r.parts) for r in records),
            "resumed_keys": checkpoint.counters.keys + sum(r.counters.keys for r in records)}


def _refuse_a_cluster(endpoint: RedisEndpoint) -> None:
    """Units are SCAN segments of one server; a cluster's masters are walked (and their moved
    slots re-walked) by the backup of `pipeline.py`, here or one worker process per master."""
    from .cluster import connect_and_discover

    client, topology = connect_and_discover(endpoint)
    if client is not None:
        client.close()
    if topology is not None:
        raise InvalidParameter(f"{endpoint.display_url} is a Redis Cluster node: a backup on Dask splits one server's SCAN "
                               "walk into units, which a cluster does not have yet; back it up without --dask (its "
                               "masters are walked one by one, or one worker process each with --readers).")


def back_up_unit(endpoint: RedisEndpoint, fs: fsspec.AbstractFileSystem, root: str, options: BackupOptions,
                 unit: BackupUnit, keyring: Keyring | None = None) -> dict[str, Any]:
    """Read and write one unit's segment of every pattern, checkpointed after each part."""
    keyring = resolve(keyring)
    path = snapshot_dir(root, options.snapshot_id)
    plan = _plan(fs, path, options.snapshot_id, endpoint, options, keyring)
    if unit.count != len(plan.positions):
        raise InvalidParameter(f"Snapshot {plan.snapshot_id} was started in {len(plan.positions)} units, not {unit.count}.")
    record = _unit_record(fs, path, plan, unit, keyring)
    resumed = len(record.parts)
    started = time.monotonic()
    if not record.done:
        _copy_unit(endpoint, fs, path, options, unit, plan, record)
    return {"unit": unit.name, "parts": len(record.parts), "keys": record.counters.keys, "resumed_parts": resumed,
            "seconds": round(time.monotonic() - started, 3)}


def _copy_unit(endpoint: RedisEndpoint, fs: fsspec.AbstractFileSystem, path: str, options: BackupOptions,
               unit: BackupUnit, plan: BackupCheckpoint, record: UnitCheckpoint) -> None:
    seen = SeenKeys()
    written = Snapshot(fs=fs, path=path, manifest={}, parts=record.parts)
    written.verify_parts()
    for batch in written.iter_batches(columns=["key"]):  # what this unit wrote before: not again
        seen.add_new(batch.column("key").to_pylist())
    source = RedisSource(endpoint, patterns=options.patterns, batch_size=options.batch_size, segment=unit.segment,
                         preserve_ttl=options.preserve_ttl, capture_dump=options.capture_dump)
    first = next_part_indexes(plan.parts + record.parts, unit.count)[unit.index]
    sink = SnapshotSink(fs, path, first=first, step=unit.count, compression=options.compression,
                        row_group_rows=options.row_group_rows)
    runs: list[list[int]] = []  # of the part being written

    def counted(reads: list) -> list[pa.RecordBatch]:
        batches = dedupe_and_count(reads, record.counters, options.patterns, seen.add_new)
        rows = sum(batch.num_rows for batch in batches)
        if rows and runs and runs[-1][0] == reads[0].scope:
            runs[-1][1] += rows
        elif rows:
            runs.append([reads[0].scope, rows])
        return batches

    def part_done(position: tuple[int, int], parts: list[PartInfo]) -> None:
        if parts:  # a commit finishes at most the one part being written
            record.parts.extend(parts)
            record.runs.append([list(run) for run in runs])
            runs.clear()
            record.position = position
            record.save(fs, path)

    written = [record.position]  # where the rows handed to `copy` so far go on from

    def take(group: list) -> list[pa.RecordBatch]:
        before, written[0] = written[0], group[-1].position
        if group[-1].position[1] != 0 or unit.count == 1:
            return counted(group)
        # The last read of a pattern's walk in this segment: its last SCAN call may have run on
        # into the next segment, whose unit reads those keys too. Its rows go into a small part
        # of their own, so the commit's repeats pass rewrites that small part, not a large one.
        for batch in counted(group[:-1]) if len(group) > 1 else []:
            sink.write(batch)
        part_done(group[-2].position if len(group) > 1 else before, sink.commit())
        for batch in counted(group[-1:]):
            sink.write(batch)
        part_done(group[-1].position, sink.commit())
        return []

    try:
        copy(prefetch(source.read(record.position)), sink, take, group_rows=min(options.row_group_rows, options.part_rows),
             commit_rows=options.part_rows, on_commit=part_done)
    finally:
        source.close()
    record.position, record.done = (len(options.patterns), 0), True
    record.save(fs, path)


def commit_units(endpoint: RedisEndpoint, fs: fsspec.AbstractFileSystem, root: str, options: BackupOptions,
                 keyring: Keyring | None = None) -> BackupResult:
    """Once every unit is done: drop keys two units wrote, write the manifest (last), and drop
    the unit checkpoints."""
    keyring = resolve(keyring)
    path = snapshot_dir(root, options.snapshot_id)
    checkpoint = _plan(fs, path, options.snapshot_id, endpoint, options, keyring)
    count = len(checkpoint.positions)
    records = [_unit_record(fs, path, checkpoint, BackupUnit(i, count), keyring) for i in range(count)]
    unfinished = [BackupUnit(i, count).name for i, record in enumerate(records) if not record.done]
    if unfinished:
        raise InvalidParameter(f"Unit(s) {', '.join(unfinished)} of snapshot {checkpoint.snapshot_id} are not done; "
                               "run the backup again with the same snapshot id to finish them.")
    resumed_parts = len(checkpoint.parts)
    parts = list(checkpoint.parts)
    runs: list[list[list[int]] | None] = [None] * len(parts)  # parts of a process-started backup: one pattern run each
    for record in records:
        parts += record.parts
        runs += record.runs
        checkpoint.counters.add(record.counters)
    if count > 1 or resumed_parts:
        checkpoint.parts = drop_repeats(fs, path, parts, runs, options, checkpoint.counters)
    else:  # one unit, from the start: it kept every key once itself (`_copy_unit`); 0.5 s per 1M keys saved
        checkpoint.parts = parts
    if not checkpoint.parts:  # always at least one part, so readers always find the schema
        first = max(next_part_indexes([], count))
        checkpoint.parts.append(SnapshotSink(fs, path, first=first, compression=options.compression).empty_part())
    checkpoint.positions = [(len(options.patterns), 0)] * count
    client = endpoint.connect()
    try:
        with translate_redis_errors(endpoint):
            info = server_info(client)
    finally:
        client.close()
    manifest = _commit(fs, path, checkpoint, info, endpoint, options, keyring)
    fs.rm(storage.join(path, UNITS), recursive=True)
    return BackupResult(snapshot_id=checkpoint.snapshot_id, url=storage.unstrip(fs, path),
                        counters=checkpoint.counters, resumed_parts=resumed_parts, manifest=manifest)


def drop_repeats(fs: fsspec.AbstractFileSystem, path: str, parts: list[PartInfo],
                 runs: list[list[list[int]] | None], options: BackupOptions, counters: BackupCounters) -> list[PartInfo]:
    """The parts (in their order) with every key kept once: a part that repeats keys of a larger
    part (or of an earlier one of its size) is written again without them, under a new name;
    `counters` lose what the dropped rows counted, under the pattern whose walk wrote them."""
    seen = SeenKeys(expected=min(sum(p.rows for p in parts), PRESIZE_MAX_KEYS))
    next_index = 1 + max((int(_PART_INDEX.search(p.name).group(1)) for p in parts), default=-1)
    kept = list(parts)
    # Largest parts first: a repeat is dropped from the later part, and repeats sit in the small
    # parts that end each unit's walk of a pattern (`back_up_unit`), so only those are rewritten.
    order = sorted(range(len(parts)), key=lambda i: -parts[i].rows)

    def part_keys() -> Iterator[list[bytes]]:  # read (outside the GIL) while the last part's keys are hashed
        for i in order:
            with fs.open(storage.join(path, PARTS, parts[i].name), "rb") as f:
                yield pq.ParquetFile(f, pre_buffer=False).read(columns=["key"]).column("key").to_pylist()

    with contextlib.closing(prefetch(part_keys(), depth=2)) as keys_of_parts:
        for i, keys in zip(order, keys_of_parts):
            fresh = seen.add_new(keys)
            if not fresh.all():
                kept[i] = _rewrite_without(fs, path, parts[i], runs[i], fresh, next_index, options, counters)
                next_index += 1
    return kept


def _rewrite_without(fs: fsspec.AbstractFileSystem, path: str, part: PartInfo, part_runs: list[list[int]] | None,
                     fresh: np.ndarray, index: int, options: BackupOptions, counters: BackupCounters) -> PartInfo:
    """`part` written again as part `index` with only its `fresh` rows; `counters` lose the others."""
    with fs.open(storage.join(path, PARTS, part.name), "rb") as f:
        table = pq.ParquetFile(f, pre_buffer=False).read()
    scopes = np.repeat(*zip(*(part_runs or [[0, part.rows]])))
    for scope in np.unique(scopes[~fresh]):
        counters.add_batch(options.patterns[scope], table.filter(pa.array(~fresh & (scopes == scope))), sign=-1)
    counters.duplicates += int((~fresh).sum())
    writer = PartWriter(fs, path, index, compression=options.compression, row_group_rows=options.row_group_rows)
    for batch in table.filter(pa.array(fresh)).to_batches():
        writer.write(batch)
    return writer.finish()
