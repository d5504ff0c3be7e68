"""Prefect flows of redis-session-migration, under the names the design uses."""

from .audit import audit_report
from .backup import backup_sessions
from .cleanup import cleanup_expired_sessions
from .migration import full_migration
from .restore import restore_sessions
from .retention import prune_snapshots
from .transfer import transfer_sessions
from .validate import validate_snapshot
from .verify import verify_sessions

__all__ = ["audit_report", "backup_sessions", "cleanup_expired_sessions", "full_migration", "prune_snapshots", "restore_sessions", "transfer_sessions", "validate_snapshot", "verify_sessions"]
