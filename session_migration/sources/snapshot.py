"""Read a committed snapshot's rows, part by part: the `Source` of restores and rollbacks.

A position is (part index, rows of that part already read); a part's sha256 and row count are
checked against the manifest before its first row is read (unless the caller has just
validated the whole snapshot), and Parquet is decoded in a thread of its own (outside the
GIL) while the caller works on the batch before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow.parquet as pq

from ..budget import rows_for
from ..prefetch import prefetch
from ..snapshot import READ_BUFFER_BYTES, Snapshot, check_part
from . import Read

Position = tuple[int, int]  # (part index, rows of it already read)


class SnapshotSource:
    """The rows of `snapshot` (all its parts, or those named), as a `Source`. With `verify`, each
    part's size, sha256 and row count are checked before its rows are read (not again for a file
    this process checked moments ago and that has not changed since: `snapshot.check_part`)."""

    def __init__(self, snapshot: Snapshot, *, parts: Sequence[str] | None = None,
                 columns: Sequence[str] | None = None, batch_size: int = 10_000, verify: bool = True):
        wanted = set(parts) if parts is not None else None
        self.snapshot = snapshot
        self.parts = [p for p in snapshot.parts if wanted is None or p.name in wanted]
        self.columns = list(columns) if columns else None
        self.batch_size, self.verify = batch_size, verify

    def read(self, start: Position | None = None) -> Iterator[Read]:
        return prefetch(self.reads(start))

    def reads(self, start: Position | None = None) -> Iterator[Read]:
        """`read`, in the caller's thread."""
        start = start or (0, 0)
        first_part, skip = start
        for index in range(first_part, len(self.parts)):
            part = self.parts[index]
            path = self.snapshot.part_path(part)
            if self.verify:
                check_part(self.snapshot.fs, path, part)
            done = 0
            with self.snapshot.fs.open(path, "rb") as fh:
                parquet = pq.ParquetFile(fh, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
                batches = parquet.iter_batches(batch_size=self._batch_rows(parquet.metadata), columns=self.columns)
                for batch in batches:
                    done += batch.num_rows
                    if index == first_part and done <= skip:
                        continue
                    if index == first_part and done - batch.num_rows < skip:
                        batch = batch.slice(skip - (done - batch.num_rows))
                    yield Read(position=(index, done), batch=batch, scope=index)
            if not done:
                yield Read(position=(index, 0), batch=None, scope=index)  # an empty part still ends

    def _batch_rows(self, metadata: pq.FileMetaData) -> int:
        """`batch_size` rows, or as many as fit `budget.BATCH_BYTES` at this part's mean row size
        (of the columns read): a part of 1 MB values is read a few rows at a time."""
        wanted = None if self.columns is None else set(self.columns)
        total = 0
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for column in range(row_group.num_columns):
                chunk = row_group.column(column)
                if wanted is None or chunk.path_in_schema.split(".")[0] in wanted:
                    total += max(chunk.total_uncompressed_size, 0)
        return rows_for(total / metadata.num_rows, self.batch_size) if metadata.num_rows else self.batch_size

    def close(self) -> None:
        pass
