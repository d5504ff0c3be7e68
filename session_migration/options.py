"""Frozen option sets, validated on construction so bad input fails before any work starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import InvalidParameter
from .patterns import DEFAULT_PATTERNS, check_patterns
from .sinks.parquet import COMPRESSIONS
from .snapshot import check_snapshot_id

MAX_BATCH_SIZE = 100_000


@dataclass(frozen=True)
class BackupOptions:
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    batch_size: int = 1000  # keys per SCAN page and per pipelined read
    preserve_ttl: bool = True  # capture each key's absolute expiry
    compression: str = "zstd"
    capture_dump: bool = False  # also keep DUMP payloads (fast RESTORE; costs server CPU)
    snapshot_id: str | None = None  # None: a new time-sortable id; same id: resume
    part_rows: int = 100_000  # rows per Parquet part = checkpoint granularity
    row_group_rows: int = 10_000  # rows per Parquet row group = writer memory
    dry_run: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "patterns", check_patterns(self.patterns))
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _check_int("part_rows", self.part_rows, 1, 10_000_000)
        _check_int("row_group_rows", self.row_group_rows, 1, 1_000_000)
        if self.compression not in COMPRESSIONS:
            raise InvalidParameter(
                f"Unknown compression {self.compression!r}; choose one of {', '.join(COMPRESSIONS)}."
            )
        if self.snapshot_id is not None:
            check_snapshot_id(self.snapshot_id)

    def for_manifest(self) -> dict[str, Any]:
        """The options that shape the snapshot's content (recorded, and compared on resume)."""
        data = asdict(self)
        for transient in ("snapshot_id", "dry_run", "extra"):
            data.pop(transient)
        data["patterns"] = list(self.patterns)
        return data


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParameter(f"{name} must be a whole number from {low} to {high:,}; got {value!r}.")
