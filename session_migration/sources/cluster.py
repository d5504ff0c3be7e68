"""A Redis Cluster as a source: the keys of every master, read node by node (see cluster.py).

`ClusterSource` has the methods of `RedisSource`. Keys are grouped by the node that owns their
slot and read there (per-key commands only, so nothing spans slots); answers come back in the
callers' order. With `read_from_replicas` in the URL the reads go to a replica of each shard
(READONLY); the cluster commands go to the masters.

Walks go over the masters in turn (the "units": the masters as discovered when the source was
opened, in slot order), then re-walk the slots that moved. A position stays what callers keep:
(pattern index, cursor), where the cursor is composite, `(SCAN cursor << 16) | unit index`, so
that 0 is still the start (and, after a walk, the end); the unit index equal to the number of
units is the re-walk.

Resharding: SCAN on one node promises nothing about keys that leave it or arrive during the
walk. So a slot is "suspect" when its owner differs between two observations (one when the
source opens, one at the end of each unit's walk, one whenever a read is redirected), when a
master shows it migrating or importing (`CLUSTER NODES`), or when a read of one of its keys got
MOVED/ASK. After the units, once no slot is in motion (polled, `settle_timeout_s`), every suspect
slot is read again on its final owner (`CLUSTER COUNTKEYSINSLOT`, `CLUSTER GETKEYSINSLOT`, keys
filtered by the patterns); callers de-duplicate, so a key read twice is written once.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import redis
from redis.crc import key_slot

from . import Read, resp
from ..budget import BatchBudget
from ..cluster import ClusterNode, Topology, connect_and_discover, discover, node_endpoint, reads_from_replica, slots_in_motion
from ..endpoints import RedisEndpoint, translate_redis_errors
from ..errors import ServerUnavailable
from ..redis_glob import ScopeMatcher
from .redis import MOVED, Chunk, ReadResult, RedisSource, _Rows, after
from .segments import WHOLE, Segment

UNIT_BITS = 16  # the low bits of a composite cursor: which unit (master) the SCAN cursor belongs to
_UNIT_MASK = (1 << UNIT_BITS) - 1
SETTLE_TIMEOUT_S = 120.0  # how long a walk waits for slot migrations to finish before its re-walk
_POLL_S = 0.1
_QUIET_S = 1.0  # how long no slot may move before the re-walk starts
_REWALK_ROUNDS = 10  # re-walks in a row, while slots keep moving during them


def open_source(endpoint: RedisEndpoint, **options) -> RedisSource | ClusterSource:
    """A source for `endpoint`: a `RedisSource` for a standalone server, a `ClusterSource`
    (same methods) when the server is a node of a Redis Cluster. Takes RedisSource's options."""
    client, topology = connect_and_discover(endpoint)
    if topology is None:
        return RedisSource(endpoint, client=client, **options)
    return ClusterSource(endpoint, topology, **options)


def composite(cursor: int, unit: int) -> int:
    return (cursor << UNIT_BITS) | unit


def split_composite(cursor: int) -> tuple[int, int]:
    """(unit index, SCAN cursor on that unit)."""
    return cursor & _UNIT_MASK, cursor >> UNIT_BITS


