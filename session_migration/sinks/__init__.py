"""Sinks: where record batches go.

Every sink implements `Sink`: `write(batch)`, `commit()` (everything written so far is durable:
a snapshot part is finished, a target has answered every write; returns what became durable)
and `abort()` (stop, making nothing more durable: a snapshot drops the unfinished part; writes
a server may already have applied stay, which is safe because every write sets a whole key and
is repeated on resume). `pipeline.copy` is their only caller.

- `sinks/snapshot.py`: the Parquet parts of a snapshot (the manifest is the job's commit).
- `sinks/redis.py`: a Redis/Valkey target, pipelined writes.
"""

from __future__ import annotations

from typing import Any, Protocol

import pyarrow as pa


class Sink(Protocol):
    def write(self, batch: pa.RecordBatch) -> None:
        """Take rows (in the record schema); they are durable once `commit` returns."""

    def commit(self) -> Any:
        """Make everything written so far durable; returns what became durable."""

    def abort(self) -> None:
        """Stop without making anything more durable; never raises."""
