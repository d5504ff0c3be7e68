"""gorilla/sessions + boj/redistore: gob-encoded `map[interface{}]interface{}` (or JSON with
redistore's JSONSerializer), always written with SETEX. Only the gob framing is checked."""

from __future__ import annotations

from ..record import KeyRecord
from .gob import GobError, check
from .model import Context, Corrupt, Verdict, try_json_object, valid


def judge(record: KeyRecord, ctx: Context) -> Verdict:
    value = record.value or b""
    if value[:1] == b"{" and try_json_object(value) is not None:
        return valid("JSON session (redistore JSONSerializer)")
    try:
        check(value)
    except GobError as exc:
        raise Corrupt("not a well-framed gob stream", exc) from None
    return valid("gob stream; framing checked")
