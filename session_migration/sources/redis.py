"""Read keys from a live Redis/Valkey server into record batches.

SCAN is not a point-in-time view: keys created during a backup may or may not be seen, keys
deleted or expiring during it are counted as vanished, and a key may be returned twice (the
caller de-duplicates). Reads are pipelined, one round trip per batch for string keys (the
common case for sessions), two more for the few keys of other types.

On a node of a Redis Cluster (`cluster=True`, see `sources/cluster.py`) a multi-key command
must not span slots. Where SCAN returns a node's keys slot by slot (Valkey 8 and later keep
one table per slot), each run of keys sharing a slot is read with one MGET; elsewhere (Redis
7: a batch's keys lie in about as many slots as there are keys) with one GET per key, in the
same round trip. A key whose slot has moved or is moving (a MOVED, ASK or TRYAGAIN reply) is
neither a row nor vanished: it is handed back in `ReadResult.moved` for the caller to read
from its new owner.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis
from redis.crc import key_slot

import hiredis

from . import Read, resp
from ..budget import BatchBudget
from ..cluster import key_slots
from ..endpoints import RedisEndpoint, translate_redis_errors
from ..redis_glob import ScopeMatcher
from ..schema import RECORD_SCHEMA
from ..sessions import detect_store
from ..sessions.detect import store_prefix
from .segments import WHOLE, Segment

# PEXPIRETIME replies: -1 = no expiry, -2 = no such key.
NO_EXPIRY = -1
NO_KEY = -2
_TYPE_RETRIES = 3  # a key that changes type between our reads is read again this often
MOVED = "moved"  # what `exists`, `expiries` and `idle_ms` answer, on a cluster node, for a key it does not serve
# A cluster node's keys are read with one MGET per run of keys sharing a slot when a batch has at
# least this many keys per run on average; below it, with one GET per key.
_KEYS_PER_RUN = 4
# A batch this large with fewer keys per run says the node's SCAN does not go slot by slot: its
# later batches are read key by key without computing their slots (~0.2 us a key).
_RUNS_DECIDED_AT = 256


@dataclass(frozen=True)
class ServerInfo:
    name: str  # "redis" or "valkey"
    version: str
    has_pexpiretime: bool

    def as_dict(self) -> dict[str, str]:
        return {"server": self.name, "version": self.version}


@dataclass
class ReadResult:
    batch: pa.RecordBatch
    vanished: int
    moved: list[bytes] = field(default_factory=list)  # cluster only: keys to read from their slot's new owner


@dataclass
class Chunk:
    """Keys of one or more SCAN pages of one pattern, read."""

    pattern_index: int
    cursor: int  # SCAN cursor after this chunk (0 = the pattern is done): a valid resume point
    scanned: int  # keys SCAN returned, repeats included
    result: ReadResult | None  # None when the pages held no key


def server_info(client: redis.Redis) -> ServerInfo:
    info = client.info("server")
    name = "valkey" if "valkey_version" in info or info.get("server_name") == "valkey" else "redis"
    version = str(info.get("valkey_version") or info.get("redis_version") or "0")
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    # Valkey reports redis_version 7.2.4 for compatibility and has PEXPIRETIME.
    return ServerInfo(name=name, version=version, has_pexpiretime=name == "valkey" or major >= 7)


def after(pattern_index: int, cursor: int) -> tuple[int, int]:
    """Where a walk goes on after a chunk that ended at `cursor` (0 in a chunk: that pattern is done)."""
    return (pattern_index + 1, 0) if cursor == 0 else (pattern_index, cursor)


class RedisSource:
    """Scan and read one database of one server: a `Source` (`read`, `close`) over the keys of
    `patterns`, plus the reads other steps need (`read_keys`, `key_chunks`, `exists`, ...).
    Holds a connection; not thread-safe.

    Two walks: "patterns" (one SCAN MATCH walk per pattern, in `segment` of each; reads
    streamed ahead: a backup), or "keyspace" (one SCAN walk over every key, matched here
    against all the patterns; positions (0, cursor) then (1, 0) when done: a transfer, whose
    writes would otherwise be repeated once per pattern a key matches).

    `cluster`: the server is a node of a Redis Cluster (per-key reads, MOVED/ASK reported; the
    slots of such keys collect in `moved_slots`). `readonly`: the server is a cluster replica,
    read with READONLY on every connection."""

    def __init__(
        self,
        endpoint: RedisEndpoint,
        *,
        patterns: Sequence[str] = (),
        batch_size: int = 1000,
        segment: Segment = WHOLE,
        walk: str = "patterns",
        preserve_ttl: bool = True,
        capture_dump: bool = False,
        client: redis.Redis | None = None,
        cluster: bool = False,
        readonly: bool = False,
    ):
        self.endpoint = endpoint
        self.patterns, self.batch_size, self.segment, self.walk = tuple(patterns), batch_size, segment, walk
        self.preserve_ttl = preserve_ttl
        self.capture_dump = capture_dump
        self.cluster = cluster
        self._slot_runs_pay = cluster  # until a batch shows this node's SCAN does not go slot by slot
        self.moved_slots: set[int] = set()
        self.client = client or endpoint.connect()
        if readonly:
            _read_only(self.client)
        with translate_redis_errors(endpoint):
            self.info = server_info(self.client)
            self.no_touch = _no_touch(self.client)

    def close(self) -> None:
        self.client.close()

    def dbsize(self) -> int:
        with translate_redis_errors(self.endpoint):
            return int(self.client.dbsize())

    def scan_page(self, pattern: str, cursor: int, count: int) -> tuple[int, list[bytes]]:
        with translate_redis_errors(self.endpoint):
            next_cursor, keys = self.client.scan(cursor=cursor, match=pattern, count=count)
        return int(next_cursor), keys

    def scan_pages(self, pattern: str, cursor: int, count: int) -> Iterator[tuple[int, list[bytes]]]:
        """Yield (cursor after this page, keys) until the scan completes (cursor 0)."""
        while True:
            cursor, keys = self.scan_page(pattern, cursor, count)
            yield cursor, keys
            if cursor == 0:
                return

    def key_chunks(self, patterns: Sequence[str], batch_size: int, start_pattern: int = 0,
                   start_cursor: int = 0) -> Iterator[tuple[int, int, list[bytes]]]:
        """(pattern index, cursor after, keys) in chunks of at least `batch_size` keys.

        A chunk always ends at a SCAN page boundary, so the cursor after it is a valid place
        to resume from.
        """
        for index in range(start_pattern, len(patterns)):
            cursor = start_cursor if index == start_pattern else 0
            keys: list[bytes] = []
            for cursor, page in self.scan_pages(patterns[index], cursor, batch_size):
                keys.extend(page)
                if len(keys) >= batch_size or cursor == 0:
                    yield index, cursor, keys
                    keys = []

    def read_chunks(self, patterns: Sequence[str], batch_size: int, start_pattern: int = 0,
                    start_cursor: int = 0, segment: Segment = WHOLE) -> Iterator[Chunk]:
        """`key_chunks` (of one `segment` of each pattern's walk), with the keys read; a chunk
        holds `batch_size` keys, or fewer where values are big (`budget.BatchBudget`).

        Requests go ahead on a stream of their own: while the caller works on one chunk, the
        server already reads the next. Cursor 0 means "the start of the segment" as a start
        position and "the segment is done" in a chunk.
        """
        with translate_redis_errors(self.endpoint):
            stream = resp.Stream(self.client, no_touch=self.no_touch)
            try:
                yield from _StreamedScan(self, stream, patterns, batch_size, segment).chunks(start_pattern, start_cursor)
            finally:
                stream.close()

    def read(self, start: tuple[int, int] | None = None) -> Iterator[Read]:
        """The keys of `patterns` from `start` ((pattern index, cursor); None: the beginning),
        read, one `Read` per chunk of `batch_size` keys (fewer where values are big: see
        `budget`); each position is a valid resume point ((len(patterns), 0) once the walk is
        done)."""
        if self.walk == "keyspace":
            yield from self._keyspace(*(start or (0, 0)))
            return
        for chunk in self.read_chunks(self.patterns, self.batch_size, *(start or (0, 0)), segment=self.segment):
            result = chunk.result
            if result is not None and result.moved:
                self.moved_slots.update(map(key_slot, result.moved))
            yield Read(position=after(chunk.pattern_index, chunk.cursor), batch=result.batch if result else None,
                       scope=chunk.pattern_index, scanned=chunk.scanned, vanished=result.vanished if result else 0)

    def _keyspace(self, done: int, cursor: int) -> Iterator[Read]:
        """The keyspace walk, read (see `keyspace_chunks`)."""
        if done:
            return
        budget = BatchBudget(self.batch_size)
        for cursor, keys in self.keyspace_chunks(cursor, budget):
            result = self.read_keys(keys) if keys else None
            budget.saw_batch(len(keys), result.batch if result else None)
            yield Read(position=after(0, cursor), batch=result.batch if result else None, scanned=len(keys),
                       vanished=result.vanished if result else 0)

    def keyspace_chunks(self, cursor: int = 0, budget: BatchBudget | None = None) -> Iterator[tuple[int, list[bytes]]]:
        """(cursor after, keys in scope) of one SCAN walk over every key from `cursor`, in chunks
        of at least `batch_size` keys (`budget.rows`, learnt from the caller's reads, if given),
        each ending at a SCAN page boundary (a valid resume point; 0 ends the walk). With one
        pattern the server matches it (fewer names sent); with several, `MATCH *` and the match
        happens here. Either way every name is checked here."""
        scope = ScopeMatcher(self.patterns)
        match = self.patterns[0] if len(self.patterns) == 1 else "*"
        keys: list[bytes] = []
        while True:
            rows = budget.rows if budget else self.batch_size
            asked = budget.scan_count if budget else self.batch_size
            cursor, page = self.scan_page(match, cursor, asked)
            kept = scope.select(page)
            keys.extend(kept)
            if budget:
                budget.scanned(asked, len(kept))
            if len(keys) >= rows or cursor == 0:
                yield cursor, keys
                keys = []
            if cursor == 0:
                return

    # -- what other steps ask of a source -----------------------------------------------------

    def run_id(self) -> str:
        """The server process's run id: a SCAN cursor means nothing once it changed (a restart)."""
        with translate_redis_errors(self.endpoint):
            return str(self.client.info("server").get("run_id", ""))

    def now_ms(self) -> int:
        """The server's clock, in Unix ms."""
        with translate_redis_errors(self.endpoint):
            return _unix_ms(self.client.time())

    def exists(self, keys: Sequence[bytes]) -> list[bool]:
        """Whether each key exists now (one pipelined round trip)."""
        with translate_redis_errors(self.endpoint):
            replies = resp.execute(self.client, resp.pack_per_key(b"EXISTS", keys), len(keys))
        if self.cluster:
            return [MOVED if _redirected(r) else bool(r) for r in replies]
        return [bool(r) for r in replies]

    def idle_ms(self, keys: Sequence[bytes]) -> list[int | None]:
        """How long each key has gone unused, in ms (OBJECT IDLETIME); None where the server
        cannot tell (an LFU eviction policy) or the key is gone."""
        if not keys:
            return []
        with translate_redis_errors(self.endpoint):
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.object("idletime", key)
            replies = pipe.execute(raise_on_error=False)
        return [r * 1000 if isinstance(r, int) else MOVED if self.cluster and _redirected(r) else None for r in replies]

    def expiries(self, keys: Sequence[bytes]) -> list[int | None | bool]:
        """Absolute expiry of each key in Unix ms (None: no expiry), or False when it is gone."""
        with_time = not self.info.has_pexpiretime
        command = b"PEXPIRETIME" if self.info.has_pexpiretime else b"PTTL"
        packed = (resp.pack([b"TIME"]) if with_time else b"") + resp.pack_per_key(command, keys)
        with translate_redis_errors(self.endpoint):
            replies = resp.execute(self.client, packed, len(keys) + with_time)
        now = _unix_ms(replies.pop(0)) if with_time else None
        out: list[int | None | bool] = []
        for reply in replies:
            if self.cluster and _redirected(reply):
                out.append(MOVED)
            elif reply == NO_KEY:
                out.append(False)
            elif reply == NO_EXPIRY:
                out.append(None)
            else:
                out.append(int(reply) if now is None else now + int(reply))
        return out

    # -- reading -----------------------------------------------------------------------------

    def read_keys(self, keys: Sequence[bytes]) -> ReadResult:
        """Read type, value and absolute expiry of `keys`; vanished keys are counted, not returned."""
        with translate_redis_errors(self.endpoint):
            return self._read(keys)

    @property
    def _with_time(self) -> bool:
        """Whether a read starts with TIME: expiries are then relative (PTTL), made absolute with
        the server's clock (no PEXPIRETIME before Redis 7)."""
        return self.preserve_ttl and not self.info.has_pexpiretime

    @property
    def _expiry_command(self) -> bytes:
        if not self.preserve_ttl:
            return b"EXISTS"  # still tells us whether the key vanished
        return b"PEXPIRETIME" if self.info.has_pexpiretime else b"PTTL"

    def _expire_at(self, reply: int, now_ms: int | None) -> tuple[bool, int | None]:
        """(present, expire_at_ms) from the expiry reply."""
        if not self.preserve_ttl:
            return bool(reply), None
        if reply == NO_KEY:
            return False, None
        if reply == NO_EXPIRY:
            return True, None
        if self.info.has_pexpiretime:
            return True, int(reply)
        return True, int(now_ms) + int(reply)

    def _read(self, keys: Sequence[bytes]) -> ReadResult:
        packed, count, runs = self._read_request(keys)
        return self._read_result(keys, resp.execute(self.client, packed, count), runs)

    def _read_request(self, keys: Sequence[bytes]) -> tuple[bytes, int, list[int] | None]:
        """The pipelined read of `keys`, how many replies it gets, and (on a cluster node) the
        ends of the slot runs read with one MGET each (None: one GET per key).

        One round trip: MGET for every value, then the expiry of each key. MGET answers nil
        both for a missing key and for a key of another type; the expiry reply tells the two
        apart (-2 = missing). On a cluster node, MGET per slot run or GET per key (WRONGTYPE
        for another type).
        """
        with_time = self._with_time
        runs = self._slot_runs(keys) if self.cluster else None
        if not self.cluster:
            values, count = resp.pack([b"MGET", *keys]), 1
        elif runs is None:
            values, count = resp.pack_per_key(b"GET", keys), len(keys)
        else:
            values = b"".join(resp.pack([b"MGET", *keys[start:end]]) for start, end in zip([0, *runs], runs))
            count = len(runs)
        packed = (resp.pack([b"TIME"]) if with_time else b"") + values + resp.pack_per_key(self._expiry_command, keys)
        return packed, count + len(keys) + with_time, runs

    def _slot_runs(self, keys: Sequence[bytes]) -> list[int] | None:
        """Where each run of consecutive keys sharing a slot ends, when the runs are long enough
        for an MGET each to pay (see `_KEYS_PER_RUN`); else None."""
        if not self._slot_runs_pay or len(keys) < _KEYS_PER_RUN:
            return None
        slots = key_slots(keys)
        runs = [*(np.flatnonzero(slots[1:] != slots[:-1]) + 1).tolist(), len(keys)]
        if len(keys) >= _KEYS_PER_RUN * len(runs):
            return runs
        if len(keys) >= _RUNS_DECIDED_AT:
            self._slot_runs_pay = False
        return None

    def _split_time(self, replies: list) -> tuple[int | None, list]:
        """The server's clock in Unix ms from the TIME reply a read starts with when the server
        has no PEXPIRETIME (else None), and the replies after it."""
        return (_unix_ms(replies[0]), replies[1:]) if self._with_time else (None, replies)

    def _read_result(self, keys: Sequence[bytes], replies: list, runs: list[int] | None = None) -> ReadResult:
        now_ms, replies = self._split_time(replies)
        moved: list[bytes] = []
        if self.cluster:
            if runs is None:  # a GET per key
                values, expiries = replies[:len(keys)], replies[len(keys):]
            else:  # an MGET per slot run
                values, expiries = _run_values(replies[:len(runs)], runs), replies[len(runs):]
            keys, values, expiries, moved = _per_key_replies(keys, values, expiries)
            if not keys:
                return ReadResult(batch=_Rows().to_batch(self.endpoint.db), vanished=0, moved=moved)
        else:
            values, expiries = replies[0], replies[1:]
            if isinstance(values, hiredis.ReplyError):
                raise redis.exceptions.ResponseError(str(values))
        all_present_strings = None not in values and NO_KEY not in expiries
        if now_ms is None and self.preserve_ttl and not self.capture_dump and all_present_strings:
            # the common case, decoded column-wise: every key is a present string
            return ReadResult(batch=_strings_batch(keys, values, expiries, self.endpoint.db), vanished=0, moved=moved)
        rows = _Rows()
        vanished = 0
        others: list[bytes] = []
        expire_at_ms = []
        string_keys = []
        string_values = []
        for key, value, expiry in zip(keys, values, expiries):
            present, expire_at = self._expire_at(expiry, now_ms)
            if not present:
                vanished += 1
            elif value is None:
                others.append(key)
            else:
                string_keys.append(key)
                string_values.append(value)
                expire_at_ms.append(expire_at)
        rows.add_strings(string_keys, string_values, expire_at_ms)
        if others:
            vanished += self._read_typed(others, rows, moved)
        if self.capture_dump and len(rows):
            self._attach_dumps(rows)
        return ReadResult(batch=rows.to_batch(self.endpoint.db), vanished=vanished, moved=moved)

    def _read_typed(self, keys: list[bytes], rows: _Rows, moved: list[bytes]) -> int:
        """Read keys that are not strings, on the packed path of string reads (`resp`): TYPE
        first, then the typed read and the expiry of each, one round trip each. redis-py's
        pipelines cost ~3 us of Python a command: reading 50k hashes of 5 fields (as Spring
        Session keeps its sessions) took 2.0 s through them and 1.1 s here. On a cluster node,
        keys whose slot moved meanwhile go to `moved`."""
        vanished = 0
        for _attempt in range(_TYPE_RETRIES):
            types = resp.execute(self.client, resp.pack_per_key(b"TYPE", keys), len(keys))
            plan = []
            packed = [resp.pack([b"TIME"])] if self._with_time else []
            for key, rtype in zip(keys, types):
                if self.cluster and _redirected(rtype):
                    moved.append(key)
                    continue
                if isinstance(rtype, hiredis.ReplyError):
                    raise redis.exceptions.ResponseError(str(rtype))
                rtype = rtype.decode()
                if rtype == "none":
                    vanished += 1
                    continue
                if rtype not in _TYPED_READS:
                    raise ValueError(f"unsupported Redis type {rtype!r}")
                plan.append((key, rtype))
                packed.extend(resp.pack([command, key, *args]) for command, args in _TYPED_READS[rtype])
                packed.append(resp.pack([self._expiry_command, key]))
            if not plan:
                return vanished
            gone, keys = self._add_typed(plan, resp.execute(self.client, b"".join(packed), len(packed)), rows, moved)
            vanished += gone
            if not keys:
                return vanished
        return vanished + len(keys)

    def _add_typed(self, plan: list[tuple[bytes, str]], replies: list, rows: _Rows,
                   moved: list[bytes]) -> tuple[int, list[bytes]]:
        """Rows from the replies of `plan`'s typed reads, each followed by its key's expiry:
        (keys that vanished, keys that changed type meanwhile and must be read again). On a
        cluster node, keys whose slot moved go to `moved`."""
        now_ms, replies = self._split_time(replies)
        vanished, retry, pos = 0, [], 0
        for key, rtype in plan:
            width = len(_TYPED_READS[rtype])
            value, expiry = replies[pos:pos + width], replies[pos + width]
            pos += width + 1
            if self.cluster and (_redirected(expiry) or any(map(_redirected, value))):
                moved.append(key)
                continue
            if isinstance(expiry, hiredis.ReplyError):
                raise redis.exceptions.ResponseError(str(expiry))
            if any(isinstance(v, hiredis.ReplyError) for v in value):
                retry.append(key)  # the key changed type under us: read it again
                continue
            present, expire_at = self._expire_at(expiry, now_ms)
            if not present or value[0] is None:
                vanished += 1
                continue
            rows.add_typed(key, rtype, _as_parsed(rtype, value), expire_at)
        return vanished, retry

    def _attach_dumps(self, rows: _Rows) -> None:
        pipe = self.client.pipeline(transaction=False)
        wanted = [i for i, d in enumerate(rows.dump) if d is None]
        for i in wanted:
            pipe.dump(rows.key[i])
        for i, payload in zip(wanted, pipe.execute(raise_on_error=not self.cluster)):
            if self.cluster and _redirected(payload):  # moved since it was read: kept without its payload
                self.moved_slots.add(key_slot(rows.key[i]))
                payload = None
            rows.dump[i] = payload


def _unix_ms(time_reply: list) -> int:
    """A TIME reply (seconds, microseconds) in Unix ms."""
    sec, usec = time_reply
    return int(sec) * 1000 + int(usec) // 1000


def _redirected(reply) -> bool:
    """Whether a reply is a cluster redirection: MOVED (the slot has a new owner), ASK (it is
    being migrated and this key has left already) or TRYAGAIN (an MGET of a slot being
    migrated, some of whose keys have left)."""
    if isinstance(reply, redis.exceptions.AskError):  # MovedError too; redis-py drops the word from the text
        return True
    return isinstance(reply, (hiredis.ReplyError, redis.exceptions.ResponseError)) and str(reply).startswith(
        ("MOVED ", "ASK ", "TRYAGAIN "))


def _run_values(replies: list, runs: list[int]) -> list:
    """Per-key values from the MGET replies of slot runs: a run the node refused (an error such
    as MOVED or TRYAGAIN) gives that error for each of its keys."""
    values: list = []
    for reply, start, end in zip(replies, [0, *runs], runs):
        values.extend(reply if reply.__class__ is list else [reply] * (end - start))
    return values


def _per_key_replies(keys: Sequence[bytes], values: list, expiries: list) -> tuple[list, list, list, list]:
    """A cluster node's GET and expiry replies as MGET-like values (nil for another type),
    without the keys it redirected: (keys, values, expiries, redirected keys)."""
    bad = [i for i, v in enumerate(values) if v.__class__ is hiredis.ReplyError]
    bad += [i for i, e in enumerate(expiries) if e.__class__ is hiredis.ReplyError]
    if not bad:
        return list(keys), values, expiries, []
    keys, values, expiries, moved = list(keys), list(values), list(expiries), []
    drop = set()
    for i in sorted(set(bad)):
        if _redirected(values[i]) or _redirected(expiries[i]):
            moved.append(keys[i])
            drop.add(i)
        elif isinstance(expiries[i], hiredis.ReplyError):
            raise redis.exceptions.ResponseError(str(expiries[i]))
        elif str(values[i]).startswith("WRONGTYPE"):
            values[i] = None  # another type: read by type, as MGET's nil would have it
        else:
            raise redis.exceptions.ResponseError(str(values[i]))
    if drop:
        kept = [i for i in range(len(keys)) if i not in drop]
        keys, values, expiries = [keys[i] for i in kept], [values[i] for i in kept], [expiries[i] for i in kept]
    return keys, values, expiries, moved


def _read_only(client: redis.Redis) -> None:
    """Send READONLY on every connection `client` makes (a cluster replica serves reads only
    to connections that asked), and drop the connection made before this was set."""
    def connect(connection) -> None:
        connection.on_connect()
        connection.send_command("READONLY")
        connection.read_response()

    client.connection_pool.connection_kwargs["redis_connect_func"] = connect
    client.connection_pool.disconnect()
    client.connection_pool.reset()  # the connections made so far keep the old setting: drop them


def _no_touch(client: redis.Redis) -> bool:
    """Ask the server not to count our reads as use (Redis >= 7.2, Valkey), so a backup leaves
    the LRU/LFU eviction order and OBJECT IDLETIME of the sessions as they were. Older servers
    refuse the command; then reads do touch the keys."""
    try:
        client.execute_command("CLIENT", "NO-TOUCH", "ON")
        return True
    except redis.exceptions.ResponseError:
        return False


# What `RedisSource._read_typed` sends for each type: (command, arguments after the key), one reply each.
_TYPED_READS = {
    "hash": [(b"HGETALL", ())],
    "list": [(b"LRANGE", (b"0", b"-1"))],
    "set": [(b"SMEMBERS", ())],
    "zset": [(b"ZRANGE", (b"0", b"-1", b"WITHSCORES"))],
    "stream": [(b"DUMP", ()), (b"XRANGE", (b"-", b"+"))],
    "string": [(b"GET", ())],  # it was another type at MGET time and was set to a string since
}


def _as_parsed(rtype: str, value: list) -> list:
    """Raw replies (hiredis) in the shapes `_Rows.add_typed` takes: a zset as
    (member, score) pairs (RESP3 sends pairs, RESP2 one flat list), a stream's entries as
    (id, {field: value}). A hash may stay a flat list (RESP2) or a dict (RESP3)."""
    if rtype == "zset":
        flat = value[0]
        return [flat if flat and isinstance(flat[0], list) else list(zip(flat[0::2], flat[1::2]))]
    if rtype == "stream":
        return [value[0], [(eid, dict(zip(fv[0::2], fv[1::2]))) for eid, fv in value[1]]]
    return value


class _Rows:
    """Column builders for one batch: plain lists, turned into Arrow once per batch."""

    def __init__(self) -> None:
        self.key: list[bytes] = []
        self.type: list[str] = []
        self.value: list[bytes | None] = []
        self.fields: list[list[dict] | None] = []
        self.items: list[list[bytes] | None] = []
        self.members: list[list[dict] | None] = []
        self.entries: list[list[dict] | None] = []
        self.dump: list[bytes | None] = []
        self.expire_at_ms: list[int | None] = []
        self.size_bytes: list[int] = []
        self.store: list[str | None] = []
        self.non_strings = 0

    def __len__(self) -> int:
        return len(self.key)

    def add_strings(self, keys: list[bytes], values: list[bytes], expire_at_ms: list[int | None]) -> None:
        """Bulk append of string keys (called first, so no typed column needs padding)."""
        self.key.extend(keys)
        self.type.extend(["string"] * len(keys))
        self.value.extend(values)
        self.dump.extend([None] * len(keys))
        self.expire_at_ms.extend(expire_at_ms)
        self.size_bytes.extend([len(v) for v in values])
        self.store.extend([detect_store(k, "string", v) for k, v in zip(keys, values)])

    def add_typed(self, key: bytes, rtype: str, value: list, expire_at: int | None) -> None:
        self.non_strings += 1
        self.key.append(key)
        self.type.append(rtype)
        self.expire_at_ms.append(expire_at)
        n = len(self.key) - 1
        # pad the typed columns up to this row, then fill the one this type uses
        for col in (self.value, self.fields, self.items, self.members, self.entries):
            while len(col) < n:
                col.append(None)
        self.value.append(None)
        data = value[0]
        size = 0
        fields = items = members = entries = None
        dump = None
        if rtype == "hash":
            fields = [{"field": f, "value": v} for f, v in data.items()] if isinstance(data, dict) else [
                {"field": data[i], "value": data[i + 1]} for i in range(0, len(data), 2)
            ]
            size = sum(len(p["field"]) + len(p["value"]) for p in fields)
        elif rtype in ("list", "set"):
            items = sorted(data) if rtype == "set" else list(data)
            size = sum(len(x) for x in items)
        elif rtype == "zset":
            members = [{"member": m, "score": float(s)} for m, s in data]
            size = sum(len(m["member"]) + 8 for m in members)
        elif rtype == "string":
            self.value[-1] = data
            size = len(data)
        elif rtype == "stream":
            dump = data
            entries = [{"id": eid, "fields": [x for kv in fv.items() for x in kv]} for eid, fv in value[1]]
            size = sum(len(e["id"]) + sum(len(x) for x in e["fields"]) for e in entries)
        self.fields.append(fields)
        self.items.append(items)
        self.members.append(members)
        self.entries.append(entries)
        self.dump.append(dump)
        self.size_bytes.append(size)
        first = data if rtype == "string" else fields[0]["value"] if fields else None
        self.store.append(detect_store(key, rtype, first))

    def to_batch(self, db: int) -> pa.RecordBatch:
        n = len(self.key)
        if self.non_strings:
            for col in (self.fields, self.items, self.members, self.entries):
                while len(col) < n:
                    col.append(None)

        def typed(name: str, data: list | None) -> pa.Array:
            kind = RECORD_SCHEMA.field(name).type
            if data is None or not self.non_strings and name in ("fields", "items", "members", "entries"):
                return pa.nulls(n, kind)
            return pa.array(data, type=kind)

        arrays = [
            pa.array(self.key, type=pa.binary()),
            pa.array(self.type, type=pa.string()),
            pa.array(self.value, type=pa.binary()),
            typed("fields", self.fields),
            typed("items", self.items),
            typed("members", self.members),
            typed("entries", self.entries),
            pa.array(self.dump, type=pa.binary()),
            pa.array(self.expire_at_ms, type=pa.int64()),
            pa.array(self.size_bytes, type=pa.int64()),
            pa.array([db] * n, type=pa.int32()),
            pa.array(self.store, type=pa.string()),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=RECORD_SCHEMA)


_INT32_MAX = 2**31 - 1


def _binary_array(data: Sequence[bytes]) -> tuple[pa.Array, np.ndarray]:
    """An Arrow binary array from bytes objects, and their lengths: one join and the lengths,
    no per-item calls into Arrow (several times faster than `pa.array` for ~1 KB values)."""
    lengths = np.fromiter(map(len, data), dtype=np.int64, count=len(data))
    offsets = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > _INT32_MAX:  # binary offsets are 32-bit
        return pa.array(data, type=pa.binary()), lengths
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(data))]
    return pa.Array.from_buffers(pa.binary(), len(data), buffers), lengths


