"""starsessions RedisStore: JSON with `__metadata__{lifetime, created, last_access}`.

starsessions sets a TTL but never compares `created + lifetime` with the clock itself, so a
session past that point still loads: stale, not expired.
"""

from __future__ import annotations

from ..record import KeyRecord
from .model import Context, Corrupt, Verdict, is_number, load_json_object, stale, valid


def judge(record: KeyRecord, ctx: Context) -> Verdict:
    doc = load_json_object(record.value or b"")
    meta = doc.get("__metadata__")
    if meta is None:
        return valid("JSON session without __metadata__; lifetime not judged")
    if not isinstance(meta, dict):
        raise Corrupt("__metadata__ is not an object")
    lifetime, created = meta.get("lifetime"), meta.get("created")
    if not is_number(lifetime) or not is_number(created):
        raise Corrupt("__metadata__ lacks numeric lifetime/created")
    if lifetime > 0 and (created + lifetime) * 1000 <= ctx.now_ms:
        return stale("created + lifetime has passed (starsessions does not enforce it)")
    return valid("JSON session with starsessions metadata")
