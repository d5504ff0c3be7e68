"""The steps operations are made of (`operations.py`).

Each step takes connections (a Redis URL, a block name or an endpoint) and locations (an fsspec
URL or a resolved `(fs, path)`), resolves them itself, makes one core call and returns plain
data. Under Prefect every step is one task (tasks/), so what it takes and returns is what
Prefect records; in the CLI's direct mode it is a plain call under the same retry policy.
Every step is safe to run again: a retry resumes from a checkpoint or finds its work done.
"""

from __future__ import annotations

from typing import Any

from . import backup_units, migration, restore, storage, transfer as transfer_core
from .audit import open_for_audit, read_report, write_audit_report
from .cleanup import run_cleanup
from .endpoints import SCHEMES, RedisEndpoint, resolve_connection
from .errors import InvalidParameter, SnapshotNotFound
from .options import (
    BackupOptions, CleanupOptions, LiveOptions, MigrationOptions, RestoreOptions, RetentionOptions, TransferOptions,
    VerifyOptions,
)
from .pipeline import run_backup
from .preflight import check_backup as _check_backup
from .retention import prune_snapshots
from .runner import Progress
from .signing import KeySource, keyring_of
from .snapshot import MANIFEST, PRE_IMAGE_SUFFIX, Snapshot, list_snapshots, open_snapshot
from .parallel import Mapper, map_ordered
from .stats import SnapshotStats, compute_stats as _compute_stats, slice_stats as snapshot_slice_stats
from .storage import Location
from .validation import check_part as check_snapshot_part, validate_snapshot
from .verify import verify as _verify

Connection = str | RedisEndpoint
Spread = tuple[int, Mapper]  # how many at once, and the mapper that runs per-part work as steps


# -- backup ------------------------------------------------------------------------------------


def check_backup(source: Connection, backup_path: Location, options: BackupOptions) -> dict[str, Any]:
    """Reach the source, check the destination and the snapshot id, before any copying."""
    fs, root = storage.locate(backup_path)
    return _check_backup(resolve_connection(source), fs, root, options)


def back_up(source: Connection, backup_path: Location, options: BackupOptions,
            progress: Progress | None = None, keys: KeySource | None = None) -> dict[str, Any]:
    """Copy the keys into the snapshot (signed when a key is configured); a second run resumes
    from the snapshot's checkpoint."""
    fs, root = storage.locate(backup_path)
    return run_backup(resolve_connection(source), fs, root, options, progress=progress,
                      keyring=keyring_of(keys)).summary()


def start_backup_units(source: Connection, backup_path: Location, options: BackupOptions, units: int,
                       keys: KeySource | None = None) -> dict[str, Any]:
    """A backup in units (`backup_units.py`): create or check the checkpoint that fixes them."""
    fs, root = storage.locate(backup_path)
    return backup_units.start_units(resolve_connection(source), fs, root, options, units, keyring_of(keys))


def back_up_unit(source: Connection, backup_path: Location, options: BackupOptions, index: int, count: int,
                 keys: KeySource | None = None) -> dict[str, Any]:
    """One unit's share of the SCAN walk into its own parts; a rerun goes on from its checkpoint."""
    fs, root = storage.locate(backup_path)
    return backup_units.back_up_unit(resolve_connection(source), fs, root, options,
                                     backup_units.BackupUnit(index, count), keyring_of(keys))


def commit_backup_units(source: Connection, backup_path: Location, options: BackupOptions,
                        keys: KeySource | None = None) -> dict[str, Any]:
    """Once every unit is done: keys two units wrote kept once, then the manifest."""
    fs, root = storage.locate(backup_path)
    return backup_units.commit_units(resolve_connection(source), fs, root, options, keyring_of(keys)).summary()


# -- restore -----------------------------------------------------------------------------------


def check_restore(snapshot: Location, target: Connection, options: RestoreOptions,
                  keys: KeySource | None = None) -> dict[str, Any]:
    """Validate the snapshot (and its signature, with a key), refuse colliding renames and
    (on_conflict=fail) existing keys, start or resume the checkpoint. A dry run's plan is
    returned here; nothing is written."""
    return restore.check_restore(storage.locate(snapshot), resolve_connection(target), options,
                                 keyring=keyring_of(keys))


def restore_part(snapshot: Location, target: Connection, part_name: str, options: RestoreOptions,
                 progress: Progress | None = None, keys: KeySource | None = None) -> dict[str, Any]:
    """Write one part into the target (checksum checked first); skipped when already done."""
    return restore.restore_part(storage.locate(snapshot), resolve_connection(target), part_name, options,
                                progress=progress, keyring=keyring_of(keys))


