"""Prefect flows of redis-session-migration, under the names the design uses."""

from .audit import audit_report
from .backup import backup_sessions
from .restore import restore_sessions
from .retention import prune_snapshots
from .validate import validate_snapshot
from .verify import verify_sessions

__all__ = ["audit_report", "backup_sessions", "prune_snapshots", "restore_sessions", "validate_snapshot", "verify_sessions"]
