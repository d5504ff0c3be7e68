"""A backup spread over several processes, one per SCAN segment.

One Python process cannot keep both cores busy: decoding replies into rows and encoding
Parquet share the interpreter lock. So for a large database each worker process walks its
own SCAN segment (see `sources/segments.py`), reads its keys and writes its own Parquet parts
(worker `w` of `n` numbers them w, w+n, w+2n, ...). This process keeps what must be global:

- de-duplication: a worker sends the 16-byte digests of each chunk's keys and writes only the
  rows this process answers are new (a key can be returned by two segments: the last SCAN call
  of a segment runs on into the next one);
- the checkpoint: a worker reports each finished part with the position (pattern, cursor)
  after its last chunk, and the counters of what it read since its previous part.

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
from .sinks.parquet import PartWriter
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


def after(pattern_index: int, cursor: int) -> Position:
    """Where a walk goes on after a chunk that ended at `cursor` (0 in a chunk: that pattern is done)."""
    return (pattern_index + 1, 0) if cursor == 0 else (pattern_index, cursor)


def next_part_indexes(parts: list[PartInfo], workers: int) -> list[int]:
    """For each worker, the index of its next part, after those it already completed."""
    nexts = list(range(workers))
    for part in parts:
        index = int(_PART_INDEX.search(part.name).group(1))
        nexts[index % workers] = max(nexts[index % workers], index + workers)
    return nexts


ReportFn = Callable[[list[Position], int], None]  # (positions, rows written so far)


def copy_in_processes(endpoint: RedisEndpoint, options: BackupOptions, fs: fsspec.AbstractFileSystem, path: str,
                      checkpoint: BackupCheckpoint, seen: SeenKeys, report: ReportFn) -> None:
    """Run one worker per position in `checkpoint`, recording each finished part in it."""
    workers = len(checkpoint.positions)
    positions = list(checkpoint.positions)
    firsts = next_part_indexes(checkpoint.parts, workers)
    running: dict[Connection, tuple[int, subprocess.Popen]] = {}
    fresh_rows = checkpoint.counters.keys
    try:
        for index, segment in enumerate(split(workers)):
            job = _Job(endpoint, options, fs, path, segment, positions[index], firsts[index], seen.hash_keys)
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
                    _, part, position, counters = message
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
    def __init__(self, job: _Job, conn: Connection):
        self.job = job
        self.conn = conn
        self.options = job.options
        self.next_part = job.first_part
        self.step = job.segment.count
        self.part: PartWriter | None = None
        self.counters = BackupCounters()  # since the last reported part

    def run(self) -> None:
        options = self.options
        source = RedisSource(self.job.endpoint, preserve_ttl=options.preserve_ttl, capture_dump=options.capture_dump)
        try:
            chunks = source.read_chunks(options.patterns, options.batch_size, *self.job.start, segment=self.job.segment)
            for chunk in chunks:
                position = after(chunk.pattern_index, chunk.cursor)
                self.counters.scanned += chunk.scanned
                if chunk.result is None:
                    self.conn.send(("position", position))
                else:
                    self._take(chunk.pattern_index, chunk.result, position)
                if self.part is not None and self.part.rows >= options.part_rows:
                    self._finish_part(position, "part")
            done = (len(options.patterns), 0)
            if self.part is not None:
                self._finish_part(done, "part")
            self.conn.send(("done", None, done, self.counters.as_dict()))
        finally:
            if self.part is not None:
                self.part.abort()
            source.close()

    def _take(self, pattern_index: int, result, position: Position) -> None:
        batch = result.batch
        self.counters.vanished += result.vanished
        self.conn.send(("seen", position, key_digests(batch.column("key").to_pylist(), self.job.hash_keys).tobytes()))
        fresh = np.frombuffer(self.conn.recv_bytes(), dtype=bool)
        if not fresh.all():
            self.counters.duplicates += int((~fresh).sum())
            batch = batch.filter(fresh)
        if not batch.num_rows:
            return
        self.counters.add_batch(self.options.patterns[pattern_index], batch)
        if self.part is None:
            self.part = PartWriter(self.job.fs, self.job.path, self.next_part, compression=self.options.compression,
                                   row_group_rows=self.options.row_group_rows)
        self.part.write(batch)

    def _finish_part(self, position: Position, kind: str) -> None:
        info = self.part.finish()
        self.part = None
        self.next_part += self.step
        self.conn.send((kind, info.as_dict(), position, self.counters.as_dict()))
        self.counters = BackupCounters()


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

