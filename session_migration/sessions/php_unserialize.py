"""Parse-only reader for PHP `serialize()` output and PHP's `php` session encoding.

Written by hand (instead of `phpserialize.loads`) so that no payload can make us build
objects: arrays become dicts of plain Python values, objects become `PhpObject(class name)`.
Every declared length/count is checked against the bytes left before anything is read,
nesting is capped at `MAX_DEPTH`, and the entries every array declares (and every session
variable) are steps of a budget linear in the input (`BudgetExceeded` past it; counted per
array, so the common path pays nothing per value), so hostile input costs linear time and
bounded stack.
"""

from __future__ import annotations

from .model import BudgetExceeded, step_budget

MAX_DEPTH = 100
_INT_CHARS = frozenset(b"+-0123456789")
_FLOAT_CHARS = frozenset(b"+-0123456789.eEINFAN")


class PhpError(ValueError):
    """Not something PHP's `unserialize()` would accept."""


class PhpObject:
    """Placeholder for `O:`/`C:`/`E:` values; only the class name is kept."""

    __slots__ = ("class_name",)

    def __init__(self, class_name: bytes) -> None:
        self.class_name = class_name


PhpValue = None | bool | int | float | bytes | dict | PhpObject


class _Reader:
    __slots__ = ("data", "pos", "values", "budget")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.values = 0  # slots for r:/R: back-references
        self.budget = step_budget(len(data))  # steps left

    def spend(self, steps: int) -> None:
        self.budget -= steps
        if self.budget < 0:
            raise BudgetExceeded("php")

    def expect(self, token: bytes) -> None:
        if not self.data.startswith(token, self.pos):
            raise PhpError(f"expected {token!r} at offset {self.pos}")
        self.pos += len(token)

    def until(self, stop: int, allowed: frozenset[int], limit: int) -> bytes:
        end = self.data.find(bytes((stop,)), self.pos, self.pos + limit + 1)
        if end < 0:
            raise PhpError(f"unterminated number at offset {self.pos}")
        raw = self.data[self.pos : end]
        if not raw or any(c not in allowed for c in raw):
            raise PhpError(f"bad number at offset {self.pos}")
        self.pos = end + 1
        return raw

    def length(self, stop: int = 0x3A) -> int:  # ':'
        raw = self.until(stop, _INT_CHARS, 10)
        n = int(raw)
        if n < 0 or n > len(self.data) - self.pos:
            raise PhpError(f"declared length {n} exceeds the data")
        return n

    def string(self) -> bytes:
        n = self.length()
        self.expect(b'"')
        out = self.data[self.pos : self.pos + n]
        if len(out) != n:
            raise PhpError("truncated string")
        self.pos += n
        self.expect(b'"')
        return out

    def value(self, depth: int) -> PhpValue:
        if depth > MAX_DEPTH:
            raise PhpError(f"nested deeper than {MAX_DEPTH} levels")
        if self.pos + 2 > len(self.data):
            raise PhpError("truncated value")
        tag = self.data[self.pos : self.pos + 2]
        self.pos += 2
        self.values += 1
        if tag == b"N;":
            return None
        if tag == b"b:":
            flag = self.until(0x3B, frozenset(b"01"), 1)
            return flag == b"1"
        if tag == b"i:":
            return int(self.until(0x3B, _INT_CHARS, 21))
        if tag == b"d:":
            raw = self.until(0x3B, _FLOAT_CHARS, 64)
            try:
                return float(raw)  # accepts INF, -INF, NAN like PHP
            except ValueError:
                raise PhpError("bad float") from None
        if tag == b"s:":
            out = self.string()
            self.expect(b";")
            return out
        if tag in (b"a:", b"O:"):
            cls = None
            if tag == b"O:":
                cls = self.string()
                self.expect(b":")
            count = self.length()
            # each entry needs at least `i:0;N;` (6 bytes): reject absurd counts up front
            if count * 6 > len(self.data) - self.pos:
                raise PhpError(f"declared {count} entries exceed the data")
            self.spend(count)
            self.expect(b"{")
            out: dict = {}
            for _ in range(count):
                key = self.key(cls is not None)
                out[key] = self.value(depth + 1)
            self.expect(b"}")
            return PhpObject(cls) if cls is not None else out
        if tag == b"C:":  # Serializable::serialize(): opaque payload of declared length
            cls = self.string()
            self.expect(b":")
            n = self.length()
            self.expect(b"{")
            if self.pos + n > len(self.data):
                raise PhpError("truncated custom object")
            self.pos += n
            self.expect(b"}")
            return PhpObject(cls)
        if tag == b"E:":  # PHP 8.1 enum case, "Class:Case"
            name = self.string()
            self.expect(b";")
            if b":" not in name:
                raise PhpError("bad enum name")
            return PhpObject(name)
        if tag in (b"r:", b"R:"):
            ref = int(self.until(0x3B, _INT_CHARS, 10))
            if not 1 <= ref < self.values:
                raise PhpError("reference to a value that does not exist")
            return None
        raise PhpError(f"unknown type tag at offset {self.pos - 2}")

    def key(self, is_object: bool) -> int | bytes:
        tag = self.data[self.pos : self.pos + 2]
        if tag == b"i:":
            self.pos += 2
            return int(self.until(0x3B, _INT_CHARS, 21))
        if tag == b"s:":
            self.pos += 2
            out = self.string()
            self.expect(b";")
            return out
        raise PhpError("array key is neither int nor string")


def unserialize(data: bytes) -> PhpValue:
    """Parse exactly one serialized value spanning all of `data`; raise `PhpError`."""
    reader = _Reader(data)
    try:
        value = reader.value(0)
    except PhpError:
        raise
    except ValueError:  # int() on a malformed number such as "+-1"
        raise PhpError("bad number") from None
    if reader.pos != len(data):
        raise PhpError("trailing bytes after the value")
    return value


def decode_session(data: bytes) -> dict[bytes, PhpValue]:
    """PHP's default `php` session encoding: `name|<serialized>` repeated.

    Names cannot contain `|`; a leading `!` marks an unset variable with no value (old PHP).
    """
    try:
        return _decode_session(_Reader(data))
    except PhpError:
        raise
    except ValueError:
        raise PhpError("bad number") from None


def _decode_session(reader: _Reader) -> dict[bytes, PhpValue]:
    data = reader.data
    out: dict[bytes, PhpValue] = {}
    while reader.pos < len(data):
        reader.budget -= 1  # inline: the loop runs once per session variable
        if reader.budget < 0:
            raise BudgetExceeded("php")
        bar = data.find(b"|", reader.pos)
        if bar <= reader.pos:
            raise PhpError("session variable without a name")
        name = data[reader.pos : bar]
        if name.startswith(b"!"):
            reader.pos = bar + 1
            out[name[1:]] = None
            continue
        reader.pos = bar + 1
        out[name] = reader.value(0)
    return out
