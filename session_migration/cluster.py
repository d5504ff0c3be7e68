"""Redis Cluster: detection, the masters and the slots each one serves, and which node owns a key.

Any node's URL names the whole cluster: `discover` asks that node for the shards
(`CLUSTER SHARDS`, Redis >= 7.0 and Valkey; `CLUSTER SLOTS` before), and every other step talks
to the masters one by one, each through an endpoint that is the given one with the node's
address (same user, password and TLS settings). Commands never span slots: reads and writes
are per key, grouped by the node that owns the key's slot.

Announced addresses may not be reachable from here (NAT, containers): the URL option
`cluster_address_map=ANNOUNCED=REACHABLE[,...]` (each side `host:port`) rewrites them, and an
address missing from a given map is an error rather than a silent guess. The URL option
`read_from_replicas=true` points reads at a replica of each shard where one is online, to spare
the masters; writes always go to masters.

A cluster serves database 0 only. The topology recorded in a manifest has node ids, addresses,
slot ranges and versions: never a credential.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import redis
from redis.crc import key_slot

from .endpoints import RedisEndpoint, translate_redis_errors
from .errors import InvalidParameter, ServerUnavailable

SLOTS = 16384


def key_slots(keys: Sequence[bytes]) -> np.ndarray:
    """The cluster slot of each key (int32), as `redis.crc.key_slot` computes it. A batch
    without a `{` has no hash tag to look for: CRC16 of each whole key, 0.18 us a key instead
    of 0.43."""
    if b"{" in b"".join(keys):
        return np.fromiter(map(key_slot, keys), dtype=np.int32, count=len(keys))
    return np.fromiter([crc_hqx(key, 0) for key in keys], dtype=np.int32, count=len(keys)) & (SLOTS - 1)


@dataclass(frozen=True)
class ClusterNode:
    """One shard: its master, the slot ranges it serves, and its online replicas."""

    node_id: str
    host: str
    port: int
    slots: tuple[tuple[int, int], ...]
    replicas: tuple[tuple[str, int], ...] = ()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Topology:
    """The masters of a cluster, ordered by their first slot (so the order is stable)."""

    nodes: tuple[ClusterNode, ...]

    def __post_init__(self) -> None:
        owners = np.full(SLOTS, -1, dtype=np.int32)
        for index, node in enumerate(self.nodes):
            for first, last in node.slots:
                owners[first:last + 1] = index
        object.__setattr__(self, "_owners", owners)

    @property
    def slot_owners(self) -> np.ndarray:
        """For each of the 16384 slots, the index of the node that serves it (-1: none)."""
        return self._owners  # type: ignore[attr-defined]

    def owner_of(self, key: bytes) -> int:
        return int(self.slot_owners[key_slot(key)])

    def owners(self, keys: Sequence[bytes]) -> np.ndarray:
        """The index of the node owning each key."""
        return self.slot_owners[key_slots(keys)]

    def uncovered_slots(self) -> int:
        return int((self.slot_owners < 0).sum())

    def node_endpoint(self, base: RedisEndpoint, index: int, *, for_reading: bool = False) -> RedisEndpoint:
        """`base` (credentials, TLS) pointed at node `index`: its master, or with `for_reading`
        and `read_from_replicas` set in the URL, its first online replica."""
        return node_endpoint(base, self.nodes[index], for_reading=for_reading)

    def owner_ids(self) -> np.ndarray:
        """For each slot, the id of the node that serves it ("" for none)."""
        return np.array([n.node_id for n in self.nodes] + [""], dtype=object)[self.slot_owners]

    def as_manifest(self) -> list[dict[str, Any]]:
        return [{"id": n.node_id, "address": n.address, "slots": [list(r) for r in n.slots],
                 "replicas": [f"{h}:{p}" for h, p in n.replicas]} for n in self.nodes]


def node_endpoint(base: RedisEndpoint, node: ClusterNode, *, for_reading: bool = False) -> RedisEndpoint:
    """`base` (credentials, TLS) pointed at `node`: its master, or with `for_reading` and
    `read_from_replicas` set in the URL, its first online replica."""
    host, port = node.host, node.port
    if for_reading and base.read_from_replicas and node.replicas:
        host, port = node.replicas[0]
    return replace(base, host=host, port=port, db=0, cluster_address_map=(), read_from_replicas=False)


def reads_from_replica(base: RedisEndpoint, node: ClusterNode) -> bool:
    return bool(base.read_from_replicas and node.replicas)


def from_manifest(entries: list[dict[str, Any]]) -> Topology:
    """The topology `Topology.as_manifest` recorded (addresses as mapped then)."""
    nodes = []
    for entry in entries:
        host, _, port = str(entry["address"]).rpartition(":")
        replicas = tuple((h, int(p)) for h, _, p in (str(r).rpartition(":") for r in entry.get("replicas", ())))
        nodes.append(ClusterNode(str(entry["id"]), host, int(port), tuple((int(a), int(b)) for a, b in entry["slots"]),
                                 replicas))
    return Topology(tuple(nodes))


def slots_in_motion(client: redis.Redis) -> set[int]:
    """The slots this node is migrating away or importing (`CLUSTER NODES`: `[slot->-id]`,
    `[slot-<-id]` on its own line). Read raw: redis-py would parse the reply its own way."""
    from .sources import resp

    reply = resp.execute(client, resp.pack([b"CLUSTER", b"NODES"]), 1)[0]
    if isinstance(reply, Exception):
        raise redis.exceptions.ResponseError(str(reply))
    slots = set()
    for line in reply.splitlines():
        for token in line.split()[8:]:
            if token.startswith(b"[") and (b"->-" in token or b"-<-" in token):
                slots.add(int(token[1:].split(b"-", 1)[0]))
    return slots


def connect_and_discover(endpoint: RedisEndpoint) -> tuple[redis.Redis | None, Topology | None]:
    """(a checked client, None) for a standalone server; (None, its topology) for a cluster
    node, whose probing client is closed: each master then gets connections of its own."""
    client = endpoint.connect()
    try:
        with translate_redis_errors(endpoint):
            if not is_cluster(client):
                return client, None
        topology = discover(endpoint, client)
    except BaseException:
        client.close()
        raise
    client.close()
    return None, topology


def is_cluster(client: redis.Redis) -> bool:
    """Whether the server runs in cluster mode (`INFO cluster`: cluster_enabled:1)."""
    try:
        return bool(int(client.info("cluster").get("cluster_enabled", 0)))
    except redis.exceptions.ResponseError:  # a server without the section: not a cluster
        return False


def discover(endpoint: RedisEndpoint, client: redis.Redis) -> Topology:
    """The masters and slots of the cluster `client` belongs to, addresses mapped by the URL's
    `cluster_address_map`. Refuses a cluster that does not serve every slot: a key of an
    unserved slot could be neither read nor written."""
    if endpoint.db != 0:
        raise InvalidParameter(f"{endpoint.display_url} is a Redis Cluster node, and a cluster has only database 0: "
                               "drop the /N from the URL.")
    with translate_redis_errors(endpoint):
        try:
            nodes = _from_shards(client.execute_command("CLUSTER", "SHARDS"))
        except redis.exceptions.ResponseError:  # Redis before 7.0
            nodes = _from_slots(client.execute_command("CLUSTER", "SLOTS"))
    mapping = dict(endpoint.cluster_address_map)
    nodes = [_mapped(node, mapping, endpoint) for node in nodes]
    topology = Topology(tuple(sorted(nodes, key=lambda n: n.slots[0][0])))
    missing = topology.uncovered_slots()
    if missing:
        raise ServerUnavailable(f"The cluster of {endpoint.display_url} serves no node for {missing:,} of its "
                                f"{SLOTS:,} slots (CLUSTER SHARDS); fix the cluster before using it.")
    return topology


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _field(entry: dict, name: str) -> Any:
    return entry.get(name, entry.get(name.encode()))


def _from_shards(reply: list) -> list[ClusterNode]:
    nodes = []
    for shard in reply:
        shard = shard if isinstance(shard, dict) else dict(zip(shard[::2], shard[1::2]))
        bounds = [int(s) for s in _field(shard, "slots")]
        slots = tuple(zip(bounds[::2], bounds[1::2]))
        members = [m if isinstance(m, dict) else dict(zip(m[::2], m[1::2])) for m in _field(shard, "nodes")]
        master = next((m for m in members if _text(_field(m, "role")) == "master"), None)
        if not slots or master is None:
            continue  # a shard without slots (a new empty master) or without a master serves nothing
        replicas = tuple((_announced(m), int(_field(m, "port") or _field(m, "tls-port"))) for m in members
                         if _text(_field(m, "role")) == "replica" and _text(_field(m, "health")) == "online")
        nodes.append(ClusterNode(_text(_field(master, "id")), _announced(master),
                                 int(_field(master, "port") or _field(master, "tls-port")), slots, replicas))
    return nodes


def _announced(member: dict) -> str:
    """The address a node announces: its endpoint (which may be a host name), else its IP."""
    endpoint = _field(member, "endpoint")
    text = _text(endpoint) if endpoint is not None else ""
    return text if text and text != "?" else _text(_field(member, "ip"))


def _from_slots(reply: list) -> list[ClusterNode]:
    by_id: dict[str, ClusterNode] = {}
    for entry in reply:
        first, last, master, *replicas = entry
        node_id = _text(master[2])
        node = by_id.get(node_id) or ClusterNode(node_id, _text(master[0]), int(master[1]), (),
                                                 tuple((_text(r[0]), int(r[1])) for r in replicas))
        by_id[node_id] = replace(node, slots=tuple(sorted((*node.slots, (int(first), int(last))))))
    return list(by_id.values())


def _mapped(node: ClusterNode, mapping: dict[str, str], endpoint: RedisEndpoint) -> ClusterNode:
    if not mapping:
        return node

    def reachable(host: str, port: int) -> tuple[str, int]:
        announced = f"{host}:{port}"
        if announced not in mapping:
            raise InvalidParameter(
                f"The cluster of {endpoint.display_url} announces {announced}, which cluster_address_map does not "
                "map; map every node (and replica, with read_from_replicas) or drop the option.")
        host_text, _, port_text = mapping[announced].rpartition(":")
        return host_text, int(port_text)

    host, port = reachable(node.host, node.port)
    replicas = tuple(reachable(*r) for r in node.replicas) if endpoint.read_from_replicas else node.replicas
    return replace(node, host=host, port=port, replicas=replicas)


def parse_address_map(text: str, url_for_errors: str) -> tuple[tuple[str, str], ...]:
    """`ANNOUNCED=REACHABLE[,...]`, each side `host:port`, as sorted pairs."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        announced, sep, reachable = item.partition("=")
        if not sep or not _is_address(announced) or not _is_address(reachable):
            raise InvalidParameter(
                f"cluster_address_map in {url_for_errors!r} must be ANNOUNCED=REACHABLE pairs of host:port, "
                f"comma-separated; {item[:80]!r} is not.")
        pairs.append((announced, reachable))
    if not pairs:
        raise InvalidParameter(f"cluster_address_map in {url_for_errors!r} is empty.")
    return tuple(sorted(pairs))


def _is_address(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)
