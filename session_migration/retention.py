"""Retention: which committed snapshots to keep, and deleting the rest safely.

Whoever can write to the storage can add folders to a root, so nothing there is believed just
because it is there (`snapshot.inspect_root`): a folder whose manifest fails its checks, fails
its signature while a key is configured, names another snapshot than its folder, or finished
in the future is *suspicious*: listed, never counted as a keeper, never deleted. Unfinished
backups (a checkpoint, no manifest: one may be running) and folders that are not snapshots are
listed and never touched either.

The rules, over the snapshots left:

- **Backups** (ids not ending in `-pre`): kept when among the newest `keep_last` that
  validate fully (every part present with its sha256 and row count), or younger than
  `keep_days`. A backup that fails full validation is never one of the `keep_last`; when it is
  newer than the last one kept it is listed as suspicious and left alone. Whatever the rules
  say, the newest backup that validates fully is never deleted.
- **Pre-images** (`-pre`, taken by migrations and cleanups before they change a store) do not
  count toward `keep_last`. A migration's pre-image follows its migration: kept while the
  migration is unfinished (its state file under `<root>/migrations/` is in no final step), or
  while the migration's backup is kept. Any other pre-image (a cleanup's, or one whose
  migration state is gone) is its own series under the same rules: the newest `keep_last`, and
  those younger than `keep_days`. If a state file cannot be read, no pre-image is deleted.

Deleting removes the manifest first, so a half-deleted snapshot can never be read as complete.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import fsspec

from . import storage
from .options import RetentionOptions
from .errors import SessionMigrationError, SnapshotInvalid
from .signing import Keyring, resolve
from .snapshot import MANIFEST, Snapshot, inspect_root


@dataclass
class PrunePlan:
    root: str
    dry_run: bool
    keep: list[dict[str, Any]] = field(default_factory=list)  # each with `why`
    delete: list[dict[str, Any]] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)  # backups under way or stopped: left alone
    not_snapshots: list[str] = field(default_factory=list)  # folders without manifest or checkpoint: left alone
    suspicious: list[dict[str, str]] = field(default_factory=list)  # name, reason: never counted, never deleted
    protected: str | None = None  # kept only because it is the newest backup that validates fully
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"root": self.root, "dry_run": self.dry_run, "keep": self.keep, "delete": self.delete,
                "unfinished": self.unfinished, "not_snapshots": self.not_snapshots, "suspicious": self.suspicious,
                "protected": self.protected, "notes": self.notes,
                "deleted": 0 if self.dry_run else len(self.delete)}


class _Rules:
    """The keep decisions of one prune, built up series by series."""

    def __init__(self, options: RetentionOptions, now: dt.datetime):
        self.options = options
        self.now = now
        self.why: dict[str, str] = {}  # snapshot id -> why it is kept
        self.damaged: list[dict[str, str]] = []
        self._valid: dict[str, bool] = {}

    def valid(self, snap: Snapshot) -> bool:
        """Every part present, with its size, sha256 and row count (once per snapshot)."""
        if snap.snapshot_id not in self._valid:
            try:
                snap.verify_parts()
                self._valid[snap.snapshot_id] = True
            except SnapshotInvalid as exc:
                self._valid[snap.snapshot_id] = False
                self.damaged.append({"name": snap.snapshot_id, "reason": f"its parts fail validation: {exc}"})
        return self._valid[snap.snapshot_id]

    def failed(self, snap: Snapshot) -> bool:
        return self._valid.get(snap.snapshot_id) is False

    def apply(self, series: list[Snapshot], what: str) -> None:
        """`keep_days` and `keep_last` over `series` (newest first). A snapshot that fails full
        validation is never counted; newer than the last kept one, it is left alone."""
        days, last = self.options.keep_days, self.options.keep_last
        for snap in series:
            if days is not None and self.now - snap.finished_at <= dt.timedelta(days=days):
                self.why.setdefault(snap.snapshot_id, f"younger than {days:g} days")
        counted = 0
        for snap in series:
            if last is None or counted >= last:
                break
            if self.valid(snap):
                self.why.setdefault(snap.snapshot_id, f"one of the newest {last} valid {what}")
                counted += 1

    def oldest_kept(self, series: list[Snapshot]) -> dt.datetime | None:
        return min((s.finished_at for s in series if s.snapshot_id in self.why), default=None)


def prune_snapshots(fs: fsspec.AbstractFileSystem, root: str, options: RetentionOptions,
                    now: dt.datetime | None = None, keyring: Keyring | None = None) -> PrunePlan:
    """Decide (and unless `options.dry_run`, delete) by the rules of this module's docstring.
    Raises `SnapshotRootNotFound` when `root` does not exist."""
    now = now or dt.datetime.now(dt.timezone.utc)
    keyring = resolve(keyring)
    inventory = inspect_root(fs, root, keyring, now)
    plan = PrunePlan(root=inventory.root, dry_run=options.dry_run, unfinished=inventory.unfinished,
                     not_snapshots=inventory.not_snapshots, suspicious=list(inventory.suspicious))
    newest_first = sorted(inventory.snapshots, key=lambda s: (s.finished_at, s.snapshot_id), reverse=True)
    backups = [s for s in newest_first if not s.is_pre_image]
    rules = _Rules(options, now)
    rules.apply(backups, "backups")
    if backups and not any(rules.valid(s) for s in backups if s.snapshot_id in rules.why):
        # The guarantee: at least one kept backup validates fully, if any does.
        rescue = next((s for s in backups if s.snapshot_id not in rules.why and rules.valid(s)), None)
        if rescue is not None:
            rules.why[rescue.snapshot_id] = "the newest backup that validates fully"
            plan.protected = rescue.snapshot_id
    pre_images = [s for s in newest_first if s.is_pre_image]
    _pre_images(fs, root, pre_images, rules, plan, keyring)
    # A snapshot that failed full validation and is newer than the oldest kept one of its kind
    # was passed over while counting keepers: it is left for a person to look at.
    left_alone = set()
    for series in (backups, pre_images):
        oldest = rules.oldest_kept(series)
        left_alone |= {s.snapshot_id for s in series if rules.failed(s) and (oldest is None or s.finished_at > oldest)}
    plan.suspicious += [d for d in rules.damaged if d["name"] in left_alone]
    for snap in newest_first:
        if snap.snapshot_id in rules.why:
            plan.keep.append({**snap.describe(), "why": rules.why[snap.snapshot_id]})
        elif snap.snapshot_id not in left_alone:
            plan.delete.append(snap.describe())
    if not options.dry_run:
        doomed = {d["snapshot_id"] for d in plan.delete}
        for snap in newest_first:
            if snap.snapshot_id in doomed:
                _delete(fs, snap.path)
    return plan


def _pre_images(fs, root: str, pre_images: list[Snapshot], rules: _Rules, plan: PrunePlan, keyring: Keyring) -> None:
    """Pre-images follow their migration; the others are a series of their own (module docstring)."""
    if not pre_images:
        return
    states, unreadable = _migration_states(fs, root, keyring)
    if unreadable:
        plan.notes.append(f"Migration state file(s) {', '.join(unreadable)} could not be read, so no pre-image "
                          "is deleted: which one they need is unknown.")
        for snap in pre_images:
            rules.why.setdefault(snap.snapshot_id, "a migration state file could not be read")
        return
    by_pre_image = {state.pre_image_id: state for state in states if state.pre_image_id}
    others = []
    for snap in pre_images:
        state = by_pre_image.get(snap.snapshot_id)
        if state is None:
            others.append(snap)
            continue
        days = rules.options.keep_days
        if state.step not in _final_steps():
            rules.why[snap.snapshot_id] = f"pre-image of migration {state.migration_id}, which is unfinished ({state.step})"
        elif state.snapshot_id in rules.why:
            rules.why[snap.snapshot_id] = f"pre-image of migration {state.migration_id}, whose backup {state.snapshot_id} is kept"
        elif days is not None and rules.now - snap.finished_at <= dt.timedelta(days=days):
            rules.why[snap.snapshot_id] = f"younger than {days:g} days"
    rules.apply(others, "pre-images of cleanups")


def _final_steps() -> frozenset[str]:
    from .migration import FINAL_STEPS

    return FINAL_STEPS


def _migration_states(fs, root: str, keyring: Keyring) -> tuple[list[Any], list[str]]:
    """The migration states under `root`, and the names of the files that could not be read."""
    from .migration import MIGRATIONS, MigrationState

    folder = storage.join(root, MIGRATIONS)
    try:
        names = sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(folder, detail=False))
    except (FileNotFoundError, NotADirectoryError):
        return [], []
    states, unreadable = [], []
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            states.append(MigrationState.load(fs, root, name[: -len(".json")], keyring))
        except SessionMigrationError:
            unreadable.append(repr(name)[:80])
    return states, unreadable


def _delete(fs, path: str) -> None:
    fs.rm_file(storage.join(path, MANIFEST))  # first: from here on it is no longer a snapshot
    fs.rm(path, recursive=True)
