"""Redis glob patterns (`SCAN ... MATCH`) as one regex, applied to a whole key column at once.

    in_scope = scope_mask(batch.column("key"), ["sess:*", "session_[0-9]*"])   # numpy bool array

The translation follows Redis' `stringmatchlen` (src/util.c) byte for byte, quirks included,
because validation must say "out of scope" exactly when the server would not have matched:

- `*` any bytes, `?` one byte, `\\x` the byte x; a trailing lone `\\` is a literal backslash.
- `[...]` a set, `[^...]` its complement; inside, `\\x` is x and `a-z` a range whose ends may
  come in either order. The first `]` ends the set (so `[]` is empty and `[^]` is any byte),
  an unterminated `[` runs to the end of the pattern, and `a-]` is a range whose `]` does not
  close the set. Range ends compare as C `char`, signed on the x86-64 and Linux builds servers
  run (so `[a-\\xff]` means bytes 0xff and 0x00-0x61).
- Pattern `*` alone matches every key, even the empty one (SCAN does not match then); any
  other pattern needs at least one byte of key.

Matching runs in Arrow's RE2 (binary input is matched byte-wise), which is linear in the key
and never backtracks; nothing falls back to a backtracking engine. Patterns are checked for
number and size first (`patterns.check_patterns`). A pattern that is a literal ASCII head and
one final `*` (`sess:*`, most session stores') is a prefix comparison, and only the keys no
prefix took go on to the regexes. Other patterns with at most two `*` are matched
by one expression; each pattern with more gets an expression (and a pass) of its own, because
the union of many such patterns makes RE2's automaton blow up (256 patterns of four `*` each:
~5 ms per key in one expression, ~0.1 ms in separate passes). An expression RE2 refuses
(too large) is also split into one pass per pattern.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .patterns import check_patterns

_COMBINED_STARS = 2  # patterns with at most this many '*' share one expression


def glob_to_regex(pattern: str | bytes) -> str:
    """The regex body (no anchors) matching exactly the keys Redis matches with `pattern`."""
    pat = pattern.encode("utf-8") if isinstance(pattern, str) else bytes(pattern)
    out: list[str] = []
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        if c == 0x2A:  # '*': runs of stars are one star
            while i + 1 < n and pat[i + 1] == 0x2A:
                i += 1
            out.append(".*")
        elif c == 0x3F:  # '?'
            out.append(".")
        elif c == 0x5B:  # '['
            members, i = _bracket(pat, i + 1)
            out.append(_byte_class(members))
        else:
            if c == 0x5C and i + 1 < n:  # '\': the next byte is literal
                i += 1
            out.append(_byte(pat[i]))
        i += 1
    return "".join(out)


def _bracket(pat: bytes, i: int) -> tuple[set[int], int]:
    """Parse a set starting after its '['; return its bytes and the index of its last byte.

    Mirrors the C loop step by step (including where it reads past the end), so every
    malformed set means what it means to the server.
    """
    n = len(pat)
    negate = i < n and pat[i] == 0x5E  # '^'
    if negate:
        i += 1
    members: set[int] = set()
    while True:
        left = n - i
        if left >= 2 and pat[i] == 0x5C:  # '\x' inside a set: x itself
            i += 1
            members.add(pat[i])
        elif left >= 1 and pat[i] == 0x5D:  # ']' closes the set
            break
        elif left <= 0:  # unterminated: the set ends with the pattern
            i -= 1
            break
        elif left >= 3 and pat[i + 1] == 0x2D:  # 'a-z'
            lo, hi = sorted((_signed(pat[i]), _signed(pat[i + 2])))
            members.update(b for b in range(256) if lo <= _signed(b) <= hi)
            i += 2
        else:
            members.add(pat[i])
        i += 1
    return (set(range(256)) - members if negate else members), i


def _signed(b: int) -> int:
    return b - 256 if b >= 128 else b


def _byte(b: int) -> str:
    return chr(b) if chr(b).isascii() and chr(b).isalnum() else f"\\x{b:02x}"


def _byte_class(members: set[int]) -> str:
    if not members:
        return "[^\\x00-\\xff]"  # matches nothing
    runs, ordered = [], sorted(members)
    start = prev = ordered[0]
    for b in ordered[1:] + [None]:
        if b is not None and b == prev + 1:
            prev = b
            continue
        runs.append(f"\\x{start:02x}" if start == prev else f"\\x{start:02x}-\\x{prev:02x}")
        if b is not None:
            start = prev = b
    return "[" + "".join(runs) + "]"


def scope_regex(patterns: Iterable[str]) -> str:
    """One regex body matching any of `patterns` (for a full match of the whole key)."""
    return "|".join(f"(?:{glob_to_regex(p)})" for p in patterns)


class ScopeMatcher:
    """Which keys of an Arrow binary column `patterns` cover, as Redis decides.

    `patterns` are checked first (`check_patterns`); from a manifest or a state file, pass
    `error` (e.g. `SnapshotInvalid`) and `where` to say so in the refusal.
    """

    def __init__(self, patterns: Sequence[str], *, error: type[Exception] | None = None, where: str = "") -> None:
        self.patterns = check_patterns(patterns, error, where)
        heads = {p: _literal_prefix(p) for p in self.patterns}
        self._prefixes = [head for head in heads.values() if head is not None]
        others = [p for p, head in heads.items() if head is None]
        simple = [p for p in others if p.count("*") <= _COMBINED_STARS]
        self._combined = _anchored(simple) if len(simple) > 1 else None
        self._separate = [_anchored([p]) for p in others if self._combined is None or p not in simple]
        self._split = [_anchored([p]) for p in simple]  # used if RE2 refuses the combined expression
        self._empty_ok = "*" in self.patterns  # only the lone '*' covers the empty key

    def fullmatch(self, key: bytes) -> bool:
        return bool(self.mask(pa.array([key], pa.binary()))[0])

    def select(self, keys: list[bytes]) -> list[bytes]:
        """The keys in scope, in their order."""
        if not keys:
            return []
        column = pa.array(keys, pa.binary())
        return column.filter(pa.array(self.mask(column))).to_pylist()

    def mask(self, keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Boolean numpy array: True where the key is in scope."""
        result = np.zeros(len(keys), dtype=bool)
        for prefix in self._prefixes:  # a byte comparison, ~10x cheaper than a regex pass
            result |= _true(pc.starts_with(keys, pattern=prefix))
            if result.all():  # the usual batch: one store's keys; none of them is empty
                return result
        pending = np.flatnonzero(~result)
        if len(pending) and (self._combined is not None or self._separate):
            rest = keys if len(pending) == len(keys) else keys.take(pa.array(pending))
            result[pending] = self._regex_mask(rest)
        empty = np.asarray(pc.equal(pc.binary_length(keys), 0).to_numpy(zero_copy_only=False), dtype=bool)
        result[empty] = self._empty_ok
        return result


    def _regex_mask(self, keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
        result = np.zeros(len(keys), dtype=bool)
        if self._combined is not None:
            try:
                result |= _matches(keys, self._combined)
            except pa.ArrowInvalid:  # too large for RE2: one pass per pattern from now on
                self._combined, self._separate = None, self._split + self._separate
        for expression in self._separate:
            result |= _matches(keys, expression)
        return result


def _literal_prefix(pattern: str) -> str | None:
    """The literal head of `head*` (ASCII, no glob character in it): such a pattern matches
    exactly the keys that start with those bytes."""
    head = pattern[:-1]
    if pattern.endswith("*") and head and head.isascii() and not any(c in "*?[\\" for c in head):
        return head
    return None


def _true(matched: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(matched, False).to_numpy(zero_copy_only=False), dtype=bool)


def _anchored(patterns: Sequence[str]) -> str:
    return f"(?s)^(?:{scope_regex(patterns)})$"  # RE2: `$` is the end of the text, never before a final newline


def _matches(keys: pa.Array | pa.ChunkedArray, expression: str) -> np.ndarray:
    return _true(pc.match_substring_regex(keys, expression))  # null keys match nothing
