"""What untrusted text may look like when it is shown: keys redacted, control characters and
Markdown made inert. Session ids are bearer credentials: `redact_key` is the only way a key
is ever shown.

    redact_key(b"sess:0123456789abcdef0123456789abcdef:csrf")   # 'sess:0123…#3f2a9c1b'
    safe_text("\x1b[2Jhello")                                  # '\\x1b[2Jhello'
    markdown_escape("<img src=x>")                             # '&lt;img src=x&gt;'

`safe_text` is for anything from outside (keys, payload details, manifest fields, server
replies) on its way to a terminal, a log line or a report; `markdown_escape` additionally
keeps it from becoming Markdown or HTML markup.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re

from .sessions.detect import store_prefix  # the stores' own key prefixes, one regex

# Characters of the id itself that are shown: enough to tell keys apart by eye, too few to replay.
ID_CHARS = 4
# An unknown layout shows its text up to the first separator, if that is this short.
UNKNOWN_PREFIX_CHARS = 16
REDACTION_KEY_ENV = "SESSION_MIGRATION_REDACTION_KEY"
_DEFAULT_HASH_KEY = b"redis-session-migration redaction v1"
_SEPARATORS = re.compile(rb"[:_.\-/|]")
_GUID_TAIL = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DJANGO_MARK = b":django.contrib.sessions.cache"
_RACK_VERSION = b"2::"  # Rack's private session ids: "2::<sha256 of the public id>"

# C0 and C1 controls, DEL, line/paragraph separators and bidirectional overrides: anything
# that can move a terminal's cursor, start an escape sequence, split a log line or reorder text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_MARKDOWN = re.compile(r"[\\`*_\[\]()|~#!{}<>&]")
_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


def _escape_char(m: re.Match[str]) -> str:
    code = ord(m.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: object, limit: int | None = None) -> str:
    """`text` with every control character (ESC, CR, LF, BEL, C1, bidi overrides...) written as
    a visible `\\xNN`/`\\uNNNN` escape, cut to `limit` characters (ending in `…`) if given.
    Safe to print to a terminal or write into one log line."""
    out = text if isinstance(text, str) else str(text)
    if not (out.isascii() and out.isprintable()):  # the usual text needs no look at each character
        out = _UNSAFE.sub(_escape_char, out)
    if limit is not None and len(out) > limit:
        out = out[: max(0, limit - 1)] + "…"
    return out


def markdown_escape(text: object) -> str:
    """`safe_text`, then Markdown punctuation backslash-escaped and `< > &` as entities, so
    the text renders as itself: no markup, no raw HTML, no table cell boundaries."""
    return _MARKDOWN.sub(lambda m: _ENTITIES.get(m.group(0)) or "\\" + m.group(0), safe_text(text))


def id_start(key: bytes) -> int | None:
    """Where the session id begins in `key`, by the layout of the store that owns the key;
    None when no store's layout fits."""
    known = store_prefix(key)
    if known is not None:
        store, prefix = known
        start = len(prefix)
        if store in ("rails-actionpack", "rails-cachestore") and key.startswith(_RACK_VERSION, start):
            return start + len(_RACK_VERSION)
        if store == "spring":
            return _spring_id_start(key) or start
        return start
    at = key.find(_DJANGO_MARK)
    if at >= 0:  # <KEY_PREFIX>:<version>:django.contrib.sessions.cache[d_db]<id>
        start = at + len(_DJANGO_MARK)
        return start + 4 if key.startswith(b"d_db", start) else start
    spring = _spring_id_start(key)  # a custom namespace: <ns>:sessions:<id>
    if spring is not None:
        return spring
    if len(key) >= 36 and _GUID_TAIL.fullmatch(key, len(key) - 36):  # ASP.NET: <InstanceName><GUID>
        return len(key) - 36
    return None


def _spring_id_start(key: bytes) -> int | None:
    at = key.rfind(b":sessions:")
    if at < 0:
        for marker in (b":expirations:", b":index:"):
            found = key.rfind(marker)
            if found >= 0:
                return found + len(marker)
        return None
    start = at + len(b":sessions:")
    return start + len(b"expires:") if key.startswith(b"expires:", start) else start


def _shown_bytes(raw: bytes) -> bytes:
    """The part of the key that may be shown: its store prefix and `ID_CHARS` of the id (never
    more than a quarter of the id); for an unknown layout only a short first segment."""
    start = id_start(raw)
    if start is not None:
        return raw[: start + min(ID_CHARS, (len(raw) - start) // 4)]
    m = _SEPARATORS.search(raw, 0, UNKNOWN_PREFIX_CHARS)
    if m is None or m.end() > len(raw) // 2:
        return b""
    return raw[: m.end()]


@functools.cache
def _hash_key() -> bytes:
    """The MAC key, read once per process (redaction runs per finding on the audit's hot path)."""
    value = os.environ.get(REDACTION_KEY_ENV)
    return hashlib.sha256(value.encode() if value else _DEFAULT_HASH_KEY).digest()


def key_hash(key: bytes | str) -> str:
    """8 hex digits of keyed BLAKE2b (a MAC) of the whole key, keyed by
    `SESSION_MIGRATION_REDACTION_KEY` when it is set (read once per process): the same key
    gives the same hash in every report and log made with one setting."""
    raw = key.encode() if isinstance(key, str) else bytes(key)
    return hashlib.blake2b(raw, key=_hash_key(), digest_size=4).hexdigest()


def redact_key(key: bytes | str) -> str:
    """A readable prefix plus a keyed hash, e.g. ``sess:Jv9S…#3f2a9c1b``: whatever follows
    the id (``sess:<id>:csrf``) is never shown, and the result is safe for a terminal."""
    raw = key.encode() if isinstance(key, str) else bytes(key)
    shown = safe_text(_shown_bytes(raw).decode("utf-8", "backslashreplace"))
    return f"{shown}…#{key_hash(raw)}"
