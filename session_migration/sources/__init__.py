"""Sources yield record batches in the schema of `session_migration.schema`."""
