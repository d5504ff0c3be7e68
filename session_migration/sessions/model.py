"""Status, result and helper types shared by every store judge.

A judge returns a `Verdict` (status, reason) or raises `Corrupt(reason)`; the registry turns
that into a `Classification`. Reasons are short fixed sentences: they may name fields, stores
and formats but never session content or the key (session ids are bearer credentials).
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


@dataclass(frozen=True, slots=True)
class Classification:
    store: str | None
    status: SessionStatus
    reason: str


Verdict = tuple[SessionStatus, str]


class Corrupt(Exception):
    """Raised by judges and parsers' callers: the payload is not what the store writes."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
    except ValueError:
        raise Corrupt(f"payload is not valid {what}") from None


def try_json_object(value: bytes) -> dict | None:
    """`load_json_object` for fallbacks: None instead of an exception."""
    try:
        return load_json_object(value)
    except Corrupt:
        return None
