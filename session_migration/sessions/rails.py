"""Rails session stores: redis-actionpack (`rack:session:`) and ActionDispatch CacheStore on
RedisCacheStore (`_session_id:`).

redis-actionpack writes `Marshal.dump(session_hash)`; without `expire_after` it sets no TTL,
so such keys live forever: stale. CacheStore wraps the session in a cache entry whose own
expiry Rails checks on read (an entry past it is a miss: expired). Entry formats:
6.1 `Marshal(ActiveSupport::Cache::Entry)`, 7.0 `00|01 + Marshal([value, expires_at, version])`
(01 = deflated), 7.1+ `00 11` + type + float64 expires_at + int32 version length + payload.
"""

from __future__ import annotations

import struct

from ..record import KeyRecord
from .compression import CompressionError, inflate
from .model import Context, Corrupt, Verdict, expired, is_number, try_json_object, valid
from .ruby_marshal import MarshalError, MHash, MObject, load_structure

_ENTRY = "ActiveSupport::Cache::Entry"
_V71_HEADER = struct.Struct("<2sBdi")  # signature, type, expires_at, version length
_V71_COMPRESSED = 0x80
_V71_TYPES = {0x01, 0x02, 0x03, 0x04}  # object dump, UTF-8 / binary / ASCII string


def _marshal(data: bytes, what: str) -> object:
    try:
        return load_structure(data)
    except MarshalError as exc:
        raise Corrupt(f"{what} is not well-formed Ruby Marshal", exc) from None


def judge_actionpack(record: KeyRecord, ctx: Context) -> Verdict:
    value = record.value or b""
    if not value.startswith(b"\x04\x08") and value[:1] == b"{":
        if try_json_object(value) is not None:
            return valid("JSON session hash (redis-store JSON serializer)")
    if not isinstance(_marshal(value, "session"), MHash):
        raise Corrupt("Marshal value is not a session hash")
    return valid("Marshal'd session hash")


def judge_cachestore(record: KeyRecord, ctx: Context) -> Verdict:
    value = record.value or b""
    if value.startswith(b"\x04\x08"):
        entry = _marshal(value, "cache entry")
        if not isinstance(entry, MObject) or entry.class_name != _ENTRY:
            raise Corrupt("Marshal value is not an ActiveSupport::Cache::Entry")
        created, expires_in = entry.ivars.get("@created_at"), entry.ivars.get("@expires_in")
        expires_at = created + expires_in if is_number(created) and is_number(expires_in) else None
        return _entry_verdict(expires_at, ctx, "Rails 6.1 cache entry")
    if value.startswith(b"\x00\x11"):
        return _judge_v71(value, ctx)
    if value[:1] in (b"\x00", b"\x01"):
        return _judge_v70(value, ctx)
    raise Corrupt("not a Rails cache entry (6.1, 7.0 or 7.1 format)")


def _judge_v70(value: bytes, ctx: Context) -> Verdict:
    body = value[1:]
    if value[:1] == b"\x01":
        try:
            body = inflate(body, "zlib")
        except CompressionError as exc:
            raise Corrupt(f"7.0 cache entry does not inflate: {exc}") from None
    packed = _marshal(body, "7.0 cache entry")
    if not isinstance(packed, list) or not 1 <= len(packed) <= 3:
        raise Corrupt("7.0 cache entry is not [value, expires_at, version]")
    expires_at = packed[1] if len(packed) > 1 else None
    return _entry_verdict(expires_at if is_number(expires_at) else None, ctx, "Rails 7.0 cache entry")


def _judge_v71(value: bytes, ctx: Context) -> Verdict:
    if len(value) < _V71_HEADER.size:
        raise Corrupt("7.1 cache entry header is truncated")
    _sig, kind, expires_at, version_len = _V71_HEADER.unpack_from(value)
    if kind & ~_V71_COMPRESSED not in _V71_TYPES:
        raise Corrupt("7.1 cache entry has an unknown payload type")
    if version_len < -1 or _V71_HEADER.size + max(version_len, 0) > len(value):
        raise Corrupt("7.1 cache entry version length exceeds the data")
    payload = value[_V71_HEADER.size + max(version_len, 0) :]
    if kind & _V71_COMPRESSED:
        try:
            payload = inflate(payload, "zlib")
        except CompressionError as exc:
            raise Corrupt(f"7.1 cache entry does not inflate: {exc}") from None
    if kind & ~_V71_COMPRESSED == 0x01 and payload.startswith(b"\x04\x08"):
        _marshal(payload, "7.1 cache entry payload")  # message_pack payloads are not checked
    return _entry_verdict(expires_at if expires_at >= 0 else None, ctx, "Rails 7.1 cache entry")


def _entry_verdict(expires_at_s: float | None, ctx: Context, what: str) -> Verdict:
    if expires_at_s is not None and expires_at_s * 1000 <= ctx.now_ms:
        return expired("cache entry expiry has passed; Rails treats it as a miss")
    return valid(what)
