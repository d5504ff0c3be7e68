"""Snapshot validation: a report, never an exception, for anything wrong with the data.

Checks, in order: the manifest (present, JSON, this format, known version, its schema,
unedited, and with a signing key its signature: `manifest.py`), then every part (present,
size, sha256, Parquet, schema, row count), files the manifest does not list, and finally the
rows themselves (duplicate keys, keys outside the declared scope). Restore runs this before it
writes anything.

Parts are checked by one process per core (`parallel.map_ordered`), each streaming only the
`key` column of its part. The scope check is one regex over a whole batch of keys, with
exactly Redis' MATCH semantics (`redis_glob`). Duplicates are found across all parts from a
keyed 64-bit digest per key (8 bytes a row), sorted once; keys with equal digests are read
back and compared, so the count is exact.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import parallel, storage
from .parquet_pages import inflation_problem
from .redaction import redact_key
from .redis_glob import ScopeMatcher
from .manifest import read_checked
from .schema import RECORD_SCHEMA
from .seen import keyed_hashes, new_hash_key
from .signing import Keyring, resolve
from .snapshot import CHECKPOINT, PARTS, READ_BUFFER_BYTES, PartInfo, hash_part, shown

MAX_EXAMPLES = 5  # redacted example keys kept per row-level problem
KEY_BATCH_ROWS = 65_536  # keys decoded at a time (a few MB)


@dataclass(frozen=True)
class Problem:
    code: str  # stable identifier, e.g. "part-checksum"
    message: str  # one sentence naming what and where
    part: str | None = None


@dataclass
class ValidationReport:
    snapshot: str
    checked_at: str
    snapshot_id: str | None = None
    format_version: int | None = None
    signed: bool = False  # the manifest carries a signature
    signature: str = "unchecked"  # valid / invalid (checked with a configured key) / unchecked
    parts_checked: int = 0
    rows_checked: int = 0
    checksums_verified: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def add(self, code: str, message: str, part: str | None = None) -> None:
        self.problems.append(Problem(code, message, part))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["valid"] = self.valid
        return data


def validate_snapshot(fs: fsspec.AbstractFileSystem, path: str, *, check_rows: bool = True,
                      workers: int | None = None, keyring: Keyring | None = None,
                      mapper: parallel.Mapper = parallel.map_ordered) -> ValidationReport:
    """Check `path` and report every problem found; never raises for bad data.

    Parts are checked by `workers` processes (default: one per core, one process for small
    snapshots), or by whatever `mapper` runs `check_part` with (one task per part on a Dask
    cluster); the report is the same whatever their number. With a signing key (`keyring`,
    default: the environment's) an unsigned or wrongly signed manifest is a problem.
    """
    where = storage.unstrip(fs, path)
    report = ValidationReport(snapshot=where, checked_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    manifest = _check_manifest(fs, path, report, resolve(keyring))
    if manifest is None:
        return report
    parts = [PartInfo(**entry) for entry in manifest["parts"]]  # names and types: checked with the manifest
    if sum(p.rows for p in parts) != manifest["totals"]["keys"]:
        report.add("totals", "The manifest's parts do not add up to its total key count.")
    patterns = manifest["scope"]["patterns"]
    hash_key = new_hash_key()
    tasks = [(fs, path, part, patterns if check_rows else None, hash_key) for part in parts]
    n = parallel.worker_count(workers, sum(p.rows for p in parts))
    checked = list(zip(parts, mapper(check_part, tasks, n, fs)))  # in part order, as the report lists them
    for _part, result in checked:
        report.parts_checked += 1
        report.checksums_verified += result.checksum_ok
        report.problems.extend(result.problems)
    _check_unlisted(fs, path, {p.name for p in parts}, report)
    good = [(part, result) for part, result in checked if result.good]
    if check_rows and good:
        _report_rows(fs, path, good, report)
    return report


def _check_manifest(fs, path: str, report: ValidationReport, keyring: Keyring) -> dict[str, Any] | None:
    checked = read_checked(fs, path, keyring)
    if checked is None:
        if not fs.exists(path):
            report.add("not-found", f"No snapshot folder at {report.snapshot}.")
        elif storage.read_bytes(fs, storage.join(path, CHECKPOINT)) is not None:
            report.add("unfinished", "The backup is unfinished: checkpoint.json but no manifest.json; resume it with the same snapshot id.")
        elif not fs.ls(path):
            report.add("empty", f"{report.snapshot} is an empty folder, not a snapshot.")
        else:
            report.add("not-a-snapshot", f"{report.snapshot} is not a snapshot: it has no manifest.json (and no checkpoint.json of an unfinished backup).")
        return None
    report.snapshot_id, report.format_version = checked.snapshot_id, checked.format_version
    if checked.verdict is not None:
        report.signed, report.signature = checked.verdict.signed, checked.verdict.status
    if checked.code is not None:
        report.add(checked.code, checked.message)
        return None
    return checked.manifest


@dataclass
class _PartResult:
    """What one worker found in one part; `hashes` etc. are only set for a good part."""

    problems: list[Problem] = field(default_factory=list)
    checksum_ok: bool = False
    good: bool = False
    hashes: np.ndarray | None = None  # 64-bit keyed digest of every key, in row order
    outside: int = 0  # rows out of scope
    outside_examples: list[str] = field(default_factory=list)


def check_part(fs, path: str, part: PartInfo, patterns: tuple[str, ...] | None, hash_key: str) -> _PartResult:
    """Bytes, checksum, Parquet, schema and row count of one part; then its keys unless
    `patterns` is None (and their scope unless it is empty)."""
    result = _PartResult()
    file = storage.join(path, PARTS, part.name)

    def problem(code: str, message: str) -> _PartResult:
        result.problems.append(Problem(code, message, part.name))
        return result

    try:
        size = fs.size(file)
    except FileNotFoundError:
        return problem("part-missing", f"{part.name} is listed in the manifest but missing.")
    if size != part.bytes:
        return problem("part-size", f"{part.name} has {size} bytes, the manifest says {part.bytes} (truncated or replaced).")
    digest, reopen = hash_part(fs, file, size)
    if digest != part.sha256:
        return problem("part-checksum", f"{part.name} fails its sha256 check: its bytes were altered.")
    result.checksum_ok = True
    try:
        with reopen() as fh:
            meta = pq.ParquetFile(fh)
            schema, rows = meta.schema_arrow, meta.metadata.num_rows
            inflation = inflation_problem(fh, meta.metadata, size)
    except (pa.ArrowInvalid, OSError) as exc:
        return problem("part-not-parquet", f"{part.name} is not a readable Parquet file ({exc}).")
    if not schema.equals(RECORD_SCHEMA):
        return problem("part-schema", f"{part.name} does not have the snapshot record schema.")
    if rows != part.rows:
        return problem("part-rows", f"{part.name} holds {rows} rows, the manifest says {part.rows}.")
    if inflation is not None:
        return problem("part-inflates", f"{part.name} is refused unread: its {inflation}.")
    result.good = True
    if patterns is not None:
        _check_keys(fs, file, part, ScopeMatcher(patterns) if patterns else None, hash_key, result)
    return result


def _check_keys(fs, file: str, part: PartInfo, scope: ScopeMatcher | None, hash_key: str, result: _PartResult) -> None:
    """Scope of every key, and the digests the duplicate check compares across parts."""
    hashes = []
    with fs.open(file, "rb") as fh:
        pf = pq.ParquetFile(fh, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
        for batch in pf.iter_batches(batch_size=KEY_BATCH_ROWS, columns=["key"]):
            keys = batch.column("key")
            # siphash with a random key, in C over the whole batch; collisions are only candidates
            hashes.append(keyed_hashes(keys.to_numpy(zero_copy_only=False), hash_key))
            if scope is None:
                continue
            outside = np.flatnonzero(~scope.mask(keys))
            result.outside += len(outside)
            for i in outside[: MAX_EXAMPLES - len(result.outside_examples)].tolist():
                result.outside_examples.append(f"{redact_key(keys[i].as_py())} in {part.name}")
    result.hashes = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)


def _check_unlisted(fs, path: str, listed: set[str], report: ValidationReport) -> None:
    folder = storage.join(path, PARTS)
    try:
        names = [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(folder, detail=False)]
    except FileNotFoundError:
        return
    for name in sorted(set(names) - listed):
        report.add("part-unlisted", f"{shown(name)} is in parts/ but not listed in the manifest.", name)


def _report_rows(fs, path: str, good: list[tuple[PartInfo, _PartResult]], report: ValidationReport) -> None:
    report.rows_checked += sum(len(result.hashes) for _part, result in good)
    n_dup, duplicates = _duplicates(fs, path, good)
    if n_dup:
        report.add("duplicate-keys", f"{n_dup} key(s) appear more than once, e.g. {', '.join(duplicates)}.")
    n_out = sum(result.outside for _part, result in good)
    if n_out:
        outside = [example for _part, result in good for example in result.outside_examples][:MAX_EXAMPLES]
        report.add("out-of-scope", f"{n_out} row(s) are outside the snapshot's declared patterns, e.g. {', '.join(outside)}.")


def _duplicates(fs, path: str, good: list[tuple[PartInfo, _PartResult]]) -> tuple[int, list[str]]:
    """Rows whose key an earlier row (in part order) already has: their count and first examples.

    Equal digests only make candidates: their keys are read back and compared, so a digest
    collision never reports a duplicate. Memory: 8 bytes a row, plus the candidates' keys.
    """
    hashes = np.concatenate([result.hashes for _part, result in good])
    ordered = np.sort(hashes)  # the usual snapshot has no digest twice; a sort costs half an argsort
    if not (ordered[1:] == ordered[:-1]).any():
        return 0, []
    order = np.argsort(hashes, kind="stable")
    equal = hashes[order[1:]] == hashes[order[:-1]]
    if not equal.any():
        return 0, []
    candidate = np.zeros(len(hashes), dtype=bool)
    candidate[order[1:][equal]] = True
    candidate[order[:-1][equal]] = True
    seen: set[bytes] = set()
    count, examples, first = 0, [], 0
    for part, result in good:  # in row order, so the first occurrence is the one kept
        rows = np.flatnonzero(candidate[first:first + len(result.hashes)])
        first += len(result.hashes)
        if not len(rows):
            continue
        with fs.open(storage.join(path, PARTS, part.name), "rb") as fh:
            keys = pq.ParquetFile(fh, pre_buffer=False).read(columns=["key"]).column("key").take(rows).to_pylist()
        for key in keys:
            if key in seen:
                count += 1
                if len(examples) < MAX_EXAMPLES:
                    examples.append(f"{redact_key(key)} in {part.name}")
            else:
                seen.add(key)
    return count, examples
