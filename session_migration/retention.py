"""Retention: which committed snapshots to keep, and deleting the rest safely.

A snapshot is kept when it is among the newest `keep_last` or younger than `keep_days`.
Whatever the rules say, the newest snapshot that passes its checksums is never deleted, so
pruning can never leave a root without a usable backup. Unfinished backups (no manifest)
are reported, never touched: one may be running. Deleting removes the manifest first, so a
half-deleted snapshot can never be read as complete.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import fsspec

from . import storage
from .errors import InvalidParameter, SnapshotInvalid
from .snapshot import CHECKPOINT, MANIFEST, Snapshot, list_snapshots


@dataclass(frozen=True)
class RetentionOptions:
    keep_last: int | None = None
    keep_days: float | None = None
    dry_run: bool = True

    def __post_init__(self) -> None:
        if self.keep_last is None and self.keep_days is None:
            raise InvalidParameter("Give keep_last and/or keep_days: without a rule every snapshot would be a candidate.")
        if self.keep_last is not None and (isinstance(self.keep_last, bool) or not isinstance(self.keep_last, int) or self.keep_last < 1):
            raise InvalidParameter(f"keep_last must be a whole number >= 1; got {self.keep_last!r}.")
        if self.keep_days is not None and (not isinstance(self.keep_days, (int, float)) or self.keep_days <= 0):
            raise InvalidParameter(f"keep_days must be a number of days > 0; got {self.keep_days!r}.")


@dataclass
class PrunePlan:
    root: str
    dry_run: bool
    keep: list[dict[str, Any]] = field(default_factory=list)
    delete: list[dict[str, Any]] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    protected: str | None = None  # kept only because it is the newest valid snapshot

    def as_dict(self) -> dict[str, Any]:
        return {"root": self.root, "dry_run": self.dry_run, "keep": self.keep, "delete": self.delete,
                "unfinished": self.unfinished, "protected": self.protected,
                "deleted": 0 if self.dry_run else len(self.delete)}


def _finished(s: Snapshot) -> dt.datetime:
    return dt.datetime.fromisoformat(s.manifest["finished_at"])


def _describe(s: Snapshot) -> dict[str, Any]:
    return {"snapshot_id": s.snapshot_id, "finished_at": s.manifest["finished_at"], "keys": s.totals["keys"],
            "bytes": sum(p.bytes for p in s.parts)}


def prune_snapshots(fs: fsspec.AbstractFileSystem, root: str, options: RetentionOptions,
                    now: dt.datetime | None = None) -> PrunePlan:
    now = now or dt.datetime.now(dt.timezone.utc)
    snapshots = sorted(list_snapshots(fs, root), key=_finished, reverse=True)  # newest first
    plan = PrunePlan(root=storage.unstrip(fs, root), dry_run=options.dry_run)
    keep_ids = set()
    for rank, snap in enumerate(snapshots):
        if options.keep_last is not None and rank < options.keep_last:
            keep_ids.add(snap.snapshot_id)
        if options.keep_days is not None and now - _finished(snap) <= dt.timedelta(days=options.keep_days):
            keep_ids.add(snap.snapshot_id)
    # The guarantee: at least one kept snapshot passes its checksums, if any snapshot does.
    kept = [s for s in snapshots if s.snapshot_id in keep_ids]
    if not any(_is_valid(s) for s in kept):
        rescue = next((s for s in snapshots if s.snapshot_id not in keep_ids and _is_valid(s)), None)
        if rescue is not None:
            keep_ids.add(rescue.snapshot_id)
            plan.protected = rescue.snapshot_id
    for snap in snapshots:
        (plan.keep if snap.snapshot_id in keep_ids else plan.delete).append(_describe(snap))
    plan.unfinished = _unfinished(fs, root)
    if not options.dry_run:
        for snap in snapshots:
            if snap.snapshot_id not in keep_ids:
                _delete(fs, snap.path)
    return plan


def _is_valid(snap: Snapshot) -> bool:
    try:
        snap.verify_parts()
        return True
    except SnapshotInvalid:
        return False


def _unfinished(fs, root: str) -> list[str]:
    names = []
    for entry in fs.ls(root, detail=True) if fs.exists(root) else []:
        if entry.get("type") == "directory":
            path = entry["name"].rstrip("/")
            if not fs.exists(storage.join(path, MANIFEST)) and fs.exists(storage.join(path, CHECKPOINT)):
                names.append(path.rsplit("/", 1)[-1])
    return sorted(names)


def _delete(fs, path: str) -> None:
    fs.rm_file(storage.join(path, MANIFEST))  # first: from here on it is no longer a snapshot
    fs.rm(path, recursive=True)
