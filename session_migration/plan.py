"""What restore and transfer share before and while they write: the dry-run plan (what each key
would do on the target), rename collisions and conflicts that refuse a run before its first
write, the per-batch split of records into expired / below min_ttl / written, the result
summary and the JSON checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import fsspec

from . import storage
from .errors import SnapshotInvalid
from .options import RestoreOptions
from .record import KeyRecord
from .redaction import redact_key
from .seen import SeenKeys
from .sinks.redis import RedisSink, WriteItem

MAX_EXAMPLES = 5
PLAN_KEYS = ("would_create", "would_overwrite", "would_skip_existing")
_OUTCOMES = ("expired_on_arrival", "below_min_ttl", *PLAN_KEYS, "conflicts")

ExpiryFn = Callable[[int | None], tuple[str, int | None]]


class WriteRules:
    """A run's rename and TTL policy, applied key by key."""

    def __init__(self, options: RestoreOptions):
        self.options = options
        self.rename = (options.rename_prefix[0].encode(), options.rename_prefix[1].encode()) if options.rename_prefix else None

    def target_key(self, key: bytes) -> bytes:
        if self.rename and key.startswith(self.rename[0]):
            return self.rename[1] + key[len(self.rename[0]):]
        return key

    def expiry(self, expire_at_ms: int | None, now_ms: int, since_ms: int | None) -> tuple[str, int | None]:
        """("write", pxat) | ("expired", None) | ("below_min_ttl", None).

        absolute: the source's instant; relative: the TTL `expire_at_ms` had at `since_ms` (the
        snapshot's end, or the source's time at read), started again at the target's `now_ms`
        (None: as absolute); none: no expiry.
        """
        policy = self.options.ttl_policy
        if expire_at_ms is None or policy == "none":
            return "write", None
        if policy == "absolute" or since_ms is None:
            pxat = expire_at_ms
        else:
            pxat = now_ms + (expire_at_ms - since_ms)
        if pxat <= now_ms:
            return "expired", None
        if pxat - now_ms < self.options.min_ttl_ms:
            return "below_min_ttl", None
        return "write", pxat


def new_plan(*counts: str) -> dict[str, Any]:
    """A plan with every count at zero: the caller's own `counts` first, then the outcomes."""
    plan: dict[str, Any] = dict.fromkeys((*counts, *_OUTCOMES), 0)
    plan["conflict_examples"] = []
    return plan


def count_outcome(plan: dict[str, Any], name: bytes, status: str, present: bool, on_conflict: str) -> None:
    """Count in `plan` what writing `name` would do: `status` from the TTL rules, `present` on the target."""
    if status == "expired":
        plan["expired_on_arrival"] += 1
    elif status == "below_min_ttl":
        plan["below_min_ttl"] += 1
    elif not present:
        plan["would_create"] += 1
    elif on_conflict == "replace":
        plan["would_overwrite"] += 1
    else:
        plan["would_skip_existing"] += 1
        plan["conflicts"] += 1
        if len(plan["conflict_examples"]) < MAX_EXAMPLES:
            plan["conflict_examples"].append(redact_key(name))


def refuse_conflicts(error: type[Exception], plan: dict[str, Any], target_url: str, run: str) -> None:
    """`on_conflict="fail"`: raise `error` when the plan found keys that already exist."""
    if plan["conflicts"]:
        raise error(
            f"{plan['conflicts']} key(s) this {run} would write already exist on {target_url}, "
            f"e.g. {', '.join(plan['conflict_examples'])}; nothing was written. {run.capitalize()} with "
            "on_conflict='replace' to overwrite them or 'skip' to keep them, or remove them from the target first."
        )


class RenameCollisions:
    """Target names a rename makes twice: counted, with a few redacted examples."""

    def __init__(self) -> None:
        self.seen = SeenKeys()
        self.count = 0
        self.examples: list[str] = []

    def add(self, originals: Sequence[bytes], names: Sequence[bytes]) -> None:
        for original, name, new in zip(originals, names, self.seen.add_new(names).tolist()):
            if not new:
                self.count += 1
                if len(self.examples) < MAX_EXAMPLES:
                    self.examples.append(f"{redact_key(original)} -> {redact_key(name)}")

    def check(self, error: type[Exception], options: RestoreOptions, among: str, run: str) -> None:
        """Raise `error` when any two keys collided (`among`: whose keys; `run`: restore or transfer)."""
        if self.count:
            old, new = options.rename_prefix
            raise error(
                f"Renaming {old!r} to {new!r} makes {self.count} key(s) collide with {among}, "
                f"e.g. {', '.join(self.examples)}; nothing was written. Narrow the {run} with patterns or choose another prefix."
            )


def run_summary(head: dict[str, Any], counters: Any, *, checkpoint: str | None, plan: dict[str, int] | None,
                **optional: Any) -> dict[str, Any]:
    """A run's result as one dict: `head`, the counters, then what is set of `optional`, the
    checkpoint and the dry run's plan."""
    data: dict[str, Any] = {**head, **counters.as_dict()}
    data.update({k: v for k, v in optional.items() if v})
    if checkpoint:
        data["checkpoint"] = checkpoint
    if plan is not None:
        data.update(plan)
    return data


def write_unexpired(sink: RedisSink, records: Sequence[KeyRecord], names: Sequence[bytes], exists: Sequence[bool],
                    expiry: ExpiryFn, counters: Any, *, replace: bool) -> None:
    """Write each record under its name with the expiry `expiry` gives it; count those it drops
    (expired on arrival, below min_ttl) and the sink's writes in `counters`."""
    items, present = [], []
    for rec, name, there in zip(records, names, exists):
        status, pxat = expiry(rec.expire_at_ms)
        if status == "expired":
            counters.expired_on_arrival += 1
        elif status == "below_min_ttl":
            counters.below_min_ttl += 1
        else:
            items.append(WriteItem(name, rec, pxat))
            present.append(there)
    if items:
        counters.add_sink(sink.write(items, present, replace=replace))



class RunCheckpoint:
    """Saving and loading of a restore's or transfer's checkpoint dataclass, as JSON."""

    run = "run"  # "restore" or "transfer": in the message about an unreadable checkpoint

    def save(self, fs: fsspec.AbstractFileSystem, path: str) -> None:
        storage.write_atomic(fs, path, json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def load(cls, fs: fsspec.AbstractFileSystem, path: str) -> Any:
        raw = storage.read_bytes(fs, path)
        if raw is None:
            return None
        try:
            return cls(**json.loads(raw))._checked()
        except (ValueError, TypeError) as exc:
            raise SnapshotInvalid(
                f"The {cls.run} checkpoint {storage.unstrip(fs, path)} is unreadable ({exc}); delete it to {cls.run} from the start."
            ) from None

    def _checked(self) -> Any:
        """The checkpoint just read, with any field coerced; raise ValueError/TypeError when unusable."""
        return self
