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


def _digests(keys: Sequence[bytes]) -> np.ndarray:
    blake = hashlib.blake2b
    return np.array([blake(k, digest_size=16).digest() for k in keys], dtype=_DTYPE)


class SeenKeys:
    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []  # sorted, sizes decreasing
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def contains(self, keys: Sequence[bytes]) -> np.ndarray:
        """Boolean mask: which of `keys` were recorded (nothing is added)."""
        return self._contains_digests(_digests(keys)) if keys else np.zeros(0, dtype=bool)

    def _contains_digests(self, digests: np.ndarray) -> np.ndarray:
        found = np.zeros(len(digests), dtype=bool)
        for run in self._runs:
            pos = np.searchsorted(run, digests)
            pos[pos == len(run)] = 0
            found |= run[pos] == digests
        return found

    def add_new(self, keys: Sequence[bytes]) -> np.ndarray:
        """Record `keys`; return a boolean mask of those not seen before (first occurrence wins)."""
        if not keys:
            return np.zeros(0, dtype=bool)
        digests = _digests(keys)
        fresh = ~self._contains_digests(digests)
        # duplicates inside the batch itself: keep the first occurrence
        _, first = np.unique(digests, return_index=True)
        in_batch_first = np.zeros(len(keys), dtype=bool)
        in_batch_first[first] = True
        fresh &= in_batch_first
        self._push(np.sort(digests[fresh]))
        return fresh

    def _push(self, run: np.ndarray) -> None:
        if not len(run):
            return
        self._count += len(run)
        self._runs.append(run)
        # keep runs geometrically sized: merge while the newest is at least half the one before
        while len(self._runs) > 1 and (
            len(self._runs[-1]) * 2 >= len(self._runs[-2]) or len(self._runs[-2]) < _SMALLEST_RUN
        ):
            newest = self._runs.pop()
            older = self._runs.pop()
            self._runs.append(np.sort(np.concatenate([older, newest]), kind="stable"))