def restore_parts(snapshot: Location, target: Connection, part_names: list[str], options: RestoreOptions,
                  keys: KeySource | None = None) -> list[dict[str, Any]]:
    """Write a group of parts while other groups are written at the same time (each part
    recorded on its own); done parts are skipped."""
    return restore.restore_parts(storage.locate(snapshot), resolve_connection(target), part_names, options,
                                 keyring=keyring_of(keys))


def finish_restore(snapshot: Location, target: Connection, options: RestoreOptions, resumed_parts: int = 0,
                   server: str | None = None, keys: KeySource | None = None) -> dict[str, Any]:
    """Check every part is written, mark the checkpoint finished, return the totals."""
    return restore.finish_restore(storage.locate(snapshot), resolve_connection(target), options,
                                  resumed_parts=resumed_parts, server=server, keyring=keyring_of(keys)).summary()


# -- transfer ----------------------------------------------------------------------------------


def check_transfer(source: Connection, target: Connection, options: TransferOptions,
                   checkpoint_path: Location | None = None, keys: KeySource | None = None,
                   live: bool = False) -> dict[str, Any]:
    """Refuse source == target, rename collisions and (on_conflict=fail) existing keys; start or
    resume the checkpoint. A dry run's plan is returned here; nothing is written."""
    fs, root = storage.locate(checkpoint_path or transfer_core.default_checkpoint_root())
    return transfer_core.check_transfer(resolve_connection(source), resolve_connection(target), options,
                                        checkpoint_fs=fs, checkpoint_path=root, keyring=keyring_of(keys), live=live)


def start_live_transfer(source: Connection, target: Connection, options: TransferOptions, live: LiveOptions,
                        checkpoint_path: Location | None = None, keys: KeySource | None = None) -> dict[str, Any]:
    """Subscribe to the source's changes before the copy; record the target's own keys once."""
    from .live.runs import start_live_transfer as start

    fs, root = storage.locate(checkpoint_path or transfer_core.default_checkpoint_root())
    return start(resolve_connection(source), resolve_connection(target), options, live, fs, root, keyring_of(keys))


def follow_transfer(recording: str, source: Connection, target: Connection, options: TransferOptions,
                    live: LiveOptions, checkpoint_path: Location | None = None, progress: Progress | None = None,
                    keys: KeySource | None = None, repair_first: bool = False) -> dict[str, Any]:
    """Apply the source's changes until stopped; then drain, verify, and return the summary."""
    from .live.runs import follow_transfer as follow

    fs, root = storage.locate(checkpoint_path or transfer_core.default_checkpoint_root())
    return follow(recording, resolve_connection(source), resolve_connection(target), options, live, fs, root,
                  keyring_of(keys), progress, repair_first)


def transfer(source: Connection, target: Connection, options: TransferOptions, checkpoint_path: Location | None = None,
             progress: Progress | None = None, keys: KeySource | None = None,
             checkpoint_every: int = transfer_core.CHECKPOINT_EVERY_KEYS) -> dict[str, Any]:
    """Copy every key in scope, resuming from the checkpoint; returns the totals."""
    fs, root = storage.locate(checkpoint_path or transfer_core.default_checkpoint_root())
    return transfer_core.run_transfer(resolve_connection(source), resolve_connection(target), options,
                                      checkpoint_fs=fs, checkpoint_path=root, progress=progress,
                                      checkpoint_every=checkpoint_every, keyring=keyring_of(keys)).summary()


# -- verify, validate, audit -------------------------------------------------------------------


def _side(side: Connection | Location, keys: KeySource | None) -> Snapshot | RedisEndpoint:
    """A store (Redis URL, block name, endpoint) or a snapshot (a folder/URL holding a manifest)."""
    if isinstance(side, RedisEndpoint):
        return side
    if isinstance(side, str):
        scheme = side.split("://", 1)[0].lower() if "://" in side else None
        if scheme in SCHEMES or (scheme is None and "/" not in side and not side.startswith(".")):
            return resolve_connection(side)
    fs, path = storage.locate(side)
    return open_snapshot(fs, path, keyring=keyring_of(keys))


def verify(a: Connection | Location, b: Connection | Location, options: VerifyOptions,
           progress: Progress | None = None, keys: KeySource | None = None) -> dict[str, Any]:
    """Compare A and B key by key, both directions; at least one side is a store. The report is
    in the caller's terms: MISSING means in A, not in B."""
    side_a, side_b = _side(a, keys), _side(b, keys)
    swapped = isinstance(side_b, Snapshot)
    if swapped:
        if isinstance(side_a, Snapshot):
            raise InvalidParameter("Both sides are snapshots; compare a snapshot with a store, or two stores.")
        side_a, side_b = side_b, side_a
    report = _verify(side_a, side_b, options, progress=progress).as_dict()
    if swapped:
        counts, examples = report["counts"], report["examples"]
        counts["MISSING"], counts["EXTRA"] = counts["EXTRA"], counts["MISSING"]
        examples["MISSING"], examples["EXTRA"] = examples.pop("EXTRA", []), examples.pop("MISSING", [])
        report["a"], report["b"] = report["b"], report["a"]
    return report


