"""What restore and transfer share before and while they write: the dry-run plan (what each key
would do on the target), rename collisions and conflicts that refuse a run before its first
write, the per-batch rules (`WriteRules.apply`: rename and TTL policy as Arrow/NumPy operations over
the batch; rows expired on arrival or below min_ttl left out and counted) and the result summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .schema import RECORD_SCHEMA
from .options import RestoreOptions
from .redaction import redact_key
from .seen import SeenKeys

MAX_EXAMPLES = 5
PLAN_KEYS = ("would_create", "would_overwrite", "would_skip_existing")
_OUTCOMES = ("expired_on_arrival", "below_min_ttl", *PLAN_KEYS, "conflicts")
_NEVER = np.iinfo(np.int64).max


@dataclass
class Expiries:
    """What the TTL policy makes of a batch's rows."""

    pxat: pa.Array  # int64 absolute expiry on the target, Unix ms; null = no expiry
    expired: np.ndarray  # bool: already expired on arrival, not written
    below_min_ttl: np.ndarray  # bool: would expire within min_ttl_ms, not written

    @property
    def kept(self) -> np.ndarray:
        return ~(self.expired | self.below_min_ttl)

    def statuses(self) -> list[str]:
        """Per row: "expired", "below_min_ttl" or "write"."""
        return np.where(self.expired, "expired", np.where(self.below_min_ttl, "below_min_ttl", "write")).tolist()


class WriteRules:
    """A run's rename and TTL policy, applied to a batch's columns."""

    def __init__(self, options: RestoreOptions):
        self.options = options
        self.rename = (options.rename_prefix[0].encode(), options.rename_prefix[1].encode()) if options.rename_prefix else None

    def target_names(self, keys: pa.Array) -> pa.Array:
        if not self.rename:
            return keys
        old, new = self.rename
        renamed = pc.binary_join_element_wise(pa.scalar(new, pa.binary()), pc.binary_slice(keys, len(old), 2**31 - 1),
                                              pa.scalar(b"", pa.binary()))
        return pc.if_else(pc.starts_with(keys, old), renamed, keys)

    def apply(self, batch: pa.RecordBatch, now_ms: int, since_ms: int | None, counters: Any) -> pa.RecordBatch:
        """The records to write for `batch`: renamed, with the expiry the TTL policy gives them
        (`expire_at_ms` becomes the instant to expire at on the target), without the rows
        that would arrive expired or below min_ttl (counted in `counters`)."""
        expiries = self.expiries(batch.column("expire_at_ms"), now_ms, since_ms)
        counters.expired_on_arrival += int(expiries.expired.sum())
        counters.below_min_ttl += int(expiries.below_min_ttl.sum())
        names = self.target_names(batch.column("key"))
        renamed = batch.set_column(batch.schema.get_field_index("key"), RECORD_SCHEMA.field("key"), names) \
            if names is not batch.column("key") else batch
        written = renamed.set_column(renamed.schema.get_field_index("expire_at_ms"), RECORD_SCHEMA.field("expire_at_ms"),
                                     expiries.pxat)
        kept = expiries.kept
        return written if kept.all() else written.filter(pa.array(kept))

    def expiries(self, expire_at_ms: pa.Array, now_ms: int, since_ms: int | None) -> Expiries:
        """absolute: the source's instant; relative: the TTL `expire_at_ms` had at `since_ms`
        (the snapshot's end, or the source's time at read), started again at the target's
        `now_ms` (None: as absolute); none: no expiry."""
        policy = self.options.ttl_policy
        if policy == "none":
            pxat = pa.nulls(len(expire_at_ms), pa.int64())
        elif policy == "absolute" or since_ms is None:
            pxat = expire_at_ms.cast(pa.int64())
        else:
            pxat = pc.add(expire_at_ms.cast(pa.int64()), now_ms - since_ms)
        left = pc.fill_null(pc.subtract(pxat, now_ms), _NEVER).to_numpy()
        expired = left <= 0
        return Expiries(pxat, expired, ~expired & (left < self.options.min_ttl_ms))


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



