"""Snapshot format: layout, ids, the snapshot reader, and the inventory of a root.

    <root>/<snapshot_id>/parts/part-00000.parquet ...
    <root>/<snapshot_id>/manifest.json      written last: no manifest = no snapshot
    <root>/<snapshot_id>/checkpoint.json    only while a backup is unfinished

Readers (`open_snapshot`) refuse a snapshot whose manifest is missing, malformed or edited,
whose format version they do not know, whose signature a configured key does not accept
(`manifest.py`), or whose parts disagree with it, naming what and where. Nothing outside
`<snapshot>/parts/` is ever opened: a part's name must be `part-NNNNN.parquet`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from . import storage
from .errors import InvalidParameter, SignatureInvalid, SnapshotInvalid, SnapshotNotFound, SnapshotRootNotFound
from .manifest import CHECKPOINT, MANIFEST, Checked, manifest_bytes, manifest_checksum, parse_time, read_checked
from .parquet_pages import inflation_problem
from .schema import PART_NAME_RE, RECORD_SCHEMA, SNAPSHOT_ID_RE
from .signing import Keyring, Verdict, resolve

__all__ = ["CHECKPOINT", "MANIFEST", "PARTS", "PRE_IMAGE_SUFFIX", "PartInfo", "RootInventory", "Snapshot",
           "check_part_name", "check_snapshot_id", "inspect_root", "list_snapshots", "manifest_bytes", "manifest_checksum",
           "new_snapshot_id", "open_snapshot", "part_name", "read_manifest", "snapshot_dir", "verify_part"]

PARTS = "parts"
PRE_IMAGE_SUFFIX = "-pre"  # the snapshot id of a pre-image (what a migration or cleanup may put back)
READ_BUFFER_BYTES = 8 << 20
WHOLE_READ_BYTES = 64 << 20  # an object-store part up to this size is fetched once for all its checks
ROOT_FOLDERS = frozenset({"migrations", "transfers"})  # state kept next to snapshots, not snapshots
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)  # a snapshot "finished" later than now + this is not believed


def new_snapshot_id(now: dt.datetime | None = None) -> str:
    """UTC timestamp plus a short random suffix: ids sort by time and never collide."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def check_snapshot_id(snapshot_id: str) -> str:
    if not isinstance(snapshot_id, str) or not SNAPSHOT_ID_RE.match(snapshot_id):
        raise InvalidParameter(
            f"Snapshot id {snapshot_id!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit."
        )
    return snapshot_id


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def check_part_name(name: object) -> str:
    """A part name of the format's own pattern, never a path: nothing outside parts/ is read."""
    if not isinstance(name, str) or not PART_NAME_RE.match(name):
        raise SnapshotInvalid(f"{shown(name)} is not a part name (part-NNNNN.parquet); nothing outside parts/ is read.")
    return name


def snapshot_dir(root: str, snapshot_id: str) -> str:
    """`<root>/<snapshot_id>`: an id never holds a path separator or starts with a dot."""
    return storage.join(root, check_snapshot_id(snapshot_id))


@dataclass(frozen=True)
class PartInfo:
    name: str
    rows: int
    bytes: int
    sha256: str

    def __post_init__(self) -> None:
        check_part_name(self.name)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "bytes": self.bytes, "sha256": self.sha256}


