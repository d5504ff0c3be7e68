"""The durable state of runs: one mechanism for every checkpoint and state file.

Every record of a run that must survive a crash is a dataclass that subclasses `StateFile`:
written as JSON, atomically (readers see the old file or the new one), signed when a signing
key is configured; read back as the same dataclass, or None when there is none. A file that
cannot be read (not JSON, a field of the wrong type, too large, a bad signature) gives one
sentence naming the file and what to do.

Where they live (`<root>` is a snapshot root, `<snapshot>` a snapshot's folder):

    <snapshot>/checkpoint.json               BackupCheckpoint    an unfinished backup (gone once committed)
    <snapshot>/units/<w>-of-<n>.json         UnitCheckpoint      one unit of a backup in units (backup_units.py)
    <snapshot>/restores/<16 hex>.json        RestoreCheckpoint   a restore of that snapshot into one target
    <snapshot>/restores/<16 hex>.parts/<part>.json  PartDone     a part of it written while others were (--dask)
    <checkpoint root>/transfers/<16 hex>.json  TransferCheckpoint  a transfer between two databases
    <root>/migrations/<migration id>.json    MigrationState      a migration, and its rollback

The 16 hex digits are a hash of what identifies the run (databases and the options that change
what is written), so a rerun with the same inputs finds its checkpoint, and one with other
inputs starts its own. What a state file says never widens what is written or deleted: the
run's own parameters do (see `check_belongs`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any, ClassVar, TypeVar

import fsspec

from . import storage
from .errors import SignatureInvalid, SnapshotInvalid
from .signing import SIGNATURE, Keyring, resolve

MAX_STATE_BYTES = 16 << 20
S = TypeVar("S", bound="StateFile")


class StateFile:
    """Base of the run state dataclasses. A subclass names itself (`kind`), what its signature
    covers it as (`purpose`), and what an operator should do with an unreadable one (`remedy`);
    it may check its fields (`_checked`) and convert nested ones (`to_dict`, `from_dict`).
    A field named `keyring` (signs what is written) is never written."""

    kind: ClassVar[str] = "state file"
    purpose: ClassVar[str] = "state"
    remedy: ClassVar[str] = "delete it to start again"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("keyring", None)
        return data

    @classmethod
    def from_dict(cls: type[S], data: dict[str, Any]) -> S:
        return cls(**data)

    def _checked(self: S) -> S:
        """The record just read, with fields coerced; raise ValueError/TypeError when unusable."""
        return self

    def write(self, fs: fsspec.AbstractFileSystem, path: str) -> None:
        """Write atomically; signed when a signing key is configured."""
        data = resolve(getattr(self, "keyring", None)).sign(self.to_dict(), self.purpose)
        storage.write_atomic(fs, path, json.dumps(data, indent=1).encode())

    @classmethod
    def read(cls: type[S], fs: fsspec.AbstractFileSystem, path: str, keyring: Keyring | None = None) -> S | None:
        """The record at `path`, checked, or None when there is none."""
        raw = storage.read_bytes(fs, path, limit=MAX_STATE_BYTES + 1)
        if raw is None:
            return None
        keyring = resolve(keyring)
        where = storage.unstrip(fs, path)
        try:
            if len(raw) > MAX_STATE_BYTES:
                raise ValueError(f"larger than {MAX_STATE_BYTES >> 20} MiB")
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            keyring.require(data, cls.purpose, f"the {cls.kind} {where}")
            data.pop(SIGNATURE, None)
            record = cls.from_dict(data)._checked()
        except SignatureInvalid:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, SnapshotInvalid) as exc:
            raise SnapshotInvalid(f"The {cls.kind} {where} is unreadable ({exc}); {cls.remedy}.") from None
        if "keyring" in {f.name for f in fields(record)}:
            record.keyring = keyring
        return record

    def check_belongs(self, fs: fsspec.AbstractFileSystem, path: str, **expected: Any) -> None:
        """Refuse a record whose fields are not this run's, saying which differ (and how): its
        name is a hash of them, so only an edited (or forged) file, or another run's, can differ,
        and it must not steer this one."""
        wrong = {name: value for name, value in expected.items() if getattr(self, name) != value}
        if wrong:
            raise SnapshotInvalid(
                f"The {self.kind} {storage.unstrip(fs, path)} does not belong to this run: "
                + "; ".join(differences(getattr(self, name), value, name) for name, value in wrong.items())
                + f". {self.remedy[0].upper()}{self.remedy[1:]}.")


def differences(recorded: Any, wanted: Any, name: str) -> str:
    """What differs between a recorded value and this run's, in a few words."""
    if isinstance(recorded, dict) and isinstance(wanted, dict):
        keys = sorted(k for k in recorded.keys() | wanted.keys() if recorded.get(k) != wanted.get(k))
        return ", ".join(f"{name}.{k} was {recorded.get(k)!r}, now {wanted.get(k)!r}" for k in keys)
    return f"{name} was {recorded!r}, now {wanted!r}"
