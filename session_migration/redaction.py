"""Session ids are bearer credentials: this is the only way a key is ever shown."""

from __future__ import annotations

import hashlib

# Bytes of the id itself that are shown: enough to tell keys apart by eye, too few to replay.
ID_CHARS = 4
_PREFIX_SPAN = 48


def _prefix_end(raw: bytes) -> int:
    """Where the store's prefix ends and the id begins.

    Ids may contain `-`, `_` and `.` (base64url, UUIDs) but not `:`, so the prefix runs to the
    last `:` (`sess:`, `rack:session:2::`, `spring:session:sessions:`); keys without one
    (`starsessions.`, `AIOHTTP_...`, `session_`) end their prefix at the first `_` or `.`;
    anything else (a bare GUID) shows no prefix at all.
    """
    head = raw[:_PREFIX_SPAN]
    colon = head.rfind(b":")
    if colon >= 0:
        return colon + 1
    cuts = [i for i in (head.find(b"_"), head.find(b".")) if i >= 0]
    return min(cuts) + 1 if cuts else 0


def redact_key(key: bytes | str) -> str:
    """A readable prefix plus a hash, e.g. ``sess:Jv9S…#3f2a9c1b``.

    Never more than half of the key is shown; the hash lets an operator match the same key
    across reports and logs without ever seeing the whole id.
    """
    raw = key.encode() if isinstance(key, str) else bytes(key)
    cut = min(_prefix_end(raw) + ID_CHARS, len(raw) // 2)
    shown = raw[:cut].decode("utf-8", "backslashreplace")
    digest = hashlib.sha256(raw).hexdigest()[:8]
    return f"{shown}…#{digest}"
