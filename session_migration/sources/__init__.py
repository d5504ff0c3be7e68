"""Sources: where record batches (in the schema of `session_migration.schema`) come from.

Every source implements `Source`: `read(start)` yields `Read`s in order, each with the position
to resume from after it, and `close()`. The one copy loop (`pipeline.copy`) takes them to a
sink; nothing outside a source touches the connection or files it reads.

- `sources/redis.py`: a live Redis/Valkey database, by SCAN (patterns, segments).
- `sources/cluster.py`: a Redis Cluster, master by master (`open_source` picks it or the above).
- `sources/snapshot.py`: a committed snapshot, part by part.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from ..budget import held_bytes

Position = Any  # a source's own resume point: (pattern index, cursor) for Redis (composite on a cluster), (part, row) for a snapshot


@dataclass
class Read:
    """What one read of a source gave."""

    position: Position  # where to go on after this read: a valid resume point
    batch: pa.RecordBatch | None  # the rows read (None: nothing was found)
    scope: int = 0  # which pattern (Redis) or part (snapshot) the rows belong to
    scanned: int = 0  # keys listed, repeats included (Redis)
    vanished: int = 0  # keys listed but gone when read (Redis)

    @property
    def rows(self) -> int:
        return self.batch.num_rows if self.batch is not None else 0

    @property
    def nbytes(self) -> int:
        return held_bytes(self.batch)


class Source(Protocol):
    def read(self, start: Position | None = None) -> Iterator[Read]:
        """The rows from `start` (None: the beginning) on, in order."""

    def close(self) -> None:
        ...
