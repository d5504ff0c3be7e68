"""Structural check of a Go `encoding/gob` stream (gorilla/sessions + boj/redistore).

A gob stream is a sequence of messages, each `uint length` + `int type id` + body. Negative
ids define types (user types are numbered from 65), positive ids carry values. We check the
framing covers the bytes exactly, every message is non-empty, values refer to defined types
and at least one value is present. Field contents are not decoded: Go would need the Go
types to do that, and redistore only ever writes one map value. Each message is a step of a
budget linear in the input (every message takes at least two bytes, so it is never reached by
a stream that frames correctly).
"""

from __future__ import annotations

from .model import BudgetExceeded, step_budget

_FIRST_USER_ID = 65  # gob's user type ids start here; lower ids are built-in types


class GobError(ValueError):
    """Not a gob stream Go's decoder could frame."""


def _uint(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise GobError("truncated")
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    n = 256 - b  # byte count, negated
    if n > 8 or pos + 1 + n > len(data):
        raise GobError("bad unsigned integer")
    return int.from_bytes(data[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


def _int(data: bytes, pos: int) -> tuple[int, int]:
    u, pos = _uint(data, pos)
    return (~(u >> 1) if u & 1 else u >> 1), pos


def check(data: bytes) -> int:
    """Return the number of messages; raise `GobError` if the framing is broken."""
    pos = 0
    messages = 0
    defined: set[int] = set()
    values = 0
    budget = step_budget(len(data))
    while pos < len(data):
        if messages >= budget:
            raise BudgetExceeded("gob")
        length, pos = _uint(data, pos)
        if length == 0 or length > len(data) - pos:
            raise GobError("message length does not fit the data")
        end = pos + length
        type_id, body = _int(data, pos)
        if body > end:
            raise GobError("type id runs past its message")
        if type_id < 0:
            defined.add(-type_id)
        elif type_id == 0:
            raise GobError("type id 0")
        else:
            if type_id >= _FIRST_USER_ID and type_id not in defined:
                raise GobError("value of a type that was never defined")
            values += 1
        pos = end
        messages += 1
    if values == 0:
        raise GobError("no value in the stream")
    return messages
