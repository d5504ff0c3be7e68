"""The live steps of a transfer and of a migration: start recording before the copy, follow
after it. Each records what a rerun needs in the run's own state file:

- transfer: the checkpoint's `live` record: the sha256 and count of the keep file (the keys in
  scope the target held, and the source did not, before the first write; a repair pass never
  deletes them) and whether the run was following. A rerun of a run that was following (kill -9)
  skips the finished copy and starts with a compare-and-repair pass.
- migration: the keys to keep are those of the target's pre-image that the source snapshot does
  not hold; the state file's step `following` marks a run to resume the same way.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

import fsspec

from .. import storage
from ..endpoints import RedisEndpoint
from ..errors import InvalidParameter
from ..options import LiveOptions, TransferOptions
from ..seen import SeenKeys
from ..signing import Keyring
from . import begin, end, recording
from .follow import Follower, LiveProgress, StopFlag, announced_stop, stop_on_signals
from .mirror import Mirror
from .pending import KeyFile, read_key_file, write_key_file

_SAVE_EVERY_S = 10.0
_EVENT_FLAGS = re.compile(r"[KEg$lshzxetAdmn]{0,24}")  # what notify-keyspace-events may hold
SETTING_BEFORE = "notify_keyspace_events_before"


def setting_to_put_back(recording_id: str, recorded: object) -> str | None:
    """The notify-keyspace-events value to put back when following ends: the one this run
    changed, or the one an earlier run of the same transfer or migration changed and recorded
    before it was killed (only event flags are believed from a state file)."""
    feed = recording(recording_id).feed
    if feed is None:
        return None
    if not feed.changed_setting and isinstance(recorded, str) and _EVENT_FLAGS.fullmatch(recorded):
        feed.previous, feed.changed_setting = recorded, True
    return feed.previous if feed.changed_setting else None


def _base(checkpoint_path: str) -> str:
    return checkpoint_path.removesuffix(".json")


def keep_path(checkpoint_path: str) -> str:
    return _base(checkpoint_path) + ".keep"


def spill_dir(state_path: str) -> str:
    return _base(state_path) + "-spill"


def target_only_keys(source: RedisEndpoint, target: RedisEndpoint, patterns: tuple[str, ...],
                     batch_size: int) -> list[bytes]:
    """The keys in scope on the target that the source does not have: the target's own."""
    mirror = Mirror(source, target, patterns, batch_size=batch_size)
    try:
        own: list[bytes] = []
        for _cursor, keys in mirror.target.keyspace_chunks():
            if keys:
                own += [k for k, e in zip(keys, mirror.source.exists(keys)) if not e]
        return own
    finally:
        mirror.close()


# -- transfer ------------------------------------------------------------------------------------


def start_live_transfer(source: RedisEndpoint, target: RedisEndpoint, options: TransferOptions, live: LiveOptions,
                        fs: fsspec.AbstractFileSystem, root: str, keyring: Keyring) -> dict[str, Any]:
    """Subscribe to the source's changes (before the copy), and record the target's own keys
    once. Returns the recording's id, how many keys the target keeps, and whether an earlier
    run of this transfer was live (then nobody recorded the changes since it stopped)."""
    from ..transfer import _load_checkpoint, checkpoint_file

    LiveOptions.check_writes(options)
    path = checkpoint_file(root, source, target, options)
    checkpoint = _load_checkpoint(fs, path, source, target, options, keyring)
    if checkpoint is None:
        raise InvalidParameter(f"No transfer from {source.display_url} to {target.display_url} is under way.")
    recording_id = begin(source, options.patterns, live, fs, spill_dir(path))
    earlier = checkpoint.live is not None  # an earlier run recorded too, then stopped: changes since are unknown
    try:
        if checkpoint.live is None:
            own = target_only_keys(source, target, options.patterns, options.batch_size)
            known = write_key_file(fs, keep_path(path), own)
            checkpoint.live = {"keep": {"sha256": known.sha256, "count": known.count}, "following": False}
        checkpoint.live[SETTING_BEFORE] = setting_to_put_back(recording_id, checkpoint.live.get(SETTING_BEFORE))
        checkpoint.write(fs, path)
    except BaseException:
        end(recording_id)
        raise
    return {"recording": recording_id, "kept_target_only": checkpoint.live["keep"]["count"], "earlier_run": earlier}


