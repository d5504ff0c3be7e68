"""Status, result and helper types shared by every store judge.

A judge returns a `Verdict` (status, reason) or raises `Corrupt(reason, detail)`; the registry
turns that into a `Classification`. Reasons are short fixed sentences: they may name fields,
stores and formats but never session content, offsets or the key (session ids are bearer
credentials), so the audit's "by reason" table has a bounded number of rows. What a parser
found (an offset, the callable a pickle names) goes to `detail`, capped at `DETAIL_CHARS`
and made safe for a terminal by the registry.

Every parser of payload bytes takes at most `step_budget(len(data))` steps; past it the
parser raises `BudgetExceeded` and the key is corrupt with `BUDGET_REASON`. Values larger
than `MAX_PARSED_BYTES` are not parsed at all (`TOO_LARGE_REASON`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum

import orjson


class SessionStatus(str, Enum):
    VALID = "valid"  # the store would load it
    EXPIRED = "expired"  # the store itself would refuse it (or Redis already dropped it)
    STALE = "stale"  # past its payload expiry, or TTL-less where the store always sets one
    CORRUPT = "corrupt"  # the store could not decode it
    UNKNOWN = "unknown"  # no detector matched, or nothing could be judged


MAX_PARSED_BYTES = 16 << 20  # a value (or a hash's fields together) larger than this is not parsed
STEPS_PER_BYTE = 4  # a parser's budget: steps per input byte (plus a small constant)
DETAIL_CHARS = 120
BUDGET_REASON = "payload exceeds the parser's step budget"
TOO_LARGE_REASON = "payload is larger than the 16 MiB parse limit"


@dataclass(frozen=True, slots=True)
class Classification:
    store: str | None
    status: SessionStatus
    reason: str  # a fixed sentence
    detail: str = ""  # what the parser found (capped, escaped); never session content


REDIS_TYPES = frozenset({"string", "hash", "list", "set", "zset", "stream"})


def type_name(redis_type: object) -> str:
    """A record's type for a reason: one of Redis' types (a snapshot could hold any text)."""
    return redis_type if redis_type in REDIS_TYPES else "unknown type"  # type: ignore[return-value]


def step_budget(size: int) -> int:
    """The most steps a parser may take over `size` bytes: linear, with a small constant."""
    return 64 + STEPS_PER_BYTE * size


class BudgetExceeded(Exception):
    """A parser used up its step budget; deliberately not a subclass of any parser's error,
    so no fallback decoder runs after it."""


Verdict = tuple[SessionStatus, str]


class Corrupt(Exception):
    """Raised by judges and parsers' callers: the payload is not what the store writes.

    `reason` is a fixed sentence; `detail` what the parser said (offsets, names)."""

    def __init__(self, reason: str, detail: object = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = str(detail)


@dataclass(frozen=True, slots=True)
class Context:
    now_ms: int
    max_age_ms: Mapping[str, int] = field(default_factory=dict)


def valid(reason: str) -> Verdict:
    return (SessionStatus.VALID, reason)


def expired(reason: str) -> Verdict:
    return (SessionStatus.EXPIRED, reason)


def stale(reason: str) -> Verdict:
    return (SessionStatus.STALE, reason)


def unknown(reason: str) -> Verdict:
    return (SessionStatus.UNKNOWN, reason)


def iso_to_ms(text: str) -> int:
    """ISO-8601 (as written by JS `toJSON` or Python `isoformat`) to unix ms; naive = UTC.

    Raises ValueError. Naive times are taken as UTC because that is what both
    express-session and Django (USE_TZ=True) write; USE_TZ=False sites may be off by their
    UTC offset, which only matters within hours of the expiry.
    """
    return datetime_to_ms(parse_iso(text))


def parse_iso(text: str) -> datetime:
    """The parsing half of `iso_to_ms`, for callers that only need to know the text is a time."""
    if len(text) > 64:
        raise ValueError("too long for a timestamp")
    return datetime.fromisoformat(text)


def datetime_to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def is_number(value: object) -> bool:
    """A JSON number: int or float but not bool (bool is an int subclass)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_json_object(value: bytes, what: str = "JSON") -> dict:
    """Decode strict UTF-8 JSON whose top level is an object, else raise `Corrupt`.

    orjson first (5x faster on the audit's hot path, hence inline); the standard parser has
    the last word on anything orjson refuses (integers beyond 64 bits, exact error kinds).
    """
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        doc = _standard_json(value, what)
    if not isinstance(doc, dict):
        raise Corrupt(f"{what} payload is not an object")
    return doc


def _standard_json(value: bytes, what: str):
    try:
        return json.loads(value.decode("utf-8"))
    except UnicodeDecodeError:
        raise Corrupt(f"{what} payload is not valid UTF-8") from None
    except RecursionError:
        raise Corrupt(f"{what} payload is nested too deeply to check") from None
    except ValueError as exc:  # json's message names a position, never the payload's text
        raise Corrupt(f"payload is not valid {what}", exc) from None


def try_json_object(value: bytes) -> dict | None:
    """`load_json_object` for fallbacks: None instead of an exception."""
    try:
        return load_json_object(value)
    except Corrupt:
        return None
