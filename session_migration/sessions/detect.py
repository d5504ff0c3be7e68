"""`detect_store`: the cheap per-key store guess used on the backup hot path.

Order (as the spec asks): key pattern, then Redis type, then the first bytes of the value.
Known default prefixes are one anchored regex whose matching group names the store, so a
typical key costs one `re.match` plus a dict lookup. Value sniffing only runs for keys no
pattern claims (custom prefixes such as `flask-json:`), and only looks at a bounded head
or tail of the value, never the whole of a large one.
"""

from __future__ import annotations

import re

STORES: tuple[str, ...] = (
    "express",
    "flask",
    "django",
    "starsessions",
    "aiohttp",
    "php",
    "laravel",
    "rails-actionpack",
    "rails-cachestore",
    "gorilla",
    "spring",
    "aspnet",
)

# Regex group names cannot hold '-', hence the mapping.
_GROUP_TO_STORE = {
    "express": "express",
    "flask": "flask",
    "gorilla": "gorilla",
    "php": "php",
    "starsessions": "starsessions",
    "aiohttp": "aiohttp",
    "rails_actionpack": "rails-actionpack",
    "rails_cachestore": "rails-cachestore",
    "spring": "spring",
    "laravel": "laravel",
}
_KEY_RE = re.compile(
    rb"(?P<express>sess:)"
    rb"|(?P<flask>session:)"
    rb"|(?P<gorilla>session_)"
    rb"|(?P<php>PHPREDIS_(?:CLUSTER_)?SESSION:)"
    rb"|(?P<starsessions>starsessions\.)"
    rb"|(?P<aiohttp>AIOHTTP_SESSION_)"
    rb"|(?P<rails_actionpack>rack:session:)"
    rb"|(?P<rails_cachestore>_session_id:)"
    rb"|(?P<spring>spring:session:)"
    # Laravel <= 10, 11-12 and 13 default prefixes
    rb"|(?P<laravel>laravel_database_laravel_cache[:_]|laravel-database-laravel-cache-)"
)
# Django's cache key is `<KEY_PREFIX>:<version>:django.contrib.sessions.cache<id>` (also
# `cached_db`); KEY_PREFIX may itself contain colons, so look for the fixed part anywhere.
_DJANGO_MARK = b":django.contrib.sessions.cache"

# Stores whose sessions live in Redis types other than string.
_NON_STRING_OK = frozenset({"spring"})

# ASP.NET Core keys are `<InstanceName><GUID>`; a custom Spring namespace gives
# `<ns>:sessions:<uuid>`. Both are recognised by their fixed-length tail.
_GUID_RE = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

_HEAD = 512  # value bytes looked at from the front
_LARAVEL_VALUE_RE = re.compile(rb's:\d{1,10}:"')
_PHP_ARRAY_RE = re.compile(rb"a:\d{1,10}:\{")
# `name|<tag>`: PHP's default session encoding; names cannot hold '|'.
_PHP_SESSION_RE = re.compile(rb"[^|!\x00-\x1f{\[\"]{1,128}\|(?:[abdisOCE]:|N;)")
# gob: message length (1-3 bytes) then a negative type id defining a user type.
_GOB_RE = re.compile(rb"(?:[\x01-\x7f]|\xff[\x80-\xff]|\xfe[\x00-\xff]{2})\xff[\x81-\xff]")


def detect_store(key: bytes, redis_type: str, value: bytes | None = None) -> str | None:
    """Guess the session store owning `key`, or None. Cheap: no parsing."""
    m = _KEY_RE.match(key)
    if m is not None:
        store = _GROUP_TO_STORE[m.lastgroup]  # type: ignore[index]
        if redis_type == "string" or store in _NON_STRING_OK:
            return store
        return None  # a known prefix holding a type that store never writes
    if _DJANGO_MARK in key:
        return "django" if redis_type == "string" else None
    if redis_type == "string":
        return detect_by_value(value) if value else None
    if redis_type == "hash" and len(key) >= 36 and _GUID_RE.fullmatch(key, len(key) - 36):
        return "spring" if key.endswith(b":sessions:", 0, len(key) - 36) else "aspnet"
    return None


def detect_by_value(value: bytes) -> str | None:
    """Guess a string's store from its first (or, for starsessions, last) bytes."""
    b0 = value[0]
    if b0 == 0x7B:  # '{': one of the JSON stores
        if value.startswith(b'{"cookie":'):
            return "express"  # express-session always serialises `cookie` first
        if value.find(b'"__metadata__"', max(0, len(value) - _HEAD)) >= 0:
            return "starsessions"  # metadata is added last
        if value.startswith(b'{"created":') and value.find(b'"session":', 0, 64) >= 0:
            return "aiohttp"
        if value.find(b'"_permanent"', 0, _HEAD) >= 0:
            return "flask"
        if value.find(b'"cookie":{', 0, _HEAD) >= 0:
            return "express"
        return None
    if b0 == 0x80 or 0x81 <= b0 <= 0x8F or b0 in (0xDE, 0xDF):
        # pickle (80 0N) or msgpack map: only Flask-Session marks its dicts recognisably
        # (Django pickles are recognised by key; an unmarked pickle stays unknown).
        return "flask" if value.find(b"_permanent", 0, 64) >= 0 else None
    if value.startswith(b"\x04\x08"):  # Ruby Marshal
        if value[2:3] in (b"{", b"}"):
            return "rails-actionpack"
        if value[2:3] == b"o" and value.find(b"ActiveSupport::Cache::Entry", 3, 40) >= 0:
            return "rails-cachestore"
        return None
    if value.startswith((b"\x00\x11", b"\x00\x04\x08[")):  # Rails 7.1 / 7.0 cache formats
        return "rails-cachestore"
    if b0 == 0x73 and _LARAVEL_VALUE_RE.match(value):  # 's:N:"' serialize(string)
        return "laravel"
    if b0 == 0x61 and _PHP_ARRAY_RE.match(value):  # 'a:N:{' php_serialize handler
        return "php"
    if _GOB_RE.match(value):
        return "gorilla"
    if value.find(b"|", 1, 130) > 0 and _PHP_SESSION_RE.match(value):  # find: cheap pre-check
        return "php"
    return None


def store_prefix(key: bytes) -> tuple[str, bytes] | None:
    """(store, prefix) when `key` starts with a known default prefix: then every string key
    with the same prefix belongs to that store, which lets a batch be classified in one step."""
    m = _KEY_RE.match(key)
    return (_GROUP_TO_STORE[m.lastgroup], m.group(0)) if m is not None else None  # type: ignore[index]
