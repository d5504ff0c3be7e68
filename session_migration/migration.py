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
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import pyarrow as pa

from . import storage
from .endpoints import RedisEndpoint, translate_redis_errors
from .errors import InvalidParameter, ScopeViolation, SessionMigrationError, SnapshotInvalid, TerminalError
from .options import MAX_BATCH_SIZE, BackupOptions, RestoreOptions
from .patterns import DEFAULT_PATTERNS, check_patterns
from .pipeline import BackupResult, run_backup, write_snapshot
from .redaction import redact_key
from .redis_glob import ScopeMatcher
from .restore import run_restore
from .seen import SeenKeys
from .sinks.redis import RedisSink
from .snapshot import Snapshot, new_snapshot_id, open_snapshot, snapshot_dir
from .sources import resp
from .sources.redis import RedisSource
from .validation import validate_snapshot
from .verify import MISMATCHES, VerifyOptions, verify

MIGRATIONS = "migrations"
MAX_EXAMPLES = 5

# Steps in the order they are reached; "restoring" is the first that writes to the target.
STEPS = ("started", "backed_up", "validated", "pre_image", "restoring", "restored", "verified",
         "rolling_back", "rolled_back", "audited", "done", "failed")
WRITING_STEPS = frozenset({"restoring", "restored", "verified", "rolling_back"})
FINAL_STEPS = frozenset({"rolled_back", "done", "failed", "audited"})

ProgressFn = Callable[[str, dict[str, Any]], None]


class MigrationRefused(TerminalError):
    """A check before the first write said no; nothing was written anywhere."""


class MigrationFailed(TerminalError):
    """The migration failed after it started; `summary` says how far it came and whether the
    target was rolled back."""

    def __init__(self, message: str, summary: dict[str, Any] | None = None):
        super().__init__(message)
        self.summary = summary or {}


@dataclass(frozen=True)
class MigrationOptions:
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    batch_size: int = 1000
    preserve_ttl: bool = True
    dry_run: bool = False
    verify: bool = True
    rollback_on_failure: bool = True
    ttl_tolerance_ms: int | None = 2_000  # None: verify ignores expiry
    require_empty_target: bool = False  # refuse when the target already holds keys in scope

    def __post_init__(self) -> None:
        if isinstance(self.patterns, str):
            raise InvalidParameter("patterns must be a list of key patterns, not a single string.")
        object.__setattr__(self, "patterns", check_patterns(self.patterns))
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise InvalidParameter(f"batch_size must be a whole number from 1 to {MAX_BATCH_SIZE:,}; got {self.batch_size!r}.")
        for name in ("preserve_ttl", "dry_run", "verify", "rollback_on_failure", "require_empty_target"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidParameter(f"{name} must be true or false; got {getattr(self, name)!r}.")
        tol = self.ttl_tolerance_ms
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, int) or tol < 0):
            raise InvalidParameter(f"ttl_tolerance_ms must be a whole number >= 0 or None; got {tol!r}.")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["patterns"] = list(self.patterns)
        return data

    def backup_options(self, snapshot_id: str | None = None, dry_run: bool = False) -> BackupOptions:
        return BackupOptions(patterns=self.patterns, batch_size=self.batch_size, preserve_ttl=self.preserve_ttl,
                             snapshot_id=snapshot_id, dry_run=dry_run)

    def restore_options(self) -> RestoreOptions:
        """The migration's own restore: whole snapshot scope, same expiry instant, overwrite."""
        return RestoreOptions(ttl_policy="absolute", on_conflict="replace", batch_size=self.batch_size)

    def verify_options(self) -> VerifyOptions:
        return VerifyOptions(patterns=self.patterns, ttl_tolerance_ms=self.ttl_tolerance_ms,
                             batch_size=min(self.batch_size, 100_000))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")



# -- state file ---------------------------------------------------------------------------------


