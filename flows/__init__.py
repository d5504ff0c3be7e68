"""Prefect flows of redis-session-migration, under the names the design uses."""

from .backup import backup_sessions

__all__ = ["backup_sessions"]
