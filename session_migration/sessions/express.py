"""express-session + connect-redis: JSON session with a `cookie` object; TTL governs expiry.

connect-redis never reads `cookie.expires`, so a passed expiry only matters when the key has
no TTL (connect-redis `disableTTL`): then nothing will ever remove it -> stale.
"""

from __future__ import annotations

from ..record import KeyRecord
from .model import Context, Corrupt, Verdict, iso_to_ms, load_json_object, stale, valid


def judge(record: KeyRecord, ctx: Context) -> Verdict:
    doc = load_json_object(record.value or b"")
    cookie = doc.get("cookie")
    if not isinstance(cookie, dict):
        raise Corrupt("JSON session has no cookie object")
    expires = cookie.get("expires")
    expires_ms = None
    if expires is not None:
        if not isinstance(expires, str):
            raise Corrupt("cookie.expires is not a string")
        try:
            expires_ms = iso_to_ms(expires)
        except ValueError:
            raise Corrupt("cookie.expires is not an ISO-8601 time") from None
    if record.expire_at_ms is None and expires_ms is not None and expires_ms <= ctx.now_ms:
        return stale("cookie.expires has passed and the key has no TTL, so nothing removes it")
    return valid("JSON session with a cookie object")
