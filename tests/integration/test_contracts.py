"""The source and sink contracts (sources/__init__.py, sinks/__init__.py), run against every
implementation, as fsspec runs one suite against every filesystem.

Sources: every row in scope is read (a key once, after de-duplication), batches have the record
schema, and every position is a resume point: reading from it yields exactly the rest.
Sinks: what is committed is durable and reads back equal; an abort makes nothing durable.
"""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest

from helpers import seed_all_types
from session_migration import backup, open_snapshot, storage
from session_migration.endpoints import RedisEndpoint
from session_migration.schema import RECORD_SCHEMA
from session_migration.sinks.snapshot import SnapshotSink
from session_migration.snapshot import Snapshot
from session_migration.sources.cluster import open_source
from session_migration.sources.redis import RedisSource
from session_migration.sources.snapshot import SnapshotSource

pytestmark = pytest.mark.integration

PATTERNS = ("sess:*", "other:*")


def _seed(client) -> set[bytes]:
    seed_all_types(client)
    pipe = client.pipeline(transaction=False)
    for i in range(2_500):
        pipe.set(f"sess:{i:05d}", f"value-{i}", ex=3600)
    pipe.execute()
    return {k for k in client.scan_iter(count=1000) if k.startswith((b"sess:", b"other:"))}


def _keys(reads) -> list[bytes]:
    return [k for r in reads if r.rows for k in r.batch.column("key").to_pylist()]


@pytest.fixture(params=["redis", "cluster", "cluster-keyspace", "snapshot-file", "snapshot-memory", "snapshot-s3"])
def source(request, server, tmp_path):
    """(a fresh source factory, the keys it must yield)."""
    if request.param.startswith("cluster"):  # a 3-master cluster of the server's kind
        nodes = request.getfixturevalue(f"{server.kind}_cluster_servers")
        nodes.flushall()
        truth = _seed(nodes.client())
        walk = "keyspace" if request.param == "cluster-keyspace" else "patterns"
        yield (lambda: open_source(RedisEndpoint.from_url(nodes.url), patterns=PATTERNS, batch_size=100,
                                   walk=walk)), truth
        return
    truth = _seed(server.client())
    endpoint = RedisEndpoint.from_url(server.url)
    if request.param == "redis":
        yield (lambda: RedisSource(endpoint, patterns=PATTERNS, batch_size=100)), truth
        return
    root = {"snapshot-file": str(tmp_path / "snaps"), "snapshot-memory": f"memory://contract-{uuid.uuid4().hex}",
            "snapshot-s3": None}[request.param]
    if root is None:
        root = request.getfixturevalue("s3_bucket") + f"/contract-{uuid.uuid4().hex}"
    made = backup(server.url, root, patterns=list(PATTERNS), part_rows=700, batch_size=100)
    snap = open_snapshot(made.url)
    yield (lambda: SnapshotSource(snap, batch_size=300)), truth


def test_every_row_once_in_the_record_schema(source):
    make, truth = source
    reader = make()
    try:
        reads = list(reader.read())
    finally:
        reader.close()
    keys = _keys(reads)
    assert set(keys) == truth and len(set(keys)) == len(truth)
    assert all(r.batch.schema.equals(RECORD_SCHEMA) for r in reads if r.rows)


def test_every_position_is_a_resume_point(source):
    make, truth = source
    reader = make()
    try:
        reads = list(reader.read())
        for i in range(0, len(reads), max(1, len(reads) // 7)):
            before = set(_keys(reads[: i + 1]))
            rest = set(_keys(reader.read(reads[i].position)))
            assert before | rest == truth, f"resume after read {i} at {reads[i].position}"
    finally:
        reader.close()


# -- sinks ------------------------------------------------------------------------------------------


@pytest.fixture(params=["file", "memory", "s3"])
def snapshot_place(request, tmp_path):
    if request.param == "file":
        return storage.resolve(str(tmp_path / "snap"))
    if request.param == "memory":
        return storage.resolve(f"memory://sink-{uuid.uuid4().hex}/snap")
    return storage.resolve(request.getfixturevalue("s3_bucket") + f"/sink-{uuid.uuid4().hex}/snap")


def _batch(keys: list[bytes]) -> pa.RecordBatch:
    n = len(keys)
    columns = {f.name: pa.nulls(n, f.type) for f in RECORD_SCHEMA}
    columns.update(key=pa.array(keys, pa.binary()), type=pa.array(["string"] * n), value=pa.array(keys, pa.binary()),
                   size_bytes=pa.array([len(k) for k in keys], pa.int64()), db=pa.array([0] * n, RECORD_SCHEMA.field("db").type))
    return pa.RecordBatch.from_pydict(columns, schema=RECORD_SCHEMA)


def test_snapshot_sink_commits_durable_parts_and_abort_leaves_none(snapshot_place):
    fs, path = snapshot_place
    sink = SnapshotSink(fs, path, row_group_rows=50)
    sink.write(_batch([b"a", b"b"]))
    sink.write(_batch([b"c"]))
    first = sink.commit()
    assert [p.rows for p in first] == [3] and sink.commit() == []  # nothing new: no part
    sink.write(_batch([b"d"]))
    second = sink.commit()
    sink.write(_batch([b"never"]))
    sink.abort()
    assert sink.commit() == []  # the aborted rows became no part
    parts = first + second
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet"]
    read = Snapshot(fs=fs, path=path, manifest={}, parts=parts)
    read.verify_parts()  # sha256 and rows as committed
    assert read.read_table(["key"]).column("key").to_pylist() == [b"a", b"b", b"c", b"d"]


def test_redis_sink_commits_every_write_and_counts_it(server):
    from session_migration.sinks.redis import RedisSink

    r = server.client()
    r.set(b"kept", b"the target's own")
    expire_at = int(__import__("time").time() * 1000) + 3_600_000
    batch = _batch([b"a", b"b", b"kept"])
    batch = batch.set_column(batch.schema.get_field_index("expire_at_ms"), RECORD_SCHEMA.field("expire_at_ms"),
                             pa.array([expire_at, None, None], pa.int64()))
    sink = RedisSink(RedisEndpoint.from_url(server.url), replace=False)
    try:
        sink.write(batch)
        done = sink.commit()
        assert (done.written, done.created, done.skipped_existing) == (2, 2, 1)
        assert sink.commit().written == 0  # nothing since: nothing counted twice
        sink.write(_batch([b"c"]))
        sink.abort()  # stops waiting; the write may have landed (idempotent), it is never counted
        assert sink.commit().written == 0
    finally:
        sink.close()
    assert (r.get(b"a"), r.get(b"b"), r.get(b"kept")) == (b"a", b"b", b"the target's own")
    assert r.execute_command("PEXPIRETIME", b"a") == expire_at and r.pttl(b"b") == -1
