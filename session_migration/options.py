"""Every operation's options: frozen, validated on construction (with the shared checks below)
so bad input fails before any work starts, with one default per option. Flow parameters become
these in `parameters.py`; the CLI takes its defaults from here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import InvalidParameter
from .patterns import DEFAULT_PATTERNS, check_patterns
from .sinks.snapshot import COMPRESSIONS
from .snapshot import check_snapshot_id

MAX_BATCH_SIZE = 100_000
READER_COUNTS = (1, 2, 4, 8)  # powers of two: each reader walks one SCAN segment


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
    readers: int | None = None  # reader processes (1, 2, 4 or 8); None: 2 on >= 4 cores for big databases, else 1
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "patterns", check_patterns(self.patterns))
        if self.readers is not None and (isinstance(self.readers, bool) or self.readers not in READER_COUNTS):
            raise InvalidParameter(
                f"readers must be one of {', '.join(map(str, READER_COUNTS))} (or unset for automatic); got {self.readers!r}."
            )
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _check_int("part_rows", self.part_rows, 1, 10_000_000)
        _check_int("row_group_rows", self.row_group_rows, 1, 1_000_000)
        if self.compression not in COMPRESSIONS:
            raise InvalidParameter(
                f"Unknown compression {self.compression!r}; choose one of {', '.join(COMPRESSIONS)}."
            )
        if self.snapshot_id is not None:
            check_snapshot_id(self.snapshot_id)

    def identity(self) -> dict[str, Any]:
        """What a resumed backup must share with the one it continues: what decides the rows and
        their encoding (batch and part sizes do not: a SCAN cursor is valid for any COUNT)."""
        data = self.for_manifest()
        return {k: data[k] for k in ("patterns", "preserve_ttl", "compression", "capture_dump")}

    def for_manifest(self) -> dict[str, Any]:
        """The options that shape the snapshot's content (recorded, and compared on resume)."""
        data = asdict(self)
        for transient in ("snapshot_id", "dry_run", "readers", "extra"):
            data.pop(transient)
        data["patterns"] = list(self.patterns)
        return data


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParameter(f"{name} must be a whole number from {low} to {high:,}; got {value!r}.")


def _check_bools(options: object, *names: str) -> None:
    for name in names:
        if not isinstance(getattr(options, name), bool):
            raise InvalidParameter(f"{name} must be true or false; got {getattr(options, name)!r}.")


def _patterns(patterns: object) -> tuple[str, ...]:
    if isinstance(patterns, str):
        raise InvalidParameter("patterns must be a list of key patterns, not a single string.")
    return check_patterns(patterns)


TTL_POLICIES = ("absolute", "relative", "none")
CONFLICT_POLICIES = ("replace", "skip", "fail")
MAX_MIN_TTL_MS = 10 * 365 * 24 * 3600 * 1000  # ten years


@dataclass(frozen=True)
class RestoreOptions:
    patterns: tuple[str, ...] | None = None  # None: the snapshot's own scope
    ttl_policy: str = "absolute"  # absolute: same instant as the source; relative: restart; none
    min_ttl_ms: int = 0  # skip rows that would expire within this many ms of arrival
    on_conflict: str = "replace"  # replace | skip (keep the target's key) | fail (before any write)
    rename_prefix: tuple[str, str] | None = None  # keys starting with OLD get NEW instead
    batch_size: int = 1000  # rows per pipelined round trip
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.patterns is not None:
            if isinstance(self.patterns, str):
                raise InvalidParameter("patterns must be a list of key patterns, not a single string.")
            object.__setattr__(self, "patterns", check_patterns(self.patterns))
        if self.ttl_policy not in TTL_POLICIES:
            raise InvalidParameter(
                f"Unknown ttl_policy {self.ttl_policy!r}; choose one of {', '.join(TTL_POLICIES)}."
            )
        _check_int("min_ttl_ms", self.min_ttl_ms, 0, MAX_MIN_TTL_MS)
        if self.on_conflict not in CONFLICT_POLICIES:
            raise InvalidParameter(
                f"Unknown on_conflict {self.on_conflict!r}; choose one of {', '.join(CONFLICT_POLICIES)}."
            )
        if self.rename_prefix is not None:
            rename = tuple(self.rename_prefix) if not isinstance(self.rename_prefix, str) else ()
            if len(rename) != 2 or not all(isinstance(p, str) for p in rename):
                raise InvalidParameter(
                    f"rename_prefix must be two strings, OLD and NEW; got {self.rename_prefix!r}."
                )
            if not rename[0] or not rename[1] or rename[0] == rename[1]:
                raise InvalidParameter(
                    f"rename_prefix needs a non-empty OLD and a non-empty, different NEW prefix; got {rename!r}."
                )
            object.__setattr__(self, "rename_prefix", rename)
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        if not isinstance(self.dry_run, bool):
            raise InvalidParameter(f"dry_run must be true or false; got {self.dry_run!r}.")

    def for_checkpoint(self) -> dict[str, Any]:
        """The options that decide what a restore writes (a checkpoint is only reused for these)."""
        return {
            "patterns": list(self.patterns) if self.patterns is not None else None,
            "ttl_policy": self.ttl_policy,
            "min_ttl_ms": self.min_ttl_ms,
            "on_conflict": self.on_conflict,
            "rename_prefix": list(self.rename_prefix) if self.rename_prefix else None,
        }


