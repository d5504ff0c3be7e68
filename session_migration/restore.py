"""Restore a snapshot into a Redis/Valkey target: validate, plan, then write part by part.

Order of work, so that nothing is written unless everything checks out:

1. `validate_snapshot` (manifest, every part's sha256/rows/schema, duplicate and out-of-scope
   rows). An invalid snapshot raises `SnapshotInvalid` listing its problems; nothing is written.
2. A planning pass over the `key` and `expire_at_ms` columns (only when needed): a rename that
   makes two keys collide is refused; with `on_conflict="fail"` pipelined EXISTS over every row
   that would be written refuses the restore if any exists on the target; a dry run returns
   the plan (would create / overwrite / skip / expire on arrival) and stops there.
3. One part at a time: rows are selected by the restore's patterns, renamed, given their
   expiry by the TTL policy (all columnar, per batch), and written by `RedisSink`: strings as
   pipelined SETs sent without waiting for the replies of the batch before. After each part
   the checkpoint `<snapshot>/restores/<id>.json` records it (atomically); a re-run with the
   same target and options skips the parts already done. Every write sets the whole key, so a
   part interrupted half-way is simply written again.

`run_restore` does all of it in one call; the Prefect flow calls `check_restore`,
`restore_part` (one task per part) and `finish_restore` itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa

from . import storage
from .endpoints import RedisEndpoint
from .errors import InvalidParameter, ScopeViolation, SnapshotInvalid, TerminalError
from .options import RestoreOptions
from .plan import (
    PLAN_KEYS, RenameCollisions, RunCheckpoint, WriteRules, count_outcome, new_plan, refuse_conflicts, run_summary,
    write_batch,
)
from .prefetch import prefetch
from .redaction import redact_key
from .redis_glob import ScopeMatcher
from .sinks.redis import RedisSink, SinkTotals
from .snapshot import PartInfo, Snapshot, open_snapshot, verify_part
from .validation import validate_snapshot

RESTORES = "restores"


class RestoreConflict(TerminalError):
    """`on_conflict="fail"` and keys the restore would write already exist on the target."""


class RenameCollision(InvalidParameter):
    """A rename would make two snapshot keys the same target key."""


# -- counters, progress, result ----------------------------------------------------------------


@dataclass
class RestoreCounters(SinkTotals):
    rows: int = 0  # rows read from the snapshot's parts
    not_selected: int = 0  # rows outside the restore's patterns (left alone)
    written: int = 0  # keys written = created + overwritten
    created: int = 0
    overwritten: int = 0
    skipped_existing: int = 0  # on_conflict="skip" (or a resumed "fail"): the target's key kept
    expired_on_arrival: int = 0  # already expired by the TTL policy: not written
    below_min_ttl: int = 0  # would expire within min_ttl_ms: not written
    dump_restored: int = 0  # written by RESTORE of the DUMP payload
    dump_fallbacks: int = 0  # payload refused by the target; written typed instead
    typed_writes: int = 0  # written by SET / MULTI ... EXEC

    def add(self, other: RestoreCounters) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True)
class RestoreProgress:
    snapshot_id: str
    part: str
    parts_done: int  # parts completed and recorded in the checkpoint
    parts: int
    keys: int  # rows processed so far in this run
    written: int
    fraction: float


ProgressFn = Callable[[RestoreProgress], None]


@dataclass
class RestoreResult:
    snapshot: str
    snapshot_id: str
    target: str
    counters: RestoreCounters
    dry_run: bool = False
    parts: int = 0
    resumed_parts: int = 0
    checkpoint: str | None = None
    plan: dict[str, int] | None = None
    server: str | None = None

    def summary(self) -> dict[str, Any]:
        head = {"snapshot": self.snapshot, "snapshot_id": self.snapshot_id, "target": self.target,
                "dry_run": self.dry_run, "parts": self.parts, "resumed_parts": self.resumed_parts}
        return run_summary(head, self.counters, checkpoint=self.checkpoint, plan=self.plan, server=self.server)


# -- per-row rules -------------------------------------------------------------------------------


class _Rules(WriteRules):
    """Scope, selection, rename and expiry for one restore."""

    def __init__(self, manifest: dict[str, Any], options: RestoreOptions):
        super().__init__(options)
        self.scope = ScopeMatcher(manifest.get("scope", {}).get("patterns") or ["*"], error=SnapshotInvalid,
                                  where="in the snapshot's manifest")
        self.select = ScopeMatcher(options.patterns) if options.patterns is not None else None
        self.finished_ms = _iso_ms(manifest["finished_at"])

    def selected(self, batch: pa.RecordBatch, part: str) -> pa.RecordBatch:
        """The rows of `batch` the restore's patterns select (Redis MATCH rules, as validation);
        a row outside the snapshot's scope refuses the part."""
        keys = batch.column("key")
        outside = np.flatnonzero(~self.scope.mask(keys))
        if len(outside):
            key = keys[int(outside[0])].as_py()
            raise ScopeViolation(f"Row {redact_key(key)} in {part} is outside the snapshot's declared patterns; nothing of it is written.")
        if self.select is None:
            return batch
        return batch.filter(pa.array(self.select.mask(keys)))


