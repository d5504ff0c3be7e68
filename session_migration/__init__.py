"""redis-session-migration: back up, audit, clean and move web sessions kept in Redis/Valkey.

This package is the plain core (no Prefect). The Prefect tasks and flows in `tasks/` and
`flows/` call into it; notebooks may use it directly.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

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