class ClusterSource:
    """Scan and read every master of a Redis Cluster: a `RedisSource` in its methods (see the
    module's docstring). Holds a connection per node; not thread-safe, except that the
    suspect slots may be read (`suspects`) from another thread."""

    def __init__(self, endpoint: RedisEndpoint, topology: Topology, *, patterns: Sequence[str] = (),
                 batch_size: int = 1000, segment: Segment = WHOLE, walk: str = "patterns", preserve_ttl: bool = True,
                 capture_dump: bool = False, settle_timeout_s: float = SETTLE_TIMEOUT_S):
        if segment != WHOLE:
            raise ValueError("a cluster is walked per master, not in SCAN segments")
        self.endpoint = endpoint
        self.patterns, self.batch_size, self.walk = tuple(patterns), batch_size, walk
        self.preserve_ttl, self.capture_dump = preserve_ttl, capture_dump
        self.settle_timeout_s = settle_timeout_s
        self.topology = topology  # the current view: refreshed whenever it is observed
        self.units: tuple[ClusterNode, ...] = topology.nodes  # what walks go over, in order
        self._owners = topology.owner_ids()  # slot owners at the last observation
        self._lock = threading.Lock()
        self._suspects: set[int] = set()
        self._readers: dict[str, RedisSource] = {}
        self._masters: dict[str, redis.Redis] = {}
        try:
            first = self.reader(self.units[0])
            self.info = first.info
            self.no_touch = all(self.reader(node).no_touch for node in self.units)
        except BaseException:
            self.close()
            raise

    # -- connections ------------------------------------------------------------------------

    def reader(self, node: ClusterNode) -> RedisSource:
        """The source reading `node`'s keys (its replica with `read_from_replicas`)."""
        source = self._readers.get(node.node_id)
        if source is None:
            source = RedisSource(node_endpoint(self.endpoint, node, for_reading=True), patterns=self.patterns,
                                 batch_size=self.batch_size, walk=self.walk, preserve_ttl=self.preserve_ttl,
                                 capture_dump=self.capture_dump, cluster=True,
                                 readonly=reads_from_replica(self.endpoint, node))
            self._readers[node.node_id] = source
        return source

    def unit_endpoint(self, index: int) -> tuple[RedisEndpoint, bool]:
        """Where unit `index` is read (endpoint, whether READONLY): for worker processes."""
        node = self.units[index]
        return node_endpoint(self.endpoint, node, for_reading=True), reads_from_replica(self.endpoint, node)

    def _master(self, node: ClusterNode) -> redis.Redis:
        client = self._masters.get(node.node_id)
        if client is None:
            client = self._masters[node.node_id] = node_endpoint(self.endpoint, node).connect()
        return client

    def close(self) -> None:
        for source in self._readers.values():
            source.close()
        for client in self._masters.values():
            client.close()
        self._readers.clear()
        self._masters.clear()

    # -- what other steps ask of a source -----------------------------------------------------

    def dbsize(self) -> int:
        with translate_redis_errors(self.endpoint):
            return sum(int(self._master(node).dbsize()) for node in self.topology.nodes)

    def now_ms(self) -> int:
        return self.reader(self.topology.nodes[0]).now_ms()

    def run_id(self) -> str:
        """A digest of every master's run id and slots: a composite cursor means nothing once
        a master restarted or a slot moved, so a resumed walk then starts again."""
        with translate_redis_errors(self.endpoint):
            parts = [f"{n.node_id}:{self._master(n).info('server').get('run_id', '')}:{n.slots}"
                     for n in sorted(self.topology.nodes, key=lambda n: n.node_id)]
        return "cluster:" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:40]

    def server_infos(self) -> list[dict[str, str]]:
        """Server name and version of each master, in topology order (for the manifest)."""
        return [self.reader(node).info.as_dict() for node in self.topology.nodes]

    def exists(self, keys: Sequence[bytes]) -> list[bool]:
        return self._scatter(keys, lambda source, part: source.exists(part))

    def expiries(self, keys: Sequence[bytes]) -> list[int | None | bool]:
        return self._scatter(keys, lambda source, part: source.expiries(part))

    def idle_ms(self, keys: Sequence[bytes]) -> list[int | None]:
        return self._scatter(keys, lambda source, part: source.idle_ms(part))

    def read_keys(self, keys: Sequence[bytes]) -> ReadResult:
        """Read `keys` on their owners; a key redirected (its slot moved or is moving) is read
        again where it went. Rows in the order of `keys`; vanished keys are counted."""
        batches: list[pa.RecordBatch] = []
        vanished = 0
        pending = list(keys)
        deadline = None
        while pending:
            owners = self.topology.owners(pending)
            groups = np.unique(owners)
            moved: list[bytes] = []
            for index in groups.tolist():
                part = pending if len(groups) == 1 else [pending[i] for i in np.flatnonzero(owners == index)]
                result = self.reader(self.topology.nodes[index]).read_keys(part)
                batches.append(result.batch)
                vanished += result.vanished
                moved += result.moved
            deadline = self._redirected(moved, deadline)
            pending = moved
        return ReadResult(batch=_in_order(keys, batches), vanished=vanished)

    def _scatter(self, keys: Sequence[bytes], ask: Callable[[RedisSource, list[bytes]], list]) -> list:
        """`ask` each owner about its keys; answers in the order of `keys`, redirects followed."""
        out: list = [None] * len(keys)
        pending = np.arange(len(keys))
        deadline = None
        while len(pending):
            owners = self.topology.owners([keys[i] for i in pending])
            again = []
            for index in np.unique(owners).tolist():
                positions = pending[owners == index]
                replies = ask(self.reader(self.topology.nodes[index]), [keys[i] for i in positions])
                for i, reply in zip(positions.tolist(), replies):
                    if reply is MOVED:
                        again.append(i)
                    else:
                        out[i] = reply
            deadline = self._redirected([keys[i] for i in again], deadline)
            pending = np.array(again, dtype=np.int64)
        return out

    def _redirected(self, keys: list[bytes], deadline: float | None) -> float | None:
        """Keys were redirected: note their slots, and look at the cluster again (after a short
        wait once a retry was redirected too: a slot being migrated answers ASK until it is done)."""
        if not keys:
            return deadline
        self.add_suspects(map(key_slot, keys))
        if deadline is None:
            deadline = time.monotonic() + self.settle_timeout_s
        elif time.monotonic() > deadline:
            raise ServerUnavailable(f"Keys of the cluster of {self.endpoint.display_url} kept being redirected for "
                                    f"{self.settle_timeout_s:.0f} s (slots migrating); try again once the resharding is done.")
        else:
            time.sleep(_POLL_S)
        self.observe()
        return deadline

    # -- resharding -------------------------------------------------------------------------

    @property
    def suspects(self) -> list[int]:
        with self._lock:
            return sorted(self._suspects)

    def add_suspects(self, slots: Iterable[int]) -> None:
        with self._lock:
            self._suspects.update(int(s) for s in slots)

    def since(self, recorded: Topology) -> None:
        """Treat the walk as started under `recorded` (a resumed backup's): every slot whose
        owner differs now is suspect."""
        self.add_suspects(np.flatnonzero(recorded.owner_ids() != self._owners).tolist())

    def observe(self) -> set[int]:
        """Look at the cluster: slots whose owner changed since the last look and slots in
        motion become suspect. Returns those slots (empty: all was calm)."""
        topology = self._discover()
        owners = topology.owner_ids()
        with translate_redis_errors(self.endpoint):
            motion = set().union(*(slots_in_motion(self._master(node)) for node in topology.nodes))
        motion.update(np.flatnonzero(owners != self._owners).tolist())
        self.add_suspects(motion)
        for source in self._readers.values():
            self.add_suspects(source.moved_slots)
            source.moved_slots.clear()
        self.topology, self._owners = topology, owners
        return motion

    def _discover(self) -> Topology:
        """The topology, asked of the first master that answers (the given node may be gone)."""
        last: Exception | None = None
        for node in self.topology.nodes:
            try:
                return discover(self.endpoint, self._master(node))
            except ServerUnavailable as exc:
                self._masters.pop(node.node_id, None)
                last = exc
        raise last or ServerUnavailable(f"No master of the cluster of {self.endpoint.display_url} answers.")

    def settle(self) -> None:
        """Return once no slot moves: at once if nothing moved since the last look and no slot
        is suspect; else after `_QUIET_S` without a slot in motion or changing owner (a
        resharding tool moves slots one after the other, with short calm gaps between)."""
        deadline = time.monotonic() + self.settle_timeout_s
        calm_since = None if self.observe() or self.suspects else time.monotonic() - _QUIET_S
        while calm_since is None or time.monotonic() - calm_since < _QUIET_S:
            if time.monotonic() > deadline:
                raise ServerUnavailable(
                    f"Slots of the cluster of {self.endpoint.display_url} were still moving after "
                    f"{self.settle_timeout_s:.0f} s; run the same command again once the resharding is done (it resumes).")
            time.sleep(_POLL_S)
            if self.observe():
                calm_since = None
            elif calm_since is None:
                calm_since = time.monotonic()

    def rewalk_keys(self, budget: BatchBudget | None = None) -> Iterator[list[bytes]]:
        """The keys in scope of every suspect slot, listed on its final owner, in chunks of
        `batch_size` keys (`budget.rows` if given: the caller reads each chunk and tells the
        budget what it held before taking the next); repeated while slots move during it."""
        scope = ScopeMatcher(self.patterns or ("*",))
        for _round in range(_REWALK_ROUNDS):
            self.settle()
            slots = self.suspects
            if not slots:
                return
            owners = self.topology.slot_owners[slots]
            for index in np.unique(owners).tolist():
                node_slots = [s for s, o in zip(slots, owners.tolist()) if o == index]
                for keys in self._keys_in_slots(self.topology.nodes[index], node_slots, budget):
                    if keys:
                        yield scope.select(keys)
            with self._lock:
                self._suspects.difference_update(slots)
        raise ServerUnavailable(f"Slots of the cluster of {self.endpoint.display_url} kept moving during "
                                f"{_REWALK_ROUNDS} re-walks; run the same command again once the resharding is done.")

    def _keys_in_slots(self, node: ClusterNode, slots: list[int], budget: BatchBudget | None) -> Iterator[list[bytes]]:
        client = self._master(node)
        with translate_redis_errors(self.endpoint):
            for first in range(0, len(slots), 1000):
                some = slots[first:first + 1000]
                counts = resp.execute(client, b"".join(resp.pack([b"CLUSTER", b"COUNTKEYSINSLOT", b"%d" % s])
                                                       for s in some), len(some))
                _raise_errors(counts)
                full = [(s, c) for s, c in zip(some, counts) if c]
                if not full:
                    continue
                replies = resp.execute(client, b"".join(resp.pack([b"CLUSTER", b"GETKEYSINSLOT", b"%d" % s, b"%d" % c])
                                                        for s, c in full), len(full))
                _raise_errors(replies)
                keys = [k for reply in replies for k in reply]
                start = 0
                while start < len(keys):
                    rows = budget.rows if budget else self.batch_size
                    yield keys[start:start + rows]
                    start += rows

    # -- walks -------------------------------------------------------------------------------

    def read(self, start: tuple[int, int] | None = None) -> Iterator[Read]:
        """As `RedisSource.read`, over every unit and then the re-walk (see the module's docstring)."""
        pattern, cursor = start or (0, 0)
        if self.walk == "keyspace":
            if pattern:
                return
            budget = BatchBudget(self.batch_size)
            for cursor, keys, reader in self._keyspace(cursor, budget):
                result = self._read_on(reader, keys) if keys else None
                budget.saw_batch(len(keys), result.batch if result else None)
                yield Read(position=after(0, cursor), batch=result.batch if result else None, scanned=len(keys),
                           vanished=result.vanished if result else 0)
            return
        count = len(self.patterns)
        if pattern >= count:
            return
        unit, node_cursor = split_composite(cursor)
        for index, read in self.unit_reads({unit: (pattern, node_cursor)}, first=unit):
            if index == len(self.units):  # the re-walk
                read.position = (0, index)
            elif read.position[0] >= count:  # this unit is done: the next one's start (or the re-walk)
                read.position = (0, index + 1)
            else:
                read.position = (read.position[0], composite(read.position[1], index))
            yield read
        yield Read(position=(count, 0), batch=None)

    def unit_reads(self, starts: dict[int, tuple[int, int]], first: int = 0) -> Iterator[tuple[int, Read]]:
        """(unit index, read) of each unit from `first` on, from its start in `starts` ((0, 0) if
        absent; (len(patterns), 0): done), each read's position that unit's own; then (number of
        units, read) for the re-walk, position None."""
        count = len(self.patterns)
        for index in range(first, len(self.units)):
            start = starts.get(index, (0, 0))
            if start[0] < count:
                yield from ((index, read) for read in self.reader(self.units[index]).read(start))
                self.observe()
        yield from ((len(self.units), read) for read in self._rewalk_reads())

    def _rewalk_reads(self) -> Iterator[Read]:
        matchers = [ScopeMatcher((p,)) for p in self.patterns]
        budget = BatchBudget(self.batch_size)  # big values are re-read fewer at a time, as walked
        for keys in self.rewalk_keys(budget):
            if not keys:
                continue
            result = self.read_keys(keys)
            batch = result.batch
            budget.saw_batch(len(keys), batch)
            for index, matcher in enumerate(matchers):
                rows = batch.filter(pa.array(matcher.mask(batch.column("key")))) if batch.num_rows else batch
                yield Read(position=None, batch=rows if rows.num_rows else None, scope=index,
                           scanned=len(keys) if index == 0 else 0, vanished=result.vanished if index == 0 else 0)

    def keyspace_chunks(self, cursor: int = 0) -> Iterator[tuple[int, list[bytes]]]:
        """As `RedisSource.keyspace_chunks`, over every unit and the re-walk; composite cursors."""
        for cursor, keys, _reader in self._keyspace(cursor):
            yield cursor, keys

    def _keyspace(self, cursor: int, budget: BatchBudget | None = None
                  ) -> Iterator[tuple[int, list[bytes], RedisSource | None]]:
        unit, node_cursor = split_composite(cursor)
        for index in range(unit, len(self.units)):
            reader = self.reader(self.units[index])
            for scan_cursor, keys in reader.keyspace_chunks(node_cursor if index == unit else 0, budget):
                if scan_cursor == 0:
                    self.observe()
                yield composite(scan_cursor, index) if scan_cursor else index + 1, keys, reader
        for keys in self.rewalk_keys(budget):
            yield len(self.units), keys, None
        yield 0, [], None

    def _read_on(self, reader: RedisSource | None, keys: list[bytes]) -> ReadResult:
        """`keys` read on the node that listed them, the redirected ones where they went."""
        if reader is None:
            return self.read_keys(keys)
        result = reader.read_keys(keys)
        if not result.moved:
            return result
        self.add_suspects(map(key_slot, result.moved))
        again = self.read_keys(result.moved)
        return ReadResult(batch=_in_order(keys, [result.batch, again.batch]), vanished=result.vanished + again.vanished)

    def key_chunks(self, patterns: Sequence[str], batch_size: int, start_pattern: int = 0,
                   start_cursor: int = 0) -> Iterator[tuple[int, int, list[bytes]]]:
        """As `RedisSource.key_chunks`, unit by unit (composite cursors), then the re-walk."""
        unit, node_cursor = split_composite(start_cursor)
        for index in range(unit, len(self.units)):
            begin = (start_pattern, node_cursor) if index == unit else (0, 0)
            for pattern, cursor, keys in self.reader(self.units[index]).key_chunks(patterns, batch_size, *begin):
                yield pattern, composite(cursor, index), keys
            self.observe()
        yield from self._rewalk_chunks(patterns, None)

    def read_chunks(self, patterns: Sequence[str], batch_size: int, start_pattern: int = 0,
                    start_cursor: int = 0, segment: Segment = WHOLE) -> Iterator[Chunk]:
        """As `RedisSource.read_chunks`, unit by unit (composite cursors), then the re-walk;
        redirected keys read where they went."""
        unit, node_cursor = split_composite(start_cursor)
        for index in range(unit, len(self.units)):
            begin = (start_pattern, node_cursor) if index == unit else (0, 0)
            for chunk in self.reader(self.units[index]).read_chunks(patterns, batch_size, *begin):
                result = chunk.result
                if result is not None and result.moved:
                    self.add_suspects(map(key_slot, result.moved))
                    again = self.read_keys(result.moved)
                    result = ReadResult(_in_order(result.batch.column("key").to_pylist() + result.moved,
                                                  [result.batch, again.batch]), result.vanished + again.vanished)
                yield Chunk(chunk.pattern_index, composite(chunk.cursor, index), chunk.scanned, result)
            self.observe()
        yield from self._rewalk_chunks(patterns, self.read_keys)

    def _rewalk_chunks(self, patterns: Sequence[str], read: Callable[[list[bytes]], ReadResult] | None) -> Iterator:
        """The re-walk's keys per pattern: read into `Chunk`s, or as (pattern index, 0, keys)
        when `read` is None."""
        matchers = [ScopeMatcher((p,)) for p in patterns]
        budget = BatchBudget(self.batch_size) if read is not None else None  # only reads teach it
        for keys in self.rewalk_keys(budget):
            column = pa.array(keys, pa.binary())
            for index, matcher in enumerate(matchers):
                mine = [k for k, w in zip(keys, matcher.mask(column).tolist()) if w]
                if not mine:
                    continue
                if read is None:
                    yield index, 0, mine
                    continue
                got = read(mine)
                budget.saw_batch(len(mine), got.batch)
                yield Chunk(index, 0, len(mine), got)


def _raise_errors(replies: list) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise redis.exceptions.ResponseError(str(reply))


def _in_order(keys: Sequence[bytes], batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """The rows of `batches` (each key at most once) in the order of `keys`."""
    batches = [b for b in batches if b.num_rows] or batches[:1]
    if not batches:
        return _Rows().to_batch(0)
    if len(batches) == 1:
        return batches[0]
    table = pa.Table.from_batches(batches)
    where = {key: i for i, key in enumerate(keys)}
    order = np.argsort(np.fromiter((where[k] for k in table.column("key").to_pylist()), dtype=np.int64,
                                   count=table.num_rows), kind="stable")
    return table.take(pa.array(order)).combine_chunks().to_batches()[0]
