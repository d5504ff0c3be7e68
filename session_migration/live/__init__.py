"""Live runs: follow the source's changes during and after a copy, so the target is current at
cutover (transfer --live, migrate --live).

- `feed.py`: keyspace notifications -> changed keys (a thread), with gap detection.
- `pending.py`: the changed keys not yet applied: bounded memory, spill files beyond.
- `mirror.py`: apply a key (re-read it from the source, write or delete it on the target) and
  the compare-and-repair pass.
- `follow.py`: the loop after the copy, stopping, the final verify and the summary.

A live run's recorder must start before the copy and outlive the steps between (a transfer's
copy; a migration's backup, pre-image and restore). The steps of an operation share one
process, so it is kept here by id (`begin` ... `end`); only the id travels between steps.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ..endpoints import RedisEndpoint
from ..options import LiveOptions
from .feed import ChangeFeed
from .follow import start_following
from .pending import PendingKeys


@dataclass
class Recording:
    pending: PendingKeys
    feed: ChangeFeed | None
    spill_fs: Any
    spill_dir: str


_RECORDINGS: dict[str, Recording] = {}


def begin(source: RedisEndpoint, patterns: tuple[str, ...], live: LiveOptions, spill_fs: Any, spill_dir: str) -> str:
    """Start recording the source's changes; the id names the recording to later steps."""
    pending, feed = start_following(source, patterns, live, spill_fs, spill_dir)
    recording_id = uuid.uuid4().hex
    _RECORDINGS[recording_id] = Recording(pending, feed, spill_fs, spill_dir)
    return recording_id


def recording(recording_id: str) -> Recording:
    try:
        return _RECORDINGS[recording_id]
    except KeyError:
        raise RuntimeError("the live recording is not in this process (a step ran elsewhere?)") from None


def end(recording_id: str) -> None:
    """Stop recording, put the server's notification setting back, remove spill files."""
    found = _RECORDINGS.pop(recording_id, None)
    if found is None:
        return
    try:
        if found.feed is not None:
            found.feed.stop()
    finally:
        found.pending.clear()
        try:
            if found.spill_fs.exists(found.spill_dir):
                found.spill_fs.rm(found.spill_dir, recursive=True)
        except OSError:
            pass
