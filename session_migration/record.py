"""`KeyRecord`: one row of the record schema as a plain Python object.

Used where per-key logic is clearer than columnar code (session classification, verify, the
typed writes of restore and transfer, tests). The hot paths work on Arrow batches directly;
`records_from_batch` converts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat

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
    """Yield one `KeyRecord` per row; columns missing from a projection are left empty.

    Used per key by stats and cleanup, and by restore and transfer for the rows they do not
    write column-wise (typed values, DUMP payloads): each column is converted once, and
    all-null columns (the typed columns of a batch of strings) are not converted at all.
    """
    n = batch.num_rows
    present = set(batch.schema.names)

    def column(name: str):
        if name not in present or batch.column(name).null_count == n:
            return repeat(None, n)
        return batch.column(name).to_pylist()

    for key, kind, value, fields, items, members, entries, dump, expire_at_ms, size, db, store in zip(
        column("key"), column("type"), column("value"), column("fields"), column("items"), column("members"),
        column("entries"), column("dump"), column("expire_at_ms"), column("size_bytes"), column("db"),
        column("store"),
    ):
        yield KeyRecord(
            key,
            kind,
            value,
            None if fields is None else tuple((p["field"], p["value"]) for p in fields),
            None if items is None else tuple(items),
            None if members is None else tuple((m["member"], m["score"]) for m in members),
            None if entries is None else tuple((e["id"], tuple(e["fields"])) for e in entries),
            dump,
            expire_at_ms,
            size or 0,
            db or 0,
            store,
        )
