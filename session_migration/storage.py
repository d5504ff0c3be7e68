"""The edge where a snapshot URL becomes an fsspec filesystem; the core takes `(fs, path)`."""

from __future__ import annotations

import errno
import os
import posixpath
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import fsspec
from fsspec.implementations.local import LocalFileSystem

from .errors import DestinationNotWritable, InvalidParameter, StorageUnavailable


def resolve(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Turn `file://`, `memory://`, `s3://`, plain paths, ... into a filesystem and a path."""
    if not url or not str(url).strip():
        raise InvalidParameter("The snapshot location is empty; give a folder or an fsspec URL such as s3://bucket/sessions.")
    try:
        fs, path = fsspec.core.url_to_fs(str(url), **dict(storage_options or {}))
    except (ValueError, ImportError) as exc:
        raise InvalidParameter(f"Cannot open snapshot location {url!r}: {exc}") from exc
    return fs, path.rstrip("/") or "/"


# Where operations read and write. A location is one of:
# - an fsspec URL (a flow parameter, the CLI): resolved with the environment's settings;
# - a `Stored` URL: resolved with the storage options a Prefect block holds (credentials stay
#   in the block; only its name travels as a parameter);
# - a filesystem already resolved, with its path (the Python API, `storage_options=`): used as it is.
# Every location below another (a snapshot under its root, a report under its snapshot) keeps
# the kind, so options given once reach everything the run touches.


@dataclass(frozen=True)
class Stored:
    """A URL whose filesystem is opened with the storage options of a Prefect block."""

    url: str
    block: str


Location = Union[str, Stored, tuple[fsspec.AbstractFileSystem, str]]
_options_loader: Callable[[str], Mapping[str, Any]] | None = None


def register_options_loader(loader: Callable[[str], Mapping[str, Any]]) -> None:
    """How a storage block's name becomes its storage options (tasks/blocks.py)."""
    global _options_loader
    _options_loader = loader


def locate(location: Location, storage_options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """`(fs, path)` of a location; a resolved one is returned as it is."""
    if isinstance(location, tuple):
        fs, path = location
        return fs, path.rstrip("/") or "/"
    if isinstance(location, Stored):
        if _options_loader is None:
            raise InvalidParameter(f"The storage block {location.block!r} is a Prefect block: run through the flows "
                                   "(or the CLI), or give the storage options directly.")
        return resolve(location.url, _options_loader(location.block))
    return resolve(location, storage_options)


def child(location: Location, *names: str) -> Location:
    """A location below another, of the same kind."""
    if isinstance(location, tuple):
        return location[0], join(location[1], *names)
    if isinstance(location, Stored):
        return Stored("/".join([location.url.rstrip("/"), *names]), location.block)
    return "/".join([str(location).rstrip("/"), *names])


def stored(location: str | None, block: str | None) -> Location | None:
    """A flow's location parameter with its storage block, if it names one."""
    return Stored(location, block) if location is not None and block else location


def unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The URL form of a path, for manifests, reports and `--json` output."""
    return fs.unstrip_protocol(path)


def join(*parts: str) -> str:
    return posixpath.join(*parts)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write a small file so readers see either the old content or the new, never a mix.

    Local files go through a temporary name and `os.replace`; object stores and memory
    already make a single put atomic.
    """
    try:
        if is_local(fs):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            sync_directory(fs, os.path.dirname(path))  # the new name, on disk too
        else:
            fs.pipe_file(path, data)
    except PermissionError as exc:
        raise DestinationNotWritable(f"Cannot write {unstrip(fs, path)}: permission denied.") from exc
    except OSError as exc:
        raise StorageUnavailable(f"Writing {unstrip(fs, path)} failed: {exc}") from exc


def sync_directory(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """On a local disk, make the names in `path` (files created or renamed in it) durable: a
    file's own fsync does not cover its directory entry. Object stores need nothing. Where a
    folder cannot be opened or synced (no read permission, a filesystem without directory
    fsync), the files' own fsyncs are what there is."""
    if not is_local(fs):
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno not in _NO_DIRECTORY_SYNC:
            raise StorageUnavailable(f"Syncing {unstrip(fs, path)} failed: {exc}") from exc


_NO_DIRECTORY_SYNC = {errno.EACCES, errno.EPERM, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def read_bytes(fs: fsspec.AbstractFileSystem, path: str, limit: int | None = None) -> bytes | None:
    """The file's content (its first `limit` bytes at most), or None when it does not exist."""
    try:
        return fs.cat_file(path) if limit is None else fs.cat_file(path, start=0, end=limit)
    except FileNotFoundError:
        return None


def check_writable(fs: fsspec.AbstractFileSystem, root: str) -> None:
    """Fail fast, before any Redis work, when the destination cannot take files."""
    probe = join(root, f".write-probe-{uuid.uuid4().hex[:8]}")
    try:
        if is_local(fs):
            os.makedirs(root, exist_ok=True)
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except (PermissionError, NotADirectoryError, FileExistsError) as exc:
        raise DestinationNotWritable(f"The snapshot location {unstrip(fs, root)} is not writable: {exc}.") from exc
    except OSError as exc:
        raise DestinationNotWritable(f"The snapshot location {unstrip(fs, root)} is not writable: {exc}.") from exc
