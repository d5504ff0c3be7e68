"""Snapshot format v1: layout, ids, manifest, and the checks every reader makes.

    <root>/<snapshot_id>/parts/part-00000.parquet ...
    <root>/<snapshot_id>/manifest.json      written last: no manifest = no snapshot
    <root>/<snapshot_id>/checkpoint.json    only while a backup is unfinished

Readers (`open_snapshot`) refuse a snapshot whose manifest is missing or edited, whose format
version they do not know, or whose parts disagree with it, naming what and where.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from . import storage
from .errors import InvalidParameter, SnapshotInvalid, SnapshotNotFound
from .schema import FORMAT_NAME, FORMAT_VERSION, RECORD_SCHEMA

MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint.json"
PARTS = "parts"
PRE_IMAGE_SUFFIX = "-pre"  # the snapshot id of a pre-image (what a migration or cleanup may put back)
READ_BUFFER_BYTES = 8 << 20

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def new_snapshot_id(now: dt.datetime | None = None) -> str:
    """UTC timestamp plus a short random suffix: ids sort by time and never collide."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def check_snapshot_id(snapshot_id: str) -> str:
    if not isinstance(snapshot_id, str) or not _ID_RE.match(snapshot_id):
        raise InvalidParameter(
            f"Snapshot id {snapshot_id!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit."
        )
    return snapshot_id


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def snapshot_dir(root: str, snapshot_id: str) -> str:
    return storage.join(root, snapshot_id)


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own checksum: edits are detected."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    manifest = dict(manifest)
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    return json.dumps(manifest, indent=2, sort_keys=False).encode() + b"\n"


@dataclass(frozen=True)
class PartInfo:
    name: str
    rows: int
    bytes: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "bytes": self.bytes, "sha256": self.sha256}


@dataclass
class Snapshot:
    """A committed snapshot, opened for reading."""

    fs: fsspec.AbstractFileSystem
    path: str
    manifest: dict[str, Any]
    parts: list[PartInfo] = field(default_factory=list)

    @property
    def snapshot_id(self) -> str:
        return self.manifest["snapshot_id"]

    @property
    def url(self) -> str:
        return storage.unstrip(self.fs, self.path)

    @property
    def totals(self) -> dict[str, Any]:
        return self.manifest["totals"]

    def part_path(self, part: PartInfo) -> str:
        return storage.join(self.path, PARTS, part.name)

    def verify_parts(self) -> None:
        """Check every part's bytes, sha256 and row count against the manifest."""
        for part in self.parts:
            verify_part(self.fs, self.part_path(part), part)

    def iter_batches(
        self, columns: Sequence[str] | None = None, batch_size: int = 10_000
    ) -> Iterator[pa.RecordBatch]:
        """Stream the rows part by part, with flat memory (no pre-buffering of whole files)."""
        for part in self.parts:
            with self.fs.open(self.part_path(part), "rb") as fh:
                pf = pq.ParquetFile(fh, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
                yield from pf.iter_batches(batch_size=batch_size, columns=list(columns) if columns else None)

    def read_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All rows at once: convenient for small snapshots and notebooks."""
        batches = list(self.iter_batches(columns))
        schema = RECORD_SCHEMA if not columns else pa.schema([RECORD_SCHEMA.field(c) for c in columns])
        return pa.Table.from_batches(batches, schema=schema)


def verify_part(fs: fsspec.AbstractFileSystem, path: str, part: PartInfo) -> None:
    where = storage.unstrip(fs, path)
    try:
        size = fs.size(path)
    except FileNotFoundError:
        raise SnapshotInvalid(f"Part {part.name} listed in the manifest is missing ({where}).") from None
    if size != part.bytes:
        raise SnapshotInvalid(f"Part {part.name} has {size} bytes but the manifest says {part.bytes} (truncated or replaced): {where}.")
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(READ_BUFFER_BYTES):
            digest.update(chunk)
    if digest.hexdigest() != part.sha256:
        raise SnapshotInvalid(f"Part {part.name} fails its sha256 check (the file was altered): {where}.")
    try:
        with fs.open(path, "rb") as fh:
            rows = pq.ParquetFile(fh).metadata.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise SnapshotInvalid(f"Part {part.name} is not a readable Parquet file: {exc}") from None
    if rows != part.rows:
        raise SnapshotInvalid(f"Part {part.name} holds {rows} rows but the manifest says {part.rows}: {where}.")


def read_manifest(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any]:
    """Load and check a manifest; every failure names the snapshot and the problem."""
    where = storage.unstrip(fs, path)
    raw = storage.read_bytes(fs, storage.join(path, MANIFEST))
    if raw is None:
        if storage.read_bytes(fs, storage.join(path, CHECKPOINT)) is not None:
            raise SnapshotInvalid(f"{where} is an unfinished backup (checkpoint but no manifest); resume it with the same snapshot id.")
        if not fs.exists(path):
            raise SnapshotNotFound(f"No snapshot at {where}.")
        raise SnapshotInvalid(f"{where} has no manifest.json, so it is not a complete snapshot.")
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotInvalid(f"The manifest of {where} is not valid JSON: {exc}.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise SnapshotInvalid(f"The manifest of {where} is not a {FORMAT_NAME} manifest.")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise SnapshotInvalid(
            f"{where} uses snapshot format version {version!r}; this tool reads version {FORMAT_VERSION} only (upgrade the tool to read newer snapshots)."
        )
    if manifest.get("manifest_sha256") != manifest_checksum(manifest):
        raise SnapshotInvalid(f"The manifest of {where} was edited after it was written (its checksum does not match).")
    return manifest


def open_snapshot(
    url_or_fs: str | fsspec.AbstractFileSystem,
    path: str | None = None,
    *,
    verify: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> Snapshot:
    """Open a committed snapshot by URL (`open_snapshot("s3://b/root/ID")`) or by `(fs, path)`.

    With `verify` (the default) every part is checksummed before anything is returned.
    """
    if isinstance(url_or_fs, str):
        fs, path = storage.resolve(url_or_fs, storage_options)
    else:
        fs = url_or_fs
        assert path is not None
    manifest = read_manifest(fs, path)
    parts = [PartInfo(**p) for p in manifest.get("parts", [])]
    snapshot = Snapshot(fs=fs, path=path, manifest=manifest, parts=parts)
    if verify:
        snapshot.verify_parts()
    return snapshot


def list_snapshots(url_or_fs: str | fsspec.AbstractFileSystem, root: str | None = None) -> list[Snapshot]:
    """Committed snapshots under a root, oldest first. Unfinished or broken ones are skipped."""
    if isinstance(url_or_fs, str):
        fs, root = storage.resolve(url_or_fs)
    else:
        fs = url_or_fs
    assert root is not None
    try:
        entries = fs.ls(root, detail=True)
    except FileNotFoundError:
        return []
    found = []
    for entry in sorted(entries, key=lambda e: e["name"]):
        if entry.get("type") != "directory":
            continue
        try:
            found.append(open_snapshot(fs, entry["name"].rstrip("/"), verify=False))
        except (SnapshotInvalid, SnapshotNotFound):
            continue
    return found
