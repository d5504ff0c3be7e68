"""The durable record of an unfinished backup, kept next to its parts.

It is rewritten (atomically) each time a part is complete and names where the SCAN goes on:
for each reader (one per SCAN segment), the pattern and the cursor after the last key it
contributed to that part. A backup started again with the
same snapshot id reads it, skips the completed parts, and continues from there.

With a signing key the checkpoint is signed like the manifest: the parts it lists end up in
the signed manifest, so a checkpoint someone else wrote must not be resumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import fsspec

from . import storage
from .counters import BackupCounters
from .errors import SignatureInvalid, SnapshotInvalid
from .signing import Keyring, resolve
from .snapshot import CHECKPOINT, PartInfo

PURPOSE = "backup-checkpoint"


@dataclass
class BackupCheckpoint:
    snapshot_id: str
    started_at: str
    source: str  # display URL: resuming against another server is refused
    options: dict[str, Any]
    # per reader: (the pattern to continue with, the SCAN cursor to continue from; 0 = its start)
    positions: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)])
    parts: list[PartInfo] = field(default_factory=list)
    counters: BackupCounters = field(default_factory=BackupCounters)
    keyring: Keyring | None = field(default=None, repr=False, compare=False)  # signs it; never written

    def to_json(self) -> bytes:
        return json.dumps(resolve(self.keyring).sign(
            {
                "snapshot_id": self.snapshot_id,
                "started_at": self.started_at,
                "source": self.source,
                "options": self.options,
                "positions": [list(p) for p in self.positions],
                "parts": [p.as_dict() for p in self.parts],
                "counters": self.counters.as_dict(),
            }, PURPOSE),
            indent=1,
        ).encode()

    def save(self, fs: fsspec.AbstractFileSystem, snapshot_path: str) -> None:
        storage.write_atomic(fs, storage.join(snapshot_path, CHECKPOINT), self.to_json())


def load_checkpoint(fs: fsspec.AbstractFileSystem, snapshot_path: str,
                    keyring: Keyring | None = None) -> BackupCheckpoint | None:
    path = storage.join(snapshot_path, CHECKPOINT)
    raw = storage.read_bytes(fs, path)
    if raw is None:
        return None
    keyring = resolve(keyring)
    try:
        data = json.loads(raw)
        keyring.require(data, PURPOSE, f"the backup checkpoint {storage.unstrip(fs, path)}")
        return BackupCheckpoint(
            snapshot_id=data["snapshot_id"],
            started_at=data["started_at"],
            source=data["source"],
            options=data["options"],
            positions=[(int(index), int(cursor)) for index, cursor in data["positions"]],
            parts=[PartInfo(**p) for p in data["parts"]],
            counters=BackupCounters.from_dict(data["counters"]),
            keyring=keyring,
        )
    except SignatureInvalid:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, SnapshotInvalid) as exc:
        raise SnapshotInvalid(
            f"The checkpoint {storage.unstrip(fs, path)} is unreadable ({exc}); delete that snapshot folder and start a new backup."
        ) from None


def remove_checkpoint(fs: fsspec.AbstractFileSystem, snapshot_path: str) -> None:
    try:
        fs.rm_file(storage.join(snapshot_path, CHECKPOINT))
    except FileNotFoundError:
        pass