@dataclass
class MigrationState:
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

    def save(self, fs: fsspec.AbstractFileSystem, root: str) -> None:
        storage.write_atomic(fs, state_path(root, self.migration_id), json.dumps(asdict(self), indent=1).encode())

    def advance(self, fs, root: str, step: str, **updates: Any) -> None:
        if step not in STEPS:
            raise InvalidParameter(f"Unknown migration step {step!r}.")
        for name, value in updates.items():
            setattr(self, name, value)
        self.step = step
        self.history.append({"step": step, "at": _now()})
        self.save(fs, root)

    @classmethod
    def load(cls, fs: fsspec.AbstractFileSystem, root: str, migration_id: str) -> MigrationState:
        path = state_path(root, migration_id)
        raw = storage.read_bytes(fs, path)
        if raw is None:
            raise InvalidParameter(f"No migration {migration_id} under {storage.unstrip(fs, root)} (no {storage.unstrip(fs, path)}).")
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise SnapshotInvalid(f"The migration state {storage.unstrip(fs, path)} is unreadable ({exc}).") from None

    def summary(self) -> dict[str, Any]:
        return {
            "migration_id": self.migration_id, "source": self.source, "target": self.target, "step": self.step,
            "snapshot": self.snapshot, "snapshot_id": self.snapshot_id, "pre_image": self.pre_image,
            "pre_image_id": self.pre_image_id, "counts": self.counts, "verify": self.verify,
            "rolled_back": self.rolled_back, "rollback": self.rollback, "audit": self.audit, "error": self.error,
            "started_at": self.started_at, "finished_at": self.finished_at,
        }


def state_path(root: str, migration_id: str) -> str:
    return storage.join(root, MIGRATIONS, f"{migration_id}.json")


def list_migrations(fs: fsspec.AbstractFileSystem, root: str) -> list[MigrationState]:
    folder = storage.join(root, MIGRATIONS)
    try:
        names = sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(folder, detail=False))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [MigrationState.load(fs, root, n[: -len(".json")]) for n in names if n.endswith(".json") and not n.endswith(".tmp")]


# -- step 1: refusals -------------------------------------------------------------------------


def _scope_keys(endpoint: RedisEndpoint, patterns, batch_size: int, limit: int | None = None) -> Iterator[bytes]:
    source = RedisSource(endpoint, preserve_ttl=False)
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
    src = RedisSource(source, preserve_ttl=False)
    try:
        source_info = src.info
        source_dbsize = src.dbsize()
    finally:
        src.close()
    sink = RedisSink(target)
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
                    migration_id: str | None = None) -> MigrationState:
    state = MigrationState(migration_id=migration_id or new_migration_id(), source=source.display_url,
                           target=target.identity, options=options.as_dict(), started_at=_now())
    state.advance(fs, root, "started")
    return state


def take_pre_image(target: RedisEndpoint, fs, root: str, options: MigrationOptions,
                   snapshot_id: str | None = None) -> BackupResult:
    """Snapshot the target's keys in scope (expiry always captured): what a rollback puts back."""
    source = RedisSource(target, preserve_ttl=True)
    try:
        seen = SeenKeys()

        def batches() -> Iterator[tuple[str, pa.RecordBatch]]:
            for chunk in source.read_chunks(options.patterns, options.batch_size):
                if chunk.result is None or not chunk.result.batch.num_rows:
                    continue
                batch = chunk.result.batch
                fresh = seen.add_new(batch.column("key").to_pylist())
                if not fresh.all():  # SCAN may repeat a key; a snapshot holds it once
                    batch = batch.filter(pa.array(fresh))
                yield options.patterns[chunk.pattern_index], batch

        opts = BackupOptions(patterns=options.patterns, batch_size=options.batch_size, preserve_ttl=True,
                             snapshot_id=snapshot_id or f"{new_snapshot_id()}-pre")
        return write_snapshot(fs, root, batches(), target, source.info, opts)
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


def _unlink(client, endpoint: RedisEndpoint, keys: list[bytes], scope) -> int:
    if not keys:
        return 0
    for key, inside in zip(keys, scope.mask(pa.array(keys, pa.binary())).tolist()):  # one RE2 pass a chunk
        if not inside:  # never anything outside the patterns
            raise ScopeViolation(f"Refusing to delete {redact_key(key)}: it is outside the migration's patterns.")
    with translate_redis_errors(endpoint):
        replies = resp.execute(client, resp.pack_per_key(b"UNLINK", keys), len(keys))
    return sum(int(r) for r in replies if isinstance(r, int))


