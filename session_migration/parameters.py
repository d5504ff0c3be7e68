"""Flow parameters -> option objects, once for every entry point.

The Prefect flows, the CLI (in both of its modes) and `deployments/check_parameters.py` all
turn the same parameters (named as the flows name them) into options here, so a value means
the same thing, and is refused with the same sentence, wherever it comes from. A parameter
that is absent, or None where None is not a choice of its own, takes the option's default:
the defaults live in the option dataclasses only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import operations
from .cleanup import parse_max_age
from .errors import InvalidParameter
from .options import (
    BackupOptions, CleanupOptions, LiveOptions, MigrationOptions, RestoreOptions, RetentionOptions, TransferOptions, VerifyOptions,
)
from .patterns import DEFAULT_PATTERNS
from .runner import Runner
from .signing import KeySource
from .storage import Location, stored
from .endpoints import SCHEMES, is_block_name

def _given(params: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """The named parameters that were given (not None)."""
    return {name: params[name] for name in names if params.get(name) is not None}


def _patterns(params: Mapping[str, Any], default: tuple[str, ...] | None) -> tuple[str, ...] | None:
    patterns = params.get("patterns")
    if patterns is None or (not isinstance(patterns, str) and not patterns):
        return default
    if isinstance(patterns, str):
        raise InvalidParameter("patterns must be a list of key patterns, not a single string.")
    return tuple(patterns)


def _seconds_to_ms(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameter(f"{name} must be a number of seconds; got {value!r}.")
    return int(value * 1000)


def backup_options(params: Mapping[str, Any]) -> BackupOptions:
    return BackupOptions(patterns=_patterns(params, DEFAULT_PATTERNS), **_given(
        params, "batch_size", "preserve_ttl", "compression", "dry_run", "snapshot_id", "capture_dump", "part_rows",
        "readers"))


def _write_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    given = _given(params, "ttl_policy", "on_conflict", "batch_size", "dry_run")
    if params.get("min_ttl_seconds") is not None:
        given["min_ttl_ms"] = _seconds_to_ms("min_ttl_seconds", params["min_ttl_seconds"])
    rename = params.get("rename_prefix")
    if rename is not None:
        given["rename_prefix"] = rename if isinstance(rename, str) else tuple(rename)
    return given


def restore_options(params: Mapping[str, Any]) -> RestoreOptions:
    return RestoreOptions(patterns=_patterns(params, None), **_write_fields(params))


def transfer_options(params: Mapping[str, Any]) -> TransferOptions:
    return TransferOptions(patterns=_patterns(params, DEFAULT_PATTERNS), **_write_fields(params))


def verify_options(params: Mapping[str, Any]) -> VerifyOptions:
    # ttl_tolerance_ms=None is a choice of its own (do not compare expiry), so it is passed as given.
    tolerance = params["ttl_tolerance_ms"] if "ttl_tolerance_ms" in params else VerifyOptions.ttl_tolerance_ms
    return VerifyOptions(patterns=_patterns(params, None), ttl_tolerance_ms=tolerance,
                         **_given(params, "sample", "batch_size"))


def cleanup_options(params: Mapping[str, Any]) -> CleanupOptions:
    if params.get("apply") and not params.get("backup_path"):
        raise InvalidParameter("apply needs a backup_path: the keys are snapshotted there before they are deleted.")
    return CleanupOptions(patterns=_patterns(params, DEFAULT_PATTERNS), include=frozenset(params.get("include") or ()),
                          max_age_ms=parse_max_age(params.get("max_age")),
                          **_given(params, "max_delete", "apply", "batch_size", "max_rate"))


def audit_max_age_ms(params: Mapping[str, Any]) -> dict[str, int]:
    """The audit's only option: per-store maximum session age, as durations ({"aiohttp": "1d"})."""
    return parse_max_age(params.get("max_age"))


def retention_options(params: Mapping[str, Any]) -> RetentionOptions:
    return RetentionOptions(**_given(params, "keep_last", "keep_days", "dry_run"))


def migration_options(params: Mapping[str, Any]) -> MigrationOptions:
    return MigrationOptions(patterns=_patterns(params, DEFAULT_PATTERNS), **_given(
        params, "batch_size", "preserve_ttl", "dry_run", "verify", "rollback_on_failure", "require_empty_target"))


def live_options(params: Mapping[str, Any]) -> LiveOptions | None:
    """The live run's options when `live` is set; None for a one-time copy."""
    live = params.get("live", False)
    if not isinstance(live, bool):
        raise InvalidParameter(f"live must be true or false; got {live!r}.")
    given = {"mode": params["live_mode"]} if params.get("live_mode") is not None else {}
    if params.get("live_until") is not None:
        given["until"] = params["live_until"]
    if not live:
        if given:
            raise InvalidParameter("live_mode and live_until need live=true (--live).")
        return None
    return LiveOptions(**given)


