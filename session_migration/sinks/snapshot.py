"""Write record batches as the Parquet parts of a snapshot, hashing bytes as they stream out.

A part is written straight to its final name; it only counts once the backup's checkpoint
(and finally the manifest) lists it with its sha256, so a part cut short by a crash is never
read: the resumed backup overwrites it. On a local disk a part is fsynced before it is
reported finished, so nothing lists it before its bytes would survive a power loss.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from .. import storage
from ..budget import GROUP_BYTES, held_bytes
from ..errors import DestinationNotWritable, StorageUnavailable
from ..schema import RECORD_SCHEMA
from ..snapshot import PARTS, PartInfo, part_name

COMPRESSIONS = ("zstd", "snappy", "lz4", "gzip", "brotli", "none")


class _HashingWriter:
    """A write-only file object that forwards to `raw` and keeps a running sha256 and size."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data)
        self.sha256.update(view)
        self.size += view.nbytes
        self.raw.write(view)
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        # pyarrow closes its wrapper; the raw file is closed by PartWriter.finish so that
        # the upload (for object stores) completes before the part is reported done.
        self.closed = True


class _BackgroundWrite(threading.Thread):
    """One row group's encoding, compression and write, on a thread of its own.

    pyarrow does that work in C without the GIL, so the caller prepares the next row group
    (and the reader keeps reading) meanwhile: ~5% off a backup. Its error is raised by `wait`.
    """

    def __init__(self, fn, *args, **kwargs):
        super().__init__(name="parquet-write", daemon=True)
        self._call = functools.partial(fn, *args, **kwargs)
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._call()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller by wait()
            self._error = exc

    def wait(self) -> None:
        self.join()
        if self._error is not None:
            raise self._error


class PartWriter:
    """One Parquet part: open, write batches, finish -> PartInfo."""

    def __init__(self, fs: fsspec.AbstractFileSystem, snapshot_path: str, index: int, *,
                 compression: str = "zstd", row_group_rows: int = 10_000):
        self.name = part_name(index)
        self.path = storage.join(snapshot_path, PARTS, self.name)
        self.fs = fs
        self.rows = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = self._pending_bytes = 0
        self._row_group_rows = row_group_rows
        try:
            if storage.is_local(fs):
                fs.makedirs(storage.join(snapshot_path, PARTS), exist_ok=True)
            self._raw = fs.open(self.path, "wb")
        except PermissionError as exc:
            raise DestinationNotWritable(f"Cannot create {storage.unstrip(fs, self.path)}: permission denied.") from exc
        except OSError as exc:
            raise StorageUnavailable(f"Cannot create {storage.unstrip(fs, self.path)}: {exc}") from exc
        self._sink = _HashingWriter(self._raw)
        self._writing: _BackgroundWrite | None = None  # at most one row group in flight
        self._writer = pq.ParquetWriter(
            self._sink,
            RECORD_SCHEMA,
            compression=None if compression == "none" else compression,
            write_statistics=["key", "type", "expire_at_ms", "size_bytes", "store"],
            # Keys and values are nearly all distinct: trying a dictionary for them only costs
            # time (~10% of a backup's writing) before the writer falls back to plain encoding.
            use_dictionary=["type", "db", "store"],
        )

    def write(self, batch: pa.RecordBatch) -> None:
        """Buffer rows and write them in row groups of `row_group_rows` rows or `GROUP_BYTES`
        bytes (flat memory; the bytes bound a row group of big values for its readers too)."""
        if not batch.num_rows:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += held_bytes(batch)
        self.rows += batch.num_rows
        if self._pending_rows >= self._row_group_rows or self._pending_bytes >= GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            table = pa.Table.from_batches(self._pending, schema=RECORD_SCHEMA)
            self._pending = []
            self._pending_rows = self._pending_bytes = 0
            self._wait()
            self._writing = _BackgroundWrite(self._writer.write_table, table,
                                             row_group_size=max(self._row_group_rows, table.num_rows))

    def _wait(self) -> None:
        """Until the row group in flight is written; raises its error."""
        writing, self._writing = self._writing, None
        if writing is not None:
            try:
                writing.wait()
            except OSError as exc:
                raise StorageUnavailable(f"Writing {storage.unstrip(self.fs, self.path)} failed: {exc}") from exc

    def finish(self) -> PartInfo:
        try:
            self._flush()
            self._wait()
            self._writer.close()
            if storage.is_local(self.fs):  # durable before a checkpoint or the manifest lists it
                self._raw.flush()
                os.fsync(self._raw.fileno())
            self._raw.close()
        except OSError as exc:
            raise StorageUnavailable(f"Writing {storage.unstrip(self.fs, self.path)} failed: {exc}") from exc
        return PartInfo(name=self.name, rows=self.rows, bytes=self._sink.size, sha256=self._sink.sha256.hexdigest())

    def abort(self) -> None:
        try:
            self._wait()
        except Exception:  # noqa: BLE001 - the part is being dropped anyway
            pass
        try:
            self._writer.close()
            self._raw.close()
        except Exception:  # noqa: BLE001 - best effort; the part is unlisted anyway
            pass


class SnapshotSink:
    """The parts of one snapshot, as a `Sink`: rows go to the current part; `commit` finishes it
    and returns its `PartInfo` (a part ends only where the caller commits, which for a backup is
    a resume point). Part indexes start at `first` and step by `step` (several writers of one
    snapshot number their parts apart). The manifest is not the sink's business: the job
    commits the snapshot once every part is durable."""

    def __init__(self, fs: fsspec.AbstractFileSystem, snapshot_path: str, *, first: int = 0, step: int = 1,
                 compression: str = "zstd", row_group_rows: int = 10_000):
        self.fs, self.path = fs, snapshot_path
        self.next_index, self.step = first, step
        self.compression, self.row_group_rows = compression, row_group_rows
        self.part: PartWriter | None = None

    @property
    def rows(self) -> int:
        """Rows in the part being written (not yet committed)."""
        return self.part.rows if self.part is not None else 0

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        if self.part is None:
            self.part = PartWriter(self.fs, self.path, self.next_index, compression=self.compression,
                                   row_group_rows=self.row_group_rows)
            self.next_index += self.step
        self.part.write(batch)

    def commit(self) -> list[PartInfo]:
        """The part written so far, finished (none when nothing was written since the last commit)."""
        if self.part is None:
            return []
        part, self.part = self.part, None
        return [part.finish()]

    def empty_part(self) -> PartInfo:
        """A part with no rows: a snapshot always has one, so readers always find the schema."""
        part = PartWriter(self.fs, self.path, self.next_index, compression=self.compression)
        self.next_index += self.step
        return part.finish()

    def abort(self) -> None:
        if self.part is not None:
            part, self.part = self.part, None
            part.abort()
