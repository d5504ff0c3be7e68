"""A backup spread over several processes, one per unit: a SCAN segment, or a cluster's master.

One Python process cannot keep both cores busy: decoding replies into rows and encoding
Parquet share the interpreter lock. So for a large database each worker process walks its
own SCAN segment (see `sources/segments.py`), reads its keys and writes its own Parquet parts
(worker `w` of `n` numbers them w, w+n, w+2n, ...). This process keeps what must be global:

- de-duplication: a worker sends the 16-byte digests of each chunk's keys and writes only the
  rows this process answers are new (a key can be returned by two segments: the last SCAN call
  of a segment runs on into the next one);
- the checkpoint: a worker reports each finished part with the position (pattern, cursor)
  after its last chunk, and the counters of what it read since its previous part (and, on a
  cluster, the slots of keys it found moved: re-walked at the end, see `sources/cluster.py`).

A resumed backup restarts each worker at its checkpointed position; the de-duplication state is
rebuilt from the completed parts, as for a backup in one process.

Workers are started fresh (`python -c`), not forked: the caller may be a Prefect flow with
threads of its own. The job, which can hold the password, goes over a socket pair, never on
a command line or in the environment. pickle carries only these processes' own messages;
session values never travel between them.
"""

from __future__ import annotations

import atexit
import gc
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

import fsspec
import numpy as np

from .checkpoint import BackupCheckpoint
from .counters import BackupCounters
from .endpoints import RedisEndpoint
from .errors import ServerUnavailable
from .options import BackupOptions
from .seen import HashKeys, SeenKeys, key_digests
from .sinks.snapshot import SnapshotSink
from .snapshot import PartInfo
from .sources.redis import RedisSource
from .sources.segments import Segment, split

Position = tuple[int, int]  # (pattern index, cursor): where a segment's walk goes on; cursor 0 = its start

_CHILD = f"from {__name__} import main; main()"
_PART_INDEX = re.compile(r"(\d+)")


@dataclass(frozen=True)
class _Job:
    endpoint: RedisEndpoint
    options: BackupOptions
    fs: fsspec.AbstractFileSystem
    path: str
    segment: Segment
    start: Position
    first_part: int  # this worker's next part index; it steps by the number of workers
    hash_keys: HashKeys  # the coordinator's `SeenKeys` keys, for the digests sent to it
    workers: int = 1  # how many there are: the step between this worker's part indexes
    cluster: bool = False  # the endpoint is a cluster node (a master, or a replica read with READONLY)
    readonly: bool = False


def next_part_indexes(parts: list[PartInfo], workers: int) -> list[int]:
    """For each worker, the index of its next part, after those it already completed."""
    nexts = list(range(workers))
    for part in parts:
        index = int(_PART_INDEX.search(part.name).group(1))
        nexts[index % workers] = max(nexts[index % workers], index + workers)
    return nexts


ReportFn = Callable[[list[Position], int], None]  # (positions, rows written so far)


def copy_in_processes(endpoint: RedisEndpoint, options: BackupOptions, fs: fsspec.AbstractFileSystem, path: str,
                      checkpoint: BackupCheckpoint, seen: SeenKeys, report: ReportFn,
                      units: list[tuple[RedisEndpoint, bool, Segment]] | None = None) -> None:
    """Run one worker per position in `checkpoint`, recording each finished part in it.
    `units`: a cluster's, (node endpoint, READONLY, segment) per position; else segments of
    `endpoint`."""
    workers = len(checkpoint.positions)
    positions = list(checkpoint.positions)
    firsts = next_part_indexes(checkpoint.parts, workers)
    running: dict[Connection, tuple[int, subprocess.Popen]] = {}
    fresh_rows = checkpoint.counters.keys
    todo = units or [(endpoint, False, segment) for segment in split(workers)]
    try:
        for index, (where, readonly, segment) in enumerate(todo):
            if positions[index][0] >= len(options.patterns):
                continue  # this unit is done
            job = _Job(where, options, fs, path, segment, positions[index], firsts[index], seen.hash_keys,
                       workers=workers, cluster=units is not None, readonly=readonly)
            running.update([_start(job, index)])
        while running:
            for conn in wait(list(running)):
                index, process = running[conn]
                message = _receive(conn, process, endpoint)
                kind = message[0]
                if kind == "seen":
                    positions[index] = message[1]
                    fresh = seen.add_new_digests(np.frombuffer(message[2], dtype=np.dtype("S16")))
                    conn.send_bytes(fresh.tobytes())
                    fresh_rows += int(fresh.sum())
                elif kind == "position":
                    positions[index] = message[1]
                elif kind in ("part", "done"):
                    _, part, position, counters, moved = message
                    if moved and checkpoint.cluster is not None:
                        checkpoint.cluster["suspect"] = sorted(set(checkpoint.cluster["suspect"]) | set(moved))
                    if part is not None:
                        checkpoint.parts.append(PartInfo(**part))
                    checkpoint.counters.add(BackupCounters.from_dict(counters))
                    positions[index] = checkpoint.positions[index] = position
                    checkpoint.save(fs, path)
                    if kind == "done":
                        del running[conn]
                        conn.close()
                        process.wait()
                report(positions, fresh_rows)
    finally:
        for conn, (_index, process) in running.items():
            conn.close()
            process.kill()
            process.wait()


