"""Key patterns: the default scope (every store in docs/session-stores.md) and pattern checks.

Scope is a safety rule, not a convenience: the tool never reads, writes or deletes a key
outside the configured patterns. Patterns use Redis glob syntax (as SCAN MATCH does);
`redis_glob.ScopeMatcher` checks keys against them by the server's own matching rules.

Patterns come from the command line, flow parameters, manifests and state files, so their
number and size are limited wherever they come from (`check_patterns`, which every
`ScopeMatcher` applies): at most `MAX_PATTERNS` patterns of at most `MAX_PATTERN_BYTES` bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_PATTERNS = 256
MAX_PATTERN_BYTES = 512

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


def check_patterns(patterns: Iterable[str], error: type[Exception] | None = None, where: str = "") -> tuple[str, ...]:
    """Validate patterns up front; an empty or blank pattern would mean "nothing" or "everything".

    Raises `error` (default `InvalidParameter`); `where` names the patterns' origin in the
    message (e.g. "in the snapshot's manifest"). Costs at most `MAX_PATTERNS` + 1 steps
    however many patterns are given.
    """
    from .errors import InvalidParameter

    error = error or InvalidParameter
    at = f" {where}" if where else ""
    if isinstance(patterns, (str, bytes)):
        raise error(f"Key patterns{at} must be a list of patterns, not one string.")
    result: list[str] = []
    for pattern in patterns:
        if len(result) == MAX_PATTERNS:
            raise error(f"More than {MAX_PATTERNS} key patterns{at}; give at most {MAX_PATTERNS}.")
        result.append(pattern)
    if not result:
        raise error(f"No key pattern given{at}; give at least one, e.g. --pattern 'sess:*'.")
    for pattern in result:
        if not isinstance(pattern, str) or not pattern.strip():
            raise error(f"Key pattern {str(pattern)[:40]!r}{at} is empty or not text.")
        if len(pattern.encode("utf-8", "surrogatepass")) > MAX_PATTERN_BYTES:
            raise error(f"Key pattern {pattern[:40]!r}...{at} is longer than {MAX_PATTERN_BYTES} bytes.")
    if len(set(result)) != len(result):
        raise error(f"The same key pattern is given twice{at}.")
    return tuple(result)

