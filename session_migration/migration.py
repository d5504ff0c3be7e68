"""Full migration with rollback: backup -> validate -> pre-image -> restore -> verify -> audit.

    result = run_migration(source, target, fs, root, MigrationOptions(patterns=("sess:*",)))

Order of work, and what is written where:

1. **Refusals, before anything is written**: source and target are the same database; the
   target already holds keys in scope while `require_empty_target`; an unfinished migration
   of the same target is recorded under `root` (finish its rollback first); the backup
   location is not writable.
2. **Backup** of the source into a snapshot under `root` (`run_backup`).
3. **Validation** of that snapshot (`validate_snapshot`); problems stop the run before any write
   to the target.
4. **Pre-image**: the target's keys in scope are read (`RedisSource`) and committed as a
   snapshot of their own (`write_snapshot`). Its rows are also the list of keys that existed.
5. **Restore** of the source snapshot onto the target (absolute expiry, `on_conflict=replace`).
6. **Verify** the source snapshot against the target (`verify`). The target may keep keys
   of its own (in the pre-image, not in the source): they are counted as `kept_target_only`
   and are not a failure; any other key in scope that neither side explains is.
7. **Rollback** on any failure after the first write (when `rollback_on_failure`): every key in
   scope that is not in the pre-image is deleted, the pre-image is restored (replace,
   absolute expiry), and pre-image keys whose expiry has passed meanwhile are deleted (they
   stay gone, as they would have without the migration).
8. **Audit** report of the migrated snapshot under `<snapshot>/audit/`.

The run's state lives in `<root>/migrations/<migration_id>.json`, written atomically after
every step and every rollback stage. Each rollback stage is idempotent, so
`resume_rollback(target, fs, root, migration_id)` finishes a rollback interrupted by a crash
or `kill -9` (or rolls back a run that died while writing).

The step functions (`preflight`, `start_migration`, `take_pre_image`, `judge_verification`,
`rollback`, `finish_migration`, `plan_migration`) are public so that the Prefect flow runs
the same logic one task at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa

from . import storage
from .endpoints import RedisEndpoint
from .errors import InvalidParameter, MigrationFailed, MigrationRefused, SessionMigrationError, SnapshotInvalid
from .options import MAX_BATCH_SIZE, BackupOptions, MigrationOptions, RestoreOptions
from .patterns import DEFAULT_PATTERNS, check_patterns
from .pipeline import BackupResult, run_backup, write_snapshot
from .redaction import redact_key
from .redis_glob import ScopeMatcher
from .restore import run_restore
from .seen import SeenKeys
from .sinks.cluster import open_sink
from .schema import SNAPSHOT_ID_RE
from .signing import Keyring
from .signing import resolve as resolve_keyring
from .snapshot import PRE_IMAGE_SUFFIX, Snapshot, new_snapshot_id, open_snapshot, shown, snapshot_dir
from .state import StateFile
from .sources.cluster import open_source
from .verify import MISMATCHES

MIGRATIONS = "migrations"
MAX_EXAMPLES = 5
STATE_PURPOSE = "migration-state"  # what a state file's signature says it signs
ROLLBACK_STAGES = ("started", "new_keys_deleted", "pre_image_restored", "done")

# Steps in the order they are reached; "restoring" is the first that writes to the target.
STEPS = ("started", "backed_up", "validated", "pre_image", "restoring", "restored", "verified", "following",
         "rolling_back", "rolled_back", "audited", "done", "failed")
WRITING_STEPS = frozenset({"restoring", "restored", "verified", "following", "rolling_back"})
FINAL_STEPS = frozenset({"rolled_back", "done", "failed", "audited"})

ProgressFn = Callable[[str, dict[str, Any]], None]






def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")



# -- state file ---------------------------------------------------------------------------------


@dataclass
class MigrationState(StateFile):
    migration_id: str
    source: str
    target: str  # password-free, credential-free: compared on resume
    options: dict[str, Any]
    started_at: str
    step: str = "started"
    snapshot: str | None = None
    snapshot_id: str | None = None
    pre_image: str | None = None
    pre_image_id: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)  # step name -> its counts
    verify: dict[str, Any] | None = None
    rollback: dict[str, Any] = field(default_factory=dict)  # stage, deleted_new, restored, removed_expired
    rolled_back: bool = False
    audit: dict[str, str] | None = None
    error: str | None = None
    finished_at: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(self.options["patterns"])

    @property
    def needs_rollback(self) -> bool:
        """Writes may have reached the target and the run did not finish or roll back."""
        return self.step in WRITING_STEPS

    keyring: Keyring | None = field(default=None, repr=False, compare=False)  # signs it; never written

    kind = "migration state"
    purpose = STATE_PURPOSE
    remedy = "restore it from a copy you trust, or finish the rollback by hand"

    def save(self, fs: fsspec.AbstractFileSystem, root: str) -> None:
        """Write the state file, atomically; signed when a signing key is configured."""
        self.write(fs, state_path(root, self.migration_id))

    def advance(self, fs, root: str, step: str, **updates: Any) -> None:
        if step not in STEPS:
            raise InvalidParameter(f"Unknown migration step {step!r}.")
        for name, value in updates.items():
            setattr(self, name, value)
        self.step = step
        self.history.append({"step": step, "at": _now()})
        self.save(fs, root)

    @classmethod
    def load(cls, fs: fsspec.AbstractFileSystem, root: str, migration_id: str,
             keyring: Keyring | None = None) -> MigrationState:
        """Read and check a state file: its signature (with a key), every field's type, and
        that it is the state of `migration_id`. It comes from the storage: nothing in it is
        believed unchecked."""
        path = state_path(root, migration_id)
        state = cls.read(fs, path, keyring)
        if state is None:
            raise InvalidParameter(f"No migration {migration_id} under {storage.unstrip(fs, root)} "
                                   f"(no {storage.unstrip(fs, path)}).")
        try:
            _check_state(state, migration_id)
        except (ValueError, TypeError) as exc:
            raise SnapshotInvalid(f"The migration state {storage.unstrip(fs, path)} is unreadable ({exc}).") from None
        return state

    def summary(self) -> dict[str, Any]:
        return {
            "migration_id": self.migration_id, "source": self.source, "target": self.target, "step": self.step,
            "snapshot": self.snapshot, "snapshot_id": self.snapshot_id, "pre_image": self.pre_image,
            "pre_image_id": self.pre_image_id, "counts": self.counts, "verify": self.verify,
            "rolled_back": self.rolled_back, "rollback": self.rollback, "audit": self.audit, "error": self.error,
            "started_at": self.started_at, "finished_at": self.finished_at,
        }


def check_migration_id(migration_id: object) -> str:
    """A migration id names a file under `<root>/migrations/`: no path characters in it."""
    if not isinstance(migration_id, str) or not SNAPSHOT_ID_RE.match(migration_id):
        raise InvalidParameter(f"Migration id {shown(migration_id)} is not valid: use 1-128 letters, digits, '.', '_' "
                               "or '-', starting with a letter or digit (e.g. migration-20261125T181500Z-3fa2c1).")
    return migration_id


def state_path(root: str, migration_id: str) -> str:
    return storage.join(root, MIGRATIONS, f"{check_migration_id(migration_id)}.json")


def _check_state(state: MigrationState, migration_id: str) -> None:
    """Raise ValueError/TypeError unless every field of a loaded state has its type and bounds."""
    if state.migration_id != migration_id:
        raise ValueError(f"it is the state of another migration ({shown(state.migration_id)})")
    if state.step not in STEPS:
        raise ValueError(f"unknown step {shown(state.step)}")
    for name in ("source", "target", "started_at"):
        if not isinstance(getattr(state, name), str):
            raise TypeError(f"{name} is not a string")
    for name in ("snapshot_id", "pre_image_id"):
        value = getattr(state, name)
        if value is not None and not (isinstance(value, str) and SNAPSHOT_ID_RE.match(value)):
            raise ValueError(f"{name} is not a snapshot id")
    for name in ("options", "counts", "rollback"):
        if not isinstance(getattr(state, name), dict):
            raise TypeError(f"{name} is not an object")
    if not isinstance(state.history, list) or not isinstance(state.rolled_back, bool):
        raise TypeError("history or rolled_back has the wrong type")
    check_patterns(state.options.get("patterns") if isinstance(state.options.get("patterns"), list) else ())
    batch = state.options.get("batch_size", 1000)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH_SIZE:
        raise ValueError("options.batch_size is not a whole number from 1 to 100,000")
    if state.rollback.get("stage", "started") not in ROLLBACK_STAGES:
        raise ValueError("rollback.stage is not a rollback stage")


def list_migrations(fs: fsspec.AbstractFileSystem, root: str, keyring: Keyring | None = None) -> list[MigrationState]:
    folder = storage.join(root, MIGRATIONS)
    try:
        names = sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(folder, detail=False))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [MigrationState.load(fs, root, n[: -len(".json")], keyring) for n in names
            if n.endswith(".json") and not n.endswith(".tmp")]


# -- step 1: refusals -------------------------------------------------------------------------


def _scope_keys(endpoint: RedisEndpoint, patterns, batch_size: int, limit: int | None = None) -> Iterator[bytes]:
    source = open_source(endpoint, preserve_ttl=False)
    try:
        seen = SeenKeys()
        n = 0
        for _index, _cursor, keys in source.key_chunks(patterns, batch_size):
            if not keys:
                continue
            for key, new in zip(keys, seen.add_new(keys)):
                if new:
                    yield key
                    n += 1
                    if limit is not None and n >= limit:
                        return
    finally:
        source.close()


def preflight(source: RedisEndpoint, target: RedisEndpoint, fs: fsspec.AbstractFileSystem, root: str,
              options: MigrationOptions) -> dict[str, Any]:
    """Every refusal, before anything is written anywhere. Returns what was learned."""
    if source.same_server(target):
        raise MigrationRefused(f"Source and target are the same database ({target.display_url}); nothing was written.")
    src = open_source(source, preserve_ttl=False)
    try:
        source_info = src.info
        source_dbsize = src.dbsize()
    finally:
        src.close()
    sink = open_sink(target)
    try:
        target_info = sink.info
    finally:
        sink.close()
    if options.require_empty_target:
        found = list(_scope_keys(target, options.patterns, options.batch_size, limit=MAX_EXAMPLES))
        if found:
            raise MigrationRefused(
                f"The target {target.display_url} already holds keys in scope, e.g. "
                f"{', '.join(redact_key(k) for k in found)}; require_empty_target refuses it. Nothing was written."
            )
    if not options.dry_run:
        for state in list_migrations(fs, root) if fs.exists(root) else []:
            if state.needs_rollback and state.target == target.identity:
                raise MigrationRefused(
                    f"Migration {state.migration_id} onto {state.target} stopped at step {state.step!r} with writes "
                    "on the target; finish it first with resume_rollback (session-migration migrate "
                    f"--resume-rollback {state.migration_id}). Nothing was written."
                )
        storage.check_writable(fs, root)
    return {
        "source": source.display_url, "source_server": f"{source_info.name} {source_info.version}",
        "source_dbsize": source_dbsize, "target": target.display_url,
        "target_server": f"{target_info.name} {target_info.version}",
    }


# -- steps 2-6 ----------------------------------------------------------------------------------


def new_migration_id() -> str:
    return f"migration-{new_snapshot_id()}"


def start_migration(source: RedisEndpoint, target: RedisEndpoint, fs, root: str, options: MigrationOptions,
                    migration_id: str | None = None, keyring: Keyring | None = None) -> MigrationState:
    state = MigrationState(migration_id=check_migration_id(migration_id or new_migration_id()), source=source.display_url,
                           target=target.identity, options=options.as_dict(), started_at=_now())
    state.keyring = keyring
    state.advance(fs, root, "started")
    return state


def take_pre_image(target: RedisEndpoint, fs, root: str, options: MigrationOptions,
                   snapshot_id: str | None = None, keyring: Keyring | None = None) -> BackupResult:
    """Snapshot the target's keys in scope (expiry always captured): what a rollback puts back."""
    source = open_source(target, patterns=options.patterns, batch_size=options.batch_size, preserve_ttl=True)
    try:
        opts = BackupOptions(patterns=options.patterns, batch_size=options.batch_size, preserve_ttl=True,
                             snapshot_id=snapshot_id or new_snapshot_id() + PRE_IMAGE_SUFFIX)
        return write_snapshot(fs, root, source.read(), target, source.info, opts, keyring)
    finally:
        source.close()


