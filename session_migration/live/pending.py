"""The keys that changed on the source and are not yet applied to the target.

Held in memory up to a limit (a dict: key -> when it was first seen changed, oldest first);
beyond it the whole set goes to a spill file and memory starts again, so a writer faster than
the target, or a long copy, costs disk, not memory. Spill files are ours, but they live in the
backup storage: each is checked against the sha256 and count kept in memory when it was written
before a key of it is believed. A key listed twice (in memory and in a spill file) is applied
twice, which is harmless: applying re-reads the source.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from itertools import islice

import fsspec

from .. import storage
from ..errors import SnapshotInvalid

_LEN = struct.Struct(">I")


def pack_keys(keys: list[bytes]) -> bytes:
    """Keys as length-prefixed records: 4-byte big-endian length, then the key."""
    return b"".join(_LEN.pack(len(k)) + k for k in keys)


def unpack_keys(data: bytes, count: int) -> list[bytes]:
    """The `count` keys of `pack_keys`; ValueError when the data is not exactly that."""
    keys, pos = [], 0
    for _ in range(count):
        if pos + 4 > len(data):
            raise ValueError("it ends inside a record")
        (size,) = _LEN.unpack_from(data, pos)
        pos += 4
        if pos + size > len(data):
            raise ValueError("it ends inside a key")
        keys.append(bytes(data[pos:pos + size]))
        pos += size
    if pos != len(data):
        raise ValueError("it holds more than its records")
    return keys


@dataclass(frozen=True)
class KeyFile:
    """A file of keys this run wrote, and what it must contain when read back."""

    path: str
    sha256: str
    count: int


def write_key_file(fs: fsspec.AbstractFileSystem, path: str, keys: list[bytes]) -> KeyFile:
    data = pack_keys(keys)
    storage.write_atomic(fs, path, data)
    return KeyFile(path, hashlib.sha256(data).hexdigest(), len(keys))


def read_key_file(fs: fsspec.AbstractFileSystem, known: KeyFile, limit_bytes: int = 1 << 30) -> list[bytes]:
    """The keys of a file written by `write_key_file`, refused unless its sha256 and count are
    the ones recorded when it was written."""
    data = storage.read_bytes(fs, known.path, limit=limit_bytes + 1)
    where = storage.unstrip(fs, known.path)
    if data is None:
        raise SnapshotInvalid(f"The key file {where} is gone; it was written by this run.")
    if len(data) > limit_bytes or hashlib.sha256(data).hexdigest() != known.sha256:
        raise SnapshotInvalid(f"The key file {where} changed after it was written (its sha256 differs).")
    try:
        return unpack_keys(data, known.count)
    except ValueError as exc:
        raise SnapshotInvalid(f"The key file {where} is unreadable ({exc}).") from None


class PendingKeys:
    """Changed keys waiting to be applied; safe to fill from one thread and take from another."""

    def __init__(self, limit: int, spill_fs: fsspec.AbstractFileSystem | None = None, spill_dir: str | None = None):
        self.limit = limit
        self._spill_fs, self._spill_dir = spill_fs, spill_dir
        self._keys: dict[bytes, float] = {}
        self._spilled: deque[tuple[KeyFile, float]] = deque()  # files not yet read, with their oldest time
        self._loaded: deque[tuple[bytes, float]] = deque()  # keys read back from a spill file
        self._lock = threading.Lock()
        self.spills = 0  # spill files written
        self.total = 0  # keys added, repeats while pending not counted

    def add(self, keys: list[bytes], at: float | None = None) -> None:
        """Note `keys` as changed at `at` (monotonic seconds; default now)."""
        at = time.monotonic() if at is None else at
        with self._lock:
            before = len(self._keys)
            for key in keys:
                self._keys.setdefault(key, at)
            self.total += len(self._keys) - before
            if len(self._keys) > self.limit:
                self._spill()

    def _spill(self) -> None:
        if self._spill_fs is None:
            raise RuntimeError("more changed keys than the limit and nowhere to spill them")
        self.spills += 1
        oldest = next(iter(self._keys.values()))
        path = storage.join(self._spill_dir, f"spill-{self.spills:06d}-{time.time_ns()}.keys")
        self._spilled.append((write_key_file(self._spill_fs, path, list(self._keys)), oldest))
        self._keys = {}

    def take(self, n: int) -> list[tuple[bytes, float]]:
        """Up to `n` keys, oldest first, with when each was first seen changed."""
        with self._lock:
            if not self._loaded and self._spilled:
                known, oldest = self._spilled.popleft()
                keys = read_key_file(self._spill_fs, known)
                self._spill_fs.rm_file(known.path)
                self._loaded.extend((k, oldest) for k in keys)
            if self._loaded:
                return [self._loaded.popleft() for _ in range(min(n, len(self._loaded)))]
            taken = list(islice(self._keys.items(), n))
            for key, _ in taken:
                del self._keys[key]
            return taken

    def put_back(self, taken: list[tuple[bytes, float]]) -> None:
        """Keys taken but not applied (an error or a stop in between): pending again."""
        with self._lock:
            for key, at in taken:
                self._keys.setdefault(key, at)

    def clear(self) -> None:
        """Forget every pending key (a compare-and-repair pass is about to cover them all)."""
        with self._lock:
            self._keys = {}
            self._loaded.clear()
            while self._spilled:
                known, _ = self._spilled.popleft()
                self._spill_fs.rm_file(known.path)

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys) + len(self._loaded) + sum(k.count for k, _ in self._spilled)

    def oldest(self) -> float | None:
        """When the longest-waiting pending key was first seen changed."""
        with self._lock:
            times = [at for _, at in islice(self._loaded, 1)] + [at for _, at in islice(self._spilled, 1)]
            times += list(islice(self._keys.values(), 1))
            return min(times) if times else None
