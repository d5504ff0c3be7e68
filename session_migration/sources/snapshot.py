"""Read a committed snapshot's rows, part by part: the `Source` of restores and rollbacks.

A position is (part index, rows of that part already read); a part's sha256 and row count are
checked against the manifest before its first row is read (unless the caller has just
validated the whole snapshot), and Parquet is decoded in a thread of its own (outside the
GIL) while the caller works on the batch before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow.parquet as pq

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
                batches = pq.ParquetFile(fh, pre_buffer=False, buffer_size=READ_BUFFER_BYTES).iter_batches(
                    batch_size=self.batch_size, columns=self.columns)
                for batch in batches:
                    done += batch.num_rows
                    if index == first_part and done <= skip:
                        continue
                    if index == first_part and done - batch.num_rows < skip:
                        batch = batch.slice(skip - (done - batch.num_rows))
                    yield Read(position=(index, done), batch=batch, scope=index)
            if not done:
                yield Read(position=(index, 0), batch=None, scope=index)  # an empty part still ends

    def close(self) -> None:
        pass