def validate(snapshot: Location, check_rows: bool = True, keys: KeySource | None = None,
             spread: Spread | None = None) -> dict[str, Any]:
    """The validation report (with a key, the signature is checked too); data problems are in
    it, not raised. With `spread` (workers, mapper), each part is checked by the mapper (a task)."""
    fs, path = storage.locate(snapshot)
    workers, mapper = spread or (None, map_ordered)
    return validate_snapshot(fs, path, check_rows=check_rows, keyring=keyring_of(keys), workers=workers,
                             mapper=mapper).as_dict()


def newest_backup(backup_path: Location, keys: KeySource | None = None) -> str:
    """The URL of the newest committed backup under a root (pre-images are not backups)."""
    fs, root = storage.locate(backup_path)
    backups = [s for s in list_snapshots(fs, root, keyring=keyring_of(keys))
               if not s.snapshot_id.endswith(PRE_IMAGE_SUFFIX)]
    if not backups:
        raise SnapshotNotFound(f"There is no committed backup under {storage.unstrip(fs, root)} to audit.")
    return backups[-1].url


def compute_stats(snapshot: Location, validation: dict[str, Any], max_age_ms: dict[str, int] | None = None,
                  spread: Spread | None = None) -> SnapshotStats | None:
    """Stream the intact parts once; None when the manifest is unusable (nothing to count).
    With `spread` (workers, mapper), each slice of a part is counted by the mapper (a task)."""
    fs, path = storage.locate(snapshot)
    opened = open_for_audit(fs, path, validation)
    workers, mapper = spread or (None, map_ordered)
    return None if opened is None else _compute_stats(opened, max_age_ms=max_age_ms, workers=workers, mapper=mapper)


# the per-part work of validate and compute_stats, as steps a runner's `each` can spread
check_part = check_snapshot_part
slice_stats = snapshot_slice_stats


def write_report(snapshot: Location, validation: dict[str, Any], stats: SnapshotStats | None,
                 output: Location) -> dict[str, Any]:
    """Write the four report files; returns report.json's content plus `files` (kind -> URL)."""
    fs, path = storage.locate(snapshot)
    out_fs, out_dir = storage.locate(output)
    files = write_audit_report(open_for_audit(fs, path, validation), validation, stats, out_fs, out_dir)
    return {**read_report(out_fs, out_dir), "files": files}


# -- cleanup, retention ------------------------------------------------------------------------


def clean_up(source: Connection, options: CleanupOptions, backup_path: Location | None = None,
             progress: Progress | None = None, keys: KeySource | None = None) -> dict[str, Any]:
    """Classify; with apply, snapshot the chosen keys (signed, with a key), then compare-and-delete them."""
    fs, root = storage.locate(backup_path) if backup_path else (None, None)
    return run_cleanup(resolve_connection(source), options, fs=fs, root=root, progress=progress,
                       keyring=keyring_of(keys)).as_dict()


def prune(backup_path: Location, options: RetentionOptions, keys: KeySource | None = None) -> dict[str, Any]:
    """Apply the retention rules (a dry run unless `options.dry_run` is off)."""
    fs, root = storage.locate(backup_path)
    return prune_snapshots(fs, root, options, keyring=keyring_of(keys)).as_dict()


# -- migration ---------------------------------------------------------------------------------


def check_migration(source: Connection, target: Connection, backup_path: Location,
                    options: MigrationOptions) -> dict[str, Any]:
    """Every refusal before anything is written: same database, non-empty target (when
    required), an unfinished rollback of this target, an unwritable backup path."""
    fs, root = storage.locate(backup_path)
    return migration.preflight(resolve_connection(source), resolve_connection(target), fs, root, options)


def plan_migration(source: Connection, target: Connection, options: MigrationOptions) -> dict[str, Any]:
    """Dry run: the backup's dry run plus what the restore would create/overwrite/keep."""
    return migration.plan_migration(resolve_connection(source), resolve_connection(target), options)


def start_migration(source: Connection, target: Connection, backup_path: Location,
                    options: MigrationOptions, migration_id: str,
                    keys: KeySource | None = None) -> dict[str, Any]:
    """Write the migration's state file (<backup_path>/migrations/<id>.json; signed, with a key)."""
    fs, root = storage.locate(backup_path)
    state = migration.start_migration(resolve_connection(source), resolve_connection(target), fs, root, options,
                                      migration_id, keyring=keyring_of(keys))
    return {**state.summary(), "state_file": storage.unstrip(fs, migration.state_path(root, migration_id))}


