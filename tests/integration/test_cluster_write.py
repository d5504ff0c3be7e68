"""Redis Cluster as a target: restore and transfer into 3-master Redis 7.0 and Valkey 9 clusters,
every type, binary keys, hash tags, keys on every node, conflicts, the RESTORE fast path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.compute as pc
import pytest

from servers import REDIS_CLI
from helpers import BINARY_KEYS, HOUR_MS, seed_all_types, seed_binary, state
from session_migration import backup, open_snapshot
from session_migration.cluster import discover
from session_migration.endpoints import RedisEndpoint
from session_migration.restore import restore
from session_migration.transfer import transfer

pytestmark = pytest.mark.integration

TAGGED = [b"sess:{user1}a", b"sess:{user1}b", b"sess:{user2}a"]


def seed(r, strings: int = 3000) -> None:
    """Every type, binary keys, hash tags, and enough strings to land on every node."""
    seed_all_types(r)
    seed_binary(r)
    pipe = r.pipeline(transaction=False)
    for i in range(strings):
        pipe.set(f"sess:s{i:05d}", os.urandom(30), px=2 * HOUR_MS + i)
    for key in TAGGED:
        pipe.set(key, b"tagged", px=HOUR_MS)
    pipe.execute()


def cluster_state(cluster) -> dict:
    out = {}
    for node in cluster.nodes:  # node by node: each holds its own slots
        out.update(state(node.client(), "sess:*"))
    return out


def per_node(cluster) -> list[int]:
    return [node.client().dbsize() for node in cluster.nodes]


@pytest.fixture
def standalone(valkey_server):
    valkey_server.client().flushall()
    return valkey_server


def test_restore_into_a_cluster_every_type_on_every_node(standalone, cluster, tmp_path):
    seed(standalone.client())
    expected = state(standalone.client(), "sess:*")
    snap = backup(standalone.url, str(tmp_path / "snaps"), patterns=["sess:*"])
    result = restore(snap.url, cluster.url).summary()
    assert result["written"] == result["created"] == len(expected)
    assert cluster_state(cluster) == expected
    assert all(count > 0 for count in per_node(cluster))  # every master got its share (earlier tests reshard)
    assert BINARY_KEYS["string"] in expected and cluster.client().get(TAGGED[0]) == b"tagged"


def test_restore_into_a_cluster_keeps_existing_keys_when_asked(standalone, cluster, tmp_path):
    seed(standalone.client(), strings=300)
    snap = backup(standalone.url, str(tmp_path / "snaps"), patterns=["sess:*"])
    theirs = cluster.client()
    theirs.set("sess:s00007", b"theirs")
    theirs.hset("sess:hash", mapping={"mine": "no"})
    result = restore(snap.url, cluster.url, on_conflict="skip").summary()
    assert result["skipped_existing"] == 2
    assert theirs.get("sess:s00007") == b"theirs" and theirs.hgetall("sess:hash") == {b"mine": b"no"}
    assert theirs.get("sess:s00008") == standalone.client().get("sess:s00008")


def test_restore_with_dump_payloads_into_a_cluster(redis_server, cluster, tmp_path):
    standalone = redis_server  # Redis 7.0 payloads load on Redis 7.0 and on Valkey 9
    standalone.client().flushall()
    seed(standalone.client(), strings=200)
    expected = state(standalone.client(), "sess:*")
    snap = backup(standalone.url, str(tmp_path / "snaps"), patterns=["sess:*"], capture_dump=True)
    result = restore(snap.url, cluster.url).summary()
    assert result["dump_restored"] == len(expected) and result["dump_fallbacks"] == 0
    assert cluster_state(cluster) == expected


def test_transfer_into_a_cluster(standalone, cluster, tmp_path):
    seed(standalone.client())
    expected = state(standalone.client(), "sess:*")
    result = transfer(standalone.url, cluster.url, patterns=["sess:*"], checkpoint_path=str(tmp_path)).summary()
    assert result["written"] == len(expected)
    assert cluster_state(cluster) == expected
    again = transfer(standalone.url, cluster.url, patterns=["sess:*"], checkpoint_path=str(tmp_path / "2")).summary()
    assert again["overwritten"] == len(expected)  # a second run finds and replaces them all


def test_the_topology_follows_the_address_map(cluster):
    plain = discover(RedisEndpoint.from_url(cluster.url), cluster.nodes[0].client())
    mapping = ",".join(f"{node.address}=localhost:{node.port}" for node in plain.nodes)
    mapped = RedisEndpoint.from_url(f"{cluster.url}?cluster_address_map={mapping}")
    topology = discover(mapped, cluster.nodes[0].client())
    assert [n.host for n in topology.nodes] == ["localhost"] * 3
    assert [n.port for n in topology.nodes] == [n.port for n in plain.nodes]
    partial = RedisEndpoint.from_url(f"{cluster.url}?cluster_address_map={mapping.split(',')[0]}")
    with pytest.raises(Exception, match="does not map"):
        discover(partial, cluster.nodes[0].client())


def _keys_in_slot(slot: int, count: int) -> list[bytes]:
    from redis.crc import key_slot

    found, i = [], 0
    while len(found) < count:
        key = b"sess:ask%d" % i
        if key_slot(key) == slot:
            found.append(key)
        i += 1
    return found


def test_writes_answered_moved_go_to_the_new_owner(standalone, cluster, tmp_path):
    """A sink whose layout is stale (every slot on the first master): the sessions (strings)
    the other masters own are answered MOVED, handed back, and written where the cluster says;
    none is lost or counted twice. A typed write answered MOVED is a transient ClusterChanged."""
    from session_migration.cluster import ClusterNode, Topology
    from session_migration.errors import ClusterChanged, is_transient
    from session_migration.sinks.cluster import ClusterSink

    r = standalone.client()
    for i in range(2000):
        r.set(f"sess:s{i:05d}", os.urandom(30), px=2 * HOUR_MS + i)
    for i in range(12):  # hashes on every master (a slot of 0..16383 each, by their names)
        r.hset(f"sess:typed{i}", mapping={"a": "1"})
    expected = state(r, "sess:s*")
    snap = backup(standalone.url, str(tmp_path / "snaps"), patterns=["sess:*"])
    endpoint = RedisEndpoint.from_url(cluster.url)
    first = discover(endpoint, cluster.nodes[0].client()).nodes[0]

    def stale_sink() -> ClusterSink:
        return ClusterSink(endpoint, Topology((ClusterNode(first.node_id, first.host, first.port, ((0, 16383),)),)))

    sink = stale_sink()
    batches = list(open_snapshot(snap.url).iter_batches())
    written = 0
    for batch in batches:
        strings = batch.filter(pc.equal(batch.column("type"), "string"))
        sink.write(strings)
        written += strings.num_rows
    counts = sink.commit()
    sink.close()
    assert written == len(expected) and counts.written == counts.created == len(expected)
    assert cluster_state(cluster) == expected
    sink = stale_sink()
    hashes = [b.filter(pc.equal(b.column("type"), "hash")) for b in batches]
    with pytest.raises(ClusterChanged) as caught:
        for batch in hashes:
            sink.write(batch)
        sink.commit()
    sink.close()
    assert is_transient(caught.value)


def test_writes_answered_ask_go_to_the_importing_node(cluster):
    """A slot being migrated: new keys of that slot are answered ASK by the old owner and
    written at the importing node with ASKING."""
    import pyarrow as pa

    from session_migration.sinks.cluster import open_sink

    endpoint = RedisEndpoint.from_url(cluster.url)
    layout = discover(endpoint, cluster.nodes[0].client())
    owner, importer = layout.nodes[0], layout.nodes[1]
    slot = owner.slots[0][0]
    by_port = {n.port: n.client() for n in cluster.nodes}
    by_port[importer.port].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", owner.node_id)
    by_port[owner.port].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", importer.node_id)
    try:
        keys = _keys_in_slot(slot, 5)
        sink = open_sink(endpoint)
        sink.write_strings(pa.array(keys, pa.binary()), pa.array([b"v"] * 5, pa.binary()),
                           pa.array([None] * 5, pa.int64()), replace=True)
        counts = sink.commit()
        sink.close()
        assert counts.written == counts.created == 5
        assert by_port[owner.port].execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        assert by_port[importer.port].execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 5
    finally:  # finish the move, as redis-cli --cluster reshard would
        for node in cluster.nodes:
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", importer.node_id)


def reshard(cluster, slots: int, source: int = 0, target: int = 1) -> subprocess.Popen:
    """`redis-cli --cluster reshard`: move `slots` slots and their keys between two masters."""
    ids = [node.client().execute_command("CLUSTER", "MYID").decode() for node in cluster.nodes]
    return subprocess.Popen([REDIS_CLI, "--cluster", "reshard", f"127.0.0.1:{cluster.nodes[0].port}",
                             "--cluster-from", ids[source], "--cluster-to", ids[target],
                             "--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline", "5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_a_transfer_into_a_cluster_resharded_meanwhile_loses_nothing(standalone, cluster, tmp_path):
    r = standalone.client()
    pipe = r.pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(f"sess:s{i:05d}", os.urandom(30), px=2 * HOUR_MS + i)
    pipe.execute()
    expected = state(r, "sess:*")
    env = dict(os.environ, SESSION_MIGRATION_STATE_DIR=str(tmp_path / "state"))
    env.pop("PREFECT_API_URL", None)
    tool = subprocess.Popen([sys.executable, "-m", "session_migration_cli", "transfer", standalone.url, cluster.url,
                             "-p", "sess:*", "--batch-size", "100", "--json", "--no-prefect"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while sum(n.client().dbsize() for n in cluster.nodes) < 3000 and tool.poll() is None:
        assert time.monotonic() < deadline, "the transfer wrote nothing within 60 s"
        time.sleep(0.02)
    mover = reshard(cluster, 800)
    overlapped = tool.poll() is None
    out, err = tool.communicate(timeout=300)
    assert mover.wait(300) == 0, mover.stderr.read()
    assert tool.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["written"] >= len(expected)
    got = cluster_state(cluster)
    assert got.keys() == expected.keys()
    assert all(got[k][:2] == expected[k][:2] for k in expected)
    # MIGRATE, which the reshard uses to move keys, carries a relative TTL: a key it moved may
    # expire a millisecond or two off the instant we wrote
    assert max(abs(got[k][2] - expected[k][2]) for k in expected) <= 50
    assert overlapped  # the reshard began while the transfer was writing


# -- cleanup, migration and cluster-to-cluster ----------------------------------------------------

SPRING = "spring:session:sessions:"


def test_cleanup_deletes_on_a_cluster_per_key_and_the_pre_image_undoes_it(cluster, tmp_path):
    from session_migration import storage
    from session_migration.cleanup import CleanupOptions, run_cleanup

    rc = cluster.client()
    now = int(time.time() * 1000)
    expired = f"{SPRING}11111111-2222-3333-4444-555555555555"
    rc.hset(expired, mapping={"creationTime": str(now - 3 * HOUR_MS), "lastAccessedTime": str(now - 2 * HOUR_MS),
                              "maxInactiveInterval": "1800"})
    rc.pexpire(expired, HOUR_MS)
    doomed = [expired.encode(), b"sess:corruptcorruptcorruptcorrupt00", b"PHPREDIS_SESSION:abcdefabcdefabcdefabcdefab_LOCK",
              f"{SPRING}expires:99999999-8888-7777-6666-555555555555".encode()]
    rc.set(doomed[1], b"\xff\xfe not a session", px=HOUR_MS)
    rc.set(doomed[2], "1")
    rc.set(doomed[3], b"", px=HOUR_MS)  # an orphan: its session (another slot) does not exist
    for i in range(300):  # valid sessions on every master
        rc.set(f"sess:{i:032x}", json.dumps({"cookie": {"originalMaxAge": 3600000}, "user": i}), px=HOUR_MS)
    before = cluster_state_all(cluster)
    fs, root = storage.resolve(str(tmp_path))
    report = run_cleanup(RedisEndpoint.from_url(cluster.url),
                         CleanupOptions(include={"stale", "corrupt", "locks", "orphans"}, apply=True), fs=fs, root=root)
    assert report.deleted == 4 and report.changed == report.gone == 0
    after = cluster_state_all(cluster)
    assert set(before) - set(after) == set(doomed) and all(after[k] == before[k] for k in after)
    undo = restore(report.pre_image, cluster.url).summary()
    assert undo["written"] == 4
    assert cluster_state_all(cluster) == before


def cluster_state_all(cluster) -> dict:
    out = {}
    for node in cluster.nodes:
        out.update(state(node.client()))
    return out


def test_a_migration_into_a_cluster_rolls_back_exactly_when_verify_fails(standalone, cluster, tmp_path):
    from session_migration import storage
    from session_migration.migration import MigrationFailed, MigrationOptions, run_migration

    seed(standalone.client(), strings=1000)
    rc = cluster.client()
    rc.set("sess:s00003", b"the cluster's own value", px=5 * HOUR_MS)  # overwritten, then put back
    rc.set("sess:cluster-only", b"kept", px=4 * HOUR_MS)
    rc.set("cache:user:1", b"out of scope")
    before = cluster_state_all(cluster)
    fs, root = storage.resolve(str(tmp_path / "snaps"))

    def tamper(step, info):
        if step == "restore":
            rc.set("sess:s00010", b"changed behind the migration's back")

    with pytest.raises(MigrationFailed, match="rolled back"):
        run_migration(RedisEndpoint.from_url(standalone.url), RedisEndpoint.from_url(cluster.url), fs, root,
                      MigrationOptions(patterns=("sess:*",)), progress=tamper)
    assert cluster_state_all(cluster) == before  # every key of every master, in scope or not

    result = run_migration(RedisEndpoint.from_url(standalone.url), RedisEndpoint.from_url(cluster.url), fs, root,
                           MigrationOptions(patterns=("sess:*",)))
    summary = result.summary()
    assert result.ok and summary["step"] == "done" and summary["verify"]["kept_target_only"] == 1
    assert cluster_state(cluster) == {**state(standalone.client(), "sess:*"),
                                      b"sess:cluster-only": before[b"sess:cluster-only"]}


def test_cluster_to_cluster_transfer_verify_and_migration(redis_cluster_servers, valkey_cluster_servers, tmp_path):
    from session_migration import storage
    from session_migration.migration import MigrationOptions, run_migration
    from session_migration.verify import VerifyOptions, verify

    source, target = redis_cluster_servers, valkey_cluster_servers
    source.flushall()
    target.flushall()
    seed(source.client(), strings=2000)
    expected = cluster_state(source)
    result = transfer(source.url, target.url, patterns=["sess:*"], checkpoint_path=str(tmp_path)).summary()
    assert result["written"] == len(expected)
    assert cluster_state(target) == expected
    report = verify(RedisEndpoint.from_url(source.url), RedisEndpoint.from_url(target.url),
                    VerifyOptions(patterns=("sess:*",)))
    assert report.ok
    target.flushall()
    fs, root = storage.resolve(str(tmp_path / "snaps"))
    migrated = run_migration(RedisEndpoint.from_url(source.url), RedisEndpoint.from_url(target.url), fs, root,
                             MigrationOptions(patterns=("sess:*",)))
    assert migrated.ok and cluster_state(target) == expected


def test_a_live_transfer_into_a_cluster_applies_changes_and_deletions(standalone, cluster, tmp_path):
    """Following a standalone source into a cluster: changes and logouts made while it follows
    reach the right masters (sets, hash updates, deletes, expiries)."""
    r = standalone.client()
    for i in range(2000):
        r.set(f"sess:s{i:05d}", b"before", px=HOUR_MS)
    env = dict(os.environ, SESSION_MIGRATION_STATE_DIR=str(tmp_path / "state"))
    env.pop("PREFECT_API_URL", None)
    err_path = tmp_path / "tool.err"
    with open(err_path, "wb") as err:
        tool = subprocess.Popen([sys.executable, "-m", "session_migration_cli", "transfer", standalone.url, cluster.url,
                                 "-p", "sess:*", "--live", "--json", "--no-prefect"],
                                stdout=subprocess.PIPE, stderr=err, env=env)
    deadline = time.monotonic() + 120
    while b"Now following" not in err_path.read_bytes():
        assert tool.poll() is None and time.monotonic() < deadline, err_path.read_text()
        time.sleep(0.1)
    for i in range(0, 2000, 7):
        r.set(f"sess:s{i:05d}", b"changed while following", px=2 * HOUR_MS)
    for i in range(3, 2000, 11):
        r.delete(f"sess:s{i:05d}")  # logouts
    r.hset("sess:new-hash", mapping={"a": "1"})
    expected = state(r, "sess:*")
    deadline = time.monotonic() + 60
    while cluster_state(cluster).keys() != expected.keys() and time.monotonic() < deadline:
        time.sleep(0.2)
    tool.send_signal(signal.SIGTERM)
    out, _ = tool.communicate(timeout=120)
    assert tool.returncode == 0, err_path.read_text()
    assert json.loads(out.decode().strip().splitlines()[-1])["live"]["verify"]["ok"]
    assert cluster_state(cluster) == expected


def test_a_backup_in_units_for_dask_refuses_a_cluster_before_writing(cluster, tmp_path):
    from session_migration import storage
    from session_migration.backup_units import start_units
    from session_migration.errors import InvalidParameter
    from session_migration.options import BackupOptions

    fs, root = storage.resolve(str(tmp_path / "snaps"))
    with pytest.raises(InvalidParameter, match="is a Redis Cluster node: .* without --dask"):
        start_units(RedisEndpoint.from_url(cluster.url), fs, root, BackupOptions(patterns=("sess:*",), snapshot_id="s1"),
                    units=2)
    assert not (tmp_path / "snaps").exists() or not any((tmp_path / "snaps").iterdir())