@dataclass(frozen=True)
class TransferOptions(RestoreOptions):
    """RestoreOptions, with `patterns` required (default: every known session store)."""

    patterns: tuple[str, ...] | None = DEFAULT_PATTERNS

    def __post_init__(self) -> None:
        if self.patterns is None:
            object.__setattr__(self, "patterns", DEFAULT_PATTERNS)
        super().__post_init__()


@dataclass(frozen=True)
class VerifyOptions:
    patterns: tuple[str, ...] | None = None  # None: the snapshot's scope, or the default patterns
    ttl_tolerance_ms: int | None = 2_000  # None: do not compare expiry
    sample: float | None = None  # 0 < sample <= 1; None = every key
    batch_size: int = 1000

    def __post_init__(self) -> None:
        if self.patterns is not None:
            object.__setattr__(self, "patterns", _patterns(self.patterns))
        if self.sample is not None and (isinstance(self.sample, bool) or not isinstance(self.sample, (int, float))
                                        or not 0 < self.sample <= 1):
            raise InvalidParameter(f"sample must be a fraction in (0, 1]; got {self.sample!r}.")
        if self.ttl_tolerance_ms is not None:
            _check_int("ttl_tolerance_ms", self.ttl_tolerance_ms, 0, MAX_MIN_TTL_MS)
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)


@dataclass(frozen=True)
class RetentionOptions:
    keep_last: int | None = None
    keep_days: float | None = None
    dry_run: bool = True

    def __post_init__(self) -> None:
        _check_bools(self, "dry_run")
        if self.keep_last is None and self.keep_days is None:
            raise InvalidParameter("Give keep_last and/or keep_days: without a rule every snapshot would be a candidate.")
        if self.keep_last is not None:
            _check_int("keep_last", self.keep_last, 1, 1_000_000)
        if self.keep_days is not None and (isinstance(self.keep_days, bool) or not isinstance(self.keep_days, (int, float))
                                           or self.keep_days <= 0):
            raise InvalidParameter(f"keep_days must be a number of days > 0; got {self.keep_days!r}.")


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
        object.__setattr__(self, "patterns", _patterns(self.patterns))
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _check_bools(self, "preserve_ttl", "dry_run", "verify", "rollback_on_failure", "require_empty_target")
        if self.ttl_tolerance_ms is not None:
            _check_int("ttl_tolerance_ms", self.ttl_tolerance_ms, 0, MAX_MIN_TTL_MS)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["patterns"] = list(self.patterns)
        return data

    def backup_options(self, snapshot_id: str | None = None, dry_run: bool = False) -> BackupOptions:
        return BackupOptions(patterns=self.patterns, batch_size=self.batch_size, preserve_ttl=self.preserve_ttl,
                             snapshot_id=snapshot_id, dry_run=dry_run)

    def restore_options(self) -> RestoreOptions:
        """The migration's own restore: its patterns (never the scope a manifest claims), same
        expiry instant, overwrite."""
        return RestoreOptions(patterns=self.patterns, ttl_policy="absolute", on_conflict="replace",
                              batch_size=self.batch_size)

    def verify_options(self) -> VerifyOptions:
        return VerifyOptions(patterns=self.patterns, ttl_tolerance_ms=self.ttl_tolerance_ms, batch_size=self.batch_size)


LIVE_MODES = ("notify", "scan")
MAX_PENDING_KEYS = 10_000_000