def record_migration_step(backup_path: Location, migration_id: str, step: str, counts: dict[str, Any] | None = None,
                          fields: dict[str, Any] | None = None, keys: KeySource | None = None) -> dict[str, Any]:
    """Move the state file to `step`, merging counts and fields."""
    fs, root = storage.locate(backup_path)
    return migration.record_step(fs, root, migration_id, step, counts, keyring=keyring_of(keys),
                                 **(fields or {})).summary()


def take_pre_image(target: Connection, backup_path: Location, options: MigrationOptions,
                   snapshot_id: str, keys: KeySource | None = None) -> dict[str, Any]:
    """Snapshot the target's keys in scope (what a rollback puts back); a retry after the
    commit finds it there."""
    fs, root = storage.locate(backup_path)
    keyring = keyring_of(keys)
    path = storage.join(root, snapshot_id)
    if fs.exists(storage.join(path, MANIFEST)):
        existing = open_snapshot(fs, path, verify=False, keyring=keyring)
        return {"snapshot": existing.url, "snapshot_id": snapshot_id, "keys": existing.totals["keys"]}
    return migration.take_pre_image(resolve_connection(target), fs, root, options, snapshot_id, keyring).summary()


def judge_verification(report: dict[str, Any], target: Connection, backup_path: Location, snapshot_id: str,
                       pre_image_id: str, options: MigrationOptions,
                       keys: KeySource | None = None) -> dict[str, Any]:
    """Verify's report judged for a migration: target-only keys from the pre-image are fine."""
    fs, root = storage.locate(backup_path)
    keyring = keyring_of(keys)
    return migration.judge_verification(
        report, resolve_connection(target), open_snapshot(fs, storage.join(root, snapshot_id), verify=False,
                                                          keyring=keyring),
        open_snapshot(fs, storage.join(root, pre_image_id), verify=False, keyring=keyring), options)


def handle_migration_failure(target: Connection, backup_path: Location, migration_id: str, message: str,
                             options: MigrationOptions, progress: migration.ProgressFn | None = None,
                             keys: KeySource | None = None) -> dict[str, Any]:
    """Roll the target back (resumable) when writes may have reached it and the options say so,
    within the run's own patterns; otherwise record the failure."""
    fs, root = storage.locate(backup_path)
    keyring = keyring_of(keys)
    state = migration.MigrationState.load(fs, root, migration_id, keyring)
    text = migration.handle_failure(resolve_connection(target), fs, root, state, options.rollback_on_failure, message,
                                    progress, patterns=options.patterns)
    return {"message": text, "summary": migration.result_summary(fs, root, migration_id, keyring)}


def start_live_migration(source: Connection, backup_path: Location, migration_id: str, patterns: tuple[str, ...],
                         live: LiveOptions) -> dict[str, Any]:
    """Subscribe to the source's changes before the backup (spill files beside the state file)."""
    from .live import begin
    from .live.runs import spill_dir

    fs, root = storage.locate(backup_path)
    return {"recording": begin(resolve_connection(source), patterns, live, fs,
                               spill_dir(migration.state_path(root, migration_id)))}


def follow_migration(recording: str, source: Connection, target: Connection, backup_path: Location,
                     migration_id: str, live: LiveOptions, progress: Progress | None = None,
                     keys: KeySource | None = None, repair_first: bool = False) -> dict[str, Any]:
    """Apply the source's changes until stopped; then drain, verify, and return the summary."""
    from .live.runs import follow_migration as follow

    fs, root = storage.locate(backup_path)
    return follow(recording, resolve_connection(source), resolve_connection(target), fs, root, migration_id, live,
                  keyring_of(keys), progress, repair_first)


def record_interruption(backup_path: Location, migration_id: str, exc: BaseException,
                        keys: KeySource | None = None) -> None:
    """Not a task: run in the flow or CLI process itself when Ctrl-C or SIGTERM stops a migration."""
    fs, root = storage.locate(backup_path)
    migration.record_interruption(fs, root, migration_id, exc, keyring_of(keys))


def migration_summary(backup_path: Location, migration_id: str, keys: KeySource | None = None) -> dict[str, Any]:
    fs, root = storage.locate(backup_path)
    return migration.result_summary(fs, root, migration_id, keyring_of(keys))


def migration_patterns(backup_path: Location, migration_id: str, keys: KeySource | None = None) -> list[str]:
    """The patterns a migration was run with (from its checked state file)."""
    fs, root = storage.locate(backup_path)
    return list(migration.MigrationState.load(fs, root, migration_id, keyring_of(keys)).patterns)
