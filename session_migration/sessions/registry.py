"""`classify`: the full judgement of one key, dispatched to the store's judge.

Precedence, strongest first: Redis TTL passed (expired, every store) > corrupt > payload
says expired > payload says stale > no TTL where the store always sets one (stale) > valid.
Judges are pure functions of (record, now); this module adds the cross-store rules and the
guarantee that hostile input yields a `Classification`, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..record import KeyRecord
from . import aiohttp, aspnet, django, express, flask, gorilla, laravel, php, rails, spring, starsessions
from .detect import STORES, detect_by_value, detect_store
from .model import Classification, Context, Corrupt, SessionStatus, Verdict
from .pickle_walk import PickleCodeRef, PickleError, is_pickle, walk

Judge = Callable[[KeyRecord, Context], Verdict]

JUDGES: dict[str, Judge] = {
    "express": express.judge,
    "flask": flask.judge,
    "django": django.judge,
    "starsessions": starsessions.judge,
    "aiohttp": aiohttp.judge,
    "php": php.judge,
    "laravel": laravel.judge,
    "rails-actionpack": rails.judge_actionpack,
    "rails-cachestore": rails.judge_cachestore,
    "gorilla": gorilla.judge,
    "spring": spring.judge,
    "aspnet": aspnet.judge,
}
assert set(JUDGES) == set(STORES)

# Stores that always write a TTL: a TTL-less key there was left behind (PERSIST, a failed
# migration, a bug) and nothing will ever remove it. Spring/ASP.NET decide this themselves.
_ALWAYS_TTL = frozenset({"flask", "django", "starsessions", "php", "laravel", "rails-actionpack", "gorilla"})

_DATA_PROTECTION = b"DataProtection-Keys"
_DATA_PROTECTION_REASON = "ASP.NET Data Protection key ring: not a session, never clean it"
_GENERIC_PREFIX_STORES = frozenset({"express", "flask", "gorilla"})


def classify(record: KeyRecord, now_ms: int, max_age_ms: Mapping[str, int] | None = None) -> Classification:
    """Judge one key (see the module docstring for precedence). Never raises on bad data."""
    ctx = Context(now_ms=now_ms, max_age_ms=max_age_ms or {})
    store: str | None = None
    try:
        if _DATA_PROTECTION in record.key:
            return Classification(None, SessionStatus.UNKNOWN, _DATA_PROTECTION_REASON)
        store = record.store if record.store in JUDGES else _detect(record)
        if store is None:
            return Classification(None, SessionStatus.UNKNOWN, _unknown_reason(record))
        if record.expire_at_ms is not None and record.expire_at_ms <= now_ms:
            return Classification(store, SessionStatus.EXPIRED, "Redis TTL has passed")
        if record.type == "string" and record.value is None:
            return Classification(store, SessionStatus.UNKNOWN, "value not captured; not judged")
        status, reason = _judge(store, record, ctx)
        if status is SessionStatus.CORRUPT and store in _GENERIC_PREFIX_STORES:
            # `sess:`/`session:`/`session_` are generic enough that another framework may use
            # them (e.g. Flask configured with `sess:`): if the bytes say otherwise and parse,
            # trust the bytes. Distinctive prefixes (Laravel, Django, `_session_id:`) keep
            # their store, so a wrong payload there stays corrupt.
            other = _detect_content(record)
            if other is not None and other != store:
                status2, reason2 = _judge(other, record, ctx)
                if status2 is not SessionStatus.CORRUPT:
                    store, status, reason = other, status2, reason2
        if status is SessionStatus.VALID and store in _ALWAYS_TTL and record.expire_at_ms is None:
            return Classification(store, SessionStatus.STALE, f"no TTL although {store} always sets one")
        return Classification(store, status, reason)
    except Exception as exc:  # a bug in a judge must not stop a backup; report, don't guess
        return Classification(store, SessionStatus.UNKNOWN, f"checker failed ({type(exc).__name__}); not judged")


def _unknown_reason(record: KeyRecord) -> str:
    """Not a session we know, but a pickle that would run code on load is worth saying."""
    reason = "no session store recognised"
    if record.type == "string" and record.value and is_pickle(record.value):
        try:
            walk(record.value)
        except PickleCodeRef as exc:
            return f"{reason}; {exc}"
        except PickleError:
            pass
    return reason


def _judge(store: str, record: KeyRecord, ctx: Context) -> Verdict:
    try:
        return JUDGES[store](record, ctx)
    except Corrupt as exc:
        return (SessionStatus.CORRUPT, exc.reason)
    except RecursionError:
        return (SessionStatus.CORRUPT, "nested too deeply to check")


def _detect(record: KeyRecord) -> str | None:
    return detect_store(record.key, record.type, record.value) or _detect_content(record)


_SPRING_FIELDS = frozenset({b"creationTime", b"lastAccessedTime", b"maxInactiveInterval"})
_ASPNET_FIELDS = frozenset({b"absexp", b"sldexp", b"data"})


def _detect_content(record: KeyRecord) -> str | None:
    """Store from content alone (classify can afford to look at hash field names)."""
    if record.type == "string":
        return detect_by_value(record.value) if record.value else None
    if record.type == "hash" and record.fields:
        names = {name for name, _ in record.fields}
        if names & _SPRING_FIELDS:
            return "spring"
        if b"data" in names and names & _ASPNET_FIELDS - {b"data"}:
            return "aspnet"
    return None
