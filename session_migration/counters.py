"""What a backup did, counted as it goes; the manifest, reports and progress read these."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class BackupCounters:
    keys: int = 0  # rows written
    bytes: int = 0  # payload bytes of those rows
    scanned: int = 0  # keys SCAN returned, duplicates included
    duplicates: int = 0  # returned again by SCAN or by a second pattern; written once
    vanished: int = 0  # gone (deleted or expired) between SCAN and read
    with_ttl: int = 0
    without_ttl: int = 0
    by_type: Counter = field(default_factory=Counter)
    by_store: Counter = field(default_factory=Counter)
    by_pattern: dict[str, dict[str, int]] = field(default_factory=dict)

    def add_batch(self, pattern: str, batch: pa.RecordBatch | pa.Table, sign: int = 1) -> None:
        """Count rows written under `pattern`; `sign=-1` takes back rows dropped afterwards (the
        repeats a backup in units removes before its commit)."""
        n = batch.num_rows
        if not n:
            return
        size = int(pc.sum(batch.column("size_bytes")).as_py() or 0)
        no_ttl = batch.column("expire_at_ms").null_count
        self.keys += sign * n
        self.bytes += sign * size
        self.without_ttl += sign * no_ttl
        self.with_ttl += sign * (n - no_ttl)
        for item in pc.value_counts(batch.column("type")).to_pylist():
            self.by_type[item["values"]] += sign * item["counts"]
        for item in pc.value_counts(batch.column("store").fill_null("unknown")).to_pylist():
            self.by_store[item["values"]] += sign * item["counts"]
        slot = self.by_pattern.setdefault(pattern, {"keys": 0, "bytes": 0})
        slot["keys"] += sign * n
        slot["bytes"] += sign * size
        if sign < 0:  # what is left is what a backup that never read the repeats counted
            self.by_type = +self.by_type
            self.by_store = +self.by_store
            self.by_pattern = {k: v for k, v in self.by_pattern.items() if v["keys"]}

    def add(self, other: BackupCounters) -> None:
        """Add what another reader counted."""
        for name in ("keys", "bytes", "scanned", "duplicates", "vanished", "with_ttl", "without_ttl"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_type.update(other.by_type)
        self.by_store.update(other.by_store)
        for pattern, slot in other.by_pattern.items():
            mine = self.by_pattern.setdefault(pattern, {"keys": 0, "bytes": 0})
            mine["keys"] += slot["keys"]
            mine["bytes"] += slot["bytes"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "keys": self.keys,
            "bytes": self.bytes,
            "scanned": self.scanned,
            "duplicates": self.duplicates,
            "vanished": self.vanished,
            "with_ttl": self.with_ttl,
            "without_ttl": self.without_ttl,
            "by_type": dict(sorted(self.by_type.items())),
            "by_store": dict(sorted(self.by_store.items())),
            "by_pattern": {k: dict(v) for k, v in self.by_pattern.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackupCounters:
        return cls(
            keys=data["keys"],
            bytes=data["bytes"],
            scanned=data["scanned"],
            duplicates=data["duplicates"],
            vanished=data["vanished"],
            with_ttl=data["with_ttl"],
            without_ttl=data["without_ttl"],
            by_type=Counter(data["by_type"]),
            by_store=Counter(data["by_store"]),
            by_pattern={k: dict(v) for k, v in data["by_pattern"].items()},
        )
