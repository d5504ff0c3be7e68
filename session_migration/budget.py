"""How many rows a batch may hold: `--batch-size` keys, and about `BATCH_BYTES` bytes.

Values in Redis are untrusted input, and their size is theirs to choose: a string may hold
512 MB. Read 1,000 keys at a time, with batches read ahead and 10,000-row groups buffered for
the snapshot writer, a CLI backup of 3,000 values of 1 MB each peaked at 5.4 GB of RSS and its
restore at 4.3 GB (docs/benchmarks.md). So reads are sized in bytes as well as in keys: the
first read of a walk is small, the rows of each next read follow the bytes per row of the
last one, and the groups a copy buffers end at `GROUP_BYTES`. A read cannot know the sizes
of its values before it has them (nor can the reads sent ahead with it), so those may hold
more; a read takes whole SCAN pages until it has its rows, so it may hold up to about twice
them (more where a dense stretch of keys follows a sparse one, see `SPARSE_FACTOR`); and a
value is never split. But a store of big values is read in small batches.
"""

from __future__ import annotations

import pyarrow as pa

BATCH_BYTES = 8 << 20  # what one read of a source should hold (~1,000 sessions of 8 KB)
GROUP_BYTES = 64 << 20  # what a copy group, and so a Parquet row group, holds at most
FIRST_ROWS = 64  # the first read of a walk: its sizes are not known yet
# A SCAN asks for at most this many times the keys a read should hold, when its pattern matches
# few of the keys it passes: a pattern that matched nothing used to be walked 64 keys a call, its
# budget never learning a size (a CLI backup of `nothing:*` beside 1M keys: 2.9 s, now 1.3 s).
SPARSE_FACTOR = 16


def rows_for(bytes_per_row: float, most: int, target: int = BATCH_BYTES) -> int:
    """Rows of `bytes_per_row` that fit `target`: at least 1, at most `most`."""
    if bytes_per_row <= 0:
        return most
    return max(1, min(most, int(target // bytes_per_row)))


def held_bytes(batch: pa.RecordBatch | None) -> int:
    """The bytes of `batch`'s buffers (None: 0); a slice counts its buffers whole.

    Not `RecordBatch.nbytes`: it releases the GIL and must take it back, which waits up to a
    switch interval (5 ms) whenever another thread runs Python. Asked once a read, that cost a
    1M-key backup ~1.7 s of its main thread (py-spy); this takes ~1 us."""
    return batch.get_total_buffer_size() if batch is not None else 0


class BatchBudget:
    """The rows of a source's next read: what fits `BATCH_BYTES` at the bytes per key seen
    last, at most `most` (the batch size). It starts at `FIRST_ROWS` and grows at most twofold
    a read (64, 128, ... 1,000: a few more round trips for a store of small values), so neither
    the first read nor one read of small values among big ones reads `most` big values.

    Two measures of a read: the bytes its replies took on the wire, known as soon as they are
    received (before the next read is sized), and the bytes of its decoded batch, known a read
    later but counting what came in further round trips too (the collections of keys that are
    not strings: MGET answers nil for them). The bigger of the latest of each counts, and only
    the decoded measure lets the rows grow: the wire may show a read of hashes as tiny."""

    def __init__(self, most: int, target: int = BATCH_BYTES):
        self.most, self.target = most, target
        self.rows = min(most, FIRST_ROWS)
        self._wire = self._decoded = 0.0  # bytes per key, the latest of each measure
        self._matched = 1.0  # keys a SCAN page brought per key of its COUNT, smoothed

    @property
    def scan_count(self) -> int:
        """The COUNT of the next SCAN: about `rows` keys at the share of keys its pattern matched
        lately, at most `SPARSE_FACTOR` times `rows` (a dense stretch after a sparse one may bring
        that many) and at most `most`."""
        wanted = round(self.rows / max(self._matched, 1 / SPARSE_FACTOR))
        return max(self.rows, min(self.most, wanted))

    def scanned(self, count: int, keys: int) -> None:
        """Learn from a SCAN page of `count` (its COUNT) that brought `keys` keys in scope."""
        if count > 0:
            self._matched = (self._matched + min(1.0, keys / count)) / 2

    def saw(self, rows: int, nbytes: int, *, decoded: bool = False) -> None:
        """Learn from a read of `rows` keys whose replies took `nbytes` on the wire (`decoded`:
        whose batch holds `nbytes`)."""
        if rows <= 0:
            return
        if decoded:
            self._decoded = nbytes / rows
        else:
            self._wire = nbytes / rows
        fit = rows_for(max(self._wire, self._decoded), self.most, self.target)
        self.rows = min(fit, 2 * self.rows) if decoded else min(fit, self.rows)

    def saw_batch(self, keys: int, batch: pa.RecordBatch | None) -> None:
        """Learn from the batch read for `keys` keys (None: none of them was there)."""
        self.saw(keys, held_bytes(batch), decoded=True)
