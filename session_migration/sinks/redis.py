"""Write record rows into a live Redis/Valkey server: the restore side of the pipeline.

Strings (the sessions): `write_strings` packs a whole batch of `SET key value [PXAT t] NX`
with Arrow compute (no Python per key), sends it without waiting and reads the replies of the
batch before while the server works on this one. The NX tells created from existing without a
probe: with on_conflict="replace" the keys that answered nil are sent again without NX and
counted as overwritten; with "skip" they are counted as skipped. Every SET reply is one line,
so a batch whose replies are exactly `+OK\r\n` * n is checked with one comparison.

Other rows (`write`, after a `probe`): a row with a `dump` payload becomes one pipelined
`RESTORE key <pxat|0> payload ABSTTL [REPLACE]`. A target that refuses the payload (an older
server: "DUMP payload version or checksum are wrong", or "Bad data format") gets a typed write
for that key instead, counted in `dump_fallbacks`; the run goes on.

Typed writes: strings `SET key value [PXAT t] [NX]`; hashes, lists, sets, sorted sets and
streams as `MULTI DEL <typed write> [PEXPIREAT] EXEC`, one transaction per key so the key is
never seen half-written. Every write sets the whole key, so writing it again is harmless.

Keys that must not be overwritten (on_conflict "skip"/"fail") are never written on the word
of an earlier probe alone: strings go with `NX`, DUMP payloads without `REPLACE`, and the
other types through `_CREATE_IF_ABSENT`, a script that checks and writes in one atomic step,
so a key created by someone else after the probe is kept (counted as skipped).
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import hiredis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis

from ..endpoints import RedisEndpoint, confirm_writes, translate_redis_errors
from ..errors import (CLUSTER_REDIRECTIONS, ClusterChanged, ScopeViolation, ServerUnavailable, WriteRefused,
                      is_transient_reply)
from ..record import KeyRecord, records_from_batch
from ..redaction import redact_key
from ..sources import resp
from ..sources.redis import ServerInfo, server_info

REFUSED_PAYLOAD = ("DUMP payload version or checksum are wrong", "Bad data format")
_TMP_GROUP = b"session-migration-restore-tmp"
_OK = b"+OK\r\n"
_NILS = (b"$-1", b"_")  # SET NX on an existing key: RESP2, RESP3
_MAX_PACKED_BYTES = 256 << 20  # keys + values of one buffer; more is split (Arrow binary arrays hold < 2 GiB)
# Batches of SETs left queued at the server while the oldest one's replies are read. With two,
# the replies were read as they trickled in (many small recv calls) and the server woke for
# short bursts; with six (~6 MB of sessions) both sides spent less CPU for the same writes
# (1M keys, 5 alternating pairs: 9.53 -> 9.05 s median, server 7.1 -> 6.8 CPU-s, client
# sys 1.5 -> 1.1 s; docs/benchmarks.md). The server's output buffer for us holds only the
# 5-byte replies, so a deeper queue cannot stall it.
_QUEUED_BATCHES = 6

# KEYS[1]: the key; ARGV: type, PEXPIREAT time or '', then the elements (hash: field value...,
# list/set: items, zset: score member..., stream: id n field value ... per entry). Writes the
# key only if it does not exist; 1 written, 0 it existed. Elements go in chunks of 1,000
# arguments (Lua's unpack limit is ~8,000).
_CREATE_IF_ABSENT = b"""
local key, kind = KEYS[1], ARGV[1]
if redis.call('EXISTS', key) == 1 then return 0 end
local function each(cmd, step)
  local i = 3
  while i <= #ARGV do
    local last = math.min(i + step * 500 - 1, #ARGV)
    redis.call(cmd, key, unpack(ARGV, i, last))
    i = last + 1
  end
end
if kind == 'hash' then each('HSET', 2)
elseif kind == 'list' then each('RPUSH', 1)
elseif kind == 'set' then each('SADD', 1)
elseif kind == 'zset' then each('ZADD', 2)
elseif #ARGV < 3 then
  redis.call('XGROUP', 'CREATE', key, 'session-migration-restore-tmp', '$', 'MKSTREAM')
  redis.call('XGROUP', 'DESTROY', key, 'session-migration-restore-tmp')
else
  local i = 3
  while i <= #ARGV do
    local n = tonumber(ARGV[i + 1])
    redis.call('XADD', key, ARGV[i], unpack(ARGV, i + 2, i + 1 + 2 * n))
    i = i + 2 + 2 * n
  end
end
if ARGV[2] ~= '' then redis.call('PEXPIREAT', key, ARGV[2]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class WriteItem:
    key: bytes  # the key to write (after any rename)
    record: KeyRecord  # the row (its `key` is the snapshot's key)
    pxat: int | None  # absolute expiry, Unix ms; None = no expiry


@dataclass
class SinkCounts:
    written: int = 0
    created: int = 0
    overwritten: int = 0
    skipped_existing: int = 0
    dump_restored: int = 0
    dump_fallbacks: int = 0
    typed_writes: int = 0
    refused_examples: list[str] = field(default_factory=list)

    def add(self, other: SinkCounts) -> None:
        for name in SINK_TOTALS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.refused_examples.extend(other.refused_examples[: max(0, MAX_REFUSED_EXAMPLES - len(self.refused_examples))])


SINK_TOTALS = tuple(f.name for f in fields(SinkCounts) if f.name != "refused_examples")
MAX_REFUSED_EXAMPLES = 5


class SinkTotals:
    """For a dataclass of int counters that includes every count of `SinkCounts`."""

    def add_sink(self, counts: SinkCounts) -> None:
        for name in SINK_TOTALS:
            setattr(self, name, getattr(self, name) + getattr(counts, name))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        return cls(**{f.name: int(data.get(f.name, 0)) for f in fields(cls)})


class RedisSink:
    """One database of one target server, as a `Sink` (`write` a batch of records, `commit`,
    `abort`), plus what planning and rollbacks ask of a target (`probe`, `now_ms`, `unlink`).
    With `replace` off, a key that exists is kept (skipped), also one that appears between a
    probe and the write. Holds a connection; not thread-safe."""

    fanout = 1  # servers a batch is split over (ClusterSink: its masters); callers read fanout x --batch-size

    def __init__(self, endpoint: RedisEndpoint, *, replace: bool = True, client: redis.Redis | None = None):
        self.endpoint = endpoint
        self.replace = replace
        self._done = SinkCounts()  # counts since the last commit
        self.client = client or endpoint.connect()
        self._conn: Any = None  # the connection held while SETs are in flight
        self._inflight: deque[_SentSets] = deque()
        self._replies = _LineReplies()
        self._counts = SinkCounts()  # counts of in-flight SETs already answered, not yet handed out
        # None, or (on a cluster node, set by ClusterSink) the SETs it answered with MOVED/ASK, with
        # those reply lines: not errors here, the ClusterSink sends them where the cluster says
        self.redirected: list[tuple[_SentSets, list[bytes]]] | None = None
        with translate_redis_errors(endpoint):
            self.info: ServerInfo = server_info(self.client)
        self.probe([])  # sets the server clock

    def close(self) -> None:
        self._abandon()  # SETs still in flight (a failed run) are not waited for
        self.client.close()

    def _execute(self, packed: bytes, replies: int) -> list:
        self._drain()  # the replies of in-flight SETs come first on the connection
        with translate_redis_errors(self.endpoint):
            return resp.execute(self.client, packed, replies)

    # -- reads used by planning ---------------------------------------------------------------

    def probe(self, keys: Sequence[bytes]) -> tuple[int, list[bool]]:
        """Server time (ms) and, for each key, whether it exists: one round trip."""
        packed = resp.pack([b"TIME"]) + resp.pack_per_key(b"EXISTS", keys)
        replies = self._execute(packed, len(keys) + 1)
        _raise_errors(replies, "TIME/EXISTS", self.endpoint)
        sec, usec = replies[0]
        now = int(sec) * 1000 + int(usec) // 1000
        self._clock = (now, time.monotonic())
        return now, [bool(r) for r in replies[1:]]

    def now_ms(self) -> int:
        """The server's time, from its TIME at the last probe plus the local monotonic time
        since: no round trip, so it can be asked while SETs are in flight."""
        server_ms, at = self._clock
        return server_ms + int((time.monotonic() - at) * 1000)

    def unlink(self, keys: Sequence[bytes], scope: Any) -> int:
        """Delete `keys`, every one of which must match `scope` (anything with a `mask(keys)`, like
        `ScopeMatcher`): a sink never deletes outside the patterns it was given. Returns how many
        existed."""
        if not keys:
            return 0
        outside = np.flatnonzero(~scope.mask(pa.array(keys, pa.binary())))  # one RE2 pass a chunk
        if len(outside):
            key = keys[int(outside[0])]
            raise ScopeViolation(f"Refusing to delete {redact_key(key)}: it is outside the patterns in scope.")
        replies = self._execute(resp.pack_per_key(b"UNLINK", keys), len(keys))
        _raise_errors(replies, "UNLINK", self.endpoint)
        return sum(int(r) for r in replies)

    def run_script(self, script: str, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
        """Run a Lua script atomically at the server (registered once, then by its digest): how
        a caller checks and changes keys in one step (cleanup's compare-and-delete)."""
        scripts = self.__dict__.setdefault("_scripts", {})
        if script not in scripts:
            scripts[script] = self.client.register_script(script)
        self._drain()
        with translate_redis_errors(self.endpoint):
            return scripts[script](keys=list(keys), args=list(args))

    # -- the Sink contract --------------------------------------------------------------------

    def write(self, batch: pa.RecordBatch) -> None:
        """Write records (key: the name on the target; expire_at_ms: the instant to expire at,
        null for none). Strings without a DUMP payload (sessions) take the pipelined SET path;
        the others (typed values, DUMP payloads) are probed and written key by key."""
        if not batch.num_rows:
            return
        plain = _plain_strings(batch)
        keys, values, pxat = batch.column("key"), batch.column("value"), batch.column("expire_at_ms")
        if not plain.all():
            chosen = pa.array(plain)
            keys, values, pxat = keys.filter(chosen), values.filter(chosen), pxat.filter(chosen)
        self._done.add(self.write_strings(keys, values, pxat, replace=self.replace))
        if not plain.all():
            others = batch.filter(pa.array(~plain))
            targets = others.column("key").to_pylist()
            items = [WriteItem(key, record, at) for key, record, at
                     in zip(targets, records_from_batch(others), others.column("expire_at_ms").to_pylist())]
            _, exists = self.probe(targets)
            self._done.add(self.write_items(items, exists, replace=self.replace))

    def commit(self) -> SinkCounts:
        """Wait until the server has answered every write (behind Sentinel: and its replicas
        have them, `confirm_writes`); the counts since the last commit."""
        self._done.add(self.flush())
        if self.endpoint.is_sentinel:
            with translate_redis_errors(self.endpoint):
                confirm_writes(self.client)
        done, self._done = self._done, SinkCounts()
        return done

    def abort(self) -> None:
        """Stop waiting for writes in flight (they are idempotent and repeated on resume)."""
        self._abandon()
        self._done = SinkCounts()

    # -- strings, pipelined without waiting ---------------------------------------------------

    def write_strings(self, keys: pa.Array, values: pa.Array, pxat: pa.Array, *, replace: bool) -> SinkCounts:
        """Queue `SET key value [PXAT pxat] NX` for every row (`pxat` null: no expiry) and send
        it at once. Returns the counts of the writes answered so far (this batch's come with a
        later call or with `flush`). With `replace` False an existing key is kept (skipped)."""
        if len(keys):
            self._send(_SentSets(keys, values, pxat, "nx_then_replace" if replace else "nx"))
        while len(self._inflight) > _QUEUED_BATCHES:
            self._collect()
        return self._take_counts()

    def flush(self) -> SinkCounts:
        """Wait for every in-flight SET; return the counts not yet handed out."""
        self._drain()
        return self._take_counts()

    def _take_counts(self) -> SinkCounts:
        counts, self._counts = self._counts, SinkCounts()
        return counts

    def _drain(self) -> None:
        while self._inflight:
            self._collect()
        if self._conn is not None:
            self.client.connection_pool.release(self._conn)
            self._conn = None

    def _send(self, sent: _SentSets) -> None:
        if sent.keys.nbytes + sent.values.nbytes > _MAX_PACKED_BYTES and len(sent) > 1:
            half = len(sent) // 2
            self._send(sent.slice(0, half))
            self._send(sent.slice(half, len(sent)))
            return
        packed = _pack_sets(sent.keys, sent.values, sent.pxat, nx=sent.kind != "replace")
        with translate_redis_errors(self.endpoint):
            if self._conn is None:
                self._conn = self.client.connection_pool.get_connection()
                self._replies = _LineReplies()
            try:
                self._conn.send_packed_command([packed], check_health=False)
            except BaseException:
                self._abandon()
                raise
        self._inflight.append(sent)

    def _collect(self) -> None:
        """Read the replies of the oldest batch in flight and count them."""
        sent = self._inflight.popleft()
        with translate_redis_errors(self.endpoint):
            try:
                lines = self._replies.take(self._conn._sock, len(sent))  # noqa: SLF001 - redis-py's open socket
            except BaseException:  # a reset, a timeout (as redis-py's errors), Ctrl-C
                self._abandon()
                raise
        counts = self._counts
        if lines is None:  # all +OK
            _count_sets(counts, sent.kind, len(sent))
            return
        ok = np.array([line == b"+OK" for line in lines])
        nil = np.array([line in _NILS for line in lines]) if sent.kind != "replace" else np.zeros(len(lines), bool)
        moved = np.zeros(len(lines), bool)
        if self.redirected is not None:  # a cluster node: MOVED/ASK rows go back to the ClusterSink
            moved = np.array([line.startswith((b"-MOVED ", b"-ASK ")) for line in lines])
            if moved.any():  # not errors: counted once the ClusterSink has written them elsewhere
                rows = np.flatnonzero(moved)
                self.redirected.append((sent.take(rows, sent.kind), [lines[i] for i in rows]))
        bad = np.flatnonzero(~(ok | nil | moved))
        if len(bad):
            self._abandon()
            i = int(bad[0])
            text = lines[i].decode(errors="replace")
            raise _refused(self.endpoint, sent.keys[i].as_py(), "string", text)
        _count_sets(counts, sent.kind, int(ok.sum()))
        if not nil.any():
            return
        if sent.kind == "nx":
            counts.skipped_existing += int(nil.sum())
        else:  # the keys that exist: written again without NX, counted when their replies come
            self._send(sent.take(np.flatnonzero(nil)))

    def write_asking(self, sent: _SentSets) -> SinkCounts:
        """Write SETs another node answered with ASK (their slot is moving here): each preceded
        by ASKING, as the cluster asks; NX and the counting as `write_strings`. Rows answered
        MOVED or ASK again go back on `redirected`."""
        nx = sent.kind != "replace"
        keys, values, pxat = sent.keys.to_pylist(), sent.values.to_pylist(), sent.pxat.to_pylist()
        packed = b"".join(resp.pack([b"ASKING"]) + resp.pack([b"SET", key, value or b"",
                                                               *((b"PXAT", b"%d" % at) if at is not None else ()),
                                                               *((b"NX",) if nx else ())])
                          for key, value, at in zip(keys, values, pxat))
        replies = self._execute(packed, 2 * len(keys))[1::2]
        counts = SinkCounts()
        again, existing = [], []
        for i, reply in enumerate(replies):
            if isinstance(reply, hiredis.ReplyError):
                if str(reply).startswith(("MOVED ", "ASK ")) and self.redirected is not None:
                    again.append(i)
                    continue
                raise _refused(self.endpoint, keys[i], "string", str(reply))
            if reply is None:
                existing.append(i)
            else:
                _count_sets(counts, sent.kind, 1)
        if again:
            rows = np.array(again)
            self.redirected.append((sent.take(rows, sent.kind), [b"-" + str(replies[i]).encode() for i in again]))
        if existing and sent.kind == "nx":
            counts.skipped_existing += len(existing)
        elif existing:
            counts.add(self.write_asking(sent.take(np.array(existing))))
        return counts

    def _abandon(self) -> None:
        """After an error the connection may hold unread replies: drop it and what was in flight."""
        self._inflight.clear()
        if self._conn is not None:
            self._conn.disconnect()
            self.client.connection_pool.release(self._conn)
            self._conn = None

    # -- writes -------------------------------------------------------------------------------

    def write_items(self, items: Sequence[WriteItem], exists: Sequence[bool], replace: bool) -> SinkCounts:
        """Write `items`; `exists` is what a probe just saw. With `replace` False, keys that
        exist are left alone (counted as skipped), also when they appear between probe and write."""
        counts = SinkCounts()
        todo = []
        for item, present in zip(items, exists):
            if present and not replace:
                counts.skipped_existing += 1
            else:
                todo.append((item, present))
        if not todo:
            return counts
        commands: list[bytes] = []
        plan: list[tuple[WriteItem, bool, str, int]] = []  # item, present, kind, replies
        for item, present in todo:
            if item.record.dump is not None:
                args = [b"RESTORE", item.key, b"%d" % (item.pxat or 0), item.record.dump, b"ABSTTL"]
                if replace:
                    args.append(b"REPLACE")
                commands.append(resp.pack(args))
                plan.append((item, present, "restore", 1))
            else:
                packed, n = _typed_write(item, nx=not replace)
                commands.append(packed)
                plan.append((item, present, "typed", n))
        replies = self._execute(b"".join(commands), sum(p[3] for p in plan))
        fallbacks: list[tuple[WriteItem, bool]] = []
        pos = 0
        for item, present, kind, n in plan:
            got = replies[pos : pos + n]
            pos += n
            if kind == "restore":
                reply = got[0]
                if isinstance(reply, hiredis.ReplyError):
                    text = str(reply)
                    if text.startswith("BUSYKEY"):
                        counts.skipped_existing += 1
                        continue
                    if any(marker in text for marker in REFUSED_PAYLOAD):
                        counts.dump_fallbacks += 1
                        fallbacks.append((item, present))
                        continue
                    raise _refused(self.endpoint, item.key, item.record.type, text)
                counts.dump_restored += 1
                _count_written(counts, present)
            else:
                if self._typed_done(item, got, counts):
                    counts.typed_writes += 1
                    _count_written(counts, present)
        if fallbacks:
            commands = []
            plan2 = []
            for item, present in fallbacks:
                packed, n = _typed_write(item, nx=not replace)
                commands.append(packed)
                plan2.append((item, present, n))
            replies = self._execute(b"".join(commands), sum(p[2] for p in plan2))
            pos = 0
            for item, present, n in plan2:
                got = replies[pos : pos + n]
                pos += n
                if self._typed_done(item, got, counts):
                    counts.typed_writes += 1
                    _count_written(counts, present)
        return counts

    def _typed_done(self, item: WriteItem, replies: list, counts: SinkCounts) -> bool:
        """True when the typed write took effect; False when NX found the key (skipped)."""
        if len(replies) == 1:  # SET [NX] or the create-if-absent script
            reply = replies[0]
            if isinstance(reply, hiredis.ReplyError):
                raise _refused(self.endpoint, item.key, item.record.type, str(reply))
            if reply is None or reply == 0:  # NX found the key: someone else's, kept
                counts.skipped_existing += 1
                return False
            return True
        for reply in replies[:-1]:  # MULTI +OK, +QUEUED ...
            if isinstance(reply, hiredis.ReplyError):
                raise _refused(self.endpoint, item.key, item.record.type, str(reply))
        result = replies[-1]
        if isinstance(result, hiredis.ReplyError):
            raise _refused(self.endpoint, item.key, item.record.type, str(result))
        if result is None:
            raise _refused(self.endpoint, item.key, item.record.type, "the transaction was aborted")
        for reply in result:
            if isinstance(reply, hiredis.ReplyError):
                raise _refused(self.endpoint, item.key, item.record.type, str(reply))
        return True


@dataclass
class _SentSets:
    """A batch of SETs sent; `kind`: "nx" (existing keys kept), "nx_then_replace" (existing
    keys sent again as "replace"), "replace" (no NX: they exist)."""

    keys: pa.Array
    values: pa.Array
    pxat: pa.Array
    kind: str

    def __len__(self) -> int:
        return len(self.keys)

    def slice(self, start: int, stop: int) -> _SentSets:
        return _SentSets(self.keys[start:stop], self.values[start:stop], self.pxat[start:stop], self.kind)

    def take(self, rows: np.ndarray, kind: str = "replace") -> _SentSets:
        """Some rows: by default those that exist, to be written again without NX."""
        return _SentSets(self.keys.take(rows), self.values.take(rows), self.pxat.take(rows), kind)


class _LineReplies:
    """The replies to pipelined SETs, read from the socket. Each is one line (+OK, a nil, or an
    error), so counting newlines tells when a batch's replies are all in."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.lines = 0  # complete lines in buf
        self._received = resp.new_buffer()

    def take(self, sock: Any, n: int) -> list[bytes] | None:
        """The next `n` replies: None when all are +OK (the common case), else each line."""
        while self.lines < n:
            chunk = resp.receive(sock, self._received)
            self.buf += chunk
            self.lines += self.buf.count(b"\n", len(self.buf) - len(chunk))
        self.lines -= n
        if self.buf.startswith(_OK * n):
            del self.buf[: len(_OK) * n]
            return None
        *lines, rest = self.buf.split(b"\r\n", n)
        self.buf = bytearray(rest)
        return [bytes(line) for line in lines]


@functools.lru_cache(maxsize=64)
def _lit(data: bytes) -> pa.Scalar:
    """A constant of the RESP being built (made once: a scalar costs ~50 µs to make)."""
    return pa.scalar(data, pa.binary())


def _decimal(numbers: pa.Array) -> pa.Array:
    """Integers as their decimal digits (binary, so they join with keys and values)."""
    return pc.cast(pc.cast(numbers, pa.string()), pa.binary())


def _pack_sets(keys: pa.Array, values: pa.Array, pxat: pa.Array, *, nx: bool) -> memoryview:
    """RESP of `SET key value [PXAT t] [NX]` for every row, built in Arrow compute."""
    if values.null_count:
        values = pc.fill_null(values, _lit(b""))
    argc = 3 + nx
    with_ttl, without_ttl = _lit(b"*%d\r\n$3\r\nSET\r\n$" % (argc + 2)), _lit(b"*%d\r\n$3\r\nSET\r\n$" % argc)
    head = pc.if_else(pc.is_valid(pxat), with_ttl, without_ttl) if pxat.null_count else with_ttl
    digits = _decimal(pxat)
    crlf = _lit(b"\r\n")
    ttl = pc.binary_join_element_wise(_lit(b"$4\r\nPXAT\r\n$"), _decimal(pc.binary_length(digits)), crlf, digits,
                                      crlf, _lit(b""))  # null where there is no expiry
    joined = pc.binary_join_element_wise(
        head, _decimal(pc.binary_length(keys)), crlf, keys, _lit(b"\r\n$"), _decimal(pc.binary_length(values)),
        crlf, values, crlf, ttl, _lit(b"$2\r\nNX\r\n" if nx else b""), _lit(b""),
        null_handling="replace", null_replacement="",
    )
    _, offsets, data = joined.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int32)
    return memoryview(data)[offsets[joined.offset] : offsets[joined.offset + len(joined)]]


def _count_sets(counts: SinkCounts, kind: str, ok: int) -> None:
    counts.written += ok
    counts.typed_writes += ok
    if kind == "replace":
        counts.overwritten += ok
    else:
        counts.created += ok


def _count_written(counts: SinkCounts, present: bool) -> None:
    counts.written += 1
    if present:
        counts.overwritten += 1
    else:
        counts.created += 1


def _refused(endpoint: RedisEndpoint, key: bytes, rtype: str, text: str) -> Exception:
    """The error for a write the target answered with `text`: a cluster that moved the key's
    slot (MOVED, ASK) or is reconfiguring, and a failover (or a load: READONLY, LOADING, ...),
    are transient (the retry finds the new owner or master), the rest a refusal."""
    if text.lstrip("-").startswith(CLUSTER_REDIRECTIONS):  # a raw reply line keeps its "-"
        return ClusterChanged(f"{endpoint.display_url} no longer serves the slot of {redact_key(key)} ({text}); "
                              "the cluster is being resharded, so the write is retried with its new layout.")
    if is_transient_reply(text):
        return ServerUnavailable(f"{endpoint.display_url} could not take the write of {redact_key(key)} ({rtype}) now: "
                                 f"{text}; a failover may be under way.")
    return WriteRefused(f"{endpoint.display_url} refused the write of {redact_key(key)} ({rtype}): {text}.")


def _raise_errors(replies: list, what: str, endpoint: RedisEndpoint) -> None:
    for reply in replies:
        if isinstance(reply, hiredis.ReplyError):
            if str(reply).startswith(CLUSTER_REDIRECTIONS):
                raise ClusterChanged(f"{endpoint.display_url} answered {what} with {str(reply)[:80]}: the cluster is "
                                     "being resharded, so the step is retried with its new layout.")
            raise redis.exceptions.ResponseError(f"{what}: {reply}")


def _typed_write(item: WriteItem, *, nx: bool) -> tuple[bytes, int]:
    """The packed commands for one typed write and how many replies they produce."""
    rec = item.record
    key = item.key
    if rec.type == "string":
        value = rec.value if rec.value is not None else b""
        args = [b"SET", key, value]
        if item.pxat is not None:
            args += [b"PXAT", b"%d" % item.pxat]
        if nx:
            args.append(b"NX")
        return resp.pack(args), 1
    if nx:
        return _create_if_absent(item), 1
    body: list[list[bytes]] = [[b"DEL", key]]
    if rec.type == "hash":
        pairs = [x for f, v in (rec.fields or ()) for x in (f, v)]
        body.append([b"HSET", key, *pairs])
    elif rec.type == "list":
        body.append([b"RPUSH", key, *(rec.items or ())])
    elif rec.type == "set":
        body.append([b"SADD", key, *(rec.items or ())])
    elif rec.type == "zset":
        body.append([b"ZADD", key, *[x for m, s in (rec.members or ()) for x in (repr(float(s)).encode(), m)]])
    elif rec.type == "stream":
        entries = rec.entries or ()
        if entries:
            for entry_id, flat in entries:
                body.append([b"XADD", key, entry_id, *flat])
        else:  # an empty stream (all entries deleted) still exists: create it empty
            body.append([b"XGROUP", b"CREATE", key, _TMP_GROUP, b"$", b"MKSTREAM"])
            body.append([b"XGROUP", b"DESTROY", key, _TMP_GROUP])
    else:
        raise WriteRefused(f"Unsupported Redis type {rec.type!r} in the snapshot.")
    if len(body) == 2 and len(body[1]) == 2:  # an empty collection cannot exist in Redis
        raise WriteRefused(f"The snapshot row for a {rec.type} key has no elements to write.")
    if item.pxat is not None:
        body.append([b"PEXPIREAT", key, b"%d" % item.pxat])
    packed = resp.pack([b"MULTI"]) + b"".join(resp.pack(c) for c in body) + resp.pack([b"EXEC"])
    return packed, len(body) + 2


def _create_if_absent(item: WriteItem) -> bytes:
    """`EVAL _CREATE_IF_ABSENT` for a hash, list, set, sorted set or stream (see the script)."""
    rec = item.record
    if rec.type == "hash":
        elements = [x for f, v in (rec.fields or ()) for x in (f, v)]
    elif rec.type in ("list", "set"):
        elements = list(rec.items or ())
    elif rec.type == "zset":
        elements = [x for m, s in (rec.members or ()) for x in (repr(float(s)).encode(), m)]
    elif rec.type == "stream":
        elements = [x for entry_id, flat in (rec.entries or ()) for x in (entry_id, b"%d" % (len(flat) // 2), *flat)]
    else:
        raise WriteRefused(f"Unsupported Redis type {rec.type!r} in the snapshot.")
    if not elements and rec.type != "stream":  # an empty collection cannot exist in Redis
        raise WriteRefused(f"The snapshot row for a {rec.type} key has no elements to write.")
    expire = b"" if item.pxat is None else b"%d" % item.pxat
    return resp.pack([b"EVAL", _CREATE_IF_ABSENT, b"1", item.key, rec.type.encode(), expire, *elements])


def _plain_strings(batch: pa.RecordBatch) -> np.ndarray:
    """Rows that are strings without a DUMP payload: the columnar SET path."""
    plain = pc.equal(batch.column("type"), "string")
    if "dump" in batch.schema.names:
        plain = pc.and_(plain, pc.is_null(batch.column("dump")))
    return plain.to_numpy(zero_copy_only=False)
