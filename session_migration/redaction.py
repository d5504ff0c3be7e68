"""Session ids are bearer credentials: this is the only way a key is ever shown."""

from __future__ import annotations

import hashlib
import re

# The readable part: the store's prefix up to its last separator (at most 40 bytes) ...
_PREFIX = re.compile(rb"^.{0,40}[:_.\-]")
# ... followed by this many bytes of the id itself, too few to replay the session.
ID_CHARS = 4


def redact_key(key: bytes | str) -> str:
    """A readable prefix plus a hash, e.g. ``sess:Jv9S…#3f2a9c1b``.

    The prefix shows which store a key belongs to; the hash lets an operator match the same
    key across reports and logs without ever seeing the whole id.
    """
    raw = key.encode() if isinstance(key, str) else bytes(key)
    match = _PREFIX.match(raw)
    cut = (match.end() if match else 0) + ID_CHARS
    shown = raw[:cut].decode("utf-8", "backslashreplace")
    digest = hashlib.sha256(raw).hexdigest()[:8]
    return f"{shown}…#{digest}"