def _strings_batch(keys: Sequence[bytes], values: list[bytes], expiries: list[int], db: int) -> pa.RecordBatch:
    """A batch of string keys that all exist, from MGET values and PEXPIRETIME replies."""
    n = len(keys)
    key_array = _binary_array(keys)[0]
    value_array, sizes = _binary_array(values)
    expire_at = np.array(expiries, dtype=np.int64)
    columns = {
        "key": key_array,
        "type": pa.repeat(pa.scalar("string"), n),
        "value": value_array,
        "expire_at_ms": pa.array(expire_at, mask=expire_at == NO_EXPIRY),
        "size_bytes": pa.array(sizes),
        "db": pa.repeat(pa.scalar(db, pa.int32()), n),
        "store": _string_stores(key_array, keys, values),
    }
    arrays = [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in RECORD_SCHEMA]
    return pa.RecordBatch.from_arrays(arrays, schema=RECORD_SCHEMA)


def _string_stores(key_array: pa.Array, keys: Sequence[bytes], values: list[bytes]) -> pa.Array:
    """`detect_store` of each string key; one vector test when all keys share a store's prefix."""
    known = store_prefix(keys[0])
    if known is not None and pc.all(pc.starts_with(key_array, known[1].decode("latin-1"))).as_py():
        return pa.repeat(pa.scalar(known[0]), len(keys))
    return pa.array([detect_store(k, "string", v) for k, v in zip(keys, values)], type=pa.string())