def _start(job: _Job, index: int) -> tuple[Connection, tuple[int, subprocess.Popen]]:
    ours, theirs = socket.socketpair()
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])  # so the child imports this same source tree
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    try:
        process = subprocess.Popen([sys.executable, "-c", _CHILD, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                   stdin=subprocess.DEVNULL, env=env)
    finally:
        theirs.close()
    conn = Connection(ours.detach())
    conn.send(job)
    return conn, (index, process)


def _receive(conn: Connection, process: subprocess.Popen, endpoint: RedisEndpoint) -> tuple:
    try:
        message = conn.recv()
    except (EOFError, ConnectionError):
        code = process.wait()
        raise ServerUnavailable(
            f"A backup worker reading {endpoint.display_url} stopped unexpectedly (exit code {code})."
        ) from None
    if message[0] == "error":
        raise message[1]
    return message


# -- the worker process ---------------------------------------------------------------------------


class _Worker:
    """One share of the SCAN walk, read and written by this process through the one copy loop;
    the coordinator de-duplicates (a round trip per group of reads) and keeps the checkpoint."""

    def __init__(self, job: _Job, conn: Connection):
        self.job = job
        self.conn = conn
        self.options = job.options
        self.counters = BackupCounters()  # since the last reported part

    def run(self) -> None:
        from .pipeline import copy, dedupe_and_count

        options = self.options
        source = self.source = RedisSource(
            self.job.endpoint, patterns=options.patterns, batch_size=options.batch_size, segment=self.job.segment,
            preserve_ttl=options.preserve_ttl, capture_dump=options.capture_dump, cluster=self.job.cluster,
            readonly=self.job.readonly)
        sink = SnapshotSink(self.job.fs, self.job.path, first=self.job.first_part, step=self.job.workers,
                            compression=options.compression, row_group_rows=options.row_group_rows)
        try:
            copy(source.read(self.job.start), sink,
                 lambda group: dedupe_and_count(group, self.counters, options.patterns, self._fresh(group)),
                 group_rows=min(options.row_group_rows, options.part_rows), commit_rows=options.part_rows,
                 on_commit=self._part_done, on_group=lambda position: self.conn.send(("position", position)))
            self.conn.send(("done", None, (len(options.patterns), 0), self.counters.as_dict(), self._moved()))
        finally:
            source.close()

    def _fresh(self, group) -> Callable[[list[bytes]], np.ndarray]:
        """Which keys are new to the whole backup: the coordinator answers for their digests."""
        def ask(keys: list[bytes]) -> np.ndarray:
            self.conn.send(("seen", group[-1].position, key_digests(keys, self.job.hash_keys).tobytes()))
            return np.frombuffer(self.conn.recv_bytes(), dtype=bool)

        return ask

    def _part_done(self, position: Position, parts: list[PartInfo]) -> None:
        for info in parts:
            self.conn.send(("part", info.as_dict(), position, self.counters.as_dict(), self._moved()))
            self.counters = BackupCounters()

    def _moved(self) -> list[int]:
        """The slots of keys found moved (cluster) since the last report."""
        slots = sorted(self.source.moved_slots)
        self.source.moved_slots.clear()
        return slots


def main() -> None:
    # A worker's own process: skip the cyclic collector's pass over what is alive at exit.
    atexit.register(gc.freeze)
    conn = Connection(int(sys.argv[-1]))
    job: _Job = conn.recv()
    try:
        _Worker(job, conn).run()
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return  # the backup stopped listening: it failed or was interrupted
    except Exception as exc:  # noqa: BLE001 - handed to the backup, which raises it
        try:
            conn.send(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            conn.send(("error", ServerUnavailable(f"{type(exc).__name__}: {exc}")))


def shareable(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether other processes see what this one writes to `fs` (not so for memory://)."""
    return "memory" not in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))

