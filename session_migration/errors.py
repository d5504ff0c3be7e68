"""The error tree. Every failure the tool reports is one of these, with one clear sentence.

    SessionMigrationError
    ├── TransientError            worth retrying: the same call may succeed later
    │   ├── ServerUnavailable     connection refused/lost, timeout, LOADING, TRYAGAIN, a failover
    │   │                         (READONLY, MASTERDOWN: the server written to is no longer the master)
    │   │   └── DaskUnavailable   the Dask scheduler of --dask cannot be reached
    │   └── StorageUnavailable    a snapshot filesystem hiccup
    └── TerminalError             retrying cannot help; a person must act
        ├── InvalidParameter      a bad option, URL, pattern or id
        │   └── RenameCollision   a rename would make two keys one
        ├── AuthenticationFailed  wrong user or password
        ├── NotRedis              something answers at that address, but not in Redis' protocol
        ├── DestinationNotWritable
        ├── SnapshotExists        the snapshot id already has a manifest
        ├── SnapshotNotFound
        │   └── SnapshotRootNotFound  the snapshot root itself does not exist
        ├── SnapshotInvalid       missing/edited manifest, checksum or row count mismatch, ...
        │   └── SignatureInvalid  unsigned or wrongly signed, with a signing key configured
        ├── ScopeViolation        a row or key outside the configured patterns
        ├── WriteConflict         on_conflict=fail, and keys the run would write exist already
        ├── WriteRefused          the target answered a write with an error retrying would not change
        ├── CleanupCapExceeded    a cleanup would delete more keys than its cap
        ├── MigrationRefused      a migration's check said no; nothing was written anywhere
        └── MigrationFailed       a migration failed after it started (`.summary`: how far, rolled back?)

`is_transient` is the one place that decides whether something is retried.
"""

from __future__ import annotations

import errno


class SessionMigrationError(Exception):
    """Base of every error this tool raises on purpose."""


class TransientError(SessionMigrationError):
    """A failure that may go away if the same work is tried again."""


class TerminalError(SessionMigrationError):
    """A failure that needs a person: retrying would fail the same way."""


class ServerUnavailable(TransientError):
    pass


class ClusterChanged(TransientError):
    """A Redis Cluster moved a slot (MOVED/ASK) or is reconfiguring: retried with the new layout."""


# Replies of a cluster node about a slot it does not (or not yet) serve.
CLUSTER_REDIRECTIONS = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")


class StorageUnavailable(TransientError):
    pass


class DaskUnavailable(ServerUnavailable):
    """The Dask scheduler named by --dask / dask_address cannot be reached (or the address is not one)."""


class InvalidParameter(TerminalError, ValueError):
    pass


class AuthenticationFailed(TerminalError):
    pass


class NotRedis(TerminalError):
    pass


class DestinationNotWritable(TerminalError):
    pass


class SnapshotExists(TerminalError):
    pass


class SnapshotNotFound(TerminalError):
    pass


class SnapshotRootNotFound(SnapshotNotFound):
    pass


class SnapshotInvalid(TerminalError):
    pass


class SignatureInvalid(SnapshotInvalid):
    """A snapshot, migration state file or checkpoint that is unsigned or wrongly signed while
    a signing key is configured: it may have been written by someone who can write to the
    storage but does not hold the key."""


class ScopeViolation(TerminalError):
    pass


class RenameCollision(InvalidParameter):
    """A rename would make two keys (of the snapshot or the source) the same target key."""


class WriteConflict(TerminalError):
    """`on_conflict="fail"` and keys the restore or transfer would write already exist on the target."""


class WriteRefused(TerminalError):
    """The target answered a write with an error that retrying would not change."""


class CleanupCapExceeded(TerminalError):
    """A cleanup would delete more keys than `max_delete`; nothing was deleted."""


class MigrationRefused(TerminalError):
    """A check before the first write said no; nothing was written anywhere."""


class LiveUnavailable(TerminalError):
    """Following the source's changes is not possible as asked (keyspace notifications off and
    not allowed to be turned on); nothing was written."""


class MigrationFailed(TerminalError):
    """The migration failed after it started; `summary` says how far it came and whether the
    target was rolled back."""

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary or {}


_TRANSIENT_ERRNOS = {errno.ECONNRESET, errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EPIPE, errno.EAGAIN}
# Error replies that mean "not now, not here" rather than "never": the server is loading its
# data, or a failover made it a replica (READONLY) or cut it from its master (MASTERDOWN).
# After a failover a new connection reaches the new master (Sentinel URLs), so a retry helps.
TRANSIENT_REPLIES = ("LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN")


def is_transient_reply(text: str) -> bool:
    """Whether a server's error reply (its text, e.g. "READONLY You can't write against a read
    only replica.") is one that retrying on a new connection may get past."""
    return text.lstrip().lstrip("-").split(" ", 1)[0].upper() in TRANSIENT_REPLIES


def is_transient(exc: BaseException) -> bool:
    """True when retrying the failed work may succeed. Used by every Prefect retry policy."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, TerminalError):
        return False
    import redis.exceptions as rex  # local: keeps this module importable without redis

    if isinstance(exc, (rex.AuthenticationError, rex.AuthorizationError, rex.NoPermissionError)):
        return False
    if isinstance(exc, (rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError, rex.TryAgainError,
                        rex.ReadOnlyError)):
        return True
    if isinstance(exc, rex.ResponseError) and is_transient_reply(str(exc)):
        return True
    if isinstance(exc, (rex.MovedError, rex.AskError, rex.ClusterDownError)):  # a cluster being resharded
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    return False