@dataclass(frozen=True)
class LiveOptions:
    """How a live transfer or migration follows the source after its copy (live/).

    notify: keyspace notifications name the changed keys (enabled for the run when the server
    allows CONFIG SET, and put back after); scan: repeated compare-and-repair passes, for servers
    where notifications cannot be enabled (slower; no CONFIG needed)."""

    mode: str = "notify"
    until: str | None = None  # stop at this instant (ISO 8601; UTC when no zone) or after this long ("30m")
    max_pending_keys: int = 200_000  # changed keys held in memory; more go to spill files
    scan_interval_s: float = 5.0  # scan mode: the pause between compare-and-repair passes
    ttl_tolerance_ms: int = 2_000  # what the repair pass and the final verify allow expiry to differ

    def __post_init__(self) -> None:
        if self.mode not in LIVE_MODES:
            raise InvalidParameter(f"Unknown live_mode {self.mode!r}; choose one of {', '.join(LIVE_MODES)}.")
        _check_int("max_pending_keys", self.max_pending_keys, 1_000, MAX_PENDING_KEYS)
        _check_int("ttl_tolerance_ms", self.ttl_tolerance_ms, 0, MAX_MIN_TTL_MS)
        if (isinstance(self.scan_interval_s, bool) or not isinstance(self.scan_interval_s, (int, float))
                or not 0 <= self.scan_interval_s <= 3600):
            raise InvalidParameter(f"scan_interval_s must be 0-3600 seconds; got {self.scan_interval_s!r}.")
        if self.until is not None:
            self.deadline_ms(0)  # refuses what is neither an instant nor a duration

    def deadline_ms(self, started_ms: int) -> int | None:
        """When to stop (Unix ms), for a run started at `started_ms`; None: until stopped."""
        if self.until is None:
            return None
        import datetime as dt

        text = str(self.until).strip()
        try:
            at = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            from .cleanup import parse_duration_ms

            try:
                return started_ms + parse_duration_ms(text)
            except InvalidParameter:
                raise InvalidParameter(f"live_until {text!r} is neither an instant (2026-12-02T05:00:00Z) nor a "
                                       "duration (90s, 30m, 2h).") from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.timezone.utc)
        return int(at.timestamp() * 1000)

    @staticmethod
    def check_writes(options: RestoreOptions) -> None:
        """A live run keeps the target equal to the source: refuse write rules that make it differ."""
        if options.on_conflict != "replace" or options.ttl_policy != "absolute" or options.rename_prefix \
                or options.min_ttl_ms:
            raise InvalidParameter("A live run keeps every key in scope equal on both sides: it needs "
                                   "on_conflict=replace, ttl_policy=absolute, no rename_prefix and no min_ttl.")


CLEANUP_CATEGORIES = ("expired", "stale", "corrupt", "locks", "orphans")
CLEANUP_OPTIONAL = frozenset(CLEANUP_CATEGORIES) - {"expired"}
MAX_CLEANUP_BATCH = 10_000
MAX_DELETE = 100_000_000


@dataclass(frozen=True)
class CleanupOptions:
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    include: frozenset[str] = frozenset()  # optional categories on top of "expired"
    max_age_ms: Mapping[str, int] = field(default_factory=dict)  # store -> idle limit for keys without TTL
    max_delete: int = 10_000
    apply: bool = False
    batch_size: int = 500
    max_rate: float | None = 5_000.0  # keys deleted per second at most; None = unlimited

    def __post_init__(self) -> None:
        object.__setattr__(self, "patterns", _patterns(self.patterns))
        object.__setattr__(self, "include", frozenset(self.include))
        unknown = self.include - CLEANUP_OPTIONAL
        if unknown:
            raise InvalidParameter(f"Unknown cleanup categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(sorted(unknown))}; "
                                   f"choose from {', '.join(sorted(CLEANUP_OPTIONAL))} (expired is always in).")
        _check_int("max_delete", self.max_delete, 1, MAX_DELETE)
        # a batch is one compare-and-delete script at the server: it blocks the server while it runs
        _check_int("batch_size", self.batch_size, 1, MAX_CLEANUP_BATCH)
        _check_bools(self, "apply")
        if self.max_rate is not None and (not isinstance(self.max_rate, (int, float)) or self.max_rate <= 0):
            raise InvalidParameter(f"max_rate must be > 0 keys per second; got {self.max_rate!r}.")
        for store, limit in self.max_age_ms.items():
            if not isinstance(limit, int) or limit <= 0:
                raise InvalidParameter(f"max age for {store} must be a positive duration; got {limit!r}.")

