"""Parse-only pickle checker: runs the unpickler's stack machine on symbols, never on objects.

`pickletools.genops` decodes opcodes and arguments without executing anything; this module
replays their effect on a symbolic stack so it can tell (a) whether `pickle.loads` would
accept the stream (stack/mark/memo discipline), (b) the type of the top-level object and the
entries of a top-level dict (Django's `_session_expiry`), and (c) whether the stream
references code. Any reference to a global outside `SAFE_GLOBALS` stops the walk with
`PickleCodeRef`: such a pickle would import and call that callable on load.

Nothing here imports a module named in the payload or builds anything but small inert
placeholders. Every opcode and every item an opcode moves costs one step, and no step costs
more than a constant: a tuple knows whether it is hashable from when it was built (a memoized
tuple used as a dict key 10,000 times is not walked 10,000 times), and memo slots are never
keyed by unbounded integers (which Python hashes predictably). The walk stops with
`BudgetExceeded` past `step_budget(len(data))` steps, so a hostile pickle costs time linear in
its length.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass

from .model import BudgetExceeded, step_budget

# Pure value constructors that old-but-legitimate session pickles reference (Django < 4 kept
# `_session_expiry` as a datetime; pytz's UTC singleton). Calling them cannot run code chosen
# by the payload, nor allocate more than the payload's own size. Empty this set to flag every
# global as code; see docs/session-stores.md.
SAFE_GLOBALS: frozenset[str] = frozenset(
    {
        "datetime.datetime",
        "datetime.date",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "uuid.UUID",
        "collections.OrderedDict",
        "builtins.set",
        "builtins.frozenset",
        "__builtin__.set",
        "__builtin__.frozenset",
        "pytz._UTC",
    }
)

_NAME_LIMIT = 80


class PickleError(ValueError):
    """The stream is not a pickle that `pickle.loads` would accept."""


CODE_REF_REASON = "pickle would call code outside the allow-list; not executed"
NOT_WELL_FORMED = "pickle is not well formed"
NOT_A_DICT = "pickle's top-level object is not a dict"


class PickleCodeRef(PickleError):
    """The stream references a callable outside `SAFE_GLOBALS` (or an extension/persistent id)."""

    def __init__(self, name: str) -> None:
        self.name = _printable(name)
        super().__init__(f"pickle would call {self.name}; not executed")


class PDict:
    __slots__ = ("items",)

    def __init__(self, items: list[tuple[object, object]] | None = None) -> None:
        self.items = items if items is not None else []

    def get(self, key: str) -> object | None:
        found = None
        for k, v in self.items:  # later SETITEMs win, as in a real dict
            if k == key:
                found = v
        return found


class PList:
    __slots__ = ("items",)

    def __init__(self, items: list[object] | None = None) -> None:
        self.items = items if items is not None else []


class PSet:
    __slots__ = ("items", "frozen")

    def __init__(self, items: list[object] | None = None, frozen: bool = False) -> None:
        self.items = items if items is not None else []
        self.frozen = frozen


class PTuple:
    """A tuple, with its hashability decided once, when it is built."""

    __slots__ = ("items", "hashable")

    def __init__(self, items: tuple[object, ...]) -> None:
        self.items = items
        self.hashable = all(map(_hashable, items))



class PGlobal:
    """A reference to an allow-listed callable (never the callable itself)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class PObj:
    """The (never built) result of calling an allow-listed callable."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


@dataclass(frozen=True, slots=True)
class WalkResult:
    top: object
    protocol: int
    steps: int  # what the walk cost: opcodes plus the items they moved


def _printable(name: str) -> str:
    text = name.encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return text[:_NAME_LIMIT]


def _check_global(module: object, name: object) -> PGlobal:
    if not isinstance(module, str) or not isinstance(name, str):
        raise PickleError("STACK_GLOBAL needs two strings")
    dotted = f"{module}.{name}"
    if dotted not in SAFE_GLOBALS:
        raise PickleCodeRef(dotted)
    return PGlobal(dotted)


def _hashable(key: object) -> bool:
    """As Python decides it, in constant time (a tuple's answer was kept when it was built)."""
    if isinstance(key, PTuple):
        return key.hashable
    return not (isinstance(key, (PList, PDict)) or (isinstance(key, PSet) and not key.frozen))


_MEMO_INDEX_LIMIT = 1 << 32  # LONG_BINPUT's range; text PUT may name any integer


def _memo_slot(arg: object) -> object:
    """A memo key that cannot be made to collide: small ints as themselves, others as text
    (str hashes are randomised per process, int hashes are not)."""
    if not isinstance(arg, int) or arg < 0:
        raise PickleError("pickle has a negative or non-integer memo index")
    return arg if arg < _MEMO_INDEX_LIMIT else str(arg)


_SCALAR_OPS = frozenset(
    {
        "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
        "FLOAT", "BINFLOAT",
        "STRING", "BINSTRING", "SHORT_BINSTRING",
        "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
        "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
    }
)  # fmt: skip
_CONSTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


def walk(data: bytes) -> WalkResult:
    """Replay `data` symbolically. Raises `PickleCodeRef`, `PickleError` or `BudgetExceeded`."""
    where = [0]  # offset of the last opcode decoded, for the error message
    try:
        return _walk(data, where)
    except (PickleError, BudgetExceeded):
        raise
    except Exception as exc:  # genops raises ValueError mostly; anything else is malformed too
        # genops' own message can quote payload bytes, so only its type and offset are kept
        raise PickleError(f"pickle not well formed after byte {where[0]} ({type(exc).__name__})") from None


def _walk(data: bytes, where: list[int]) -> WalkResult:
    stack: list[object] = []
    marks: list[int] = []
    memo: dict[object, object] = {}
    protocol = 0
    # Opcodes are counted by `enumerate`; the items an opcode moves are taken off `budget`, so
    # the loop pays one comparison per opcode (steps = opcodes + moved = n + step_budget - budget).
    budget = step_budget(len(data))
    start_budget = budget

    def pop() -> object:
        # After MARK the real unpickler starts a fresh stack: items below it are out of reach.
        if not stack or (marks and len(stack) == marks[-1]):
            raise PickleError("pickle stack underflow")
        return stack.pop()

    def pop_mark() -> list[object]:
        nonlocal budget
        if not marks:
            raise PickleError("pickle has no MARK to pop")
        at = marks.pop()
        items = stack[at:]
        del stack[at:]
        budget -= len(items)
        return items

    def top() -> object:
        if not stack or (marks and len(stack) == marks[-1]):
            raise PickleError("pickle stack underflow")
        return stack[-1]

    def pairs(items: list[object]) -> list[tuple[object, object]]:
        if len(items) % 2:
            raise PickleError("odd number of dict items")
        out = list(zip(items[0::2], items[1::2]))
        if not all(_hashable(k) for k, _ in out):
            raise PickleError("unhashable dict key")
        return out

    def call(func: object) -> PObj:
        if not isinstance(func, PGlobal):
            raise PickleError("pickle calls something that is not a global")
        return PObj(func.name)

    for n, (opcode, arg, pos) in enumerate(pickletools.genops(data), 1):
        where[0] = pos
        if n > budget:
            raise BudgetExceeded("pickle")
        name = opcode.name
        if name in _SCALAR_OPS:
            stack.append(arg)
        elif name in _CONSTS:
            stack.append(_CONSTS[name])
        elif name in ("BINPUT", "LONG_BINPUT"):  # a 1- or 4-byte index
            memo[arg] = top()
        elif name == "PUT":  # protocol 0's decimal index: any integer
            memo[_memo_slot(arg)] = top()
        elif name == "MEMOIZE":
            memo[len(memo)] = top()
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            slot = arg if name != "GET" else _memo_slot(arg)
            if slot not in memo:
                raise PickleError("pickle reads an unset memo slot")
            stack.append(memo[slot])
        elif name == "MARK":
            marks.append(len(stack))
        elif name == "EMPTY_DICT":
            stack.append(PDict())
        elif name == "EMPTY_LIST":
            stack.append(PList())
        elif name == "EMPTY_TUPLE":
            stack.append(PTuple(()))
        elif name == "EMPTY_SET":
            stack.append(PSet())
        elif name in ("SETITEM", "SETITEMS", "DICT"):
            if name == "SETITEM":
                value = pop()
                new = pairs([pop(), value])
            else:
                new = pairs(pop_mark())
            if name == "DICT":
                stack.append(PDict(new))
                continue
            target = top()
            if isinstance(target, PDict):
                target.items.extend(new)
            elif not isinstance(target, PObj):  # __setitem__ of an allow-listed type
                raise PickleError("SETITEMS on a non-dict")
        elif name in ("APPEND", "APPENDS", "LIST"):
            new_items = [pop()] if name == "APPEND" else pop_mark()
            if name == "LIST":
                stack.append(PList(new_items))
                continue
            target = top()
            if isinstance(target, PList):
                target.items.extend(new_items)
            elif not isinstance(target, PObj):
                raise PickleError("APPENDS on a non-list")
        elif name in ("TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"):
            if name == "TUPLE":
                stack.append(PTuple(tuple(pop_mark())))
            else:
                size = int(name[-1])
                items = [pop() for _ in range(size)][::-1]
                budget -= size
                stack.append(PTuple(tuple(items)))
        elif name in ("ADDITEMS", "FROZENSET"):
            items = pop_mark()
            if not all(_hashable(i) for i in items):
                raise PickleError("unhashable set member")
            if name == "FROZENSET":
                stack.append(PSet(items, frozen=True))
            else:
                target = top()
                if not isinstance(target, PSet) or target.frozen:
                    raise PickleError("ADDITEMS on a non-set")
                target.items.extend(items)
        elif name == "POP":
            if stack and not (marks and len(stack) == marks[-1]):
                stack.pop()
            else:
                pop_mark()
        elif name == "POP_MARK":
            pop_mark()
        elif name == "DUP":
            stack.append(top())
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            stack.append(_check_global(module, attr))
        elif name == "STACK_GLOBAL":
            attr = pop()
            stack.append(_check_global(pop(), attr))
        elif name == "INST":
            module, _, attr = str(arg).partition(" ")
            _check_global(module, attr)
            pop_mark()
            stack.append(PObj(f"{module}.{attr}"))
        elif name == "OBJ":
            items = pop_mark()
            if not items:
                raise PickleError("OBJ without a class")
            stack.append(call(items[0]))
        elif name == "REDUCE":
            pop()  # args
            stack.append(call(pop()))
        elif name == "NEWOBJ":
            pop()
            stack.append(call(pop()))
        elif name == "NEWOBJ_EX":
            pop()
            pop()
            stack.append(call(pop()))
        elif name == "BUILD":
            pop()  # state
            if not isinstance(top(), PObj):
                raise PickleError("BUILD on a plain container")
        elif name in ("EXT1", "EXT2", "EXT4"):
            raise PickleCodeRef(f"copyreg extension {arg}")
        elif name in ("PERSID", "BINPERSID"):
            raise PickleCodeRef("a persistent_load hook")
        elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
            raise PickleError("pickle needs out-of-band buffers")
        elif name == "PROTO":
            if not 0 <= arg <= 5:
                raise PickleError(f"unsupported pickle protocol {arg}")
            protocol = arg
        elif name == "FRAME":
            pass
        elif name == "STOP":  # like pickle.loads: an open MARK is tolerated
            return WalkResult(top=pop(), protocol=protocol, steps=n + start_budget - budget)
        else:  # an opcode added after this walker was written
            raise PickleError(f"unsupported pickle opcode {name}")
    raise PickleError("pickle has no STOP")


def is_pickle(data: bytes) -> bool:
    """Starts with a PROTO opcode for protocols 2-5 (what every session store writes)."""
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def top_dict(data: bytes) -> PDict:
    """Walk `data` and require a dict at the top (a session). Raises `PickleError`."""
    result = walk(data)
    if not isinstance(result.top, PDict):
        raise PickleError(NOT_A_DICT)
    return result.top
