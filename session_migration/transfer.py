"""Transfer sessions from one live Redis/Valkey server to another, streamed and resumable.

    source --SCAN + pipelined reads--> record batches --RedisSink (pipelined writes)--> target

No MIGRATE (it blocks the source ~12 ms per 1000-key call and needs the target reachable from
the source) and no blocking command on the source: only SCAN pages, MGET, PEXPIRETIME and, for
the few non-string keys, TYPE plus a typed read.

The keyspace is walked once, with `SCAN ... MATCH *` (which the server does not glob-match),
and the key names are matched against all the patterns here, by Redis' own MATCH rules
(`redis_glob`). One `SCAN MATCH <pattern>` walk per pattern would make the source glob-match every
key once per pattern: with the 15 default patterns that was most of the source's work. Only
keys in scope are ever read or written. Writes go through the restore writer
(`RedisSink`): the same TTL policies, on_conflict, rename, RESTORE fast path (streams) with
typed fallback when the target refuses a newer server's DUMP payload.

Order of work:

1. Refuse source == target (same host, port and db) and unreachable servers (ServerUnavailable).
2. Planning, only when needed: a rename that makes two source keys one target key is refused;
   with on_conflict="fail", pipelined EXISTS over every target name refuses the transfer before
   the first write; a dry run returns its plan and writes nothing, not even a checkpoint.
3. Copy: chunks of SCAN pages are read, written, and every `checkpoint_every` keys the SCAN
   cursor after the last chunk whose writes were all answered, and the counters, are saved
   atomically to `<root>/transfers/<sha>.json`. A re-run with the same source, target and options
   resumes there; keys written after the checkpoint are written again, which is harmless
   because every write sets the whole key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow as pa

from . import storage
from .endpoints import RedisEndpoint
from .errors import InvalidParameter, RenameCollision, WriteConflict
from .options import TransferOptions
from .plan import (
    PLAN_KEYS, RenameCollisions, WriteRules, count_outcome, new_plan, refuse_conflicts, run_summary,
)
from .prefetch import prefetch
from .seen import SeenKeys
from .signing import Keyring, resolve
from .pipeline import copy
from .sinks.cluster import open_sink
from .sinks.redis import RedisSink, SinkCounts, SinkTotals
from .sources import Read
from .state import StateFile
from .sources.cluster import open_source
from .sources.redis import RedisSource
from .sources.segments import scan_fraction

TRANSFERS = "transfers"
MAX_KEEP_KEYS = 50_000_000  # keys a live run's keep file may list
KEYSPACE_WALK = "keyspace"  # the checkpoint's position is a cursor of one walk over every key
CHECKPOINT_EVERY_KEYS = 10_000


def default_checkpoint_root() -> str:
    """Where transfer checkpoints live unless told: the user's state folder, not the working
    directory (which may be a checkout): `$SESSION_MIGRATION_STATE_DIR`, else
    `$XDG_STATE_HOME/session-migration`, else `~/.local/state/session-migration`."""
    explicit = os.environ.get("SESSION_MIGRATION_STATE_DIR")
    if explicit:
        return explicit
    state_home = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state_home, "session-migration")






# -- counters, progress, result ----------------------------------------------------------------


@dataclass
class TransferCounters(SinkTotals):
    scanned: int = 0  # keys in scope SCAN returned, repeats included
    vanished: int = 0  # deleted or expired between SCAN and read: not written
    duplicates: int = 0  # SCAN repeats: written once
    keys: int = 0  # distinct keys read from the source
    written: int = 0  # = created + overwritten
    created: int = 0
    overwritten: int = 0
    skipped_existing: int = 0
    expired_on_arrival: int = 0
    below_min_ttl: int = 0
    dump_restored: int = 0
    dump_fallbacks: int = 0
    typed_writes: int = 0


@dataclass(frozen=True)
class TransferProgress:
    keys: int  # keys read so far (whole transfer, including before a resume)
    written: int
    scanned: int
    pattern_index: int  # 0 while the keyspace walk is under way, 1 once it is done
    patterns: int  # how many patterns the walk matches keys against
    cursor: int
    checkpoints: int  # checkpoints saved by this run
    fraction: float  # rough 0..1 estimate

ProgressFn = Callable[[TransferProgress], None]


@dataclass
class TransferResult:
    source: str
    target: str
    counters: TransferCounters
    dry_run: bool = False
    resumed: bool = False
    checkpoints: int = 0
    checkpoint: str | None = None
    plan: dict[str, int] | None = None
    source_server: str | None = None
    target_server: str | None = None

    def summary(self) -> dict[str, Any]:
        head = {"source": self.source, "target": self.target, "source_server": self.source_server,
                "target_server": self.target_server, "dry_run": self.dry_run, "resumed": self.resumed,
                "checkpoints": self.checkpoints}
        return run_summary(head, self.counters, checkpoint=self.checkpoint, plan=self.plan)


# -- checkpoint ----------------------------------------------------------------------------------



def checkpoint_file(root: str, source: RedisEndpoint, target: RedisEndpoint, options: TransferOptions) -> str:
    """`<root>/transfers/<16 hex>.json`, named by a sha256 of source, target and options."""
    ident = json.dumps({"source": source.identity, "target": target.identity,
                        "options": options.for_checkpoint()}, sort_keys=True)
    return storage.join(root, TRANSFERS, hashlib.sha256(ident.encode()).hexdigest()[:16] + ".json")


@dataclass
class TransferCheckpoint(StateFile):
    source: str
    target: str
    options: dict[str, Any]
    started_at: str
    preflight_passed: bool = False
    pattern_index: int = 0  # 1 once the walk is done (named when each pattern had a walk of its own)
    cursor: int = 0  # the SCAN cursor to go on from (0 = from the start)
    walk: str = "patterns"  # KEYSPACE_WALK; an older checkpoint (one walk per pattern) has no usable position
    counters: dict[str, int] = field(default_factory=dict)
    source_run_id: str | None = None  # a SCAN cursor means nothing to a restarted source
    live: dict[str, Any] | None = None  # a live run: its keep file's sha256/count, following, summary
    updated_at: str | None = None
    finished_at: str | None = None
    keyring: Keyring | None = field(default=None, repr=False, compare=False)  # signs it; never written

    kind = "transfer checkpoint"
    purpose = "transfer-checkpoint"
    remedy = "delete it to transfer from the start"

    def write(self, fs: fsspec.AbstractFileSystem, path: str) -> None:
        self.updated_at = _now_iso()
        super().write(fs, path)

    def _checked(self) -> TransferCheckpoint:
        self.pattern_index, self.cursor = int(self.pattern_index), int(self.cursor)
        if self.pattern_index not in (0, 1) or self.cursor < 0:
            raise ValueError("its position is not a place in a SCAN")
        if not isinstance(self.counters, dict) or not all(isinstance(v, int) for v in self.counters.values()):
            raise TypeError("counters is not an object of counts")
        if self.live is not None:
            keep = self.live.get("keep") if isinstance(self.live, dict) else None
            if not (isinstance(keep, dict) and isinstance(keep.get("sha256"), str) and len(keep["sha256"]) == 64
                    and isinstance(keep.get("count"), int) and 0 <= keep["count"] <= MAX_KEEP_KEYS
                    and isinstance(self.live.get("following"), bool)
                    and isinstance(self.live.get("notify_keyspace_events_before"), (str, type(None)))):
                raise ValueError("its live record is not a keep file's sha256 and count and a following flag")
        return self


def _load_checkpoint(fs, path: str, source: RedisEndpoint, target: RedisEndpoint, options: TransferOptions,
                     keyring: Keyring) -> TransferCheckpoint | None:
    """This transfer's checkpoint, if any, checked to be this transfer's: it holds a position
    and counts, never what is written (the patterns are always the run's own)."""
    checkpoint = TransferCheckpoint.read(fs, path, keyring)
    if checkpoint is not None:
        checkpoint.check_belongs(fs, path, source=source.identity, target=target.identity,
                                 options=options.for_checkpoint())
    return checkpoint


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


# -- the steps -----------------------------------------------------------------------------------


def _check_endpoints(source: RedisEndpoint, target: RedisEndpoint) -> None:
    if source.same_server(target):
        raise InvalidParameter(
            f"Source and target are the same database ({target.display_url}); a transfer needs two different ones."
        )


def _resolve_root(checkpoint_fs: fsspec.AbstractFileSystem | None, checkpoint_path: str | None
                  ) -> tuple[fsspec.AbstractFileSystem, str]:
    if checkpoint_fs is not None:
        return checkpoint_fs, (checkpoint_path or default_checkpoint_root()).rstrip("/") or "/"
    return storage.resolve(checkpoint_path or default_checkpoint_root())


def _plan(source: RedisSource, sink: RedisSink, options: TransferOptions, *, probe: bool) -> dict[str, Any]:
    """One SCAN pass: rename collisions always; with `probe`, what would happen to each key on
    the target (source expiries and target EXISTS, one pipelined round trip each per page)."""
    rules = WriteRules(options)
    seen = SeenKeys()
    collisions = RenameCollisions()
    relative = options.ttl_policy == "relative"
    plan = new_plan("scanned", "keys", "vanished", "duplicates")
    for _cursor, keys in source.keyspace_chunks():
        plan["scanned"] += len(keys)
        if not keys:
            continue
        fresh_mask = seen.add_new(keys).tolist()
        fresh = [k for k, f in zip(keys, fresh_mask) if f]
        plan["duplicates"] += len(keys) - len(fresh)
        if not fresh:
            continue
        names = rules.target_names(pa.array(fresh, pa.binary()))
        if rules.rename:
            collisions.add(fresh, names.to_pylist())
        if not probe:
            plan["keys"] += len(fresh)
            continue
        expiries = source.expiries(fresh) if options.ttl_policy != "none" else [None] * len(fresh)
        there = [at is not False for at in expiries]
        plan["vanished"] += len(fresh) - sum(there)
        plan["keys"] += sum(there)
        names_there = names.filter(pa.array(there)).to_pylist()
        source_now = source.now_ms() if relative else None
        now, exists = sink.probe(names_there)
        kept = pa.array([at for at in expiries if at is not False], pa.int64())
        statuses = rules.expiries(kept, now, source_now).statuses()
        for name, status, present in zip(names_there, statuses, exists):
            count_outcome(plan, name, status, present, options.on_conflict)
    collisions.check(RenameCollision, options, "other source keys", "transfer")
    return plan


def check_transfer(source: RedisEndpoint, target: RedisEndpoint, options: TransferOptions, *,
                   checkpoint_fs: fsspec.AbstractFileSystem | None = None,
                   checkpoint_path: str | None = None, keyring: Keyring | None = None,
                   live: bool = False) -> dict[str, Any]:
    """Everything before the first write: endpoints, rename collisions, the `fail` preflight,
    the checkpoint (started or resumed). A dry run returns its plan and writes nothing. A live
    run whose copy was done and which was following when it stopped resumes following
    (`resume_following`)."""
    keyring = resolve(keyring)
    _check_endpoints(source, target)
    fs, root = _resolve_root(checkpoint_fs, checkpoint_path)
    ckpt_path = checkpoint_file(root, source, target, options)
    src = open_source(source, patterns=options.patterns, batch_size=options.batch_size, walk="keyspace",
                      preserve_ttl=options.ttl_policy != "none")
    try:
        sink = open_sink(target)
        try:
            checkpoint = None if options.dry_run else _load_checkpoint(fs, ckpt_path, source, target, options, keyring)
            following = bool(live and checkpoint is not None and checkpoint.finished_at is not None
                             and checkpoint.live and checkpoint.live["following"])
            if checkpoint is not None and checkpoint.finished_at is not None and not following:
                checkpoint = None  # a finished transfer: this is a new one
            resuming = checkpoint is not None and checkpoint.preflight_passed
            need_probe = options.dry_run or (options.on_conflict == "fail" and not resuming)
            plan = None
            if need_probe or (options.rename_prefix and not resuming):
                plan = _plan(src, sink, options, probe=need_probe)
            if options.on_conflict == "fail" and not resuming and not options.dry_run:
                refuse_conflicts(WriteConflict, plan, target.display_url, "transfer")
            if not options.dry_run:
                if checkpoint is None:
                    checkpoint = TransferCheckpoint(source=source.identity, target=target.identity,
                                                    options=options.for_checkpoint(), started_at=_now_iso(),
                                                    walk=KEYSPACE_WALK, keyring=keyring)
                checkpoint.preflight_passed = True
                checkpoint.write(fs, ckpt_path)
            target_info = sink.info
        finally:
            sink.close()
        source_info = src.info
    finally:
        src.close()
    result: dict[str, Any] = {
        "source": source.display_url,
        "target": target.display_url,
        "source_server": f"{source_info.name} {source_info.version}",
        "target_server": f"{target_info.name} {target_info.version}",
        "resumed": bool(checkpoint is not None and (checkpoint.pattern_index, checkpoint.cursor) != (0, 0)),
        "checkpoint": None if options.dry_run else storage.unstrip(fs, ckpt_path),
    }
    if checkpoint is not None:
        result["position"] = [checkpoint.pattern_index, checkpoint.cursor]
    if live and not options.dry_run:
        result["resume_following"] = following
    if options.dry_run and plan is not None:
        result["plan"] = {k: v for k, v in plan.items() if k != "conflict_examples"}
    return result


def run_transfer(source: RedisEndpoint, target: RedisEndpoint, options: TransferOptions, *,
                 checkpoint_fs: fsspec.AbstractFileSystem | None = None, checkpoint_path: str | None = None,
                 progress: ProgressFn | None = None, checkpoint_every: int = CHECKPOINT_EVERY_KEYS,
                 keyring: Keyring | None = None) -> TransferResult:
    """Copy the keys matching `options.patterns` from `source` to `target`; resumable.

    `checkpoint_path` is the checkpoint root (default: `default_checkpoint_root()`); the checkpoint is
    `<root>/transfers/<sha of source+target+options>.json`.
    """
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise InvalidParameter(f"checkpoint_every must be a whole number >= 1; got {checkpoint_every!r}.")
    keyring = resolve(keyring)
    check = check_transfer(source, target, options, checkpoint_fs=checkpoint_fs, checkpoint_path=checkpoint_path,
                           keyring=keyring)
    if options.dry_run:
        plan = check.get("plan", {})
        counters = TransferCounters(**{k: plan.get(k, 0) for k in ("scanned", "keys", "vanished", "duplicates",
                                                                    "expired_on_arrival", "below_min_ttl")})
        return TransferResult(source=check["source"], target=check["target"], counters=counters, dry_run=True,
                              plan={k: plan.get(k, 0) for k in PLAN_KEYS},
                              source_server=check["source_server"], target_server=check["target_server"])
    fs, root = _resolve_root(checkpoint_fs, checkpoint_path)
    ckpt_path = checkpoint_file(root, source, target, options)
    checkpoint = _load_checkpoint(fs, ckpt_path, source, target, options, keyring)
    if checkpoint is None or not checkpoint.preflight_passed or checkpoint.finished_at is not None:
        raise InvalidParameter(f"No transfer from {source.display_url} to {target.display_url} with these options is under way.")
    resumed = (checkpoint.pattern_index, checkpoint.cursor) != (0, 0)  # a copy was under way
    saved = _copy(source, target, options, fs, ckpt_path, checkpoint, progress, checkpoint_every, keyring)
    return TransferResult(source=check["source"], target=check["target"],
                          counters=TransferCounters.from_dict(checkpoint.counters), resumed=resumed,
                          checkpoints=saved, checkpoint=storage.unstrip(fs, ckpt_path),
                          source_server=check["source_server"], target_server=check["target_server"])


def _copy(source: RedisEndpoint, target: RedisEndpoint, options: TransferOptions, fs, ckpt_path: str,
          checkpoint: TransferCheckpoint, progress: ProgressFn | None, checkpoint_every: int, keyring: Keyring) -> int:
    """The copy, through the one loop (`pipeline.copy`): a keyspace walk of the source into the
    target, the checkpoint saved every `checkpoint_every` written keys once the target has
    answered them. Returns how many checkpoints it saved; marks the checkpoint finished."""
    rules = WriteRules(options)
    relative = options.ttl_policy == "relative"
    seen = SeenKeys()
    saves = 0
    with contextlib.ExitStack() as opened:  # closed in reverse: the source, then the sink
        sink = open_sink(target, replace=options.on_conflict == "replace")
        opened.callback(sink.close)
        # --batch-size is per node written: a cluster target's masters each get about a full batch
        src = open_source(source, patterns=options.patterns, batch_size=options.batch_size * sink.fanout,
                          walk="keyspace", preserve_ttl=options.ttl_policy != "none")
        opened.callback(src.close)
        run_id = src.run_id()
        if checkpoint.source_run_id not in (None, run_id) or checkpoint.walk != KEYSPACE_WALK:
            # The source restarted since the checkpoint (its SCAN cursor is no longer a valid
            # position), or the checkpoint's position is not one of this walk: start the walk
            # again (every write is idempotent).
            checkpoint.pattern_index, checkpoint.cursor, checkpoint.counters = 0, 0, {}
        checkpoint.source_run_id, checkpoint.walk = run_id, KEYSPACE_WALK
        counters = TransferCounters.from_dict(checkpoint.counters)
        dbsize = src.dbsize()
        best = 0.0

        def take(group: list[Read]) -> list[pa.RecordBatch]:
            batches = []
            for read in group:
                counters.scanned += read.scanned
                counters.vanished += read.vanished
                if not read.rows:
                    continue
                fresh = seen.add_new(read.batch.column("key").to_pylist())
                batch = read.batch if fresh.all() else read.batch.filter(pa.array(fresh))
                counters.duplicates += len(fresh) - batch.num_rows
                counters.keys += batch.num_rows
                if batch.num_rows:
                    batches.append(rules.apply(batch, sink.now_ms(), src.now_ms() if relative else None, counters))
            return batches

        def save(position: tuple[int, int], done: SinkCounts) -> None:
            nonlocal saves
            counters.add_sink(done)  # the position covers only answered writes
            checkpoint.pattern_index, checkpoint.cursor = position or (checkpoint.pattern_index, checkpoint.cursor)
            checkpoint.counters = counters.as_dict()
            checkpoint.write(fs, ckpt_path)
            saves += 1

        def report(position: tuple[int, int]) -> None:
            nonlocal best
            walked, cursor = position
            best = max(best, 1.0 if walked else scan_fraction(cursor, dbsize))
            progress(TransferProgress(counters.keys, counters.written, counters.scanned, walked,
                                      len(options.patterns), cursor, saves, best))

        copy(prefetch(src.read((checkpoint.pattern_index, checkpoint.cursor)), depth=2), sink, take,
             group_rows=1, commit_rows=checkpoint_every, on_commit=save, on_group=report if progress else None)
    checkpoint.pattern_index, checkpoint.cursor = 1, 0
    checkpoint.finished_at = _now_iso()
    checkpoint.write(fs, ckpt_path)
    return saves


def transfer(source: str | RedisEndpoint, target: str | RedisEndpoint, *, checkpoint_path: str | None = None,
             progress: ProgressFn | None = None, **options: Any) -> TransferResult:
    """Transfer without Prefect: `transfer("redis://old:6379/0", "redis://new:6379/0", on_conflict="skip")`."""
    src = source if isinstance(source, RedisEndpoint) else RedisEndpoint.from_url(source)
    dst = target if isinstance(target, RedisEndpoint) else RedisEndpoint.from_url(target)
    for name in ("patterns", "rename_prefix"):
        if options.get(name) is not None and not isinstance(options[name], str):
            options[name] = tuple(options[name])
    return run_transfer(src, dst, TransferOptions(**options), checkpoint_path=checkpoint_path, progress=progress)
