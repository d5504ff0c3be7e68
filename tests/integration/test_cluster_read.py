"""A Redis Cluster as a source: backup (every type, binary keys, hash tags, every node), verify
against a standalone server both ways, resharding during a backup and a transfer, kill -9 and
resume, and the CLI. Real 3-master clusters (Redis 7.0 and Valkey 9) from the fixtures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from redis.crc import key_slot

from helpers import HOUR_MS
from session_migration import backup, open_snapshot
from session_migration.cluster import discover
from session_migration.endpoints import RedisEndpoint
from session_migration.storage import resolve
from session_migration.transfer import transfer
from session_migration.validation import validate_snapshot
from session_migration.verify import VerifyOptions, verify
from servers import REDIS_CLI

pytestmark = pytest.mark.integration


def seed(rc, n: int = 300) -> dict[bytes, tuple]:
    """Every type, binary keys and hash tags on a cluster (redis-py's cluster client): the
    expected (type, value, expire_at_ms) by key."""
    pipe = rc.pipeline()
    for i in range(n):
        pipe.set(f"sess:{i:05d}", f"value {i}".encode() * 3, px=2 * HOUR_MS if i % 2 else None)
    pipe.execute()
    rc.set(b"sess:\x00\xff\xfe bin\r\n", b"\x00\x01\xff", px=HOUR_MS)
    rc.set(b"sess:{user1}a", b"tagged a")
    rc.set(b"sess:{user1}b", b"tagged b", px=HOUR_MS)
    rc.hset(b"sess:h\xc3\x28", mapping={b"f\x00": b"v\xff", b"g": b""})
    rc.pexpire(b"sess:h\xc3\x28", HOUR_MS)
    rc.rpush(b"sess:list", b"b", b"a", b"b")
    rc.sadd(b"sess:set\xff", b"y", b"x")
    rc.zadd(b"sess:zset", {b"m1": 1.5, b"m2": -2.0})
    rc.xadd(b"sess:stream", {b"f": b"v"}, id=b"1-1")
    rc.set(b"other:key", b"out of scope")
    return cluster_state(rc)


def cluster_state(rc, pattern: str = "sess:*") -> dict[bytes, tuple]:
    out = {}
    for key in rc.scan_iter(match=pattern, count=1000):
        kind = rc.type(key).decode()
        value = {"string": lambda: rc.get(key), "hash": lambda: sorted(rc.hgetall(key).items()),
                 "list": lambda: rc.lrange(key, 0, -1), "set": lambda: sorted(rc.smembers(key)),
                 "zset": lambda: rc.zrange(key, 0, -1, withscores=True),
                 "stream": lambda: [(i, sorted(f.items())) for i, f in rc.xrange(key)]}[kind]()
        expiry = rc.execute_command("PEXPIRETIME", key)
        out[key] = (kind, value, None if expiry == -1 else expiry)
    return out


def snapshot_state(url: str) -> dict[bytes, tuple]:
    out = {}
    for row in open_snapshot(url).read_table().to_pylist():
        kind = row["type"]
        value = {"string": lambda: row["value"], "hash": lambda: sorted((p["field"], p["value"]) for p in row["fields"]),
                 "list": lambda: row["items"], "set": lambda: sorted(row["items"]),
                 "zset": lambda: [(m["member"], m["score"]) for m in row["members"]],
                 "stream": lambda: [(e["id"], sorted(zip(e["fields"][::2], e["fields"][1::2]))) for e in row["entries"]]}[kind]()
        assert row["key"] not in out, f"{row['key']!r} is twice in the snapshot"
        out[row["key"]] = (kind, value, row["expire_at_ms"])
    return out


@pytest.mark.parametrize("readers", [1, 2])  # units in turn here, or a worker process per master
def test_backup_of_a_cluster_equals_its_data(readers, cluster, tmp_path):
    rc = cluster.client()
    expected = seed(rc)
    owners = {cluster.nodes.index(n) for n in cluster.nodes
              if any(n.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", key_slot(k)) for k in expected)}
    assert len(owners) == 3  # keys on every master

    planned = backup(cluster.url, str(tmp_path), patterns=["sess:*"], dry_run=True)
    assert planned.counters.keys == len(expected)

    result = backup(cluster.url, str(tmp_path), patterns=["sess:*"], batch_size=20, part_rows=30, readers=readers)

    assert snapshot_state(result.url) == expected
    fs, root = resolve(result.url)
    report = validate_snapshot(fs, root)
    assert report.valid and report.rows_checked == len(expected), report.as_dict()
    source = open_snapshot(result.url).manifest["source"]
    assert source["server"] == cluster.kind
    nodes = source["cluster"]
    assert sorted(n["address"] for n in nodes) == sorted(f"127.0.0.1:{n.port}" for n in cluster.nodes)
    assert sum(last - first + 1 for n in nodes for first, last in n["slots"]) == 16384
    assert all(n["server"] == cluster.kind and n["version"] and len(n["id"]) == 40 for n in nodes)


def test_verify_cluster_and_standalone_both_ways(cluster, redis_server):
    rc, single = cluster.client(), redis_server.client()
    single.flushall()
    seed(rc, n=200)
    seed(single, n=200)
    a, b = RedisEndpoint.from_url(cluster.url), RedisEndpoint.from_url(redis_server.url)
    options = VerifyOptions(patterns=("sess:*",), batch_size=40, ttl_tolerance_ms=60_000)
    for x, y in ((a, b), (b, a)):
        report = verify(x, y, options)
        assert report.ok and report.counts["OK"] == 208, report.as_dict()

    rc.set(b"sess:{user1}a", b"changed")
    rc.delete(b"sess:00007")
    single.set(b"sess:only-here", b"x")
    there = verify(a, b, options).counts
    assert (there["VALUE"], there["MISSING"], there["EXTRA"]) == (1, 0, 2), there
    back = verify(b, a, options).counts
    assert (back["VALUE"], back["MISSING"], back["EXTRA"]) == (1, 2, 0), back


# -- resharding -----------------------------------------------------------------------------------

MANY = 40_000


TAGS = 500


def seed_many(rc, layout: str = "spread") -> set[bytes]:
    """MANY small sessions, spread over the slots (~2 a slot) or `tagged` into TAGS slots of 80
    keys each (hash tags), which a node whose SCAN goes slot by slot (Valkey) reads with one
    MGET per slot."""
    names = [f"sess:{{t{i % TAGS}}}:{i:06d}" if layout == "tagged" else f"sess:{i:06d}" for i in range(MANY)]
    pipe = rc.pipeline()
    for name in names:
        pipe.set(name, b"x" * 40)
    pipe.execute()
    return {name.encode() for name in names}


def owner_id(cluster, slot: int) -> str:
    for start, end, master, *_replicas in cluster.nodes[0].client().execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return master[2].decode() if isinstance(master[2], bytes) else master[2]
    raise AssertionError(f"slot {slot} has no owner")


# Slots each reshard moves, always from the master of slot 16383 (~5,461 slots), in the session's
# clusters: five moves per cluster in this file must leave it some (a master left with none
# becomes a replica).
RESHARD_SLOTS = 1000


class Reshard:
    """Moves slots from the last unit walked (the master of slot 16383) to the first (the master
    of slot 0) with `redis-cli --cluster reshard`, started the first time `pause` is called; that
    call returns once a slot is migrating or the reshard is over, so the walk goes on while slots
    move."""

    def __init__(self, cluster, slots: int = RESHARD_SLOTS):
        self.cluster, self.slots = cluster, slots
        self.process: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def pause(self, keys: int) -> None:
        with self.lock:
            if self.process is not None or keys < 2000:
                return
            source, target = owner_id(self.cluster, 16383), owner_id(self.cluster, 0)
            self.process = subprocess.Popen(
                [REDIS_CLI, "--cluster", "reshard", f"127.0.0.1:{self.cluster.nodes[0].port}", "--cluster-from", source,
                 "--cluster-to", target, "--cluster-slots", str(self.slots), "--cluster-yes"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 120
            while self.process.poll() is None and not self._moving():
                assert time.monotonic() < deadline, "the reshard neither started nor ended"
                time.sleep(0.005)

    def _moving(self) -> bool:
        return any(b"->-" in _raw_nodes(n) for n in self.cluster.nodes)

    def finish(self) -> None:
        assert self.process is not None, "the walk never reached the point where slots move"
        _, err = self.process.communicate(timeout=300)
        assert self.process.returncode == 0, err


def _raw_nodes(server) -> bytes:
    import redis

    client = redis.Redis(port=server.port, password=server.password)
    try:
        connection = client.connection_pool.get_connection()
        connection.send_command("CLUSTER", "NODES")
        return connection.read_response(disable_decoding=True)
    finally:
        client.close()


@pytest.mark.parametrize("layout", ["spread", "tagged"])
def test_resharding_during_a_backup_loses_and_repeats_nothing(layout, cluster, tmp_path):
    rc = cluster.client()
    keys = seed_many(rc, layout)
    reshard = Reshard(cluster)

    result = backup(cluster.url, str(tmp_path), patterns=["sess:*"], batch_size=100, part_rows=5000,
                    row_group_rows=1000, progress=lambda p: reshard.pause(p.keys))
    reshard.finish()

    rows = open_snapshot(result.url).read_table(columns=["key"]).column("key").to_pylist()
    assert len(rows) == len(set(rows)) == MANY and set(rows) == keys
    assert result.counters.keys == MANY


@pytest.mark.parametrize("layout", ["spread", "tagged"])
def test_resharding_during_a_transfer_loses_nothing(layout, cluster, redis_server, tmp_path):
    rc, target = cluster.client(), redis_server.client()
    target.flushall()
    keys = seed_many(rc, layout)
    reshard = Reshard(cluster)

    result = transfer(cluster.url, redis_server.url, patterns=["sess:*"], batch_size=100,
                      checkpoint_path=str(tmp_path), progress=lambda p: reshard.pause(p.keys))
    reshard.finish()

    assert set(target.scan_iter(match="*", count=5000)) == keys
    assert result.counters.keys == MANY


def test_a_node_whose_scan_goes_slot_by_slot_is_read_with_an_mget_per_slot(cluster, tmp_path):
    rc = cluster.client()
    keys = seed_many(rc, "tagged")
    typed = {b"sess:{t1}:hash": "hash", b"sess:{t2}:list": "list", b"sess:{t3}:set": "set", b"sess:{t4}:zset": "zset",
             b"sess:{t5}:stream": "stream"}  # in runs of strings: MGET answers nil, the typed read follows
    rc.hset(b"sess:{t1}:hash", mapping={b"f": b"v"})
    rc.rpush(b"sess:{t2}:list", b"a")
    rc.sadd(b"sess:{t3}:set", b"m")
    rc.zadd(b"sess:{t4}:zset", {b"m": 1.0})
    rc.xadd(b"sess:{t5}:stream", {b"f": b"v"}, id=b"1-1")
    for node in cluster.nodes:
        node.client().config_resetstat()

    result = backup(cluster.url, str(tmp_path), patterns=["sess:*"])

    table = open_snapshot(result.url).read_table(columns=["key", "type"]).to_pylist()
    rows = [row["key"] for row in table]
    assert len(rows) == len(set(rows)) == MANY + len(typed) and set(rows) == keys | set(typed)
    assert {row["key"]: row["type"] for row in table if row["key"] in typed} == typed
    stats = [node.client().info("commandstats") for node in cluster.nodes]
    gets, mgets = ([s.get(f"cmdstat_{name}", {}).get("calls", 0) for s in stats] for name in ("get", "mget"))
    if cluster.kind == "valkey":  # one table per slot: a batch holds a few slots' keys, each slot's together
        assert sum(mgets) < MANY // 20 and sum(gets) < MANY // 100, (mgets, gets)
    else:  # Redis 7.0: one table, a batch's keys spread over its slots; slots no longer computed after one batch
        assert sum(mgets) == 0 and sum(gets) == MANY + len(typed), (mgets, gets)


# -- resume and the CLI ---------------------------------------------------------------------------

CLI = [sys.executable, "-m", "session_migration_cli"]


def cli_env() -> dict[str, str]:
    env = {**os.environ}
    env.pop("PREFECT_API_URL", None)
    env.setdefault("PREFECT_HOME", str(Path(env.get("TMPDIR", "/tmp")) / "no-prefect-profile"))
    return env


@pytest.mark.parametrize("reshard_while_stopped", [False, True])
def test_kill_9_of_a_cluster_backup_then_the_same_command_resumes_it(reshard_while_stopped, cluster, tmp_path):
    rc = cluster.client()
    keys = seed_many(rc)
    command = [*CLI, "backup", cluster.url, str(tmp_path), "-p", "sess:*", "--snapshot-id", "killed",
               "--part-rows", "2000", "--batch-size", "100", "--json"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    checkpoint = tmp_path / "killed" / "checkpoint.json"
    deadline = time.monotonic() + 120
    while proc.poll() is None:
        assert time.monotonic() < deadline, "no part was committed"
        try:
            record = json.loads(checkpoint.read_text())
        except (FileNotFoundError, ValueError):
            record = {}
        if len(record.get("parts", ())) >= 2:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the backup ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    record = json.loads(checkpoint.read_text())
    assert [node["id"] for node in record["cluster"]["topology"]] and len(record["positions"]) == 3
    assert record["positions"][2] == [0, 0]  # the last master is not walked yet
    if reshard_while_stopped:  # slots of the last master move to the first, whose walk is under way
        moved = subprocess.run(
            [REDIS_CLI, "--cluster", "reshard", f"127.0.0.1:{cluster.nodes[0].port}", "--cluster-from",
             owner_id(cluster, 16383), "--cluster-to", owner_id(cluster, 0), "--cluster-slots", str(RESHARD_SLOTS),
             "--cluster-yes"],
            capture_output=True, timeout=300)
        assert moved.returncode == 0, moved.stderr
    else:  # addresses in a checkpoint are not trusted: the resume asks the cluster where its nodes are
        for node in record["cluster"]["topology"]:
            node["address"] = "127.0.0.1:1"
        checkpoint.write_text(json.dumps(record))

    done = subprocess.run(command, capture_output=True, text=True, env=cli_env(), timeout=300)

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["resumed_parts"] >= 2 and summary["keys"] == MANY
    rows = open_snapshot(summary["snapshot"]).read_table(columns=["key"]).column("key").to_pylist()
    assert len(rows) == len(set(rows)) == MANY and set(rows) == keys


def test_cli_backup_and_verify_of_a_cluster(cluster, redis_server, tmp_path):
    rc, single = cluster.client(), redis_server.client()
    single.flushall()
    expected = seed(rc, n=100)
    seed(single, n=100)

    done = subprocess.run([*CLI, "backup", cluster.url, str(tmp_path), "-p", "sess:*", "--json"],
                          capture_output=True, text=True, env=cli_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert snapshot_state(summary["snapshot"]) == expected and summary["keys"] == len(expected)

    checked = subprocess.run([*CLI, "verify", cluster.url, redis_server.url, "-p", "sess:*", "--json"],
                             capture_output=True, text=True, env=cli_env(), timeout=300)
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout.strip().splitlines()[-1])
    assert report["counts"]["OK"] == len(expected), report


# -- replicas and a password ----------------------------------------------------------------------

PASSWORD = "cluster-secret-pw"


@pytest.fixture(scope="module")
def guarded_cluster():
    """A Redis 7.0 cluster with a replica per master and requirepass on every node."""
    from servers import start_cluster

    nodes = start_cluster("redis", replicas=1, password=PASSWORD)
    yield nodes
    nodes.stop()


def master_of(replica, masters):
    port = int(replica.client().info("replication")["master_port"])
    return next(n for n in masters if n.port == port)


def test_backup_from_replicas_with_a_password_records_no_password(guarded_cluster, tmp_path):
    rc = guarded_cluster.client()
    expected = seed(rc, n=200)
    replicas = [n for n in guarded_cluster.nodes if n.client().info("replication")["role"] == "slave"]
    masters = [n for n in guarded_cluster.nodes if n not in replicas]
    deadline = time.monotonic() + 60
    endpoint = RedisEndpoint.from_url(f"{guarded_cluster.url}?read_from_replicas=true")
    # in sync, and shown online in CLUSTER SHARDS (Redis 7.0 shows a replica "loading" until
    # its replication offset, gossiped, is above 0)
    while any(n.client().dbsize() != master_of(n, masters).client().dbsize() for n in replicas) or not all(
            node.replicas for node in discover(endpoint, masters[0].client()).nodes):
        assert time.monotonic() < deadline, "the replicas did not catch up"
        time.sleep(0.01)
    for node in guarded_cluster.nodes:
        node.client().config_resetstat()

    result = backup(f"{guarded_cluster.url}?read_from_replicas=true", str(tmp_path), patterns=["sess:*"])

    assert snapshot_state(result.url) == expected
    assert all(n.client().info("commandstats").get("cmdstat_scan", {}).get("calls") for n in replicas)
    assert not any(n.client().info("commandstats").get("cmdstat_scan") for n in masters)
    assert not any(n.client().info("commandstats").get("cmdstat_get") for n in masters)
    written = b"".join(p.read_bytes() for p in Path(tmp_path).rglob("*") if p.is_file())
    assert PASSWORD.encode() not in written
    manifest = open_snapshot(result.url).manifest
    assert {r for n in manifest["source"]["cluster"] for r in n["replicas"]} == {f"127.0.0.1:{n.port}" for n in replicas}


def test_cleanup_dry_run_on_a_cluster_finds_each_category(cluster):
    from session_migration.cleanup import CleanupOptions, run_cleanup

    rc = cluster.client()
    now = int(time.time() * 1000)
    spring = "spring:session:sessions:"
    live = f"{spring}aaaaaaaa-2222-3333-4444-555555555555"  # a session and its expiry marker: not an orphan
    rc.hset(live, mapping={"creationTime": str(now), "lastAccessedTime": str(now), "maxInactiveInterval": "1800"})
    rc.pexpire(live, HOUR_MS)
    rc.set(f"{spring}expires:aaaaaaaa-2222-3333-4444-555555555555", b"", px=HOUR_MS)
    expired = f"{spring}11111111-2222-3333-4444-555555555555"
    rc.hset(expired, mapping={"creationTime": str(now - 3 * HOUR_MS), "lastAccessedTime": str(now - 2 * HOUR_MS),
                              "maxInactiveInterval": "1800"})
    rc.pexpire(expired, HOUR_MS)
    rc.set("sess:corruptcorruptcorruptcorrupt00", b"\xff\xfe not a session", px=HOUR_MS)
    rc.set("PHPREDIS_SESSION:abcdefabcdefabcdefabcdefab_LOCK", "1")
    rc.set(f"{spring}expires:99999999-8888-7777-6666-555555555555", b"", px=HOUR_MS)  # no session: an orphan
    marker = f"{spring}expires:aaaaaaaa-2222-3333-4444-555555555555"
    assert owner_id(cluster, key_slot(live.encode())) != owner_id(cluster, key_slot(marker.encode()))  # asked across nodes
    before = sum(n.client().dbsize() for n in cluster.nodes)

    report = run_cleanup(RedisEndpoint.from_url(cluster.url), CleanupOptions(include={"stale", "corrupt", "locks", "orphans"}))

    assert report.as_dict()["candidates"] == {"expired": 1, "stale": 0, "corrupt": 1, "locks": 1, "orphans": 1}
    assert sum(n.client().dbsize() for n in cluster.nodes) == before


def test_live_mode_refuses_a_cluster_source(cluster):
    from session_migration.errors import LiveUnavailable
    from session_migration.live.feed import ChangeFeed
    from session_migration.live.pending import PendingKeys

    with pytest.raises(LiveUnavailable, match="Redis Cluster node"):
        ChangeFeed(RedisEndpoint.from_url(cluster.url), ("sess:*",), PendingKeys(1000))
