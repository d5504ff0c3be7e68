"""Big values are read, buffered and written in batches of bounded bytes (`budget`), not of
`--batch-size` keys: a store of 256 KB values is read a few dozen keys at a time, its snapshot's
row groups stay near `GROUP_BYTES`, and a restore reads it back in batches of about
`BATCH_BYTES`. Before, each of these held every key of the store (one read of 1,000 keys, one
10,000-row group, one 10,000-row batch)."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest
from redis.crc import key_slot

from session_migration import backup, open_snapshot
from session_migration.budget import BATCH_BYTES, FIRST_ROWS, GROUP_BYTES
from session_migration.endpoints import resolve_connection
from session_migration.sources.cluster import open_source
from session_migration.sources.redis import RedisSource
from session_migration.sources.snapshot import SnapshotSource

pytestmark = pytest.mark.integration

VALUE_BYTES = 256 << 10
KEYS = 400  # 100 MB: more than a row group may hold
# A read sized for BATCH_BYTES may hold up to about twice that: it takes whole SCAN pages until
# it has its rows (a page is never split, so the last one can bring up to COUNT more), and
# COUNT is only a hint.
READ_SLACK = 3


@pytest.fixture(params=["string", "hash"])
def big_values(server, request):
    """KEYS values of VALUE_BYTES, strings or (as Spring Session keeps them) hashes."""
    r = server.client()
    pipe = r.pipeline(transaction=False)
    for i in range(KEYS):
        key = b"sess:%04d" % i
        if request.param == "string":
            pipe.set(key, os.urandom(VALUE_BYTES), px=3_600_000)
        else:
            pipe.hset(key, mapping={b"attr": os.urandom(VALUE_BYTES)})
            pipe.pexpire(key, 3_600_000)
    pipe.set(b"sess:small", b"x")
    pipe.execute()
    yield server
    r.flushdb()


def _nbytes(reads) -> list[int]:
    return [read.batch.nbytes for read in reads if read.batch is not None]


@pytest.mark.parametrize("walk", ["patterns", "keyspace"])  # a backup's walk, a transfer's walk
def test_a_source_reads_big_values_a_few_at_a_time(big_values, walk):
    source = RedisSource(resolve_connection(big_values.url), patterns=["sess:*"], walk=walk)
    try:
        reads = list(source.read())
    finally:
        source.close()
    sizes = _nbytes(reads)
    assert sum(read.rows for read in reads) == KEYS + 1
    # The first read and those sent ahead with it are sized before its batch is seen.
    assert max(sizes[:3]) <= READ_SLACK * FIRST_ROWS * (VALUE_BYTES + 1024), sizes
    assert max(sizes[3:]) <= READ_SLACK * BATCH_BYTES, sizes


def test_a_snapshot_of_big_values_has_bounded_row_groups_and_is_read_back_in_bounded_batches(big_values, tmp_path):
    result = backup(big_values.url, str(tmp_path), patterns=["sess:*"])
    snapshot = open_snapshot(result.url)
    groups = []
    for part in snapshot.parts:
        with snapshot.fs.open(snapshot.part_path(part), "rb") as fh:
            metadata = pq.ParquetFile(fh).metadata
            groups += [metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)]
    assert len(groups) >= 2 and max(groups) <= GROUP_BYTES + READ_SLACK * BATCH_BYTES, groups

    reads = list(SnapshotSource(snapshot).read())
    assert sum(read.rows for read in reads) == KEYS + 1
    assert max(_nbytes(reads)) <= BATCH_BYTES + VALUE_BYTES + (1 << 20)
    rows = {row["key"]: row for row in snapshot.read_table().to_pylist()}
    assert rows[b"sess:small"]["value"] == b"x"
    assert all(row["size_bytes"] >= VALUE_BYTES for key, row in rows.items() if key != b"sess:small")


@pytest.mark.parametrize("walk", ["patterns", "keyspace"])
def test_a_pattern_that_matches_few_keys_is_scanned_in_pages_of_the_batch_size(server, walk):
    """Its reads teach the budget no size, so the SCAN COUNT follows the share of keys it
    matches: before, such a walk asked for 64 keys a page (the first read's size) to the end."""
    r = server.client()
    pipe = r.pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(b"cache:%05d" % i, b"x")
    for i in range(20):
        pipe.set(b"sess:%02d" % i, b"y")
    pipe.execute()
    r.config_resetstat()
    source = RedisSource(resolve_connection(server.url), patterns=["sess:*"], walk=walk)
    try:
        reads = list(source.read())
    finally:
        source.close()
    assert sum(read.rows for read in reads) == 20
    scans = r.info("commandstats")["cmdstat_scan"]["calls"]
    assert scans <= 3 * 20_020 // 1000 + 10, scans  # at COUNT 64 it took more than 300


def test_a_cluster_re_walk_reads_big_values_a_few_at_a_time(cluster):
    """Slots that moved during a walk are listed again on their new owner and read: in batches
    of about `BATCH_BYTES` too, not of `--batch-size` keys (before: every key of the slot)."""
    rc = cluster.client()
    pipe = rc.pipeline()
    for i in range(120):
        pipe.set(b"sess:{tag}%03d" % i, os.urandom(VALUE_BYTES), px=3_600_000)  # one slot
    pipe.execute()
    source = open_source(resolve_connection(cluster.url), patterns=["sess:*"])
    try:
        source.add_suspects([key_slot(b"sess:{tag}000")])
        reads = [read for _unit, read in source.unit_reads({}, first=len(source.units))]
    finally:
        source.close()
    sizes = _nbytes(reads)
    assert sum(read.rows for read in reads) == 120
    assert len(sizes) >= 3, sizes  # about 32 values a read once their size is known (before: 1 read)
    assert max(sizes[:2]) <= READ_SLACK * FIRST_ROWS * (VALUE_BYTES + 1024), sizes
    assert max(sizes[2:]) <= READ_SLACK * BATCH_BYTES, sizes
