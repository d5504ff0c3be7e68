"""aiohttp-session RedisStorage: UTF-8 JSON `{"created": epoch s, "session": {...}}`.

aiohttp-session discards a session on load when `now - created > max_age`, but max_age lives
in application code, not in Redis. The operator may pass it as `max_age_ms["aiohttp"]`;
without it only the TTL can be judged (no TTL simply means max_age=None: never expires).
"""

from __future__ import annotations

from ..record import KeyRecord
from .model import Context, Corrupt, Verdict, expired, is_number, load_json_object, valid


def judge(record: KeyRecord, ctx: Context) -> Verdict:
    doc = load_json_object(record.value or b"")
    created = doc.get("created")
    session = doc.get("session")
    if session is not None and not isinstance(session, dict):
        raise Corrupt("session member is not an object")
    if created is None:
        return valid("JSON session without a created time; age not judged")
    if not is_number(created):
        raise Corrupt("created is not a number")
    max_age_ms = ctx.max_age_ms.get("aiohttp")
    if max_age_ms is not None and ctx.now_ms - created * 1000 > max_age_ms:
        return expired("older than the configured max_age; aiohttp-session would discard it")
    if max_age_ms is None:
        return valid("JSON session; max_age unknown so only the TTL is judged")
    return valid("JSON session younger than max_age")