def validate_check_rows(params: Mapping[str, Any]) -> bool:
    check_rows = params.get("check_rows", True)
    if not isinstance(check_rows, bool):
        raise InvalidParameter(f"check_rows must be true or false; got {check_rows!r}.")
    return check_rows


# flow function name -> the function that turns its parameters into its options
OPTIONS_FROM_PARAMS = {
    "backup_sessions": backup_options,
    "restore_sessions": restore_options,
    "transfer_sessions": lambda params: (transfer_options(params), live_options(params)),
    "verify_sessions": verify_options,
    "validate_snapshot": validate_check_rows,
    "audit_report": audit_max_age_ms,
    "cleanup_expired_sessions": cleanup_options,
    "prune_snapshots": retention_options,
    "full_migration": lambda params: (migration_options(params), live_options(params)),
}

def key_source(params: Mapping[str, Any]) -> KeySource:
    """Where the run's signing keys come from: a Secret block's name, or the environment."""
    block = params.get("signing_key_block")
    if block is not None and (not isinstance(block, str) or not block.strip()):
        raise InvalidParameter(f"signing_key_block must be the name of a Prefect Secret block; got {block!r}.")
    allow_unsigned = params.get("allow_unsigned", False)
    if not isinstance(allow_unsigned, bool):
        raise InvalidParameter(f"allow_unsigned must be true or false; got {allow_unsigned!r}.")
    return KeySource(block=block or None, allow_unsigned=allow_unsigned)


def _at(params: Mapping[str, Any], name: str) -> Location | None:
    """A location parameter, opened with the storage options of `storage_block` if one is named."""
    block = params.get("storage_block")
    if block is not None and (not isinstance(block, str) or not block.strip()):
        raise InvalidParameter(f"storage_block must be the name of a SnapshotStorage block; got {block!r}.")
    return stored(params.get(name), block or None)


def _side(params: Mapping[str, Any], name: str) -> Any:
    """A verify side: a connection as it is, a snapshot location with the storage block."""
    value = params[name]
    if isinstance(value, str) and (value.split("://", 1)[0].lower() in SCHEMES or is_block_name(value)):
        return value
    return _at(params, name)


def _migration(run: Runner, p: Mapping[str, Any]) -> dict[str, Any]:
    """A migration, or (resume_live) going on with a live one that stopped while following."""
    resume = p.get("resume_live")
    if resume is None:
        return operations.full_migration(run, p["source"], p["target"], _at(p, "backup_path"), migration_options(p),
                                         key_source(p), live_options(p))
    live = live_options({**p, "live": True})
    return operations.resume_live_migration(run, p["source"], p["target"], _at(p, "backup_path"), resume,
                                            migration_options(p), live, key_source(p))


# flow function name -> the operation it runs, called with the flow's own parameters
_OPERATIONS: dict[str, Callable[[Runner, Mapping[str, Any]], dict[str, Any]]] = {
    "backup_sessions": lambda run, p: operations.backup_sessions(
        run, p["source"], _at(p, "backup_path"), backup_options(p), key_source(p)),
    "restore_sessions": lambda run, p: operations.restore_sessions(
        run, _at(p, "snapshot"), p["target"], restore_options(p), key_source(p)),
    "transfer_sessions": lambda run, p: operations.transfer_sessions(
        run, p["source"], p["target"], transfer_options(p), _at(p, "checkpoint_path"), key_source(p),
        live_options(p)),
    "verify_sessions": lambda run, p: operations.verify_sessions(
        run, _side(p, "a"), _side(p, "b"), verify_options(p), key_source(p)),
    "validate_snapshot": lambda run, p: operations.validate_snapshot(
        run, _at(p, "snapshot"), validate_check_rows(p), key_source(p)),
    "audit_report": lambda run, p: operations.audit_report(
        run, _at(p, "snapshot"), _at(p, "output"), audit_max_age_ms(p), _at(p, "backup_path"), key_source(p)),
    "cleanup_expired_sessions": lambda run, p: operations.cleanup_expired_sessions(
        run, p["source"], cleanup_options(p), _at(p, "backup_path"), key_source(p)),
    "prune_snapshots": lambda run, p: operations.prune_snapshots(
        run, _at(p, "backup_path"), retention_options(p), key_source(p)),
    "full_migration": lambda run, p: _migration(run, p),
}


def run_operation(flow_name: str, run: Runner, params: Mapping[str, Any]) -> dict[str, Any]:
    """Run the operation of the flow `flow_name` with that flow's parameters: what the flow
    does (with a Prefect runner) and what the CLI does without Prefect (with a direct one)."""
    return _OPERATIONS[flow_name](run, params)
