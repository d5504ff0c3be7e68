"""Key patterns: the default scope (every store in docs/session-stores.md) and pattern checks.

Scope is a safety rule, not a convenience: the tool never reads, writes or deletes a key
outside the configured patterns. Patterns use Redis glob syntax (as SCAN MATCH does);
`redis_glob.ScopeMatcher` checks keys against them by the server's own matching rules.
"""

from __future__ import annotations

from collections.abc import Iterable

# One entry per store key shape, in the order of docs/session-stores.md.
DEFAULT_PATTERNS: tuple[str, ...] = (
    "sess:*",  # express-session + connect-redis
    "session:*",  # Flask-Session
    "*django.contrib.sessions.cache*",  # Django cache / cached_db sessions, any KEY_PREFIX/version
    "starsessions.*",  # starsessions
    "AIOHTTP_SESSION_*",  # aiohttp-session
    "spring:session:*",  # Spring Session, sessions and companion keys
    "????????-????-????-????-????????????",  # ASP.NET Core distributed cache (GUID, empty InstanceName)
    "PHPREDIS_SESSION:*",  # phpredis
    "PHPREDIS_CLUSTER_SESSION:*",  # phpredis on a cluster
    "laravel_database_laravel_cache:*",  # Laravel <= 10
    "laravel_database_laravel_cache_*",  # Laravel 11-12
    "laravel-database-laravel-cache-*",  # Laravel 13
    "rack:session:*",  # Rails redis-actionpack
    "_session_id:*",  # Rails CacheStore
    "session_*",  # Go gorilla/sessions + redistore
)


MAX_PATTERNS = 256  # the manifest schema allows no more: a manifest must stay cheap to check
MAX_PATTERN_CHARS = 1024


def check_patterns(patterns: Iterable[str]) -> tuple[str, ...]:
    """Validate patterns up front; an empty or blank pattern would mean "nothing" or "everything"."""
    from .errors import InvalidParameter

    result = tuple(patterns)
    if not result:
        raise InvalidParameter("No key pattern given; give at least one, e.g. --pattern 'sess:*'.")
    if len(result) > MAX_PATTERNS:
        raise InvalidParameter(f"{len(result)} key patterns given; at most {MAX_PATTERNS} are allowed.")
    for pattern in result:
        if not isinstance(pattern, str) or not pattern.strip():
            raise InvalidParameter(f"Key pattern {pattern!r} is empty.")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise InvalidParameter(f"Key pattern {pattern[:40]!r}... is longer than {MAX_PATTERN_CHARS} characters.")
    if len(set(result)) != len(result):
        raise InvalidParameter("The same key pattern is given twice.")
    return result

