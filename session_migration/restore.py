"""Restore a snapshot into a Redis/Valkey target: validate, plan, then write part by part.

Order of work, so that nothing is written unless everything checks out:

1. `validate_snapshot` (manifest, every part's sha256/rows/schema, duplicate and out-of-scope
   rows; with a signing key, the signature). An invalid snapshot raises `SnapshotInvalid`
   listing its problems; nothing is written.
2. A planning pass over the `key` and `expire_at_ms` columns (only when needed): a rename that
   makes two keys collide is refused; with `on_conflict="fail"` pipelined EXISTS over every row
   that would be written refuses the restore if any exists on the target; a dry run returns
   the plan (would create / overwrite / skip / expire on arrival) and stops there.
   What may be written (`write_scope`): the restore's patterns; without them, the manifest's
   scope only when a configured key verified its signature, else the default session
   patterns. Whoever can write to the storage can rewrite a manifest's scope, so an unsigned
   one never widens what is written; rows outside are counted (`outside_default_patterns`).
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
from .errors import InvalidParameter, RenameCollision, ScopeViolation, SignatureInvalid, SnapshotInvalid, WriteConflict
from .options import RestoreOptions
from .patterns import DEFAULT_PATTERNS
from .plan import (
    PLAN_KEYS, RenameCollisions, WriteRules, count_outcome, new_plan, refuse_conflicts, run_summary,
)
from .redaction import redact_key
from .redis_glob import ScopeMatcher
from .signing import Keyring, resolve
from .sinks.cluster import open_sink
from .sinks.redis import RedisSink, SinkTotals
from .state import StateFile
from .pipeline import copy
from .sources import Read
from .sources.snapshot import SnapshotSource
from .snapshot import Snapshot, open_snapshot, remember_verified
from .validation import validate_snapshot

RESTORES = "restores"






# -- counters, progress, result ----------------------------------------------------------------


@dataclass
class RestoreCounters(SinkTotals):
    rows: int = 0  # rows read from the snapshot's parts
    not_selected: int = 0  # rows outside the restore's patterns (left alone)
    outside_default_patterns: int = 0  # no patterns, unsigned manifest: rows outside the session patterns (left alone)
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
    scope_from: str | None = None  # what decided the keys that may be written (`write_scope`)

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> RestoreResult:
        """The result a summary (`summary()`, or the restore_sessions flow's) describes."""
        plan = {k: summary[k] for k in PLAN_KEYS if k in summary} if summary.get("dry_run") else None
        return cls(snapshot=summary["snapshot"], snapshot_id=summary["snapshot_id"], target=summary["target"],
                   counters=RestoreCounters.from_dict(summary), dry_run=bool(summary.get("dry_run")),
                   parts=summary.get("parts", 0), resumed_parts=summary.get("resumed_parts", 0),
                   checkpoint=summary.get("checkpoint"), plan=plan, server=summary.get("server"),
                   scope_from=summary.get("scope_from"))

    def summary(self) -> dict[str, Any]:
        head = {"snapshot": self.snapshot, "snapshot_id": self.snapshot_id, "target": self.target,
                "dry_run": self.dry_run, "parts": self.parts, "resumed_parts": self.resumed_parts,
                "scope_from": self.scope_from}
        return run_summary(head, self.counters, checkpoint=self.checkpoint, plan=self.plan, server=self.server)


# -- per-row rules -------------------------------------------------------------------------------


SCOPE_FROM_PATTERNS = "patterns"
SCOPE_FROM_SIGNED_MANIFEST = "signed manifest"
SCOPE_FROM_DEFAULTS = "default session patterns"


def write_scope(snapshot: Snapshot, options: RestoreOptions) -> tuple[str, tuple[str, ...] | None]:
    """Where the keys a restore may write come from, and their patterns (None: the manifest's
    whole scope): the operator's patterns; else a manifest whose signature a configured key
    verified; else the default session patterns. An unsigned scope is never an authority."""
    if options.patterns is not None:
        return SCOPE_FROM_PATTERNS, options.patterns
    if snapshot.trusted:
        return SCOPE_FROM_SIGNED_MANIFEST, None
    return SCOPE_FROM_DEFAULTS, DEFAULT_PATTERNS


class _Rules(WriteRules):
    """Scope, selection, rename and expiry for one restore."""

    def __init__(self, snapshot: Snapshot, options: RestoreOptions):
        super().__init__(options)
        declared = snapshot.manifest["scope"]["patterns"]
        self.scope = ScopeMatcher(declared)
        self.scope_from, patterns = write_scope(snapshot, options)
        # A row outside the declared scope refuses its part (below), so when every declared
        # pattern is one of `patterns` there is nothing left to select: no second pass per batch.
        covered = patterns is None or set(declared) <= set(patterns)
        self.select = None if covered else ScopeMatcher(patterns)
        # the count rows left out go to: chosen by the operator, or by the missing signature
        self.unselected = "outside_default_patterns" if self.scope_from == SCOPE_FROM_DEFAULTS else "not_selected"
        self.finished_ms = _iso_ms(snapshot.manifest["finished_at"])

    def selected(self, batch: pa.RecordBatch, part: str) -> pa.RecordBatch:
        """The rows of `batch` the write scope selects (Redis MATCH rules, as validation);
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
    """`<snapshot>/restores/<16 hex>.json`, named by the target, the options and the write scope."""
    scope_from, patterns = write_scope(snapshot, options)
    ident = json.dumps({"target": endpoint.identity, "options": options.for_checkpoint(),
                        "scope": [scope_from, list(patterns) if patterns else None]}, sort_keys=True)
    return storage.join(snapshot.path, RESTORES, hashlib.sha256(ident.encode()).hexdigest()[:16] + ".json")


@dataclass
class RestoreCheckpoint(StateFile):
    snapshot_id: str
    target: str
    options: dict[str, Any]
    started_at: str
    preflight_passed: bool = False
    parts: dict[str, dict[str, int]] = field(default_factory=dict)  # part name -> its counters
    finished_at: str | None = None
    keyring: Keyring | None = field(default=None, repr=False, compare=False)  # signs it; never written

    kind = "restore checkpoint"
    purpose = "restore-checkpoint"
    remedy = "delete it to restore from the start"

    def _checked(self) -> RestoreCheckpoint:
        if not isinstance(self.parts, dict) or not all(
                isinstance(counts, dict) and all(isinstance(v, int) for v in counts.values())
                for counts in self.parts.values()):
            raise TypeError("parts is not an object of per-part counts")
        if not isinstance(self.preflight_passed, bool):
            raise TypeError("preflight_passed is not true or false")
        return self


@dataclass
class PartDone(StateFile):
    """One part written by a restore whose parts are written at once by several tasks (each
    writes its own record, `<checkpoint>.parts/<part>.json`; `finish_restore` folds them into
    the checkpoint): no two tasks ever rewrite the same file."""

    part: str
    counts: dict[str, int]
    keyring: Keyring | None = field(default=None, repr=False, compare=False)

    kind = "restore part record"
    purpose = "restore-part-done"
    remedy = "delete it to write that part again"


def _records(ckpt_path: str) -> str:
    return ckpt_path.removesuffix(".json") + ".parts"


def _part_record(ckpt_path: str, part_name: str) -> str:
    return storage.join(_records(ckpt_path), part_name.removesuffix(".parquet") + ".json")


def _load_checkpoint(snap: Snapshot, endpoint: RedisEndpoint, options: RestoreOptions, path: str,
                     keyring: Keyring) -> RestoreCheckpoint | None:
    """This restore's checkpoint, if any, checked to be this restore's: it can only say which
    parts are done, never what is written. Parts recorded on their own (written at once by
    several tasks) count as done too."""
    checkpoint = RestoreCheckpoint.read(snap.fs, path, keyring)
    if checkpoint is not None:
        checkpoint.check_belongs(snap.fs, path, snapshot_id=snap.snapshot_id, target=endpoint.identity,
                                 options=options.for_checkpoint())
        folder = _records(path)
        if checkpoint.finished_at is None and snap.fs.exists(folder):
            found = {entry.rstrip("/").rsplit("/", 1)[-1] for entry in snap.fs.ls(folder, detail=False)}
            for part in snap.parts:
                where = _part_record(path, part.name)
                if part.name not in checkpoint.parts and where.rsplit("/", 1)[-1] in found:
                    record = PartDone.read(snap.fs, where, keyring)
                    if record is not None:  # else folded in and removed by a finish just now
                        record.check_belongs(snap.fs, where, part=part.name)
                        checkpoint.parts[part.name] = record.counts
    return checkpoint


# -- the steps -----------------------------------------------------------------------------------


def _resolve(snapshot: storage.Location | Snapshot,
             storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    if isinstance(snapshot, Snapshot):
        return snapshot.fs, snapshot.path
    return storage.locate(snapshot, storage_options)


def _validated(snapshot: storage.Location | Snapshot, storage_options: dict[str, Any] | None,
               keyring: Keyring) -> Snapshot:
    fs, path = _resolve(snapshot, storage_options)
    report = validate_snapshot(fs, path, keyring=keyring)
    if not report.valid:
        problems = " ".join(f"[{p.code}] {p.message}" for p in report.problems)
        signature = any(p.code in ("unsigned", "signature-invalid") for p in report.problems)
        raise (SignatureInvalid if signature else SnapshotInvalid)(
            f"Snapshot {report.snapshot} is not valid; nothing was written. {problems}")
    snap = open_snapshot(fs, path, verify=False, keyring=keyring)
    remember_verified(snap)  # the parts' checksums were just checked: restore_part need not hash them again
    return snap


def _opened(snapshot: storage.Location | Snapshot, storage_options: dict[str, Any] | None,
            keyring: Keyring) -> Snapshot:
    if isinstance(snapshot, Snapshot):
        return snapshot
    fs, path = storage.locate(snapshot, storage_options)
    return open_snapshot(fs, path, verify=False, keyring=keyring)


def check_restore(snapshot: storage.Location | Snapshot, endpoint: RedisEndpoint, options: RestoreOptions,
                  *, storage_options: dict[str, Any] | None = None, keyring: Keyring | None = None) -> dict[str, Any]:
    """Everything before the first write: validation (with a signing key configured, of the
    signature too), rename collisions, the `fail` preflight, the checkpoint (started or
    resumed). A dry run returns its plan here and writes nothing."""
    keyring = resolve(keyring)
    snap = _validated(snapshot, storage_options, keyring)
    sink = open_sink(endpoint)
    try:
        ckpt_path = checkpoint_path(snap, endpoint, options)
        checkpoint = None if options.dry_run else _load_checkpoint(snap, endpoint, options, ckpt_path, keyring)
        if checkpoint is not None and checkpoint.finished_at is not None:
            checkpoint = None  # a finished restore: this is a new one
        resuming = checkpoint is not None and checkpoint.preflight_passed
        need_conflicts = options.dry_run or (options.on_conflict == "fail" and not resuming)
        plan = None
        if options.rename_prefix or need_conflicts:
            plan = _plan(snap, sink, options, probe=need_conflicts)
        if options.on_conflict == "fail" and not resuming and not options.dry_run:
            refuse_conflicts(WriteConflict, plan, endpoint.display_url, "restore")
        if not options.dry_run:
            if checkpoint is None:
                checkpoint = RestoreCheckpoint(snapshot_id=snap.snapshot_id, target=endpoint.identity,
                                               options=options.for_checkpoint(), started_at=_now_iso(),
                                               keyring=keyring)
            checkpoint.preflight_passed = True
            checkpoint.write(snap.fs, ckpt_path)
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
        "scope_from": write_scope(snap, options)[0],
    }
    if options.dry_run and plan is not None:
        result["plan"] = {k: v for k, v in plan.items() if k != "conflict_examples"}
    return result


def _plan(snap: Snapshot, sink: RedisSink, options: RestoreOptions, *, probe: bool) -> dict[str, Any]:
    """One pass over keys and expiries: rename collisions always; with `probe`, what would
    happen to each row on this target (pipelined EXISTS, one round trip per batch)."""
    rules = _Rules(snap, options)
    collisions = RenameCollisions()
    plan = new_plan("rows", "not_selected", "outside_default_patterns")
    for part in snap.parts:
        one = Snapshot(fs=snap.fs, path=snap.path, manifest=snap.manifest, parts=[part])
        for batch in one.iter_batches(columns=["key", "expire_at_ms"], batch_size=options.batch_size):
            plan["rows"] += batch.num_rows
            chosen = rules.selected(batch, part.name)
            plan[rules.unselected] += batch.num_rows - chosen.num_rows
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


def restore_parts(snapshot: str | Snapshot, endpoint: RedisEndpoint, part_names: list[str], options: RestoreOptions,
                  *, storage_options: dict[str, Any] | None = None, keyring: Keyring | None = None) -> list[dict[str, Any]]:
    """Write a group of parts, one after the other, while other groups are written at the same
    time (each part recorded in its own file); as `restore_part` for each."""
    keyring = resolve(keyring)
    snap = _opened(snapshot, storage_options, keyring)
    sink = RedisSink(endpoint, replace=options.on_conflict == "replace")
    try:
        return [restore_part(snap, endpoint, name, options, _sink=sink, keyring=keyring, alone=True)
                for name in part_names]
    finally:
        sink.close()


def restore_part(snapshot: str | Snapshot, endpoint: RedisEndpoint, part_name: str, options: RestoreOptions,
                 *, progress: ProgressFn | None = None, verify: bool = True,
                 storage_options: dict[str, Any] | None = None, _sink: RedisSink | None = None,
                 keyring: Keyring | None = None, alone: bool = False) -> dict[str, Any]:
    """Write one part (after `check_restore`). A part the checkpoint records is skipped and its
    recorded counters returned with `"resumed": True`. `alone`: record the part in a file of its
    own (other parts are being written at the same time), not in the checkpoint."""
    if options.dry_run:
        raise InvalidParameter("restore_part writes; a dry run stops after check_restore.")
    keyring = resolve(keyring)
    snap = _opened(snapshot, storage_options, keyring)
    parts = {p.name: p for p in snap.parts}
    if part_name not in parts:
        raise InvalidParameter(f"The snapshot {snap.url} has no part named {part_name!r}.")
    part = parts[part_name]
    ckpt_path = checkpoint_path(snap, endpoint, options)
    checkpoint = _load_checkpoint(snap, endpoint, options, ckpt_path, keyring)
    if checkpoint is None or not checkpoint.preflight_passed or checkpoint.finished_at is not None:
        raise InvalidParameter(f"No restore of {snap.url} to {endpoint.display_url} with these options is under way; run check_restore first.")
    if part_name in checkpoint.parts:
        return {"part": part_name, "resumed": True, **checkpoint.parts[part_name]}
    rules = _Rules(snap, options)
    counters = RestoreCounters()
    sink = _sink or open_sink(endpoint, replace=options.on_conflict == "replace")
    index = [p.name for p in snap.parts].index(part_name)
    source = SnapshotSource(snap, parts=[part_name], batch_size=options.batch_size * sink.fanout, verify=verify)

    def take(group: list[Read]) -> list[pa.RecordBatch]:
        batches = []
        for read in group:
            counters.rows += read.rows
            if not read.rows:
                continue
            chosen = rules.selected(read.batch, part_name)
            setattr(counters, rules.unselected, getattr(counters, rules.unselected) + read.rows - chosen.num_rows)
            if chosen.num_rows:
                batches.append(rules.apply(chosen, sink.now_ms(), rules.finished_ms, counters))
        return batches

    def report(_position: Any) -> None:
        progress(RestoreProgress(snap.snapshot_id, part_name, len(checkpoint.parts), len(snap.parts), counters.rows,
                                 counters.written, (index + min(1.0, counters.rows / max(1, part.rows))) / len(snap.parts)))

    try:
        # the part is recorded only once every write is answered: one commit, at its end
        copy(source.read(), sink, take, group_rows=1, on_commit=lambda _position, done: counters.add_sink(done),
             on_group=report if progress else None)
    finally:
        if _sink is None:
            sink.close()
    checkpoint.parts[part_name] = counters.as_dict()
    if alone:
        PartDone(part_name, counters.as_dict(), keyring=keyring).write(snap.fs, _part_record(ckpt_path, part_name))
    else:
        checkpoint.write(snap.fs, ckpt_path)
    if progress:
        progress(RestoreProgress(snap.snapshot_id, part_name, len(checkpoint.parts), len(snap.parts),
                                 counters.rows, counters.written, len(checkpoint.parts) / len(snap.parts)))
    return {"part": part_name, "resumed": False, **counters.as_dict()}


def finish_restore(snapshot: str | Snapshot, endpoint: RedisEndpoint, options: RestoreOptions,
                   *, storage_options: dict[str, Any] | None = None, resumed_parts: int = 0,
                   server: str | None = None, keyring: Keyring | None = None) -> RestoreResult:
    """Check every part is done, mark the checkpoint finished (kept as a record) and total up."""
    keyring = resolve(keyring)
    snap = _opened(snapshot, storage_options, keyring)
    ckpt_path = checkpoint_path(snap, endpoint, options)
    checkpoint = _load_checkpoint(snap, endpoint, options, ckpt_path, keyring)
    missing = [p.name for p in snap.parts if checkpoint is None or p.name not in checkpoint.parts]
    if missing:
        raise InvalidParameter(f"The restore of {snap.url} is not complete: {len(missing)} part(s) not written, e.g. {missing[0]}.")
    totals = RestoreCounters()
    for counts in checkpoint.parts.values():
        totals.add(RestoreCounters.from_dict(counts))
    if checkpoint.finished_at is None:
        checkpoint.finished_at = _now_iso()
        checkpoint.write(snap.fs, ckpt_path)  # with the parts recorded on their own folded in
        if snap.fs.exists(_records(ckpt_path)):
            snap.fs.rm(_records(ckpt_path), recursive=True)
    return RestoreResult(snapshot=snap.url, snapshot_id=snap.snapshot_id, target=endpoint.display_url,
                         counters=totals, parts=len(snap.parts), resumed_parts=resumed_parts,
                         checkpoint=storage.unstrip(snap.fs, ckpt_path), server=server,
                         scope_from=write_scope(snap, options)[0])


def run_restore(snapshot: storage.Location | Snapshot, endpoint: RedisEndpoint, options: RestoreOptions,
                progress: ProgressFn | None = None, *, storage_options: dict[str, Any] | None = None,
                keyring: Keyring | None = None) -> RestoreResult:
    """Restore a snapshot into `endpoint`: validate, plan, write part by part, resumable. With a
    signing key configured (`keyring`, default: the environment's), only a signed snapshot.
    This is `operations.restore_sessions` run directly: the restore_sessions flow runs the same."""
    from .operations import restore_sessions
    from .runner import DirectRunner, Feedback

    class Progress(Feedback):
        def progress(self, key: str, description: str, event: Any) -> None:
            if progress:
                progress(event)

    summary = restore_sessions(DirectRunner(Progress()), _resolve(snapshot, storage_options), endpoint, options,
                               keys=keyring)
    return RestoreResult.from_summary(summary)


def restore(snapshot: str | Snapshot, target: str | RedisEndpoint, *, storage_options: dict[str, Any] | None = None,
            progress: ProgressFn | None = None, keyring: Keyring | None = None, **options: Any) -> RestoreResult:
    """Restore without Prefect: `restore("snapshots/ID", "redis://localhost:6379/0", on_conflict="skip")`."""
    endpoint = target if isinstance(target, RedisEndpoint) else RedisEndpoint.from_url(target)
    for name in ("patterns", "rename_prefix"):
        if options.get(name) is not None and not isinstance(options[name], str):
            options[name] = tuple(options[name])
    return run_restore(snapshot, endpoint, RestoreOptions(**options), progress, storage_options=storage_options,
                       keyring=keyring)