def rollback(target: RedisEndpoint, fs, root: str, state: MigrationState,
             progress: ProgressFn | None = None) -> dict[str, Any]:
    """Put the target back as the pre-image says. Resumable: each stage is idempotent and its
    completion recorded in the state file, so a re-run continues where the last one stopped."""
    if state.target != target.identity:
        raise InvalidParameter(f"Migration {state.migration_id} wrote to {state.target}, not {target.display_url}.")
    scope = ScopeMatcher(state.patterns)
    batch_size = int(state.options.get("batch_size", 1000))
    rb = dict(state.rollback or {})
    rb.setdefault("stage", "started")
    rb.setdefault("started_at", _now())
    state.advance(fs, root, "rolling_back", rollback=rb)
    if state.pre_image is None:
        # The run died before the pre-image was committed, so nothing was written to the target.
        rb.update(stage="done", note="no pre-image: nothing had been written to the target")
        state.advance(fs, root, "rolled_back", rollback=rb, rolled_back=True, finished_at=_now())
        return rb
    pfs, ppath = storage.resolve(state.pre_image)
    pre = open_snapshot(pfs, ppath, verify=True)
    if rb["stage"] == "started":
        in_pre = _key_set(pre)
        client = target.connect()
        deleted = 0
        try:
            for chunk in _chunks(_scope_keys(target, state.patterns, batch_size), batch_size):
                new = [k for k, before in zip(chunk, in_pre.contains(chunk).tolist()) if not before]
                deleted += _unlink(client, target, new, scope)
        finally:
            client.close()
        rb.update(stage="new_keys_deleted", deleted_new=rb.get("deleted_new", 0) + deleted)
        state.advance(fs, root, "rolling_back", rollback=rb)
        if progress:
            progress("rollback_delete", {"deleted_new": rb["deleted_new"]})
    if rb["stage"] == "new_keys_deleted":
        result = run_restore(pre, target, RestoreOptions(ttl_policy="absolute", on_conflict="replace",
                                                          batch_size=batch_size))
        rb.update(stage="pre_image_restored", restored=result.counters.written,
                  expired_on_arrival=result.counters.expired_on_arrival)
        state.advance(fs, root, "rolling_back", rollback=rb)
        if progress:
            progress("rollback_restore", {"restored": rb["restored"]})
    if rb["stage"] == "pre_image_restored":
        # Pre-image keys whose expiry passed: the migration's copy (or a late write) must go too.
        sink = RedisSink(target)
        removed = 0
        try:
            now = sink.now_ms()
            for batch in pre.iter_batches(columns=["key", "expire_at_ms"], batch_size=batch_size):
                gone = [k for k, e in zip(batch.column("key").to_pylist(), batch.column("expire_at_ms").to_pylist())
                        if e is not None and e <= now]
                removed += _unlink(sink.client, target, gone, scope)
        finally:
            sink.close()
        rb.update(stage="done", removed_expired=removed, finished_at=_now())
    state.advance(fs, root, "rolled_back", rollback=rb, rolled_back=True, finished_at=_now())
    if progress:
        progress("rolled_back", dict(rb))
    return rb


def resume_rollback(target: RedisEndpoint, fs, root: str, migration_id: str,
                    progress: ProgressFn | None = None) -> MigrationState:
    """Finish the rollback of an interrupted migration (or roll back a run that died while
    writing). A migration that finished, or already rolled back, is left alone."""
    state = MigrationState.load(fs, root, migration_id)
    if state.step in FINAL_STEPS:
        return state
    if state.step in WRITING_STEPS:
        rollback(target, fs, root, state, progress)
    else:  # died before the first write: nothing to undo
        state.advance(fs, root, "failed", error=state.error or "interrupted before any write to the target",
                      finished_at=_now())
    return state


# -- step 8 and the whole run ------------------------------------------------------------------


def write_audit(snapshot_url: str) -> dict[str, str]:
    from .audit import open_for_audit, write_audit_report
    from .stats import compute_stats

    fs, path = storage.resolve(snapshot_url)
    validation = validate_snapshot(fs, path)
    snap = open_for_audit(fs, path, validation)
    stats = compute_stats(snap) if snap is not None else None
    return write_audit_report(snap, validation, stats, fs, storage.join(path, "audit"))


