"""Snapshot validation: a report, never an exception, for anything wrong with the data.

Checks, in order: the manifest (present, JSON, this format, known version, unedited), then
every part (present, size, sha256, Parquet, schema, row count), files the manifest does not
list, and finally the rows themselves (duplicate keys, keys outside the declared scope),
streamed part by part with only the `key` column in memory. Restore and transfer run this
before they write anything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from . import storage
from .patterns import compile_scope
from .redaction import redact_key
from .schema import FORMAT_NAME, FORMAT_VERSION, RECORD_SCHEMA
from .seen import SeenKeys
from .snapshot import CHECKPOINT, MANIFEST, PARTS, READ_BUFFER_BYTES, PartInfo, manifest_checksum

MAX_EXAMPLES = 5  # redacted example keys kept per row-level problem


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


def validate_snapshot(fs: fsspec.AbstractFileSystem, path: str, *, check_rows: bool = True) -> ValidationReport:
    where = storage.unstrip(fs, path)
    report = ValidationReport(snapshot=where, checked_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    manifest = _check_manifest(fs, path, report)
    if manifest is None:
        return report
    parts = _listed_parts(manifest, report)
    good_parts = [p for p in parts if _check_part(fs, path, p, report)]
    _check_unlisted(fs, path, {p.name for p in parts}, report)
    if check_rows and good_parts:
        _check_rows(fs, path, good_parts, manifest, report)
    return report


def _check_manifest(fs, path: str, report: ValidationReport) -> dict[str, Any] | None:
    raw = storage.read_bytes(fs, storage.join(path, MANIFEST))
    if raw is None:
        if not fs.exists(path):
            report.add("not-found", f"No snapshot folder at {report.snapshot}.")
        elif storage.read_bytes(fs, storage.join(path, CHECKPOINT)) is not None:
            report.add("unfinished", "The backup is unfinished: checkpoint.json but no manifest.json; resume it with the same snapshot id.")
        elif not fs.ls(path):
            report.add("empty", f"{report.snapshot} is an empty folder, not a snapshot.")
        else:
            report.add("manifest-missing", "manifest.json is missing, so the snapshot is not complete.")
        return None
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.add("manifest-unparsable", f"manifest.json is not valid JSON ({exc}).")
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        report.add("manifest-format", f"manifest.json is not a {FORMAT_NAME} manifest.")
        return None
    report.snapshot_id = manifest.get("snapshot_id")
    report.format_version = manifest.get("format_version")
    if manifest.get("format_version") != FORMAT_VERSION:
        report.add("format-version", f"Snapshot format version {manifest.get('format_version')!r} is not known to this tool (it reads {FORMAT_VERSION}).")
        return None
    if manifest.get("manifest_sha256") != manifest_checksum(manifest):
        report.add("manifest-edited", "manifest.json was edited after it was written (its checksum does not match its content).")
        return None
    return manifest


def _listed_parts(manifest: dict[str, Any], report: ValidationReport) -> list[PartInfo]:
    parts = []
    for entry in manifest.get("parts", []):
        try:
            parts.append(PartInfo(**entry))
        except TypeError:
            report.add("manifest-part", f"A part entry of the manifest is malformed: {entry!r}.")
    if sum(p.rows for p in parts) != manifest.get("totals", {}).get("keys"):
        report.add("totals", "The manifest's parts do not add up to its total key count.")
    return parts


def _check_part(fs, path: str, part: PartInfo, report: ValidationReport) -> bool:
    file = storage.join(path, PARTS, part.name)
    report.parts_checked += 1
    try:
        size = fs.size(file)
    except FileNotFoundError:
        report.add("part-missing", f"{part.name} is listed in the manifest but missing.", part.name)
        return False
    if size != part.bytes:
        report.add("part-size", f"{part.name} has {size} bytes, the manifest says {part.bytes} (truncated or replaced).", part.name)
        return False
    digest = hashlib.sha256()
    with fs.open(file, "rb") as fh:
        while chunk := fh.read(READ_BUFFER_BYTES):
            digest.update(chunk)
    if digest.hexdigest() != part.sha256:
        report.add("part-checksum", f"{part.name} fails its sha256 check: its bytes were altered.", part.name)
        return False
    report.checksums_verified += 1
    try:
        with fs.open(file, "rb") as fh:
            meta = pq.ParquetFile(fh)
            schema, rows = meta.schema_arrow, meta.metadata.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        report.add("part-not-parquet", f"{part.name} is not a readable Parquet file ({exc}).", part.name)
        return False
    if not schema.equals(RECORD_SCHEMA):
        report.add("part-schema", f"{part.name} does not have the snapshot record schema.", part.name)
        return False
    if rows != part.rows:
        report.add("part-rows", f"{part.name} holds {rows} rows, the manifest says {part.rows}.", part.name)
        return False
    return True


def _check_unlisted(fs, path: str, listed: set[str], report: ValidationReport) -> None:
    folder = storage.join(path, PARTS)
    try:
        names = [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(folder, detail=False)]
    except FileNotFoundError:
        return
    for name in sorted(set(names) - listed):
        report.add("part-unlisted", f"{name} is in parts/ but not listed in the manifest.", name)


def _check_rows(fs, path: str, parts: list[PartInfo], manifest: dict[str, Any], report: ValidationReport) -> None:
    scope = compile_scope(manifest.get("scope", {}).get("patterns") or ["*"])
    seen = SeenKeys()
    duplicates: list[str] = []
    outside: list[str] = []
    n_dup = n_out = 0
    for part in parts:
        with fs.open(storage.join(path, PARTS, part.name), "rb") as fh:
            pf = pq.ParquetFile(fh, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
            for batch in pf.iter_batches(batch_size=10_000, columns=["key"]):
                keys = batch.column("key").to_pylist()
                report.rows_checked += len(keys)
                for key, new in zip(keys, seen.add_new(keys)):
                    if not new:
                        n_dup += 1
                        if len(duplicates) < MAX_EXAMPLES:
                            duplicates.append(f"{redact_key(key)} in {part.name}")
                    if not scope.fullmatch(key):
                        n_out += 1
                        if len(outside) < MAX_EXAMPLES:
                            outside.append(f"{redact_key(key)} in {part.name}")
    if n_dup:
        report.add("duplicate-keys", f"{n_dup} key(s) appear more than once, e.g. {', '.join(duplicates)}.")
    if n_out:
        report.add("out-of-scope", f"{n_out} row(s) are outside the snapshot's declared patterns, e.g. {', '.join(outside)}.")
