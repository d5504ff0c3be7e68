"""`SeenKeys`: remembers which keys a backup already wrote, in 16 bytes a key.

SCAN may return a key more than once (while the server resizes its hash table), and a key
may match two patterns. A Python set of the keys themselves would grow by ~100 bytes a key;
this keeps 128-bit BLAKE2b digests in sorted NumPy runs, merged like a log-structured tree,
so membership costs a few binary searches and memory stays small and predictable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

_DTYPE = np.dtype("S16")
_SMALLEST_RUN = 4096


def key_digests(keys: Sequence[bytes]) -> np.ndarray:
    """The 16-byte digest of each key (what `SeenKeys` stores); cheap to ship between processes."""
    blake = hashlib.blake2b
    return np.array([blake(k, digest_size=16).digest() for k in keys], dtype=_DTYPE)


class SeenKeys:
    """Each sorted run is kept twice: the digests, and their first 8 bytes as unsigned integers.
    Binary search over integers is several times faster than over 16-byte strings; a prefix
    match is then confirmed on the whole digest."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (prefixes, digests), sorted, sizes decreasing
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def contains(self, keys: Sequence[bytes]) -> np.ndarray:
        """Boolean mask: which of `keys` were recorded (nothing is added)."""
        return self._contains_digests(key_digests(keys)) if keys else np.zeros(0, dtype=bool)

    def _contains_digests(self, digests: np.ndarray) -> np.ndarray:
        found = np.zeros(len(digests), dtype=bool)
        wanted = _prefixes(digests)
        for prefixes, run in self._runs:
            pos = np.searchsorted(prefixes, wanted)
            pos[pos == len(run)] = 0
            # Equal prefixes sit side by side; a digest matches one of them, usually the first.
            while True:
                same_prefix = prefixes[pos] == wanted
                found |= same_prefix & (run[pos] == digests)
                more = same_prefix & ~found & (pos + 1 < len(run))
                if not more.any():
                    break
                pos = np.where(more, pos + 1, 0)
                wanted = np.where(more, wanted, ~prefixes[0])  # rows already settled stop matching
            wanted = _prefixes(digests)
        return found

    def add_new(self, keys: Sequence[bytes]) -> np.ndarray:
        """Record `keys`; return a boolean mask of those not seen before (first occurrence wins)."""
        return self.add_new_digests(key_digests(keys)) if keys else np.zeros(0, dtype=bool)

    def add_new_digests(self, digests: np.ndarray) -> np.ndarray:
        """`add_new`, for keys whose `key_digests` were computed elsewhere."""
        if not len(digests):
            return np.zeros(0, dtype=bool)
        fresh = ~self._contains_digests(digests)
        # duplicates inside the batch itself: keep the first occurrence
        _, first = np.unique(digests, return_index=True)
        in_batch_first = np.zeros(len(digests), dtype=bool)
        in_batch_first[first] = True
        fresh &= in_batch_first
        self._push(digests[fresh])
        return fresh

    def _push(self, digests: np.ndarray) -> None:
        if not len(digests):
            return
        self._count += len(digests)
        self._runs.append(_sorted_run(digests))
        # keep runs geometrically sized: merge while the newest is at least half the one before
        while len(self._runs) > 1 and (
            len(self._runs[-1][1]) * 2 >= len(self._runs[-2][1]) or len(self._runs[-2][1]) < _SMALLEST_RUN
        ):
            newest = self._runs.pop()[1]
            older = self._runs.pop()[1]
            self._runs.append(_sorted_run(np.concatenate([older, newest])))


def _prefixes(digests: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(digests).view(np.uint64)[::2]


def _sorted_run(digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prefixes = _prefixes(digests)
    order = np.argsort(prefixes, kind="stable")
    return prefixes[order], digests[order]
