"""redis-session-migration: back up, audit, clean and move web sessions kept in Redis/Valkey.

This package is the plain core (no Prefect). The Prefect tasks and flows in `tasks/` and
`flows/` call into it; notebooks may use it directly.
"""

from __future__ import annotations

import atexit
import gc
from importlib.metadata import PackageNotFoundError, version

# At exit, skip the cyclic garbage collector's pass over everything still alive: it would free,
# one object at a time, the module graphs of pyarrow, pandas and redis that the process is about
# to drop as a whole (0.13 s of every process that imported the core, on the 2-core machine of
# docs/benchmarks.md). Exit handlers, flushes and reference-counted clean-up still run; Python
# never promised finalizers for objects alive at exit.
atexit.register(gc.freeze)

try:
    __version__ = version("redis-session-migration")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

from .endpoints import RedisEndpoint  # noqa: E402
from .errors import (  # noqa: E402
    SessionMigrationError,
    SnapshotInvalid,
    TerminalError,
    TransientError,
)
from .options import BackupOptions  # noqa: E402
from .pipeline import BackupResult, run_backup  # noqa: E402
from .redaction import redact_key  # noqa: E402
from .snapshot import Snapshot, list_snapshots, open_snapshot  # noqa: E402
from . import storage as _storage  # noqa: E402


def backup(source: str | RedisEndpoint, backup_path: str, *, storage_options: dict | None = None,
           progress=None, keyring=None, **options) -> BackupResult:
    """Back up without Prefect: `backup("redis://localhost:6379/0", "snapshots/", patterns=["sess:*"])`.
    Signed when a signing key is configured (`keyring`, default: the environment's)."""
    endpoint = source if isinstance(source, RedisEndpoint) else RedisEndpoint.from_url(source)
    if "patterns" in options and options["patterns"] is not None:
        options["patterns"] = tuple(options["patterns"])
    fs, root = _storage.resolve(backup_path, storage_options)
    return run_backup(endpoint, fs, root, BackupOptions(**options), progress=progress, keyring=keyring)


__all__ = [
    "BackupOptions", "BackupResult", "RedisEndpoint", "SessionMigrationError", "Snapshot", "SnapshotInvalid",
    "TerminalError", "TransientError", "backup", "list_snapshots", "open_snapshot", "redact_key",
]
