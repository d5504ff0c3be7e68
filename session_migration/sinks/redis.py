"""Write record rows into a live Redis/Valkey server: the restore side of the pipeline.

Fast path: a row with a `dump` payload becomes one pipelined
`RESTORE key <pxat|0> payload ABSTTL [REPLACE]`. A target that refuses the payload (an older
server: "DUMP payload version or checksum are wrong", or "Bad data format") gets a typed write
for that key instead, counted in `dump_fallbacks`; the run goes on.

Typed writes: strings `SET key value [PXAT t] [NX]`; hashes, lists, sets, sorted sets and
streams as `MULTI DEL <typed write> [PEXPIREAT] EXEC`, one transaction per key so the key is
never seen half-written. Every write sets the whole key, so writing it again is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import hiredis
import redis

from ..endpoints import RedisEndpoint, translate_redis_errors
from ..errors import TerminalError
from ..record import KeyRecord
from ..sources import resp
from ..sources.redis import ServerInfo, server_info

REFUSED_PAYLOAD = ("DUMP payload version or checksum are wrong", "Bad data format")
_TMP_GROUP = b"session-migration-restore-tmp"


class WriteRefused(TerminalError):
    """The target answered a write with an error that retrying would not change."""


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


SINK_TOTALS = tuple(f.name for f in fields(SinkCounts) if f.name != "refused_examples")


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
    """One database of one target server. Holds a connection; not thread-safe."""

    def __init__(self, endpoint: RedisEndpoint, *, client: redis.Redis | None = None):
        self.endpoint = endpoint
        self.client = client or endpoint.connect()
        with translate_redis_errors(endpoint):
            self.info: ServerInfo = server_info(self.client)

    def close(self) -> None:
        self.client.close()

    def _execute(self, packed: bytes, replies: int) -> list:
        with translate_redis_errors(self.endpoint):
            return resp.execute(self.client, packed, replies)

    # -- reads used by planning ---------------------------------------------------------------

    def probe(self, keys: Sequence[bytes]) -> tuple[int, list[bool]]:
        """Server time (ms) and, for each key, whether it exists: one round trip."""
        packed = resp.pack([b"TIME"]) + resp.pack_per_key(b"EXISTS", keys)
        replies = self._execute(packed, len(keys) + 1)
        _raise_errors(replies, "TIME/EXISTS")
        sec, usec = replies[0]
        return int(sec) * 1000 + int(usec) // 1000, [bool(r) for r in replies[1:]]

    def now_ms(self) -> int:
        return self.probe([])[0]

    # -- writes -------------------------------------------------------------------------------

    def write(self, items: Sequence[WriteItem], exists: Sequence[bool], replace: bool) -> SinkCounts:
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
                    raise WriteRefused(_refusal(self.endpoint, item, text))
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
        if item.record.type == "string":
            reply = replies[0]
            if isinstance(reply, hiredis.ReplyError):
                raise WriteRefused(_refusal(self.endpoint, item, str(reply)))
            if reply is None:  # SET NX on a key that exists
                counts.skipped_existing += 1
                return False
            return True
        for reply in replies[:-1]:  # MULTI +OK, +QUEUED ...
            if isinstance(reply, hiredis.ReplyError):
                raise WriteRefused(_refusal(self.endpoint, item, str(reply)))
        result = replies[-1]
        if isinstance(result, hiredis.ReplyError):
            raise WriteRefused(_refusal(self.endpoint, item, str(result)))
        if result is None:
            raise WriteRefused(_refusal(self.endpoint, item, "the transaction was aborted"))
        for reply in result:
            if isinstance(reply, hiredis.ReplyError):
                raise WriteRefused(_refusal(self.endpoint, item, str(reply)))
        return True


def _count_written(counts: SinkCounts, present: bool) -> None:
    counts.written += 1
    if present:
        counts.overwritten += 1
    else:
        counts.created += 1


def _refusal(endpoint: RedisEndpoint, item: WriteItem, text: str) -> str:
    from ..redaction import redact_key

    return f"{endpoint.display_url} refused the write of {redact_key(item.key)} ({item.record.type}): {text}."


def _raise_errors(replies: list, what: str) -> None:
    for reply in replies:
        if isinstance(reply, hiredis.ReplyError):
            raise redis.exceptions.ResponseError(f"{what}: {reply}")


def _typed_write(item: WriteItem, *, nx: bool) -> tuple[bytes, int]:
    """The packed commands for one typed write and how many replies they produce."""
    rec = item.record
    key = item.key
    if rec.type == "string":
        value = rec.value if rec.value is not None else b""
        if item.pxat is not None and not nx:  # the common case, packed in one step
            pxat = b"%d" % item.pxat
            return (b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$4\r\nPXAT\r\n$%d\r\n%s\r\n"
                    % (len(key), key, len(value), value, len(pxat), pxat)), 1
        args = [b"SET", key, value]
        if item.pxat is not None:
            args += [b"PXAT", b"%d" % item.pxat]
        if nx:
            args.append(b"NX")
        return resp.pack(args), 1
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
