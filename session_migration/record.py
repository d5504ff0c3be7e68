"""`KeyRecord`: one row of the record schema as a plain Python object.

Used where per-key logic is clearer than columnar code (session classification, verify,
tests). The hot paths work on Arrow batches directly; `records_from_batch` converts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key: bytes
    type: str
    value: bytes | None = None
    fields: tuple[tuple[bytes, bytes], ...] | None = None
    items: tuple[bytes, ...] | None = None
    members: tuple[tuple[bytes, float], ...] | None = None
    entries: tuple[tuple[bytes, tuple[bytes, ...]], ...] | None = None
    dump: bytes | None = None
    expire_at_ms: int | None = None
    size_bytes: int = 0
    db: int = 0
    store: str | None = None


def records_from_batch(batch: pa.RecordBatch | pa.Table) -> Iterator[KeyRecord]:
    """Yield one `KeyRecord` per row; columns missing from a projection are left empty."""
    cols = {name: batch.column(name).to_pylist() for name in batch.schema.names}
    n = batch.num_rows
    empty = [None] * n

    def col(name):
        return cols.get(name, empty)

    for i in range(n):
        fields = col("fields")[i]
        items = col("items")[i]
        members = col("members")[i]
        entries = col("entries")[i]
        yield KeyRecord(
            key=col("key")[i],
            type=col("type")[i],
            value=col("value")[i],
            fields=None if fields is None else tuple((p["field"], p["value"]) for p in fields),
            items=None if items is None else tuple(items),
            members=None if members is None else tuple((m["member"], m["score"]) for m in members),
            entries=None if entries is None else tuple((e["id"], tuple(e["fields"])) for e in entries),
            dump=col("dump")[i],
            expire_at_ms=col("expire_at_ms")[i],
            size_bytes=col("size_bytes")[i] or 0,
            db=col("db")[i] or 0,
            store=col("store")[i],
        )
