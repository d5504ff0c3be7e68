"""The Parquet part writer: row groups written on a background thread come out whole and in
order, and a failed write surfaces as a clear error naming the part."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from session_migration.errors import StorageUnavailable
from session_migration.schema import RECORD_SCHEMA
from session_migration.sinks.snapshot import PartWriter


def string_batch(start: int, n: int, value_bytes: int = 100) -> pa.RecordBatch:
    columns = {
        "key": pa.array([b"sess:%06d" % i for i in range(start, start + n)], pa.binary()),
        "type": pa.array(["string"] * n),
        "value": pa.array([os.urandom(value_bytes) for _ in range(n)], pa.binary()),
        "size_bytes": pa.array([value_bytes] * n, pa.int64()),
        "db": pa.array([0] * n, pa.int32()),
    }
    return pa.RecordBatch.from_arrays(
        [columns.get(f.name, pa.nulls(n, f.type)) for f in RECORD_SCHEMA], schema=RECORD_SCHEMA)


def test_rows_and_checksum_of_a_part_written_in_the_background(tmp_path):
    writer = PartWriter(fsspec.filesystem("file"), str(tmp_path), 0, row_group_rows=250)
    for start in range(0, 2000, 90):  # batches that straddle row groups
        writer.write(string_batch(start, 90))
    info = writer.finish()
    path = tmp_path / "parts" / info.name
    assert info.rows == 2070
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.bytes == path.stat().st_size
    table = pq.read_table(path)
    assert table.column("key").to_pylist() == [b"sess:%06d" % i for i in range(2070)]
    assert pq.ParquetFile(path).metadata.num_row_groups > 5


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_failed_background_write_names_the_part(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "part-00000.parquet").symlink_to("/dev/full")  # every write: ENOSPC
    writer = PartWriter(fsspec.filesystem("file"), str(tmp_path), 0, row_group_rows=100)
    with pytest.raises(StorageUnavailable, match=r"part-00000\.parquet failed: .*No space left"):
        for start in range(0, 100_000, 100):
            writer.write(string_batch(start, 100, value_bytes=1000))
        writer.finish()
    writer.abort()  # after a failure: no hang, no second error