@dataclass
class MigrationResult:
    migration_id: str | None
    dry_run: bool
    state: dict[str, Any]
    plan: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.dry_run or self.state.get("step") == "done"

    def summary(self) -> dict[str, Any]:
        """Plain JSON for `--json`, artifacts and notebooks."""
        if self.dry_run:
            return {"dry_run": True, **(self.plan or {})}
        s = self.state
        return {
            "migration_id": self.migration_id, "dry_run": False, "ok": self.ok, "step": s["step"],
            "source": s["source"], "target": s["target"], "snapshot": s["snapshot"], "snapshot_id": s["snapshot_id"],
            "pre_image": s["pre_image"], "pre_image_id": s["pre_image_id"],
            "backup": s["counts"].get("backup"), "pre_image_keys": s["counts"].get("pre_image", {}).get("keys"),
            "restore": s["counts"].get("restore"), "verify": s["verify"], "rolled_back": s["rolled_back"],
            "rollback": s["rollback"] or None, "audit": s["audit"], "error": s["error"],
            "state_file": s.get("state_file"),
        }


def plan_migration(source: RedisEndpoint, target: RedisEndpoint, options: MigrationOptions,
                   progress: ProgressFn | None = None) -> dict[str, Any]:
    """Dry run: the backup's dry run, then what the restore would do on the target. Writes nothing."""
    backup = run_backup(source, fsspec.filesystem("memory"), "/unused", options.backup_options(dry_run=True))
    if progress:
        progress("backup", backup.summary())
    sink = RedisSink(target)
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
    plan = {"backup": backup.summary(), "restore_plan": {
        "would_create": create, "would_overwrite": overwrite, "target_keys_in_scope": target_keys,
        "target_only_kept": kept}, "source": source.display_url, "target": target.display_url}
    if progress:
        progress("restore_plan", plan["restore_plan"])
    return plan


def run_migration(source: RedisEndpoint, target: RedisEndpoint, fs: fsspec.AbstractFileSystem, root: str,
                  options: MigrationOptions, progress: ProgressFn | None = None) -> MigrationResult:
    """Move the sessions in scope from `source` to `target`, rolling the target back on failure.

    Raises `MigrationRefused` (nothing written) or `MigrationFailed` (with `.summary`, saying
    whether the target was rolled back)."""
    def step(name: str, info: dict[str, Any]) -> None:
        if progress:
            progress(name, info)

    checked = preflight(source, target, fs, root, options)
    step("preflight", checked)
    if options.dry_run:
        plan = plan_migration(source, target, options, progress)
        return MigrationResult(migration_id=None, dry_run=True, state={}, plan={**checked, **plan})
    state = start_migration(source, target, fs, root, options)
    try:
        backup = run_backup(source, fs, root, options.backup_options(snapshot_id=new_snapshot_id()))
        state.counts["backup"] = backup.summary()
        state.advance(fs, root, "backed_up", snapshot=backup.url, snapshot_id=backup.snapshot_id)
        step("backup", state.counts["backup"])
        path = snapshot_dir(root, backup.snapshot_id)
        report = validate_snapshot(fs, path)
        state.counts["validate"] = {"valid": report.valid, "rows_checked": report.rows_checked,
                                    "problems": [asdict(p) for p in report.problems]}
        if not report.valid:
            problems = " ".join(f"[{p.code}] {p.message}" for p in report.problems)
            raise SnapshotInvalid(f"The source snapshot {backup.url} is not valid: {problems}")
        state.advance(fs, root, "validated")
        step("validate", state.counts["validate"])
        pre = take_pre_image(target, fs, root, options)
        state.counts["pre_image"] = pre.summary()
        state.advance(fs, root, "pre_image", pre_image=pre.url, pre_image_id=pre.snapshot_id)
        step("pre_image", state.counts["pre_image"])
        state.advance(fs, root, "restoring")
        snap = open_snapshot(fs, path, verify=False)
        restored = run_restore(snap, target, options.restore_options())
        state.counts["restore"] = restored.summary()
        state.advance(fs, root, "restored")
        step("restore", state.counts["restore"])
        if options.verify:
            raw = verify(snap, target, options.verify_options()).as_dict()
            pfs, ppath = storage.resolve(pre.url)
            judged = judge_verification(raw, target, snap, open_snapshot(pfs, ppath, verify=False), options)
            state.advance(fs, root, "restored", verify=judged)
            step("verify", judged)
            if not judged["ok"]:
                raise MigrationFailed(_verify_failure(judged))
        state.advance(fs, root, "verified")
    except BaseException as exc:
        _fail(target, fs, root, state, options, exc, progress)
        raise AssertionError("unreachable")  # _fail always raises
    state.advance(fs, root, "audited", audit=write_audit(state.snapshot))
    step("audit", state.audit)
    state.advance(fs, root, "done", finished_at=_now())
    step("done", {"migration_id": state.migration_id})
    return _result(fs, root, state)