def _key_set(snapshot: Snapshot) -> SeenKeys:
    seen = SeenKeys()
    for batch in snapshot.iter_batches(columns=["key"]):
        keys = batch.column("key").to_pylist()
        if keys:
            seen.add_new(keys)
    return seen


def judge_verification(report: dict[str, Any], target: RedisEndpoint, snapshot: Snapshot, pre_image: Snapshot,
                       options: MigrationOptions) -> dict[str, Any]:
    """The verify report, judged for a migration: MISSING/TYPE/VALUE/TTL fail; EXTRA keys are
    fine when the target held them before (pre-image), a failure otherwise (`unexpected`)."""
    unexpected, examples, kept = 0, [], 0
    if report["counts"].get("EXTRA", 0):
        in_snapshot, in_pre = _key_set(snapshot), _key_set(pre_image)
        for chunk in _chunks(_scope_keys(target, options.patterns, options.batch_size), options.batch_size):
            unknown = [k for k, known in zip(chunk, in_snapshot.contains(chunk).tolist()) if not known]
            if not unknown:
                continue
            for key, before in zip(unknown, in_pre.contains(unknown).tolist()):
                if before:
                    kept += 1
                else:
                    unexpected += 1
                    if len(examples) < MAX_EXAMPLES:
                        examples.append(redact_key(key))
    failing = {c: report["counts"].get(c, 0) for c in MISMATCHES if c != "EXTRA"}
    ok = not any(failing.values()) and unexpected == 0
    return {**report, "ok": ok, "kept_target_only": kept, "unexpected_extra": unexpected,
            "unexpected_examples": examples}


