"""The one record schema every source produces and every sink consumes.

One row per Redis key. The value lives in exactly one typed column, chosen by ``type``:

| type   | column    | content                                   |
|--------|-----------|-------------------------------------------|
| string | `value`   | the raw bytes                             |
| hash   | `fields`  | list of (field, value) pairs              |
| list   | `items`   | the elements, in order                    |
| set    | `items`   | the members (unordered)                   |
| zset   | `members` | list of (member, score) pairs             |
| stream | `entries` | list of (id, flat field/value list); plus `dump` |

`dump` holds a DUMP payload when one was captured (always for streams, whose consumer
groups exist only there). `expire_at_ms` is absolute Unix time in ms; null means no expiry.
"""

from __future__ import annotations

import re

import pyarrow as pa

FORMAT_NAME = "redis-session-snapshot"
# 2: the manifest may carry a `signature` (docs/snapshot-format.md). Version 1 is still read.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

SNAPSHOT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The only names a part may have: nothing else is ever opened under (or outside) parts/.
PART_NAME_RE = re.compile(r"^part-[0-9]{5,9}\.parquet$")

REDIS_TYPES = ("string", "hash", "list", "set", "zset", "stream")

PAIR = pa.struct([pa.field("field", pa.binary()), pa.field("value", pa.binary())])
SCORED = pa.struct([pa.field("member", pa.binary()), pa.field("score", pa.float64())])
STREAM_ENTRY = pa.struct([pa.field("id", pa.binary()), pa.field("fields", pa.list_(pa.binary()))])

RECORD_SCHEMA = pa.schema(
    [
        pa.field("key", pa.binary(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("value", pa.binary()),
        pa.field("fields", pa.list_(PAIR)),
        pa.field("items", pa.list_(pa.binary())),
        pa.field("members", pa.list_(SCORED)),
        pa.field("entries", pa.list_(STREAM_ENTRY)),
        pa.field("dump", pa.binary()),
        pa.field("expire_at_ms", pa.int64()),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("db", pa.int32(), nullable=False),
        pa.field("store", pa.string()),
    ]
)

COLUMNS = tuple(RECORD_SCHEMA.names)


def schema_description() -> list[dict[str, str]]:
    """The schema as plain JSON, for the manifest and the docs."""
    return [
        {"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in RECORD_SCHEMA
    ]