def _verify_failure(judged: dict[str, Any]) -> str:
    counts = {c: judged["counts"].get(c, 0) for c in MISMATCHES if c != "EXTRA" and judged["counts"].get(c, 0)}
    if judged["unexpected_extra"]:
        counts["unexpected EXTRA"] = judged["unexpected_extra"]
    return "Verification failed: " + ", ".join(f"{k} {v}" for k, v in counts.items())


def _result(fs, root: str, state: MigrationState) -> MigrationResult:
    data = asdict(state)
    data["state_file"] = storage.unstrip(fs, state_path(root, state.migration_id))
    return MigrationResult(migration_id=state.migration_id, dry_run=False, state=data)


def handle_failure(target: RedisEndpoint, fs, root: str, state: MigrationState, rollback_on_failure: bool,
                   message: str, progress: ProgressFn | None = None) -> str:
    """Record a failure; roll the target back when writes may have reached it and rollback is
    on. Returns the sentence to report (it says whether the target was rolled back). A failing
    rollback raises `MigrationFailed` naming `resume_rollback`."""
    state.error = message
    if state.needs_rollback and rollback_on_failure:
        try:
            rollback(target, fs, root, state, progress)
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


def _fail(target: RedisEndpoint, fs, root: str, state: MigrationState, options: MigrationOptions,
          exc: BaseException, progress: ProgressFn | None) -> None:
    message = str(exc) or exc.__class__.__name__
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: record and let it go
        state.error = message
        state.save(fs, root)
        raise exc
    text = handle_failure(target, fs, root, state, options.rollback_on_failure, message, progress)
    raise MigrationFailed(text, _result(fs, root, state).summary()) from exc


def record_step(fs, root: str, migration_id: str, step: str, counts: dict[str, Any] | None = None,
                **fields: Any) -> MigrationState:
    """Load the state, merge `counts` (step name -> numbers) and `fields`, move to `step`, save."""
    state = MigrationState.load(fs, root, migration_id)
    if counts:
        state.counts.update(counts)
    if step == "done" and "finished_at" not in fields:
        fields["finished_at"] = _now()
    state.advance(fs, root, step, **fields)
    return state


def result_summary(fs, root: str, migration_id: str) -> dict[str, Any]:
    return _result(fs, root, MigrationState.load(fs, root, migration_id)).summary()


def migrate(source: str | RedisEndpoint, target: str | RedisEndpoint, backup_path: str, *,
            storage_options: dict | None = None, progress: ProgressFn | None = None, **options: Any) -> MigrationResult:
    """Without Prefect: `migrate("redis://old:6379/0", "redis://new:6379/0", "snapshots/", patterns=["sess:*"])`."""
    src = source if isinstance(source, RedisEndpoint) else RedisEndpoint.from_url(source)
    dst = target if isinstance(target, RedisEndpoint) else RedisEndpoint.from_url(target)
    if options.get("patterns") is not None and not isinstance(options["patterns"], str):
        options["patterns"] = tuple(options["patterns"])
    fs, root = storage.resolve(backup_path, storage_options)
    return run_migration(src, dst, fs, root, MigrationOptions(**options), progress)
