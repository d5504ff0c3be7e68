"""Checks made before any work, so bad input fails fast with one clear sentence."""

from __future__ import annotations

from typing import Any

import fsspec

from . import storage
from .checkpoint import load_checkpoint
from .endpoints import RedisEndpoint, translate_redis_errors
from .errors import SnapshotExists
from .options import BackupOptions
from .snapshot import MANIFEST, snapshot_dir
from .sources.redis import server_info


def check_backup(endpoint: RedisEndpoint, fs: fsspec.AbstractFileSystem, root: str,
                 options: BackupOptions) -> dict[str, Any]:
    """The source answers (and accepts our credentials); the destination takes files; the
    snapshot id is not already committed. Returns what was learned about the source."""
    client = endpoint.connect()
    try:
        with translate_redis_errors(endpoint):
            info = server_info(client).as_dict()
            info["dbsize"] = int(client.dbsize())
    finally:
        client.close()
    found = {"source": endpoint.display_url, **info}
    if not options.dry_run:
        storage.check_writable(fs, root)
        check_snapshot_free(fs, root, options.snapshot_id)
        if options.snapshot_id is not None:
            checkpoint = load_checkpoint(fs, snapshot_dir(root, options.snapshot_id))
            if checkpoint is not None and checkpoint.parts:
                found["resume"] = {"parts": len(checkpoint.parts), "keys": checkpoint.counters.keys}
    return found


def check_snapshot_free(fs: fsspec.AbstractFileSystem, root: str, snapshot_id: str | None) -> None:
    if snapshot_id is None:
        return
    path = snapshot_dir(root, snapshot_id)
    if fs.exists(storage.join(path, MANIFEST)):
        raise SnapshotExists(
            f"Snapshot {snapshot_id} already exists at {storage.unstrip(fs, path)} (it has a manifest); choose another snapshot id."
        )
