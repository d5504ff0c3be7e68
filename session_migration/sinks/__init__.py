"""Sinks: where record batches go.

Every sink implements `Sink`: `write(batch)`, `commit()` (everything written so far is durable:
a snapshot part is finished, a target has answered every write; returns what became durable)
and `abort()` (drop what is not committed). `pipeline.copy` is their only caller.

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
        """Drop what was written since the last commit; never raises."""
