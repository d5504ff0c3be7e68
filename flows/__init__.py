"""Prefect flows of redis-session-migration, under the names the design uses.

Each flow is imported on first use (`from flows import backup_sessions` imports only
flows/backup.py): the CLI in flow mode pays for the one flow it runs, not for all nine (the
audit's pandas among them)."""

import importlib
import os

# Prefect's temporary ("ephemeral") server migrates a new database on its first start, which
# here took longer than Prefect's default start-up limit of 20 s: allow it more, unless the
# operator chose a limit (this must be set before Prefect reads its settings).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

_MODULE_OF = {
    "audit_report": "audit",
    "backup_sessions": "backup",
    "cleanup_expired_sessions": "cleanup",
    "full_migration": "migration",
    "prune_snapshots": "retention",
    "restore_sessions": "restore",
    "transfer_sessions": "transfer",
    "validate_snapshot": "validate",
    "verify_sessions": "verify",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