class _StreamedScan:
    """SCAN and read on one stream, keeping a read queued at the server while the caller
    decodes the last one.

    Replies come back in the order the requests went out. A SCAN reply is needed before
    the read of its keys can be sent, and it may sit behind a read's replies, so those are
    taken off the socket (cheap: hiredis) and decoded into rows only once the next read is
    queued at the server, or nothing else is left to send. Each SCAN reply sends the next SCAN
    first and then the read of its keys (see `_take_reply`).
    """

    def __init__(self, source: RedisSource, stream: resp.Stream, patterns: Sequence[str], batch_size: int,
                 segment: Segment):
        self.source = source
        self.stream = stream
        self.patterns = patterns
        self.budget = BatchBudget(batch_size)  # keys per read, and the SCAN COUNT that brings them
        self.segment = segment
        self.inflight: deque[tuple] = deque()  # ("scan", i, COUNT asked), ("read", i, cursor, keys, replies, runs) or ("end", i)
        self.ready: deque[tuple] = deque()  # (index, cursor, keys, raw replies or None, slot runs)
        self.keys: list[bytes] = []  # scanned, not yet sent for reading

    def chunks(self, start_pattern: int, start_cursor: int) -> Iterator[Chunk]:
        if start_pattern < len(self.patterns):
            self._scan(start_pattern, start_cursor or self.segment.first_cursor)
        while self.inflight or self.ready:
            while self.inflight and not (self.ready and any(item[0] == "read" for item in self.inflight)):
                self._take_reply()
            if self.ready:
                index, cursor, keys, raw, runs = self.ready.popleft()
                result = self.source._read_result(keys, raw, runs) if raw is not None else None
                if result is not None:
                    self.budget.saw_batch(len(keys), result.batch)
                yield Chunk(index, cursor, len(keys), result)

    def _scan(self, index: int, cursor: int) -> None:
        asked = self.budget.scan_count
        self.stream.send(resp.pack([b"SCAN", b"%d" % cursor, b"MATCH", self.patterns[index].encode(),
                                    b"COUNT", b"%d" % asked]))
        self.inflight.append(("scan", index, asked))

    def _take_reply(self) -> None:
        item = self.inflight.popleft()
        if item[0] == "end":
            self.ready.append((item[1], 0, [], None, None))
            return
        if item[0] == "read":
            _, index, cursor, keys, count, runs = item
            before = self.stream.received
            self.ready.append((index, cursor, keys, self.stream.replies(count), runs))
            self.budget.saw(len(keys), self.stream.received - before)  # before the next read is sized
            return
        _, index, asked = item
        reply = self.stream.reply()
        if isinstance(reply, hiredis.ReplyError):
            raise redis.exceptions.ResponseError(str(reply))
        cursor = int(reply[0])
        self.keys.extend(reply[1])
        self.budget.scanned(asked, len(reply[1]))
        done = cursor == 0 or not self.segment.contains(cursor)
        if done:
            cursor = 0
        # The next SCAN goes before the read of these keys: its reply comes back first, so the
        # next read is sent while the server still works on this one. Read first, the server
        # had nothing queued while this read's replies crossed the network and were taken.
        if not done:
            self._scan(index, cursor)
        elif index + 1 < len(self.patterns):
            self._scan(index + 1, self.segment.first_cursor)
        if self.keys and (len(self.keys) >= self.budget.rows or done):
            packed, count, runs = self.source._read_request(self.keys)
            self.stream.send(packed)
            self.inflight.append(("read", index, cursor, self.keys, count, runs))
            self.keys = []
        elif done:  # nothing to read, but the caller must still hear that the walk ended
            self.inflight.append(("end", index))
