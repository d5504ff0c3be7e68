"""A backup spread over worker processes, one per SCAN segment, writes exactly the rows a
backup in one process writes: segments cover the keyspace, overlaps are de-duplicated."""

from __future__ import annotations

import os

import pytest

from session_migration import backup, open_snapshot
from session_migration.endpoints import RedisEndpoint
from session_migration.errors import InvalidParameter
from session_migration.sources.redis import RedisSource, after
from session_migration.sources.segments import Segment, split

pytestmark = pytest.mark.integration


def _fill(client, strings: int) -> None:
    pipe = client.pipeline()
    for i in range(strings):
        pipe.set(f"sess:{i:06d}", os.urandom(40), px=3_600_000 + i)
    for i in range(30):
        pipe.hset(f"sess:h{i}", mapping={"a": "1", "b": os.urandom(8)})
        pipe.rpush(f"sess:l{i}", "x", "y")
        pipe.set(f"other:{i}", "out of scope")
    pipe.set("sess:no-ttl", "forever")
    pipe.execute()


def _rows(url):
    return open_snapshot(url).read_table().drop_columns(["dump"]).sort_by("key").to_pylist()


@pytest.mark.parametrize("count", [2, 4])
def test_segments_cover_every_key(count, server):
    _fill(server.client(), 6000)
    source = RedisSource(RedisEndpoint.from_url(server.url))
    try:
        whole = {k for chunk in source.read_chunks(["sess:*"], 500) if chunk.result
                 for k in chunk.result.batch.column("key").to_pylist()}
        shares = [{k for chunk in source.read_chunks(["sess:*"], 500, segment=segment) if chunk.result
                   for k in chunk.result.batch.column("key").to_pylist()} for segment in split(count)]
    finally:
        source.close()
    assert len(whole) == 6000 + 60 + 1
    assert set().union(*shares) == whole
    # each share holds its own part of the keyspace (the last SCAN call of a share may run on
    # into the next share, so small overlaps are allowed)
    assert all(len(share) < len(whole) * 0.75 for share in shares)


def test_segment_start_cursors_follow_the_reverse_binary_walk():
    assert [s.first_cursor for s in split(4)] == [0, 2, 1, 3]
    assert Segment(1, 1).contains(7) and not Segment(1, 1).contains(6)
    with pytest.raises(ValueError):
        split(3)


@pytest.mark.parametrize("readers", [2, 4])
def test_workers_write_the_same_rows_as_one_process(readers, server, tmp_path):
    _fill(server.client(), 5000)
    one = backup(server.url, str(tmp_path / "one"), patterns=["sess:*", "sess:h*"], readers=1, part_rows=700,
                 batch_size=200)
    many = backup(server.url, str(tmp_path / "many"), patterns=["sess:*", "sess:h*"], readers=readers,
                  part_rows=700, batch_size=200)
    assert _rows(many.url) == _rows(one.url)
    counted = many.counters.as_dict()
    assert counted["keys"] == one.counters.keys == 5061
    assert counted["by_type"] == {"hash": 30, "list": 30, "string": 5001}
    assert counted["by_pattern"]["sess:*"]["keys"] == 5061
    assert counted["by_pattern"].get("sess:h*", {"keys": 0})["keys"] == 0  # already written by sess:*
    assert counted["with_ttl"] == 5000 and counted["without_ttl"] == 61
    manifest = open_snapshot(many.url).manifest
    assert sum(p["rows"] for p in manifest["parts"]) == 5061
    assert len({p["name"] for p in manifest["parts"]}) == len(manifest["parts"])
    assert not list((tmp_path / "many").glob("*/checkpoint.json"))


def test_a_backup_in_one_unit_writes_the_rows_of_one_process(server, tmp_path):
    """One unit from the start (a task runner with one unit): its commit skips the repeats pass,
    as the unit kept each key once itself; rows and counts are still those of a plain backup."""
    from session_migration import steps
    from session_migration.options import BackupOptions

    _fill(server.client(), 3000)
    patterns = ("sess:*", "sess:h*")  # a second pattern whose keys the first already wrote
    one = backup(server.url, str(tmp_path / "one"), patterns=list(patterns), part_rows=700, batch_size=200)
    options = BackupOptions(patterns=patterns, part_rows=700, batch_size=200, snapshot_id="in-one-unit")
    root = str(tmp_path / "unit")
    assert steps.start_backup_units(server.url, root, options, 1)["units"] == [[0, 1]]
    done = steps.back_up_unit(server.url, root, options, 0, 1)
    summary = steps.commit_backup_units(server.url, root, options)
    assert _rows(summary["snapshot"]) == _rows(one.url)
    assert {k: summary[k] for k in ("keys", "bytes", "by_type", "by_pattern", "duplicates")} == {
        k: one.counters.as_dict()[k] for k in ("keys", "bytes", "by_type", "by_pattern", "duplicates")}
    parts = [p["name"] for p in open_snapshot(summary["snapshot"]).manifest["parts"]]
    assert len(parts) == done["parts"] >= 4  # the unit's own parts


def test_an_empty_keyspace_gives_one_empty_part(valkey, tmp_path):
    result = backup(valkey.url, str(tmp_path), patterns=["nothing:*"], readers=2)
    assert result.counters.keys == 0
    assert len(open_snapshot(result.url).manifest["parts"]) == 1


def test_memory_filesystem_stays_in_one_process(valkey):
    _fill(valkey.client(), 300)
    # memory:// lives inside this process, so worker processes could not write to it
    result = backup(valkey.url, "memory://workers-test", patterns=["sess:*"], readers=2)
    assert result.counters.keys == 361
    assert len(open_snapshot(result.url).read_table()) == 361


@pytest.mark.parametrize("bad", [0, 3, 16, True, "2"])
def test_readers_must_be_a_power_of_two_up_to_eight(bad, valkey, tmp_path):
    with pytest.raises(InvalidParameter, match="readers must be one of 1, 2, 4, 8"):
        backup(valkey.url, str(tmp_path), patterns=["sess:*"], readers=bad)
    assert not list(tmp_path.iterdir())


def test_every_chunk_is_a_resume_point_with_reads_in_flight(server):
    """Reads run several batches ahead of the caller on a stream apart from SCAN's: chunks must
    still come out in walk order, so resuming after any chunk reads exactly what is left."""
    _fill(server.client(), 3000)
    patterns = ["sess:0*", "nothing:*", "sess:h*", "sess:*"]
    source = RedisSource(RedisEndpoint.from_url(server.url))
    try:
        chunks = list(source.read_chunks(patterns, 300))

        def keys_of(chunk_list):
            return [(c.pattern_index, k) for c in chunk_list if c.result
                    for k in c.result.batch.column("key").to_pylist()]

        walk = keys_of(chunks)
        assert [c.pattern_index for c in chunks] == sorted(c.pattern_index for c in chunks)
        ended = [c.pattern_index for c in chunks if c.cursor == 0]
        assert ended == [0, 1, 2, 3]  # every walk's end is heard, the empty one's too
        for i, chunk in enumerate(chunks[:-1]):
            start = after(chunk.pattern_index, chunk.cursor)
            rest = keys_of(source.read_chunks(patterns, 300, *start))
            # SCAN may repeat a key but never loses one that stays put
            assert set(keys_of(chunks[:i + 1])) | set(rest) == set(walk), f"resume after chunk {i} at {start}"
            assert len(rest) <= len(walk) - len(keys_of(chunks[:i + 1])) + 300
    finally:
        source.close()
