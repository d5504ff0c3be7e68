"""`session-migration`: the command line of redis-session-migration.

Kept apart from the core (`session_migration`, no Prefect) and from the flows: it chooses how
a command runs (directly, or as a Prefect flow), draws progress, and owns what is process-wide
(signals, exit codes, the garbage collector at exit).
"""
