"""Prefect tasks: each opens what it needs and makes one call into `session_migration`."""
