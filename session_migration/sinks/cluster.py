"""A Redis Cluster as a target: every write goes to the master that owns the key's slot.

`ClusterSink` has `RedisSink`'s methods and keeps one `RedisSink` per master. A batch is split
by the owner of each key (computed here from the topology, so no write is ever redirected in
the common case) and each node's share goes through that node's sink: the same pipelined SETs,
RESTORE fast path and typed fallback, per node. No command spans slots: every write, probe and
UNLINK names one key, and a script runs with the keys of one slot (`run_scripts`).

When the cluster is resharded under the writes, a node answers MOVED (the slot has moved) or
ASK (it is moving). The sessions' pipelined SETs answered so are not errors: the node's sink
hands them back (`RedisSink.redirected`) and `flush`/`commit` write them where the cluster
says, MOVED ones after reading the new layout, ASK ones with ASKING at the importing node,
until none is left. Any other write (typed values, probes, deletes) answered MOVED/ASK fails
with `ClusterChanged` (transient): the retry opens a new sink, which reads the new layout, and
resumes from the checkpoint. Writes set whole keys, so writing one again is harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..cluster import Topology, connect_and_discover, discover
from ..endpoints import RedisEndpoint, translate_redis_errors
from ..errors import ClusterChanged, ScopeViolation
from ..redaction import redact_key
from .redis import RedisSink, SinkCounts, WriteItem


MAX_REDIRECT_ROUNDS = 20  # rounds of MOVED/ASK answers a flush follows before it gives up (transient)


def open_sink(endpoint: RedisEndpoint, *, replace: bool = True) -> RedisSink:
    """A sink for `endpoint`: a `RedisSink` for a standalone server, a `ClusterSink` (same
    methods) when the server is a node of a Redis Cluster."""
    client, topology = connect_and_discover(endpoint)
    if topology is None:
        return RedisSink(endpoint, replace=replace, client=client)
    return ClusterSink(endpoint, topology, replace=replace)


class ClusterSink:
    """The masters of a cluster as one sink (see the module doc). Not thread-safe."""

    clustered = True

    def __init__(self, endpoint: RedisEndpoint, topology: Topology, *, replace: bool = True):
        self.endpoint = endpoint
        self.replace = replace
        self.nodes: list[RedisSink] = []
        self._use(topology)
        self.info = min((node.info for node in self.nodes), key=lambda info: _version(info.version))

    def _use(self, topology: Topology) -> None:
        """Sinks for the masters of `topology`, in its order, keeping those already open."""
        opened = {(node.endpoint.host, node.endpoint.port): node for node in self.nodes}
        nodes = []
        try:
            for index in range(len(topology.nodes)):
                at = topology.node_endpoint(self.endpoint, index)
                node = opened.pop((at.host, at.port), None) or RedisSink(at, replace=self.replace)
                node.redirected = node.redirected if node.redirected is not None else []
                nodes.append(node)
        except BaseException:
            for node in nodes:
                node.close()
            raise
        for node in opened.values():  # a master that left the cluster: what it handed back is kept
            nodes.append(node)
        self.nodes, self.topology = nodes, topology

    @property
    def fanout(self) -> int:
        """The masters a batch is split over: a batch of fanout x --batch-size rows gives each
        about a full pipelined write (a transfer of 1M keys into 3 masters: ~4% faster than a
        third of one each, at the median of 3 pairs)."""
        return len(self.topology.nodes)

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    # -- reads used by planning ---------------------------------------------------------------

    def probe(self, keys: Sequence[bytes]) -> tuple[int, list[bool]]:
        exists = [False] * len(keys)
        owners = self.topology.owners(keys) if keys else np.zeros(0, np.int32)
        now = None
        for index, rows in self._shares(owners):
            node_now, found = self.nodes[index].probe([keys[i] for i in rows])
            now = node_now if now is None else now
            for i, present in zip(rows, found):
                exists[i] = present
        if now is None:
            now, _ = self.nodes[0].probe([])
        return now, exists

    def now_ms(self) -> int:
        return self.nodes[0].now_ms()

    def unlink(self, keys: Sequence[bytes], scope: Any) -> int:
        if not keys:
            return 0
        outside = np.flatnonzero(~scope.mask(pa.array(keys, pa.binary())))  # all checked before any delete
        if len(outside):
            raise ScopeViolation(f"Refusing to delete {redact_key(keys[int(outside[0])])}: it is outside the patterns in scope.")
        return sum(self.nodes[index].unlink([keys[i] for i in rows], scope)
                   for index, rows in self._shares(self.topology.owners(keys)))

    def run_scripts(self, script: str, calls: Sequence[tuple[Sequence[bytes], Sequence[Any]]]) -> list:
        """Run `script` once per (keys, args) call, on the master of its keys (which must share
        one slot: a cluster refuses a script across slots); the replies in the calls' order."""
        owners = self.topology.owners([keys[0] for keys, _ in calls]) if calls else np.zeros(0, np.int32)
        out: list = [None] * len(calls)
        for index, rows in self._shares(owners):
            for i in rows:
                keys, args = calls[i]
                out[i] = self.nodes[index].run_script(script, keys, args)
        return out

    # -- the Sink contract --------------------------------------------------------------------

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        owners = self.topology.owners(batch.column("key").to_pylist())
        for index, rows in self._shares(owners):
            self.nodes[index].write(batch if len(rows) == batch.num_rows else batch.take(pa.array(rows)))

    def commit(self) -> SinkCounts:
        counts = self.flush()
        counts.add(self._summed(lambda node: node.commit()))
        return counts

    def abort(self) -> None:
        for node in self.nodes:
            node.abort()

    def write_strings(self, keys: pa.Array, values: pa.Array, pxat: pa.Array, *, replace: bool) -> SinkCounts:
        counts = SinkCounts()
        for index, rows in self._shares(self.topology.owners(keys.to_pylist())):
            take = pa.array(rows)
            counts.add(self.nodes[index].write_strings(keys.take(take), values.take(take), pxat.take(take),
                                                       replace=replace))
        return counts

    def flush(self) -> SinkCounts:
        counts = self._summed(lambda node: node.flush())
        for _round in range(MAX_REDIRECT_ROUNDS):
            handed_back = [entry for node in self.nodes for entry in node.redirected]
            if not handed_back:
                return counts
            for node in self.nodes:
                node.redirected.clear()
            counts.add(self._redirect(handed_back))
            counts.add(self._summed(lambda node: node.flush()))
        raise ClusterChanged(f"Writes to the cluster of {self.endpoint.display_url} were still redirected after "
                             f"{MAX_REDIRECT_ROUNDS} rounds; retrying the step with the cluster's new layout.")

    def _redirect(self, handed_back: list) -> SinkCounts:
        """Send SETs answered MOVED/ASK where their reply line says (see the module doc)."""
        counts = SinkCounts()
        moved = [sent for sent, lines in handed_back if any(line.startswith(b"-MOVED") for line in lines)]
        if moved:
            client = self.nodes[0].client
            with translate_redis_errors(self.endpoint):
                self._use(discover(self.endpoint, client))
        for sent, lines in handed_back:
            for kind in (b"-MOVED", b"-ASK"):
                rows = np.array([i for i, line in enumerate(lines) if line.startswith(kind)], dtype=np.int64)
                if not len(rows):
                    continue
                part = sent.take(rows, sent.kind)
                if kind == b"-MOVED":
                    counts.add(self.write_strings(part.keys, part.values, part.pxat, replace=sent.kind != "nx"))
                    continue
                for address, at in _by_address([lines[i] for i in rows]).items():
                    counts.add(self._node_at(address).write_asking(part.take(np.array(at), sent.kind)))
        return counts

    def _node_at(self, address: str) -> RedisSink:
        host, _, port = address.rpartition(":")
        for node in self.nodes:
            if node.endpoint.host == host and node.endpoint.port == int(port):
                return node
        self._use(discover(self.endpoint, self.nodes[0].client))  # a master we did not know yet
        for node in self.nodes:
            if node.endpoint.host == host and node.endpoint.port == int(port):
                return node
        raise ClusterChanged(f"The cluster of {self.endpoint.display_url} sent a write to {address}, "
                             "which is not one of its masters; retrying with the cluster's new layout.")

    def write_items(self, items: Sequence[WriteItem], exists: Sequence[bool], replace: bool) -> SinkCounts:
        counts = SinkCounts()
        owners = self.topology.owners([item.key for item in items]) if items else np.zeros(0, np.int32)
        for index, rows in self._shares(owners):
            counts.add(self.nodes[index].write_items([items[i] for i in rows], [exists[i] for i in rows], replace))
        return counts

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _shares(owners: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(node index, row numbers) for every node that owns some of the rows, in row order."""
        if not len(owners):
            return []
        first = int(owners[0])
        if (owners == first).all():
            return [(first, np.arange(len(owners)))]
        return [(int(index), np.flatnonzero(owners == index)) for index in np.unique(owners)]

    def _summed(self, each: Callable[[RedisSink], SinkCounts]) -> SinkCounts:
        counts = SinkCounts()
        for node in self.nodes:
            counts.add(each(node))
        return counts


def _by_address(lines: list[bytes]) -> dict[str, list[int]]:
    """Row numbers by the node address in `-ASK <slot> <host:port>` reply lines."""
    out: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        out.setdefault(line.split()[-1].decode(), []).append(i)
    return out


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in text.split("."))
