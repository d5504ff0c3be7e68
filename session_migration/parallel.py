"""Per-part work of validation and statistics spread over processes, results in task order.

    for result in map_ordered(check_one_part, tasks, workers):   # tasks: one tuple of arguments each
        ...

Checksums and Parquet decoding release the GIL, but session parsing is Python, so the
tasks go to one process per core. Processes are forked (on Linux) when this process runs no
other thread (the CLI, benchmarks, plain scripts): a fork starts in milliseconds and inherits
the imports, where a spawned interpreter spends ~0.3-0.5 s importing before its first row.
With other threads alive (Prefect's workers, a Jupyter kernel), forking could copy a lock
some thread holds, so those processes are spawned instead. Arguments and results always
travel pickled, so a worker opens its own connections to remote storage.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from fsspec.implementations.memory import MemoryFileSystem

# Below this many rows a pool costs more than it saves: one process does it all.
MIN_ROWS_FOR_PROCESSES = 50_000

R = TypeVar("R")
# How per-part work is spread: `mapper(fn, tasks, workers, fs)` yields `fn(*task)` in task order
Mapper = Callable[[Callable[..., Any], Sequence[tuple[Any, ...]], int, Any], Iterator[Any]]


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(workers: int | None, rows: int) -> int:
    """`workers` if given, else one a core unless the snapshot is too small to be worth it."""
    if workers is None:
        workers = 1 if rows < MIN_ROWS_FOR_PROCESSES else cpu_count()
    return max(1, workers)


def _context(fs) -> multiprocessing.context.BaseContext | None:
    if sys.platform.startswith("linux") and threading.active_count() == 1:  # macOS libraries are not fork-safe
        return multiprocessing.get_context("fork")
    if isinstance(fs, MemoryFileSystem):
        return None  # memory:// lives in this process: a spawned one would find it empty
    return multiprocessing.get_context("spawn")


def map_ordered(fn: Callable[..., R], tasks: Sequence[tuple[Any, ...]], workers: int, fs=None) -> Iterator[R]:
    """`fn(*task)` for every task, yielded in task order; in this process when `workers` < 2."""
    context = _context(fs) if workers > 1 and len(tasks) > 1 else None
    if context is None:
        for task in tasks:
            yield fn(*task)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
        # Forked children inherit a frozen heap: their garbage collector then never walks the
        # parent's objects, which would copy every page of them (copy-on-write).
        gc.freeze()
        try:
            futures = [pool.submit(fn, *task) for task in tasks]  # the first submit forks every worker
        finally:
            gc.unfreeze()
        for future in futures:
            yield future.result()