def follow_transfer(recording_id: str, source: RedisEndpoint, target: RedisEndpoint, options: TransferOptions,
                    live: LiveOptions, fs: fsspec.AbstractFileSystem, root: str, keyring: Keyring,
                    progress: Callable[[LiveProgress], None] | None = None, repair_first: bool = False
                    ) -> dict[str, Any]:
    """Follow until stopped, then cut over; the checkpoint says `following` meanwhile."""
    from ..transfer import _load_checkpoint, checkpoint_file

    path = checkpoint_file(root, source, target, options)
    checkpoint = _load_checkpoint(fs, path, source, target, options, keyring)
    if checkpoint is None or checkpoint.live is None:
        raise InvalidParameter("The live transfer's checkpoint is gone; start it again.")
    keep = checkpoint.live["keep"]
    own = read_key_file(fs, KeyFile(keep_path(path), keep["sha256"], keep["count"]))

    def save(summary: dict[str, Any], following: bool = True) -> None:
        checkpoint.live.update(following=following, summary=summary)
        checkpoint.write(fs, path)

    save({}, following=True)
    summary = _follow(recording_id, source, target, options.patterns, options.batch_size, live, own, progress,
                      save, repair_first)
    save(summary, following=False)
    return summary


# -- migration -----------------------------------------------------------------------------------


def migration_keep(pre_image: Any, snapshot: Any) -> list[bytes]:
    """The target's own keys: in its pre-image, not in the source's snapshot."""
    from_source = SeenKeys()
    for batch in snapshot.iter_batches(columns=["key"]):
        from_source.add_new(batch.column("key").to_pylist())
    own: list[bytes] = []
    for batch in pre_image.iter_batches(columns=["key"]):
        keys = batch.column("key").to_pylist()
        own += [k for k, there in zip(keys, from_source.contains(keys).tolist()) if not there]
    return own


def follow_migration(recording_id: str, source: RedisEndpoint, target: RedisEndpoint, fs: fsspec.AbstractFileSystem,
                     root: str, migration_id: str, live: LiveOptions, keyring: Keyring,
                     progress: Callable[[LiveProgress], None] | None = None, repair_first: bool = False
                     ) -> dict[str, Any]:
    """Follow a migration's source until stopped; the state file (step `following`) keeps the
    summary. The target's own keys come from its pre-image (both snapshots checked first)."""
    from ..migration import MigrationState, record_live
    from ..snapshot import open_snapshot

    state = MigrationState.load(fs, root, migration_id, keyring)
    if state.snapshot_id is None or state.pre_image_id is None:
        raise InvalidParameter(f"Migration {migration_id} has no snapshot and pre-image to follow from.")
    snapshot = open_snapshot(fs, storage.join(root, state.snapshot_id), keyring=keyring)
    pre_image = open_snapshot(fs, storage.join(root, state.pre_image_id), keyring=keyring)
    own = migration_keep(pre_image, snapshot)
    before = setting_to_put_back(recording_id, (state.counts.get("live") or {}).get(SETTING_BEFORE))
    record_live(fs, root, migration_id, {SETTING_BEFORE: before}, keyring)
    summary = _follow(recording_id, source, target, state.patterns, int(state.options.get("batch_size", 1000)), live,
                      own, progress,
                      lambda summary: record_live(fs, root, migration_id, {**summary, SETTING_BEFORE: before}, keyring),
                      repair_first)
    record_live(fs, root, migration_id, summary, keyring)
    return summary


# -- shared --------------------------------------------------------------------------------------


def _follow(recording_id: str, source: RedisEndpoint, target: RedisEndpoint, patterns: tuple[str, ...],
            batch_size: int, live: LiveOptions, own: list[bytes], progress: Callable[[LiveProgress], None] | None,
            save: Callable[[dict[str, Any]], None], repair_first: bool) -> dict[str, Any]:
    saved = [time.monotonic()]

    def checkpoint(summary: dict[str, Any]) -> None:
        if time.monotonic() - saved[0] >= _SAVE_EVERY_S:
            save(summary)
            saved[0] = time.monotonic()

    # "Now following ... Ctrl-C or SIGTERM stops following" is already on the screen, and the
    # signals already stop following (`signals_stop_following`): one while the mirror connects
    # is such a stop too, not an interrupt. Called otherwise, this takes the signals itself.
    stop = announced_stop()
    with contextlib.nullcontext() if stop is not None else stop_on_signals(stop := StopFlag()):
        found = recording(recording_id)
        keep = SeenKeys()
        if own:
            keep.add_new(own)
        mirror = Mirror(source, target, patterns, batch_size=batch_size, keep=keep,
                        ttl_tolerance_ms=live.ttl_tolerance_ms)
        try:
            summary = Follower(mirror, found.pending, found.feed, live, stop, progress, checkpoint,
                               repair_first=repair_first).run()
        finally:
            mirror.close()
    summary["kept_target_only"] = len(own)
    summary[SETTING_BEFORE] = setting_to_put_back(recording_id, None)
    return summary


