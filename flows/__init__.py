"""Prefect flows of redis-session-migration, under the names the design uses."""

from .backup import backup_sessions
from .validate import validate_snapshot

__all__ = ["backup_sessions", "validate_snapshot"]
