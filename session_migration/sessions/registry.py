"""`classify`: the full judgement of one key, dispatched to the store's judge.

Precedence, strongest first: Redis TTL passed (expired, every store) > corrupt > payload
says expired > payload says stale > no TTL where the store always sets one (stale) > valid.
Judges are pure functions of (record, now); this module adds the cross-store rules and the
guarantee that hostile input yields a `Classification`, never an exception: a value larger
than `MAX_PARSED_BYTES` is corrupt without being parsed, a parser past its step budget makes
the key corrupt, and a parser's own words go to the capped, escaped `detail`, never to the
reason.

`classify_batch` gives the same answers for a whole Arrow batch (what the audit statistics
use): rows whose store the backup recorded skip detection, expiry is tested over the whole
column, and express payloads are judged without building a `KeyRecord`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..record import KeyRecord, records_from_batch
from ..redaction import safe_text
from . import aiohttp, aspnet, django, express, flask, gorilla, laravel, php, rails, spring, starsessions
from .detect import STORES, detect_by_value, detect_store
from .model import (BUDGET_REASON, DETAIL_CHARS, MAX_PARSED_BYTES, TOO_LARGE_REASON, BudgetExceeded, Classification,
                    Context, Corrupt, SessionStatus, Verdict)
from .pickle_walk import CODE_REF_REASON, PickleCodeRef, PickleError, is_pickle, walk

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


@functools.cache
def _judged_stores() -> pa.Array:
    """The stores with a judge, as Arrow (made on first use, not at import: pyarrow imports pandas
    with the first array it builds, ~0.2 s that a command's start would otherwise wait for)."""
    return pa.array(sorted(JUDGES), pa.string())


# Judges that need nothing but a string's value and TTL: `classify_batch` calls them without
# building a `KeyRecord`. Each must be exactly what its store's judge does for a string.
VALUE_JUDGES: dict[str, Callable[[bytes, int | None, Context], Verdict]] = {
    "express": express.judge_value,
}

# Stores that always write a TTL: a TTL-less key there was left behind (PERSIST, a failed
# migration, a bug) and nothing will ever remove it. Spring/ASP.NET decide this themselves.
_ALWAYS_TTL = frozenset({"flask", "django", "starsessions", "php", "laravel", "rails-actionpack", "gorilla"})

_DATA_PROTECTION = b"DataProtection-Keys"
_DATA_PROTECTION_REASON = "ASP.NET Data Protection key ring: not a session, never clean it"
_TTL_PASSED = "Redis TTL has passed"
_GENERIC_PREFIX_STORES = frozenset({"express", "flask", "gorilla"})
_NO_STORE = "no session store recognised"
_CHECKER_FAILED = "checker failed; not judged"

# (status, reason, detail): a judge's verdict with what the parser said
Judged = tuple[SessionStatus, str, str]


def classify(record: KeyRecord, now_ms: int, max_age_ms: Mapping[str, int] | None = None) -> Classification:
    """Judge one key (see the module docstring for precedence). Never raises on bad data."""
    ctx = Context(now_ms=now_ms, max_age_ms=max_age_ms or {})
    store: str | None = None
    try:
        if _DATA_PROTECTION in record.key:
            return Classification(None, SessionStatus.UNKNOWN, _DATA_PROTECTION_REASON)
        store = record.store if record.store in JUDGES else _detect(record)
        if store is None:
            return Classification(None, SessionStatus.UNKNOWN, *_unknown_reason(record))
        return Classification(*_verdict(store, record, ctx))
    except Exception as exc:  # a bug in a judge must not stop a backup; report, don't guess
        return Classification(store, SessionStatus.UNKNOWN, _CHECKER_FAILED, type(exc).__name__)


def _verdict(store: str, record: KeyRecord, ctx: Context) -> tuple[str, SessionStatus, str, str]:
    """(store, status, reason, detail) of a key whose store is known: every rule after detection."""
    if record.expire_at_ms is not None and record.expire_at_ms <= ctx.now_ms:
        return store, SessionStatus.EXPIRED, _TTL_PASSED, ""
    if record.type == "string" and record.value is None:
        return store, SessionStatus.UNKNOWN, "value not captured; not judged", ""
    value = record.value
    if (len(value) if value is not None else _collection_bytes(record)) > MAX_PARSED_BYTES:
        return store, SessionStatus.CORRUPT, TOO_LARGE_REASON, ""
    status, reason, detail = _judge(store, record, ctx)
    if status is SessionStatus.CORRUPT and store in _GENERIC_PREFIX_STORES:
        # `sess:`/`session:`/`session_` are generic enough that another framework may use
        # them (e.g. Flask configured with `sess:`): if the bytes say otherwise and parse,
        # trust the bytes. Distinctive prefixes (Laravel, Django, `_session_id:`) keep
        # their store, so a wrong payload there stays corrupt.
        other = _detect_content(record)
        if other is not None and other != store and reason != BUDGET_REASON:
            status2, reason2, detail2 = _judge(other, record, ctx)
            if status2 is not SessionStatus.CORRUPT:
                store, status, reason, detail = other, status2, reason2, detail2
    if status is SessionStatus.VALID and store in _ALWAYS_TTL and record.expire_at_ms is None:
        return store, SessionStatus.STALE, f"no TTL although {store} always sets one", ""
    return store, status, reason, detail


def _collection_bytes(record: KeyRecord) -> int:
    return sum(len(name) + len(value) for name, value in record.fields or ()) + sum(map(len, record.items or ()))


@dataclass(frozen=True)
class BatchClassification:
    """`classify` of every row of a batch, as three lists in row order."""

    stores: list[str | None]
    statuses: list[SessionStatus]
    reasons: list[str]
    details: list[str]


def classify_batch(batch: pa.RecordBatch, now_ms: int, max_age_ms: Mapping[str, int] | None = None) -> BatchClassification:
    """`classify` for every row of a batch of the record schema, with the same results.

    The batch needs at least `key`, `type`, `value`, `expire_at_ms` and `store` (the
    other columns default to empty, as in `records_from_batch`). Faster than row by row on
    the common rows, strings whose store the backup recorded: those skip detection and
    the full `KeyRecord` conversion, and their expiry test runs over the whole column.
    Every other row goes through `classify` itself.
    """
    n = batch.num_rows
    ctx = Context(now_ms=now_ms, max_age_ms=max_age_ms or {})
    stores: list[str | None] = batch.column("store").to_pylist() if "store" in batch.schema.names else [None] * n
    statuses: list[SessionStatus] = [SessionStatus.UNKNOWN] * n
    reasons: list[str] = [""] * n
    details: list[str] = [""] * n
    fast, expired = _fast_rows(batch, now_ms)
    values = batch.column("value").to_pylist()
    expires = batch.column("expire_at_ms").to_pylist()
    for i in np.flatnonzero(expired).tolist():
        statuses[i], reasons[i] = SessionStatus.EXPIRED, _TTL_PASSED
    corrupt = SessionStatus.CORRUPT
    for i in np.flatnonzero(fast & ~expired).tolist():
        store, value, expire = stores[i], values[i], expires[i]
        by_value = VALUE_JUDGES.get(store)
        if by_value is not None and (expire is not None or store not in _ALWAYS_TTL) and len(value) <= MAX_PARSED_BYTES:
            # `_verdict` would return the judge's own verdict here unless it is corrupt (the
            # bytes may belong to another store); corrupt and exceptions take the full path.
            try:
                status, reason = by_value(value, expire, ctx)
            except Exception:
                status = corrupt
            if status is not corrupt:
                statuses[i], reasons[i] = status, reason
                continue
        record = KeyRecord(key=batch.column("key")[i].as_py(), type="string", value=value, expire_at_ms=expire,
                           size_bytes=_size(batch, i), store=store)
        try:
            stores[i], statuses[i], reasons[i], details[i] = _verdict(store, record, ctx)
        except Exception as exc:  # as in classify
            statuses[i], reasons[i], details[i] = SessionStatus.UNKNOWN, _CHECKER_FAILED, type(exc).__name__
    slow = np.flatnonzero(~fast)
    if len(slow):
        for i, record in zip(slow.tolist(), records_from_batch(batch.take(pa.array(slow)))):
            verdict = classify(record, now_ms, max_age_ms)
            stores[i], statuses[i], reasons[i], details[i] = verdict.store, verdict.status, verdict.reason, verdict.detail
    return BatchClassification(stores, statuses, reasons, details)


def _size(batch: pa.RecordBatch, i: int) -> int:
    return (batch.column("size_bytes")[i].as_py() or 0) if "size_bytes" in batch.schema.names else 0


def _fast_rows(batch: pa.RecordBatch, now_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows `classify` would judge with the recorded store and nothing but the string value
    (no Data Protection key ring, no hash/list columns), and which of them have expired."""
    names = set(batch.schema.names)

    def mask(array) -> np.ndarray:
        return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)

    if "store" in names:
        fast = mask(pc.is_in(batch.column("store"), value_set=_judged_stores()))  # null: False
    else:
        fast = np.zeros(batch.num_rows, dtype=bool)
    fast &= mask(pc.equal(batch.column("type"), "string")) & mask(batch.column("value").is_valid())
    fast &= ~mask(pc.match_substring(batch.column("key"), _DATA_PROTECTION.decode()))
    for name in ("fields", "items", "members", "entries"):
        if name in names:
            fast &= mask(batch.column(name).is_null())
    expire = batch.column("expire_at_ms")
    expired = mask(pc.fill_null(pc.less_equal(expire, now_ms), False)) & fast
    return fast, expired


def _unknown_reason(record: KeyRecord) -> tuple[str, str]:
    """Not a session we know, but a pickle that would run code on load is worth saying."""
    value = record.value
    if record.type == "string" and value and is_pickle(value) and len(value) <= MAX_PARSED_BYTES:
        try:
            walk(value)
        except PickleCodeRef as exc:
            return f"{_NO_STORE}; {CODE_REF_REASON}", _detail(exc.name)
        except (PickleError, BudgetExceeded):
            pass
    return _NO_STORE, ""


def _judge(store: str, record: KeyRecord, ctx: Context) -> Judged:
    try:
        status, reason = JUDGES[store](record, ctx)
        return status, reason, ""
    except Corrupt as exc:
        return SessionStatus.CORRUPT, exc.reason, _detail(exc.detail)
    except BudgetExceeded as exc:
        return SessionStatus.CORRUPT, BUDGET_REASON, _detail(exc)
    except RecursionError:
        return SessionStatus.CORRUPT, "nested too deeply to check", ""


def _detail(text: object) -> str:
    return safe_text(text, DETAIL_CHARS) if text else ""


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