def _chunks(keys: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for key in keys:
        chunk.append(key)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- step 7: rollback ---------------------------------------------------------------------------


class _RollbackScope:
    """The keys a rollback may touch: those matching both the operator's patterns and the ones
    the state file records. The state file comes from the storage: it can narrow what a
    rollback deletes and restores, never widen it."""

    def __init__(self, operator: tuple[str, ...], recorded: tuple[str, ...]):
        self.patterns = operator  # what is scanned, and what the pre-image restore selects
        self.recorded = recorded
        self._operator, self._recorded = ScopeMatcher(operator), ScopeMatcher(recorded)

    @property
    def narrowed(self) -> bool:
        return set(self.patterns) != set(self.recorded)

    def mask(self, keys: pa.Array) -> np.ndarray:
        return self._operator.mask(keys) & self._recorded.mask(keys)

    def within(self, keys: list[bytes]) -> list[bytes]:
        if not keys:
            return keys
        return [k for k, inside in zip(keys, self.mask(pa.array(keys, pa.binary())).tolist()) if inside]

    def target_keys(self, target: RedisEndpoint, batch_size: int) -> Iterator[list[bytes]]:
        """The target's keys in scope, in chunks."""
        for chunk in _chunks(_scope_keys(target, self.patterns, batch_size), batch_size):
            yield self.within(chunk)

    def describe(self) -> dict[str, Any]:
        return {"patterns": list(self.patterns), "recorded_patterns": list(self.recorded), "narrowed": self.narrowed}


def _rollback_scope(state: MigrationState, patterns: tuple[str, ...] | list[str] | None) -> _RollbackScope:
    operator = check_patterns(patterns) if patterns is not None else state.patterns
    return _RollbackScope(tuple(operator), state.patterns)


def _open_pre_image(fs, root: str, state: MigrationState, keyring: Keyring) -> Snapshot:
    """The pre-image, read only from `<root>/<pre_image_id>` (the URL in the state file is not
    followed): checksummed, signed when a key is configured, and with the id and the scope
    the state records, so that every row of it is within the recorded patterns."""
    pre = open_snapshot(fs, snapshot_dir(root, state.pre_image_id), verify=True, keyring=keyring)
    if pre.snapshot_id != state.pre_image_id:
        raise SnapshotInvalid(f"The pre-image folder {state.pre_image_id} holds snapshot {pre.snapshot_id}; "
                              f"migration {state.migration_id} cannot be rolled back from it.")
    if tuple(pre.manifest["scope"]["patterns"]) != state.patterns:
        raise SnapshotInvalid(f"The pre-image {state.pre_image_id} was not taken with the patterns migration "
                              f"{state.migration_id} records; it cannot be rolled back from it.")
    return pre


def _restore_options(scope: _RollbackScope, batch_size: int, dry_run: bool = False) -> RestoreOptions:
    return RestoreOptions(patterns=scope.patterns, ttl_policy="absolute", on_conflict="replace",
                          batch_size=batch_size, dry_run=dry_run)


def _expired(pre: Snapshot, scope: _RollbackScope, now_ms: int, batch_size: int) -> Iterator[list[bytes]]:
    """Pre-image keys in scope whose expiry has passed by `now_ms`, in chunks."""
    for batch in pre.iter_batches(columns=["key", "expire_at_ms"], batch_size=batch_size):
        gone = [k for k, e in zip(batch.column("key").to_pylist(), batch.column("expire_at_ms").to_pylist())
                if e is not None and e <= now_ms]
        yield scope.within(gone)


def rollback(target: RedisEndpoint, fs, root: str, state: MigrationState,
             progress: ProgressFn | None = None, *, patterns: tuple[str, ...] | None = None,
             keyring: Keyring | None = None) -> dict[str, Any]:
    """Put the target back as the pre-image says, within `patterns` (default: the recorded
    ones) and the recorded patterns both. Resumable: each stage is idempotent and its
    completion recorded in the state file, so a re-run continues where the last one stopped."""
    if state.target != target.identity:
        raise InvalidParameter(f"Migration {state.migration_id} wrote to {shown(state.target)}, not {target.display_url}.")
    scope = _rollback_scope(state, patterns)
    keyring = resolve_keyring(keyring if keyring is not None else state.keyring)
    state.keyring = keyring
    batch_size = int(state.options.get("batch_size", 1000))
    rb = dict(state.rollback or {})
    rb.setdefault("stage", "started")
    rb.setdefault("started_at", _now())
    rb.update(scope.describe())
    state.advance(fs, root, "rolling_back", rollback=rb)
    if state.pre_image_id is None:
        # The run died before the pre-image was committed, so nothing was written to the target.
        rb.update(stage="done", note="no pre-image: nothing had been written to the target")
        state.advance(fs, root, "rolled_back", rollback=rb, rolled_back=True, finished_at=_now())
        return rb
    pre = _open_pre_image(fs, root, state, keyring)
    if rb["stage"] == "started":
        in_pre = _key_set(pre)
        sink = open_sink(target)
        deleted = 0
        try:
            for chunk in scope.target_keys(target, batch_size):
                new = [k for k, before in zip(chunk, in_pre.contains(chunk).tolist()) if not before]
                deleted += sink.unlink(new, scope)
        finally:
            sink.close()
        rb.update(stage="new_keys_deleted", deleted_new=rb.get("deleted_new", 0) + deleted)
        state.advance(fs, root, "rolling_back", rollback=rb)
        if progress:
            progress("rollback_delete", {"deleted_new": rb["deleted_new"]})
    if rb["stage"] == "new_keys_deleted":
        result = run_restore(pre, target, _restore_options(scope, batch_size), keyring=keyring)
        rb.update(stage="pre_image_restored", restored=result.counters.written,
                  expired_on_arrival=result.counters.expired_on_arrival,
                  not_restored_outside_patterns=result.counters.not_selected)
        state.advance(fs, root, "rolling_back", rollback=rb)
        if progress:
            progress("rollback_restore", {"restored": rb["restored"]})
    if rb["stage"] == "pre_image_restored":
        # Pre-image keys whose expiry passed: the migration's copy (or a late write) must go too.
        sink = open_sink(target)
        removed = 0
        try:
            for gone in _expired(pre, scope, sink.now_ms(), batch_size):
                removed += sink.unlink(gone, scope)
        finally:
            sink.close()
        rb.update(stage="done", removed_expired=removed, finished_at=_now())
    state.advance(fs, root, "rolled_back", rollback=rb, rolled_back=True, finished_at=_now())
    if progress:
        progress("rolled_back", dict(rb))
    return rb


def resume_rollback(target: RedisEndpoint, fs, root: str, migration_id: str,
                    progress: ProgressFn | None = None, *, patterns: tuple[str, ...] | list[str] | None = None,
                    keyring: Keyring | None = None) -> MigrationState:
    """Finish the rollback of an interrupted migration (or roll back a run that died while
    writing), only within `patterns` (the operator's; default: the session patterns) and the
    patterns the state file records. A migration that finished, or already rolled back, is
    left alone."""
    operator = check_patterns(patterns if patterns is not None else DEFAULT_PATTERNS)
    state = MigrationState.load(fs, root, migration_id, keyring)
    if state.step in FINAL_STEPS:
        return state
    if state.step in WRITING_STEPS:
        rollback(target, fs, root, state, progress, patterns=operator, keyring=keyring)
    else:  # died before the first write: nothing to undo
        state.advance(fs, root, "failed", error=state.error or "interrupted before any write to the target",
                      finished_at=_now())
    return state


def plan_rollback(target: RedisEndpoint, fs, root: str, migration_id: str, *,
                  patterns: tuple[str, ...] | list[str] | None = None, keyring: Keyring | None = None) -> dict[str, Any]:
    """`resume_rollback`'s dry run: what it would delete and restore on `target`, stage by
    stage as the state file stands. Writes nothing, to the target or the storage."""
    operator = check_patterns(patterns if patterns is not None else DEFAULT_PATTERNS)
    keyring = resolve_keyring(keyring)
    state = MigrationState.load(fs, root, migration_id, keyring)
    scope = _rollback_scope(state, operator)
    stage = state.rollback.get("stage", "started")
    plan: dict[str, Any] = {"migration_id": migration_id, "dry_run": True, "step": state.step, "stage": stage,
                            "target": target.display_url, **scope.describe(), "would_delete": 0, "would_restore": 0,
                            "would_remove_expired": 0, "not_restored_outside_patterns": 0, "delete_examples": []}
    if state.step in FINAL_STEPS:
        return {**plan, "action": "nothing: the migration is finished or already rolled back"}
    if state.step not in WRITING_STEPS or state.pre_image_id is None:
        return {**plan, "action": "nothing: no write had reached the target"}
    if state.target != target.identity:
        raise InvalidParameter(f"Migration {state.migration_id} wrote to {shown(state.target)}, not {target.display_url}.")
    batch_size = int(state.options.get("batch_size", 1000))
    pre = _open_pre_image(fs, root, state, keyring)
    if stage == "started":
        in_pre = _key_set(pre)
        for chunk in scope.target_keys(target, batch_size):
            new = [k for k, before in zip(chunk, in_pre.contains(chunk).tolist()) if not before]
            plan["would_delete"] += len(new)
            plan["delete_examples"] += [redact_key(k) for k in new[: MAX_EXAMPLES - len(plan["delete_examples"])]]
    if stage in ("started", "new_keys_deleted"):
        restore = run_restore(pre, target, _restore_options(scope, batch_size, dry_run=True), keyring=keyring)
        plan["would_restore"] = restore.plan["would_create"] + restore.plan["would_overwrite"]
        plan["not_restored_outside_patterns"] = restore.counters.not_selected
    if stage != "done":
        sink = open_sink(target)
        try:
            plan["would_remove_expired"] = sum(len(gone) for gone in _expired(pre, scope, sink.now_ms(), batch_size))
        finally:
            sink.close()
    return {**plan, "action": "roll back"}


# -- the whole run -------------------------------------------------------------------------------


@dataclass
class MigrationResult:
    """What `run_migration` returns: the run's summary (as the flow returns it)."""

    data: dict[str, Any]

    @property
    def migration_id(self) -> str | None:
        return self.data.get("migration_id")

    @property
    def dry_run(self) -> bool:
        return bool(self.data.get("dry_run"))

    @property
    def ok(self) -> bool:
        return self.dry_run or self.data.get("step") == "done"

    def summary(self) -> dict[str, Any]:
        """Plain JSON for `--json`, artifacts and notebooks."""
        return self.data


def plan_migration(source: RedisEndpoint, target: RedisEndpoint, options: MigrationOptions) -> dict[str, Any]:
    """Dry run: the backup's dry run, then what the restore would do on the target. Writes nothing."""
    backup = run_backup(source, fsspec.filesystem("memory"), "/unused", options.backup_options(dry_run=True))
    sink = open_sink(target)
    create = overwrite = 0
    source_keys = SeenKeys()
    try:
        for chunk in _chunks(_scope_keys(source, options.patterns, options.batch_size), options.batch_size):
            source_keys.add_new(chunk)
            _now_ms, exists = sink.probe(chunk)
            overwrite += sum(exists)
            create += len(chunk) - sum(exists)
    finally:
        sink.close()
    target_keys = kept = 0
    for chunk in _chunks(_scope_keys(target, options.patterns, options.batch_size), options.batch_size):
        target_keys += len(chunk)
        kept += int((~source_keys.contains(chunk)).sum())
    return {"backup": backup.summary(), "restore_plan": {
        "would_create": create, "would_overwrite": overwrite, "target_keys_in_scope": target_keys,
        "target_only_kept": kept}, "source": source.display_url, "target": target.display_url}


def run_migration(source: RedisEndpoint, target: RedisEndpoint, fs: fsspec.AbstractFileSystem, root: str,
                  options: MigrationOptions, progress: ProgressFn | None = None) -> MigrationResult:
    """Move the sessions in scope from `source` to `target`, rolling the target back on failure:
    `operations.full_migration` run directly (the Prefect flow runs the same steps as tasks).
    `progress(step, info)` is called as each step is reached.

    Raises `MigrationRefused` (nothing written) or `MigrationFailed` (with `.summary`, saying
    whether the target was rolled back)."""
    from .operations import full_migration
    from .runner import DirectRunner, Feedback

    class Reached(Feedback):
        def reached(self, step: str, info: dict[str, Any]) -> None:
            if progress:
                progress(step, info)

    return MigrationResult(full_migration(DirectRunner(Reached()), source, target, (fs, root), options))


def verification_failure(judged: dict[str, Any]) -> str:
    """The one sentence a failed verification gives, whichever way the migration runs."""
    counts = {c: judged["counts"].get(c, 0) for c in MISMATCHES if c != "EXTRA" and judged["counts"].get(c, 0)}
    if judged["unexpected_extra"]:
        counts["unexpected EXTRA"] = judged["unexpected_extra"]
    return "Verification failed: " + ", ".join(f"{k} {v}" for k, v in counts.items())


def _result(fs, root: str, state: MigrationState) -> MigrationResult:
    data = asdict(state)
    data["state_file"] = storage.unstrip(fs, state_path(root, state.migration_id))
    return MigrationResult(_summary(data))


def _summary(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "migration_id": s["migration_id"], "dry_run": False, "ok": s["step"] == "done", "step": s["step"],
        "source": s["source"], "target": s["target"], "snapshot": s["snapshot"], "snapshot_id": s["snapshot_id"],
        "pre_image": s["pre_image"], "pre_image_id": s["pre_image_id"],
        "backup": s["counts"].get("backup"), "pre_image_keys": s["counts"].get("pre_image", {}).get("keys"),
        "restore": s["counts"].get("restore"), "verify": s["verify"], "rolled_back": s["rolled_back"],
        "rollback": s["rollback"] or None, "live": s["counts"].get("live"), "audit": s["audit"], "error": s["error"],
        "state_file": s.get("state_file"),
    }


def handle_failure(target: RedisEndpoint, fs, root: str, state: MigrationState, rollback_on_failure: bool,
                   message: str, progress: ProgressFn | None = None,
                   patterns: tuple[str, ...] | list[str] | None = None) -> str:
    """Record a failure; roll the target back when writes may have reached it and rollback is
    on, within `patterns` (the run's own; give them when `state` was read back from the
    storage) and the recorded ones. Returns the sentence to report (it says whether the target
    was rolled back). A failing rollback raises `MigrationFailed` naming `resume_rollback`."""
    state.error = message
    if state.needs_rollback and rollback_on_failure:
        try:
            rollback(target, fs, root, state, progress, patterns=tuple(patterns) if patterns else None)
        except SessionMigrationError as rb_exc:
            state.error = f"{message}; the rollback failed too ({rb_exc}); finish it with resume_rollback {state.migration_id}"
            state.save(fs, root)
            raise MigrationFailed(state.error, _result(fs, root, state).summary()) from rb_exc
        return f"Migration {state.migration_id} failed and the target was rolled back to its pre-migration state: {message}"
    if state.needs_rollback:
        state.save(fs, root)
        return (f"Migration {state.migration_id} failed after writing to the target; it was NOT rolled back "
                f"(rollback_on_failure is off): {message}. Roll back with resume_rollback {state.migration_id}.")
    state.advance(fs, root, "failed", finished_at=_now())
    return f"Migration {state.migration_id} failed before any write to the target: {message}"


def record_interruption(fs, root: str, migration_id: str, exc: BaseException, keyring: Keyring | None = None) -> None:
    """Ctrl-C or SIGTERM during a migration: the state file says so; a rollback, if writes had
    begun, is the operator's call (`resume_rollback`)."""
    state = MigrationState.load(fs, root, migration_id, keyring)
    state.error = f"interrupted ({exc.__class__.__name__})"
    state.save(fs, root)


def record_live(fs, root: str, migration_id: str, summary: dict[str, Any], keyring: Keyring | None = None) -> None:
    """Keep a live migration's following summary in its state file (no new step in the history)."""
    state = MigrationState.load(fs, root, migration_id, keyring)
    state.counts["live"] = summary
    state.save(fs, root)


def record_step(fs, root: str, migration_id: str, step: str, counts: dict[str, Any] | None = None,
                *, keyring: Keyring | None = None, **fields: Any) -> MigrationState:
    """Load the state, merge `counts` (step name -> numbers) and `fields`, move to `step`, save."""
    state = MigrationState.load(fs, root, migration_id, keyring)
    if counts:
        state.counts.update(counts)
    if step == "done" and "finished_at" not in fields:
        fields["finished_at"] = _now()
    state.advance(fs, root, step, **fields)
    return state


def result_summary(fs, root: str, migration_id: str, keyring: Keyring | None = None) -> dict[str, Any]:
    return _result(fs, root, MigrationState.load(fs, root, migration_id, keyring)).summary()


def migrate(source: str | RedisEndpoint, target: str | RedisEndpoint, backup_path: str, *,
            storage_options: dict | None = None, progress: ProgressFn | None = None, **options: Any) -> MigrationResult:
    """Without Prefect: `migrate("redis://old:6379/0", "redis://new:6379/0", "snapshots/", patterns=["sess:*"])`.
    `storage_options` open `backup_path` (and everything under it: snapshot, pre-image, state)."""
    from .parameters import migration_options

    src = source if isinstance(source, RedisEndpoint) else RedisEndpoint.from_url(source)
    dst = target if isinstance(target, RedisEndpoint) else RedisEndpoint.from_url(target)
    fs, root = storage.resolve(backup_path, storage_options)
    return run_migration(src, dst, fs, root, migration_options(options), progress)
