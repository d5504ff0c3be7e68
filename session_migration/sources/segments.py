"""Split one SCAN walk into equal shares that separate readers can walk at the same time.

SCAN visits hash-table buckets in reverse-binary order: the cursor's bits are reversed,
incremented, and reversed back. Read backwards, the cursor counts up through the table, so
the cursors whose lowest bit is 0 are exactly the first half of the walk, and the walk that
starts at cursor 1 covers exactly the second half. In general, the `2**bits` shares are the
cursors with the same lowest `bits` bits. A key's bucket keeps its lowest bits when the table
grows or shrinks, so every key stays in one share for the whole walk and SCAN's guarantee
(every key present throughout is returned) holds share by share. That needs a table of at
least `2**bits` buckets; Redis never goes below 4, Valkey can use a single bucket for a handful
of keys, where two shares may return the same keys: readers' output is de-duplicated anyway.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    """Share `index` (0-based, in walk order) of `2**bits` shares."""

    bits: int = 0
    index: int = 0

    @property
    def count(self) -> int:
        return 1 << self.bits

    @property
    def first_cursor(self) -> int:
        """Where this share starts: `index` with its `bits` lowest bits reversed."""
        return int(f"{self.index:0{self.bits}b}"[::-1], 2) if self.bits else 0

    def contains(self, cursor: int) -> bool:
        return (cursor & (self.count - 1)) == self.first_cursor


WHOLE = Segment()


def split(count: int) -> list[Segment]:
    """`count` shares of the walk; `count` must be a power of two."""
    if count < 1 or count & (count - 1):
        raise ValueError(f"the number of SCAN segments must be a power of two, not {count}")
    bits = count.bit_length() - 1
    return [Segment(bits, i) for i in range(count)]


def scan_fraction(cursor: int, dbsize: int) -> float:
    """How far a whole SCAN walk has come, from its cursor (an estimate for progress bars)."""
    if cursor == 0 or dbsize <= 0:
        return 0.0
    bits = max(1, (dbsize - 1).bit_length())
    mask = (1 << bits) - 1
    return min(1.0, int(f"{cursor & mask:0{bits}b}"[::-1], 2) / (1 << bits))


def segment_fraction(segment: Segment, cursor: int, dbsize: int) -> float:
    """How far a reader has come through its own share (0 at its first cursor)."""
    if cursor == segment.first_cursor:
        return 0.0
    return min(1.0, max(0.0, scan_fraction(cursor, dbsize) * segment.count - segment.index))