def _iso_ms(text: str) -> int:
    try:
        return int(dt.datetime.fromisoformat(text).timestamp() * 1000)
    except (TypeError, ValueError):
        raise SnapshotInvalid(f"The manifest's finished_at {text!r} is not an ISO time.") from None


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


# -- checkpoint ----------------------------------------------------------------------------------



def checkpoint_path(snapshot: Snapshot, endpoint: RedisEndpoint, options: RestoreOptions) -> str:
    ident = json.dumps({"target": endpoint.identity, "options": options.for_checkpoint()}, sort_keys=True)
    return storage.join(snapshot.path, RESTORES, hashlib.sha256(ident.encode()).hexdigest()[:16] + ".json")


@dataclass
class RestoreCheckpoint(RunCheckpoint):
    snapshot_id: str
    target: str
    options: dict[str, Any]
    started_at: str
    preflight_passed: bool = False
    parts: dict[str, dict[str, int]] = field(default_factory=dict)  # part name -> its counters
    finished_at: str | None = None

    run = "restore"


# -- the steps -----------------------------------------------------------------------------------


def _resolve(snapshot: str | Snapshot, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    if isinstance(snapshot, Snapshot):
        return snapshot.fs, snapshot.path
    return storage.resolve(snapshot, storage_options)


def _validated(snapshot: str | Snapshot, storage_options: dict[str, Any] | None = None) -> Snapshot:
    fs, path = _resolve(snapshot, storage_options)
    report = validate_snapshot(fs, path)
    if not report.valid:
        problems = " ".join(f"[{p.code}] {p.message}" for p in report.problems)
        raise SnapshotInvalid(f"Snapshot {report.snapshot} is not valid; nothing was written. {problems}")
    return open_snapshot(fs, path, verify=False)


def check_restore(snapshot: str | Snapshot, endpoint: RedisEndpoint, options: RestoreOptions,
                  *, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything before the first write: validation, rename collisions, the `fail` preflight,
    the checkpoint (started or resumed). A dry run returns its plan here and writes nothing."""
    snap = _validated(snapshot, storage_options)
    sink = RedisSink(endpoint)
    try:
        ckpt_path = checkpoint_path(snap, endpoint, options)
        checkpoint = None if options.dry_run else RestoreCheckpoint.load(snap.fs, ckpt_path)
        if checkpoint is not None and checkpoint.finished_at is not None:
            checkpoint = None  # a finished restore: this is a new one
        resuming = checkpoint is not None and checkpoint.preflight_passed
        need_conflicts = options.dry_run or (options.on_conflict == "fail" and not resuming)
        plan = None
        if options.rename_prefix or need_conflicts:
            plan = _plan(snap, sink, options, probe=need_conflicts)
        if options.on_conflict == "fail" and not resuming and not options.dry_run:
            refuse_conflicts(RestoreConflict, plan, endpoint.display_url, "restore")
        if not options.dry_run:
            if checkpoint is None:
                checkpoint = RestoreCheckpoint(snapshot_id=snap.snapshot_id, target=endpoint.identity,
                                               options=options.for_checkpoint(), started_at=_now_iso())
            checkpoint.preflight_passed = True
            checkpoint.save(snap.fs, ckpt_path)
        info = sink.info
    finally:
        sink.close()
    done = sorted(checkpoint.parts) if checkpoint else []
    result = {
        "snapshot": snap.url,
        "snapshot_id": snap.snapshot_id,
        "target": endpoint.display_url,
        "server": f"{info.name} {info.version}",
        "parts": [p.name for p in snap.parts],
        "done": done,
        "checkpoint": None if options.dry_run else storage.unstrip(snap.fs, ckpt_path),
    }
    if options.dry_run and plan is not None:
        result["plan"] = {k: v for k, v in plan.items() if k != "conflict_examples"}
    return result


def _plan(snap: Snapshot, sink: RedisSink, options: RestoreOptions, *, probe: bool) -> dict[str, Any]:
    """One pass over keys and expiries: rename collisions always; with `probe`, what would
    happen to each row on this target (pipelined EXISTS, one round trip per batch)."""
    rules = _Rules(snap.manifest, options)
    collisions = RenameCollisions()
    plan = new_plan("rows", "not_selected")
    for part in snap.parts:
        one = Snapshot(fs=snap.fs, path=snap.path, manifest=snap.manifest, parts=[part])
        for batch in one.iter_batches(columns=["key", "expire_at_ms"], batch_size=options.batch_size):
            plan["rows"] += batch.num_rows
            chosen = rules.selected(batch, part.name)
            plan["not_selected"] += batch.num_rows - chosen.num_rows
            if not chosen.num_rows:
                continue
            names = rules.target_names(chosen.column("key")).to_pylist()
            if rules.rename:
                collisions.add(chosen.column("key").to_pylist(), names)
            if not probe:
                continue
            now, exists = sink.probe(names)
            statuses = rules.expiries(chosen.column("expire_at_ms"), now, rules.finished_ms).statuses()
            for name, status, present in zip(names, statuses, exists):
                count_outcome(plan, name, status, present, options.on_conflict)
    collisions.check(RenameCollision, options, "other keys of the snapshot", "restore")
    return plan


def restore_part(snapshot: str | Snapshot, endpoint: RedisEndpoint, part_name: str, options: RestoreOptions,
                 *, progress: ProgressFn | None = None, verify: bool = True,
                 storage_options: dict[str, Any] | None = None, _sink: RedisSink | None = None) -> dict[str, Any]:
    """Write one part (after `check_restore`). A part the checkpoint records is skipped and its
    recorded counters returned with `"resumed": True`."""
    if options.dry_run:
        raise InvalidParameter("restore_part writes; a dry run stops after check_restore.")
    if isinstance(snapshot, Snapshot):
        snap = snapshot
    else:
        fs, path = storage.resolve(snapshot, storage_options)
        snap = open_snapshot(fs, path, verify=False)
    parts = {p.name: p for p in snap.parts}
    if part_name not in parts:
        raise InvalidParameter(f"The snapshot {snap.url} has no part named {part_name!r}.")
    part: PartInfo = parts[part_name]
    ckpt_path = checkpoint_path(snap, endpoint, options)
    checkpoint = RestoreCheckpoint.load(snap.fs, ckpt_path)
    if checkpoint is None or not checkpoint.preflight_passed or checkpoint.finished_at is not None:
        raise InvalidParameter(f"No restore of {snap.url} to {endpoint.display_url} with these options is under way; run check_restore first.")
    if part_name in checkpoint.parts:
        return {"part": part_name, "resumed": True, **checkpoint.parts[part_name]}
    if verify:
        verify_part(snap.fs, snap.part_path(part), part)
    rules = _Rules(snap.manifest, options)
    replace_existing = options.on_conflict == "replace"
    counters = RestoreCounters()
    sink = _sink or RedisSink(endpoint)
    index = [p.name for p in snap.parts].index(part_name)
    try:
        one = Snapshot(fs=snap.fs, path=snap.path, manifest=snap.manifest, parts=[part])
        # Parquet is decoded in a thread (outside the GIL) while this one packs and sends
        for batch in prefetch(one.iter_batches(batch_size=options.batch_size)):
            counters.rows += batch.num_rows
            chosen = rules.selected(batch, part_name)
            counters.not_selected += batch.num_rows - chosen.num_rows
            if chosen.num_rows:
                expiries = rules.expiries(chosen.column("expire_at_ms"), sink.now_ms(), rules.finished_ms)
                write_batch(sink, chosen, rules.target_names(chosen.column("key")), expiries, counters,
                            replace=replace_existing)
            if progress:
                progress(RestoreProgress(snap.snapshot_id, part_name, len(checkpoint.parts), len(snap.parts),
                                         counters.rows, counters.written,
                                         (index + min(1.0, counters.rows / max(1, part.rows))) / len(snap.parts)))
        counters.add_sink(sink.flush())  # the part is recorded only once every write is answered
    finally:
        if _sink is None:
            sink.close()
    checkpoint.parts[part_name] = counters.as_dict()
    checkpoint.save(snap.fs, ckpt_path)
    if progress:
        progress(RestoreProgress(snap.snapshot_id, part_name, len(checkpoint.parts), len(snap.parts),
                                 counters.rows, counters.written, len(checkpoint.parts) / len(snap.parts)))
    return {"part": part_name, "resumed": False, **counters.as_dict()}


def finish_restore(snapshot: str | Snapshot, endpoint: RedisEndpoint, options: RestoreOptions,
                   *, storage_options: dict[str, Any] | None = None, resumed_parts: int = 0,
                   server: str | None = None) -> RestoreResult:
    """Check every part is done, mark the checkpoint finished (kept as a record) and total up."""
    if isinstance(snapshot, Snapshot):
        snap = snapshot
    else:
        fs, path = storage.resolve(snapshot, storage_options)
        snap = open_snapshot(fs, path, verify=False)
    ckpt_path = checkpoint_path(snap, endpoint, options)
    checkpoint = RestoreCheckpoint.load(snap.fs, ckpt_path)
    missing = [p.name for p in snap.parts if checkpoint is None or p.name not in checkpoint.parts]
    if missing:
        raise InvalidParameter(f"The restore of {snap.url} is not complete: {len(missing)} part(s) not written, e.g. {missing[0]}.")
    totals = RestoreCounters()
    for counts in checkpoint.parts.values():
        totals.add(RestoreCounters.from_dict(counts))
    if checkpoint.finished_at is None:
        checkpoint.finished_at = _now_iso()
        checkpoint.save(snap.fs, ckpt_path)
    return RestoreResult(snapshot=snap.url, snapshot_id=snap.snapshot_id, target=endpoint.display_url,
                         counters=totals, parts=len(snap.parts), resumed_parts=resumed_parts,
                         checkpoint=storage.unstrip(snap.fs, ckpt_path), server=server)


def run_restore(snapshot: str | Snapshot, endpoint: RedisEndpoint, options: RestoreOptions,
                progress: ProgressFn | None = None, *, storage_options: dict[str, Any] | None = None) -> RestoreResult:
    """Restore a snapshot into `endpoint`: validate, plan, write part by part, resumable."""
    fs, path = _resolve(snapshot, storage_options)
    check = check_restore(snapshot, endpoint, options, storage_options=storage_options)
    snap = open_snapshot(fs, path, verify=False)
    if options.dry_run:
        plan = check.get("plan", {})
        counters = RestoreCounters(rows=plan.get("rows", 0), not_selected=plan.get("not_selected", 0),
                                   expired_on_arrival=plan.get("expired_on_arrival", 0),
                                   below_min_ttl=plan.get("below_min_ttl", 0))
        return RestoreResult(snapshot=snap.url, snapshot_id=snap.snapshot_id, target=endpoint.display_url,
                             counters=counters, dry_run=True, parts=len(snap.parts), server=check["server"],
                             plan={k: plan.get(k, 0) for k in PLAN_KEYS})
    sink = RedisSink(endpoint)
    resumed = 0
    try:
        for name in check["parts"]:
            done = restore_part(snap, endpoint, name, options, progress=progress, verify=False, _sink=sink)
            resumed += bool(done["resumed"])
    finally:
        sink.close()
    return finish_restore(snap, endpoint, options, resumed_parts=resumed, server=check["server"])


def restore(snapshot: str | Snapshot, target: str | RedisEndpoint, *, storage_options: dict[str, Any] | None = None,
            progress: ProgressFn | None = None, **options: Any) -> RestoreResult:
    """Restore without Prefect: `restore("snapshots/ID", "redis://localhost:6379/0", on_conflict="skip")`."""
    endpoint = target if isinstance(target, RedisEndpoint) else RedisEndpoint.from_url(target)
    for name in ("patterns", "rename_prefix"):
        if options.get(name) is not None and not isinstance(options[name], str):
            options[name] = tuple(options[name])
    return run_restore(snapshot, endpoint, RestoreOptions(**options), progress, storage_options=storage_options)
