"""The durable record of an unfinished backup, kept next to its parts.

It is rewritten (atomically) each time a part is complete and names where the SCAN goes on:
for each reader (one per SCAN segment), the pattern and the cursor after the last key it
contributed to that part. For a Redis Cluster a reader is a master ("unit"): `cluster` records
the topology the walk started with (node ids and slots per unit: a resume after slots moved
re-walks them) and the slots seen moving so far ("suspect": re-walked at the end). A backup
started again with the
same snapshot id reads it, skips the completed parts, and continues from there.

With a signing key the checkpoint is signed like the manifest: the parts it lists end up in
the signed manifest, so a checkpoint someone else wrote must not be resumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import fsspec

from . import storage
from .counters import BackupCounters
from .signing import Keyring
from .snapshot import CHECKPOINT, PartInfo
from .state import StateFile


@dataclass
class BackupCheckpoint(StateFile):
    snapshot_id: str
    started_at: str
    source: str  # display URL: resuming against another server is refused
    options: dict[str, Any]  # those that decide what is written (`BackupOptions.identity`)
    # per reader: (the pattern to continue with, the SCAN cursor to continue from; 0 = its start)
    positions: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)])
    parts: list[PartInfo] = field(default_factory=list)
    counters: BackupCounters = field(default_factory=BackupCounters)
    # the run id of the server whose SCAN cursors `positions` are: another server (a restart, a
    # failover to a replica) has another hash table, where those cursors would skip keys
    source_run_id: str | None = None
    cluster: dict[str, Any] | None = None  # {"topology": Topology.as_manifest(), "suspect": [slot, ...]}
    keyring: Keyring | None = field(default=None, repr=False, compare=False)  # signs it; never written

    kind = "backup checkpoint"
    purpose = "backup-checkpoint"
    remedy = "delete that snapshot folder and start a new backup"

    def to_dict(self) -> dict[str, Any]:
        data = {"snapshot_id": self.snapshot_id, "started_at": self.started_at, "source": self.source,
                "options": self.options, "positions": [list(p) for p in self.positions],
                "parts": [p.as_dict() for p in self.parts], "counters": self.counters.as_dict(),
                "source_run_id": self.source_run_id}
        if self.cluster is not None:
            data["cluster"] = self.cluster
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackupCheckpoint:
        return cls(snapshot_id=data["snapshot_id"], started_at=data["started_at"], source=data["source"],
                   options=data["options"], positions=[(int(i), int(c)) for i, c in data["positions"]],
                   parts=[PartInfo(**p) for p in data["parts"]], counters=BackupCounters.from_dict(data["counters"]),
                   source_run_id=_run_id(data.get("source_run_id")), cluster=_cluster_record(data.get("cluster")))

    def save(self, fs: fsspec.AbstractFileSystem, snapshot_path: str) -> None:
        self.write(fs, storage.join(snapshot_path, CHECKPOINT))


def _run_id(value: Any) -> str | None:
    if value is not None and not (isinstance(value, str) and len(value) <= 64):
        raise ValueError("source_run_id is not a server's run id")
    return value


def _cluster_record(record: Any) -> dict[str, Any] | None:
    """The checkpoint's cluster record, checked (it is read from storage: untrusted)."""
    if record is None:
        return None
    from .cluster import SLOTS, from_manifest

    suspect = sorted({int(s) for s in record["suspect"]})
    if suspect and not 0 <= suspect[0] <= suspect[-1] < SLOTS:
        raise ValueError("a suspect slot is out of range")
    from_manifest(record["topology"])  # raises on a malformed topology
    return {"topology": record["topology"], "suspect": suspect}


def load_checkpoint(fs: fsspec.AbstractFileSystem, snapshot_path: str,
                    keyring: Keyring | None = None) -> BackupCheckpoint | None:
    return BackupCheckpoint.read(fs, storage.join(snapshot_path, CHECKPOINT), keyring)


def remove_checkpoint(fs: fsspec.AbstractFileSystem, snapshot_path: str) -> None:
    try:
        fs.rm_file(storage.join(snapshot_path, CHECKPOINT))
    except FileNotFoundError:
        pass
