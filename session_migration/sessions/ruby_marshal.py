"""Parse-only reader for Ruby Marshal 4.8 (what Rails session stores write).

`rubymarshal`'s reader instantiates Ruby-named classes; this one never does. It returns plain
Python values: nil/true/false/Integer/Float as themselves, String as bytes, Symbol as str,
Array as list, Hash as `MHash` (list of pairs), and every object-like type (`o`, `S`, `u`,
`U`, `d`, `c`, `m`, ...) as `MObject(class name, instance variables)`. Back-references are
checked against the object and symbol tables exactly as Ruby's `r_entry` fills them, all
declared lengths must fit the bytes left, nesting is capped at `MAX_DEPTH`, and the items
every array, hash and object declares are steps of a budget linear in the input
(`BudgetExceeded` past it; counted per container, so the common path pays nothing per value).
"""

from __future__ import annotations

from .model import BudgetExceeded, step_budget

MAX_DEPTH = 100


class MarshalError(ValueError):
    """Not something Ruby's `Marshal.load` would accept."""


class MHash:
    __slots__ = ("pairs", "default")

    def __init__(self) -> None:
        self.pairs: list[tuple[object, object]] = []
        self.default: object = None


class MObject:
    __slots__ = ("class_name", "ivars")

    def __init__(self, class_name: str) -> None:
        self.class_name = class_name
        self.ivars: dict[str, object] = {}


class _Reader:
    __slots__ = ("data", "pos", "symbols", "objects", "budget")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.symbols: list[str] = []
        self.objects = 0  # only the count matters for link bounds
        self.budget = step_budget(len(data))  # steps left

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise MarshalError("truncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def long(self) -> int:
        c = self.byte()
        c = c - 256 if c > 127 else c
        if c == 0:
            return 0
        if 5 <= c:
            return c - 5
        if c <= -5:
            return c + 5
        n = abs(c)
        raw = self.take(n)
        if c > 0:
            return int.from_bytes(raw, "little")
        x = -1
        for i, b in enumerate(raw):
            x &= ~(0xFF << (8 * i))
            x |= b << (8 * i)
        return x

    def take(self, n: int) -> bytes:
        if n < 0 or n > len(self.data) - self.pos:
            raise MarshalError(f"declared length {n} exceeds the data")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def count(self, per_item: int) -> int:
        n = self.long()
        if n < 0 or n * per_item > len(self.data) - self.pos:
            raise MarshalError(f"declared count {n} exceeds the data")
        self.budget -= n
        if self.budget < 0:
            raise BudgetExceeded("marshal")
        return n

    def bytes_(self) -> bytes:
        return self.take(self.long())

    def register(self) -> None:
        self.objects += 1

    def symbol(self, depth: int) -> str:
        """Ruby's r_symbol: `:name`, `;index`, or `I:name` with encoding ivars."""
        tag = self.byte()
        if tag == 0x49:  # 'I'
            if self.byte() != 0x3A:
                raise MarshalError("bad symbol")
            name = self._new_symbol()
            for _ in range(self.count(2)):
                self.symbol(depth + 1)
                self.value(depth + 1)
            return name
        if tag == 0x3A:  # ':'
            return self._new_symbol()
        if tag == 0x3B:  # ';'
            index = self.long()
            if not 0 <= index < len(self.symbols):
                raise MarshalError("symbol link out of range")
            return self.symbols[index]
        raise MarshalError("expected a symbol")

    def _new_symbol(self) -> str:
        name = self.bytes_().decode("utf-8", "replace")
        self.symbols.append(name)
        return name

    def ivars_into(self, obj: MObject, depth: int) -> None:
        for _ in range(self.count(2)):
            name = self.symbol(depth + 1)
            obj.ivars[name] = self.value(depth + 1)

    def value(self, depth: int) -> object:
        if depth > MAX_DEPTH:
            raise MarshalError(f"nested deeper than {MAX_DEPTH} levels")
        tag = self.byte()
        if tag == 0x30:  # '0'
            return None
        if tag == 0x54:  # 'T'
            return True
        if tag == 0x46:  # 'F'
            return False
        if tag == 0x69:  # 'i'
            return self.long()
        if tag in (0x3A, 0x3B):  # symbol / symlink used as a value
            self.pos -= 1
            return self.symbol(depth)
        if tag == 0x40:  # '@' object link
            index = self.long()
            if not 0 <= index < self.objects:
                raise MarshalError("object link out of range")
            return None  # a shared reference; its content was checked where it first appeared
        if tag == 0x49:  # 'I' value with instance variables (string encodings)
            inner = self.value(depth + 1)
            for _ in range(self.count(2)):
                self.symbol(depth + 1)
                self.value(depth + 1)
            return inner
        if tag == 0x65:  # 'e' extended by a module
            self.symbol(depth)
            return self.value(depth + 1)
        if tag == 0x43:  # 'C' user subclass of String/Array/Hash
            self.symbol(depth)
            return self.value(depth + 1)
        if tag == 0x22:  # '"'
            self.register()
            return self.bytes_()
        if tag == 0x66:  # 'f' float as text; old Rubies append mantissa bytes after a NUL
            self.register()
            text = self.bytes_().split(b"\x00", 1)[0]
            try:
                return float(text)
            except ValueError:
                raise MarshalError("bad float") from None
        if tag == 0x6C:  # 'l' bignum
            self.register()
            sign = self.byte()
            if sign not in (0x2B, 0x2D):
                raise MarshalError("bad bignum sign")
            raw = self.take(self.long() * 2)
            n = int.from_bytes(raw, "little")
            return -n if sign == 0x2D else n
        if tag == 0x2F:  # '/' regexp
            self.bytes_()
            self.byte()  # options
            self.register()
            return MObject("Regexp")
        if tag == 0x5B:  # '['
            self.register()
            return [self.value(depth + 1) for _ in range(self.count(1))]
        if tag in (0x7B, 0x7D):  # '{' hash, '}' hash with default
            self.register()
            out = MHash()
            for _ in range(self.count(2)):
                key = self.value(depth + 1)
                out.pairs.append((key, self.value(depth + 1)))
            if tag == 0x7D:
                out.default = self.value(depth + 1)
            return out
        if tag in (0x6F, 0x53):  # 'o' object, 'S' struct
            obj = MObject(self.symbol(depth))
            self.register()
            self.ivars_into(obj, depth)
            return obj
        if tag in (0x63, 0x6D, 0x4D):  # class, module, old module: a name only
            self.register()
            return MObject(self.bytes_().decode("utf-8", "replace"))
        if tag == 0x75:  # 'u' _dump: opaque bytes
            obj = MObject(self.symbol(depth))
            self.bytes_()
            self.register()
            return obj
        if tag in (0x55, 0x64):  # 'U' marshal_dump, 'd' data: class then one value
            obj = MObject(self.symbol(depth))
            self.register()
            obj.ivars["(data)"] = self.value(depth + 1)
            return obj
        raise MarshalError(f"unknown type byte 0x{tag:02x} at offset {self.pos - 1}")


def load_structure(data: bytes, *, allow_trailing: bool = True) -> object:
    """Check `data` is one Marshal 4.8 value and return its inert structure.

    Trailing bytes are allowed by default because `Marshal.load` ignores them too.
    """
    if not data.startswith(b"\x04\x08"):
        raise MarshalError("not Marshal 4.8")
    reader = _Reader(data)
    reader.pos = 2
    try:
        value = reader.value(0)
    except RecursionError:
        raise MarshalError("nested too deeply") from None
    if not allow_trailing and reader.pos != len(data):
        raise MarshalError("trailing bytes after the value")
    return value
