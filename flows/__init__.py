"""Prefect flows of redis-session-migration, under the names the design uses."""

import os

# Prefect's temporary ("ephemeral") server migrates a new database on its first start, which
# here took longer than Prefect's default start-up limit of 20 s: allow it more, unless the
# operator chose a limit (this must be set before Prefect reads its settings).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from .audit import audit_report  # noqa: E402
from .backup import backup_sessions  # noqa: E402
from .cleanup import cleanup_expired_sessions  # noqa: E402
from .migration import full_migration  # noqa: E402
from .restore import restore_sessions  # noqa: E402
from .retention import prune_snapshots  # noqa: E402
from .transfer import transfer_sessions  # noqa: E402
from .validate import validate_snapshot  # noqa: E402
from .verify import verify_sessions  # noqa: E402

__all__ = ["audit_report", "backup_sessions", "cleanup_expired_sessions", "full_migration", "prune_snapshots",
           "restore_sessions", "transfer_sessions", "validate_snapshot", "verify_sessions"]