@dataclass
class Snapshot:
    """A committed snapshot, opened for reading."""

    fs: fsspec.AbstractFileSystem
    path: str
    manifest: dict[str, Any]
    parts: list[PartInfo] = field(default_factory=list)
    verdict: Verdict | None = None  # the signature check made when it was opened

    @property
    def snapshot_id(self) -> str:
        return self.manifest["snapshot_id"]

    @property
    def signed(self) -> bool:
        return "signature" in self.manifest

    @property
    def signature(self) -> str:
        """"valid" (checked with a configured key), "invalid", or "unchecked" (no key, or unsigned)."""
        return self.verdict.status if self.verdict is not None else "unchecked"

    @property
    def trusted(self) -> bool:
        """Its manifest is signed by one of our keys: its scope may decide what is written."""
        return self.verdict is not None and self.verdict.valid

    @property
    def is_pre_image(self) -> bool:
        return self.snapshot_id.endswith(PRE_IMAGE_SUFFIX)

    @property
    def finished_at(self) -> dt.datetime:
        return parse_time(self.manifest["finished_at"])

    def describe(self) -> dict[str, Any]:
        """One line of a listing: plain JSON, nothing secret."""
        return {"snapshot_id": self.snapshot_id, "snapshot": self.url,
                "kind": "pre-image" if self.is_pre_image else "backup", "finished_at": self.manifest["finished_at"],
                "source": self.manifest["source"]["url"], "keys": self.totals["keys"], "bytes": self.totals["bytes"],
                "parts": len(self.parts), "snapshot_bytes": sum(p.bytes for p in self.parts),
                "signed": self.signed, "signature": self.signature}

    @property
    def url(self) -> str:
        return storage.unstrip(self.fs, self.path)

    @property
    def totals(self) -> dict[str, Any]:
        return self.manifest["totals"]

    def part_path(self, part: PartInfo) -> str:
        """`<snapshot>/parts/<name>`, checked again here: this is where a name becomes a path."""
        return storage.join(self.path, PARTS, check_part_name(part.name))

    def verify_parts(self) -> None:
        """Check every part's bytes, sha256 and row count against the manifest."""
        for part in self.parts:
            verify_part(self.fs, self.part_path(part), part)

    def iter_batches(
        self, columns: Sequence[str] | None = None, batch_size: int = 10_000
    ) -> Iterator[pa.RecordBatch]:
        """Stream the rows part by part, with flat memory (no pre-buffering of whole files);
        checksums are not checked again (`verify_parts`, or `sources.snapshot` for that)."""
        from .sources.snapshot import SnapshotSource

        for read in SnapshotSource(self, columns=columns, batch_size=batch_size, verify=False).reads():
            if read.rows:
                yield read.batch

    def read_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All rows at once: convenient for small snapshots and notebooks."""
        batches = list(self.iter_batches(columns))
        schema = RECORD_SCHEMA if not columns else pa.schema([RECORD_SCHEMA.field(c) for c in columns])
        return pa.Table.from_batches(batches, schema=schema)


# Parts this process checked in full, by URL: (sha256, size and modification marker, when). A
# restore validates every part and then writes each; a part read again soon after, unchanged by
# those markers, is not hashed a second time (that cost a 1M-key restore ~5%). The window this
# leaves (a part swapped between the check and the read) is the one hashing and then reading
# again leaves anyway; each run checks every part at its start.
_VERIFIED: dict[str, tuple[str, tuple[Any, ...], float]] = {}
VERIFIED_FOR_S = 600.0


def _file_marker(info: dict[str, Any]) -> tuple[Any, ...] | None:
    """What changes when a file is rewritten (from `fs.info`); None when the filesystem says nothing."""
    changed = info.get("mtime") or info.get("LastModified") or info.get("created")
    return None if changed is None else (info.get("size"), str(changed), str(info.get("ETag")), info.get("ino"))


def remember_verified(snapshot: Snapshot) -> None:
    """Record that every part of `snapshot` was just checked in full (by validation)."""
    for part in snapshot.parts:
        path = snapshot.part_path(part)
        marker = _file_marker(snapshot.fs.info(path))
        if marker is not None:
            _VERIFIED[storage.unstrip(snapshot.fs, path)] = (part.sha256, marker, time.monotonic())


def check_part(fs: fsspec.AbstractFileSystem, path: str, part: PartInfo) -> None:
    """`verify_part`, unless this process verified this very file (same sha256 in the manifest,
    same size and modification marker) within the last `VERIFIED_FOR_S` seconds."""
    seen = _VERIFIED.get(storage.unstrip(fs, path))
    if seen is not None and seen[0] == part.sha256 and time.monotonic() - seen[2] < VERIFIED_FOR_S:
        try:
            if seen[1] == _file_marker(fs.info(path)):
                return
        except FileNotFoundError:
            pass  # verify_part says so in its own words
    verify_part(fs, path, part)


def hash_part(fs: fsspec.AbstractFileSystem, path: str, size: int) -> tuple[str, Callable[[], BinaryIO]]:
    """A part's sha256, and how to open it again for its footer and pages: from memory when it
    lives on an object store and has at most `WHOLE_READ_BYTES` (one GET serves every check),
    else from the filesystem (where a local part is in the page cache by then)."""
    if not storage.is_local(fs) and size <= WHOLE_READ_BYTES:
        data = fs.cat_file(path)
        return hashlib.sha256(data).hexdigest(), lambda: io.BytesIO(data)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(READ_BUFFER_BYTES):
            digest.update(chunk)
    return digest.hexdigest(), lambda: fs.open(path, "rb")


def verify_part(fs: fsspec.AbstractFileSystem, path: str, part: PartInfo) -> None:
    """Size, sha256 and row count of one part against the manifest; `SnapshotInvalid` if not."""
    where = storage.unstrip(fs, path)
    try:
        info = fs.info(path)
        size, marker = info.get("size"), _file_marker(info)
    except FileNotFoundError:
        raise SnapshotInvalid(f"Part {part.name} listed in the manifest is missing ({where}).") from None
    if size != part.bytes:
        raise SnapshotInvalid(f"Part {part.name} has {size} bytes but the manifest says {part.bytes} (truncated or replaced): {where}.")
    digest, reopen = hash_part(fs, path, size)
    if digest != part.sha256:
        raise SnapshotInvalid(f"Part {part.name} fails its sha256 check (the file was altered): {where}.")
    try:
        with reopen() as fh:
            metadata = pq.ParquetFile(fh).metadata
            inflation = inflation_problem(fh, metadata, size)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SnapshotInvalid(f"Part {part.name} is not a readable Parquet file: {exc}") from None
    if metadata.num_rows != part.rows:
        raise SnapshotInvalid(f"Part {part.name} holds {metadata.num_rows} rows but the manifest says {part.rows}: "
                              f"{where}.")
    if inflation is not None:
        raise SnapshotInvalid(f"Part {part.name} is refused unread: its {inflation}: {where}.")
    if marker is not None:
        _VERIFIED[where] = (part.sha256, marker, time.monotonic())


def shown(text: object, limit: int = 120) -> str:
    """A name read from the storage, safe to print: quoted, control characters escaped, cut."""
    text = repr(text if isinstance(text, str) else str(text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _checked(fs: fsspec.AbstractFileSystem, path: str, keyring: Keyring) -> Checked:
    """The checked manifest of `path`, or the exception that says why there is none."""
    where = storage.unstrip(fs, path)
    checked = read_checked(fs, path, keyring)
    if checked is None:
        if storage.read_bytes(fs, storage.join(path, CHECKPOINT)) is not None:
            raise SnapshotInvalid(f"{where} is an unfinished backup (checkpoint but no manifest); resume it with the same snapshot id.")
        if not fs.exists(path):
            raise SnapshotNotFound(f"No snapshot at {where}.")
        raise SnapshotInvalid(f"{where} is not a snapshot: it has no manifest.json (and no checkpoint.json of an unfinished backup).")
    if checked.code is not None:
        error = SignatureInvalid if checked.code in ("unsigned", "signature-invalid") else SnapshotInvalid
        raise error(f"Snapshot {where}: {checked.message}")
    return checked


def read_manifest(fs: fsspec.AbstractFileSystem, path: str, keyring: Keyring | None = None) -> dict[str, Any]:
    """Load and check a manifest (`manifest.py`); every failure names the snapshot and the problem."""
    return _checked(fs, path, resolve(keyring)).manifest


def open_snapshot(
    url_or_fs: str | fsspec.AbstractFileSystem,
    path: str | None = None,
    *,
    verify: bool = True,
    storage_options: dict[str, Any] | None = None,
    keyring: Keyring | None = None,
) -> Snapshot:
    """Open a committed snapshot by URL (`open_snapshot("s3://b/root/ID")`) or by `(fs, path)`.

    With `verify` (the default) every part is checksummed before anything is returned. With a
    signing key configured (`keyring`, default: the environment's), an unsigned or wrongly
    signed manifest raises `SignatureInvalid`.
    """
    if isinstance(url_or_fs, str):
        fs, path = storage.resolve(url_or_fs, storage_options)
    else:
        fs = url_or_fs
        assert path is not None
    checked = _checked(fs, path, resolve(keyring))
    parts = [PartInfo(**p) for p in checked.manifest["parts"]]
    snapshot = Snapshot(fs=fs, path=path, manifest=checked.manifest, parts=parts, verdict=checked.verdict)
    if verify:
        snapshot.verify_parts()
    return snapshot


@dataclass
class RootInventory:
    """What a snapshot root holds, folder by folder. Nothing in it is deleted or trusted here."""

    root: str
    snapshots: list[Snapshot] = field(default_factory=list)  # committed, by id (ids sort by time)
    unfinished: list[str] = field(default_factory=list)  # checkpoint.json, no manifest: a backup under way or stopped
    not_snapshots: list[str] = field(default_factory=list)  # neither manifest nor checkpoint
    suspicious: list[dict[str, str]] = field(default_factory=list)  # a manifest we do not believe: name, reason

    def as_dict(self) -> dict[str, Any]:
        return {"root": self.root, "snapshots": [s.describe() for s in self.snapshots],
                "unfinished": self.unfinished, "not_snapshots": self.not_snapshots, "suspicious": self.suspicious}


def inspect_root(fs: fsspec.AbstractFileSystem, root: str, keyring: Keyring | None = None,
                 now: dt.datetime | None = None) -> RootInventory:
    """Sort every folder of `root` into committed snapshots, unfinished backups, folders that
    are not snapshots, and suspicious ones: a manifest that fails its checks (or, with a key,
    its signature), names another snapshot than its folder, or finished in the future.

    Raises `SnapshotRootNotFound` when `root` does not exist.
    """
    keyring = resolve(keyring)
    now = now or dt.datetime.now(dt.timezone.utc)
    where = storage.unstrip(fs, root)
    try:
        entries = fs.ls(root, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        raise SnapshotRootNotFound(f"The snapshot root {where} does not exist; check the path (nothing was read).") from None
    if not entries and not fs.isdir(root):
        raise SnapshotRootNotFound(f"The snapshot root {where} does not exist; check the path (nothing was read).")
    inventory = RootInventory(root=where)
    for entry in sorted(entries, key=lambda e: e["name"]):
        path = entry["name"].rstrip("/")
        name = path.rsplit("/", 1)[-1]
        if entry.get("type") != "directory" or name in ROOT_FOLDERS:
            continue
        checked = read_checked(fs, path, keyring)
        if checked is None:
            if storage.read_bytes(fs, storage.join(path, CHECKPOINT)) is not None:
                inventory.unfinished.append(name)
            else:
                inventory.not_snapshots.append(name)
            continue
        reason = _doubt(checked, name, now)
        if reason:
            inventory.suspicious.append({"name": shown(name), "reason": reason})
            continue
        parts = [PartInfo(**p) for p in checked.manifest["parts"]]
        inventory.snapshots.append(Snapshot(fs=fs, path=path, manifest=checked.manifest, parts=parts,
                                            verdict=checked.verdict))
    return inventory


def _doubt(checked: Checked, name: str, now: dt.datetime) -> str | None:
    """Why a folder's manifest is not believed, or None."""
    if checked.code is not None:
        return f"[{checked.code}] {checked.message}"
    manifest = checked.manifest
    if manifest["snapshot_id"] != name:
        return f"its manifest names snapshot {manifest['snapshot_id']}, not its folder's name"
    if parse_time(manifest["finished_at"]) > now + MAX_CLOCK_SKEW:
        return f"it says it finished at {manifest['finished_at']}, in the future"
    return None


def list_snapshots(url_or_fs: str | fsspec.AbstractFileSystem, root: str | None = None,
                   keyring: Keyring | None = None) -> list[Snapshot]:
    """Committed snapshots under a root, by id (oldest first); unfinished, broken and suspicious ones
    are left out (`inspect_root` lists them). Raises `SnapshotRootNotFound` for a missing root."""
    if isinstance(url_or_fs, str):
        fs, root = storage.resolve(url_or_fs)
    else:
        fs = url_or_fs
    assert root is not None
    return inspect_root(fs, root, keyring).snapshots
