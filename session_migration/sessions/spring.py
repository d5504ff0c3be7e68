"""Spring Session Data Redis: the session hash plus the indexed repository's companion keys.

Session hash `<ns>:sessions:<id>`: `creationTime` (ms), `lastAccessedTime` (ms),
`maxInactiveInterval` (s). Values are Java-serialized by Spring's default
`JdkSerializationRedisSerializer`, or plain numbers with string/JSON serializers; both are
read. Spring refuses a session when now - lastAccessed >= maxInactive (negative: never), and
the indexed repository keeps the hash 5 minutes past that, so such a hash is expired.

Companions (indexed repository): `<ns>:sessions:expires:<id>` (empty string marker),
`<ns>:expirations:<minute ms>` (set of `expires:<id>`), `<ns>:sessions:expirations`
(sorted-set expiration store) and `<ns>:index:<index name>:<value>` (set of ids).
"""

from __future__ import annotations

import json

from ..record import KeyRecord
from . import java_ser
from .model import Context, Corrupt, Verdict, expired, stale, type_name, unknown, valid

_REQUIRED = (b"creationTime", b"lastAccessedTime", b"maxInactiveInterval")


def judge(record: KeyRecord, ctx: Context) -> Verdict:
    key = record.key
    at = key.rfind(b":sessions:")
    if at >= 0:
        rest = key[at + len(b":sessions:") :]
        if rest.startswith(b"expires:"):
            return _expect_type(record, "string", "session expiry marker")
        if rest == b"expirations":
            return _expect_type(record, "zset", "expiration index (sorted set)")
        return _session(record, ctx)
    at = key.rfind(b":expirations:")
    if at >= 0:
        if not key[at + len(b":expirations:") :].isdigit():
            raise Corrupt("expirations bucket key does not end in a minute timestamp")
        _expect_type(record, "set", "expirations bucket")
        for member in record.items or ():  # sets are captured in `items`
            text = java_ser.string(member) if java_ser.is_java(member) else member.decode("utf-8", "replace")
            if text is None or not text.startswith("expires:"):
                raise Corrupt("expirations bucket holds a member that is not expires:<id>")
        return valid("Spring companion: expirations bucket")
    if b":index:" in key:
        return _expect_type(record, "set", "principal/attribute index")
    return unknown("unrecognised Spring Session key shape")


def _expect_type(record: KeyRecord, redis_type: str, kind: str) -> Verdict:
    if record.type != redis_type:
        raise Corrupt(f"Spring {kind} is a {type_name(record.type)}, expected a {redis_type}")
    return valid(f"Spring companion: {kind}")


def _number(raw: bytes) -> int | None:
    """Decode one bookkeeping field: Java-boxed Long/Integer, plain digits or JSON."""
    if java_ser.is_java(raw):
        return java_ser.boxed_number(raw)
    if len(raw) > 64:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if isinstance(doc, list) and len(doc) == 2 and isinstance(doc[0], str):
        doc = doc[1]  # Jackson default typing: ["java.lang.Long", 123]
    if isinstance(doc, bool) or not isinstance(doc, (int, float)):
        return None
    return int(doc)


def _session(record: KeyRecord, ctx: Context) -> Verdict:
    if record.type != "hash":
        raise Corrupt(f"Spring session key is a {type_name(record.type)}, expected a hash")
    fields = dict(record.fields or ())
    missing = [f.decode() for f in _REQUIRED if f not in fields]
    if missing:
        raise Corrupt(f"session hash lacks {', '.join(missing)} (partial save)")
    values = {f: _number(fields[f]) for f in _REQUIRED}
    bad = [f.decode() for f, v in values.items() if v is None]
    if bad:
        raise Corrupt(f"session hash has an unreadable {', '.join(bad)}")
    last, max_inactive = values[b"lastAccessedTime"], values[b"maxInactiveInterval"]
    assert last is not None and max_inactive is not None
    if max_inactive < 0:
        return valid("session hash that never expires (negative maxInactiveInterval)")
    if ctx.now_ms - last >= max_inactive * 1000:
        return expired("maxInactiveInterval has elapsed since lastAccessedTime; Spring refuses it")
    if record.expire_at_ms is None:
        return stale("session hash without a TTL; Spring always sets one")
    return valid("session hash within maxInactiveInterval")
