"""Redis Cluster as a target: restore and transfer into 3-master Redis 7.0 and Valkey 9 clusters,
every type, binary keys, hash tags, keys on every node, conflicts, the RESTORE fast path."""

from __future__ import annotations

import os

import pytest

from helpers import BINARY_KEYS, HOUR_MS, seed_all_types, seed_binary, state
from session_migration import backup
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
    assert all(count > 500 for count in per_node(cluster))  # every master got its share
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
