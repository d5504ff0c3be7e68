"""ASP.NET Core distributed session on StackExchange.Redis `RedisCache`.

Hash fields: `absexp` (absolute expiry, .NET ticks or -1), `sldexp` (sliding window, ticks or
-1), `data` (the session blob). The blob is: revision byte 02, 3-byte entry count, 16-byte
session id, then per entry u16 key length, key, u32 value length, value (big-endian). ASP.NET
replaces a blob it cannot read with an empty session, losing the data: corrupt. An absolute
expiry in the past makes the cache report a miss: expired.

`absexp` is `DateTimeOffset.Ticks`, i.e. the writer's local clock time; it equals UTC ticks
only when the writer ran in UTC (the usual container setup). This is assumed.
"""

from __future__ import annotations

from ..record import KeyRecord
from .model import Context, Corrupt, Verdict, expired, stale, type_name, valid

_UNIX_EPOCH_TICKS = 621_355_968_000_000_000  # 0001-01-01 to 1970-01-01 in 100 ns ticks
_TICKS_PER_MS = 10_000
_ID_BYTES = 16


def ticks_to_unix_ms(ticks: int) -> int:
    return (ticks - _UNIX_EPOCH_TICKS) // _TICKS_PER_MS


def check_blob(data: bytes) -> int:
    """Validate a session blob; return its entry count or raise `Corrupt`."""
    if not data.startswith(b"\x02"):
        raise Corrupt("data does not start with serialization revision 02")
    if len(data) < 4 + _ID_BYTES:
        raise Corrupt("data is truncated before the session id")
    count = int.from_bytes(data[1:4], "big")
    pos = 4 + _ID_BYTES
    if count * 6 > len(data) - pos:  # each entry takes at least 2 + 4 bytes: a size budget up front
        raise Corrupt("data is truncated: it declares more entries than it holds")
    for _ in range(count):
        if pos + 2 > len(data):
            raise Corrupt("data is truncated in an entry key length")
        key_len = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2 + key_len
        if pos + 4 > len(data):
            raise Corrupt("data is truncated in an entry key or value length")
        value_len = int.from_bytes(data[pos : pos + 4], "big")
        if value_len > 0x7FFFFFFF:
            raise Corrupt("data has a negative entry length")
        pos += 4 + value_len
        if pos > len(data):
            raise Corrupt("data is truncated in an entry value")
    return count


def _ticks(fields: dict[bytes, bytes], name: bytes) -> int:
    raw = fields.get(name)
    if raw is None:
        return -1  # older writers omit unset expirations
    try:
        if len(raw) > 24:
            raise ValueError
        return int(raw)
    except ValueError:
        raise Corrupt(f"{name.decode()} is not an integer") from None


def judge(record: KeyRecord, ctx: Context) -> Verdict:
    if record.type != "hash":
        raise Corrupt(f"ASP.NET cache entry is a {type_name(record.type)}, expected a hash")
    fields = dict(record.fields or ())
    if b"data" not in fields:
        raise Corrupt("hash has no data field")
    absexp, sldexp = _ticks(fields, b"absexp"), _ticks(fields, b"sldexp")
    check_blob(fields[b"data"])
    if absexp != -1 and ticks_to_unix_ms(absexp) <= ctx.now_ms:
        return expired("absolute expiry (absexp) has passed; the cache reports a miss")
    if record.expire_at_ms is None and (absexp != -1 or sldexp != -1):
        return stale("entry has an expiration but no TTL; nothing will remove it")
    return valid("session blob well formed")
