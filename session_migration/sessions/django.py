"""Django cache sessions (built-in RedisCache: pickle 5; django-redis: pickle 4, maybe
compressed, or its JSON/msgpack serializers).

The cache backend never checks `_session_expiry`; the TTL does the expiring. A passed
absolute `_session_expiry` (ISO string) therefore means stale. An int `_session_expiry` is
relative to the last save, which the payload does not record, so it cannot be judged.
"""

from __future__ import annotations

from ..record import KeyRecord
from .compression import CompressionError, Unavailable, inflate, sniff
from .model import Context, Corrupt, Verdict, iso_to_ms, stale, try_json_object, valid
from .pickle_walk import PObj, is_pickle
from .serial import headerless_pickle_dict, msgpack_map, pickled_dict


def judge(record: KeyRecord, ctx: Context) -> Verdict:
    raw = record.value or b""
    kind = sniff(raw)
    if kind is not None:
        try:
            raw = inflate(raw, kind)
        except Unavailable:
            return valid(f"{kind}-compressed; content not checked (no {kind} decompressor installed)")
        except CompressionError as exc:
            raise Corrupt(f"{kind} payload does not decompress: {exc}") from None
    expiry: object
    if is_pickle(raw):
        expiry, fmt = pickled_dict(raw).get("_session_expiry"), "pickle"
    elif raw[:1] == b"{" and (doc := try_json_object(raw)) is not None:
        expiry, fmt = doc.get("_session_expiry"), "JSON"
    elif (packed := msgpack_map(raw)) is not None:
        expiry, fmt = packed.get("_session_expiry"), "msgpack"
    elif (old := headerless_pickle_dict(raw)) is not None:
        expiry, fmt = old.get("_session_expiry"), "protocol 0/1 pickle"
    else:
        raise Corrupt("not a pickle (nor django-redis JSON/msgpack)")
    how = f"{kind}-compressed {fmt}" if kind else fmt
    if expiry is None:
        return valid(f"{how} session dict")
    if isinstance(expiry, (int, float)):  # seconds after the last save
        return valid(f"{how} session dict; relative _session_expiry is enforced by the TTL")
    if isinstance(expiry, str):
        try:
            expiry_ms = iso_to_ms(expiry)
        except ValueError:
            raise Corrupt("_session_expiry is not an ISO-8601 time") from None
        if expiry_ms <= ctx.now_ms:
            return stale("_session_expiry has passed (Django's cache backend does not enforce it)")
        return valid(f"{how} session dict; _session_expiry still ahead")
    if isinstance(expiry, PObj):
        return valid(f"{how} session dict; _session_expiry is a pickled {expiry.name}, not judged")
    return valid(f"{how} session dict; unrecognised _session_expiry not judged")
