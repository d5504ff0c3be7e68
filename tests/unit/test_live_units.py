"""The pieces of a live run that need no server: pending keys and their spill files, the
notification flags, the live options."""

from __future__ import annotations

import fsspec
import pytest

from session_migration.errors import InvalidParameter, SnapshotInvalid
from session_migration.live.feed import notifications_suffice, with_needed
from session_migration.live.pending import PendingKeys, pack_keys, unpack_keys
from session_migration.options import LiveOptions


def test_pending_keys_spill_beyond_the_limit_and_come_back_in_order(tmp_path):
    fs = fsspec.filesystem("file")
    pending = PendingKeys(1_000, fs, str(tmp_path / "spill"))
    keys = [b"sess:%05d" % i for i in range(4_500)]
    for i in range(0, len(keys), 100):
        pending.add(keys[i:i + 100], at=float(i))
    pending.add([keys[0]])  # already pending in a spill file: noted again in memory, applied twice at worst
    assert pending.spills == 4 and len(pending) == 4_501
    assert len(list((tmp_path / "spill").iterdir())) == 4
    taken = []
    while batch := pending.take(333):
        taken += [k for k, _ in batch]
    assert taken[:4_500] == keys and taken[4_500:] == [keys[0]]
    assert not list((tmp_path / "spill").iterdir())  # read spill files are removed


def test_a_spill_file_changed_on_the_storage_is_refused(tmp_path):
    fs = fsspec.filesystem("file")
    pending = PendingKeys(1_000, fs, str(tmp_path / "spill"))
    pending.add([b"sess:%05d" % i for i in range(1_001)])
    [spilled] = list((tmp_path / "spill").iterdir())
    spilled.write_bytes(pack_keys([b"app:config"]))  # someone with write access to the storage
    with pytest.raises(SnapshotInvalid, match="changed after it was written"):
        pending.take(10)


def test_pending_keys_put_back_and_clear(tmp_path):
    pending = PendingKeys(1_000)
    pending.add([b"a", b"b", b"a"], at=1.0)
    assert len(pending) == 2 and pending.total == 2 and pending.oldest() == 1.0
    taken = pending.take(10)
    assert [k for k, _ in taken] == [b"a", b"b"] and len(pending) == 0
    pending.put_back(taken)
    assert len(pending) == 2
    pending.clear()
    assert len(pending) == 0 and pending.oldest() is None


def test_key_records_round_trip_and_truncation_is_refused():
    keys = [b"", b"sess:\x00\xff", b"x" * 70_000]
    data = pack_keys(keys)
    assert unpack_keys(data, 3) == keys
    for bad, count in ((data[:-1], 3), (data, 2), (data + b"\x00", 3)):
        with pytest.raises(ValueError):
            unpack_keys(bad, count)


@pytest.mark.parametrize("flags, enough", [("", False), ("KA", True), ("AKE", True), ("Ex", False), ("K$", False),
                                           ("Kg$lshzxet", True), ("KEA", True), ("Kg$lshzxe", False)])
def test_which_notification_settings_name_every_change(flags, enough):
    assert notifications_suffice(flags) is enough
    assert notifications_suffice(with_needed(flags))
    assert set(flags) <= set(with_needed(flags))  # what was set stays set


def test_live_options_refuse_what_they_cannot_do():
    assert LiveOptions(until="2026-12-02T05:00:00Z").deadline_ms(0) == 1796187600000
    assert LiveOptions(until="90s").deadline_ms(1_000) == 91_000
    assert LiveOptions().deadline_ms(0) is None
    for bad in ({"mode": "fast"}, {"until": "soon"}, {"max_pending_keys": 10}, {"scan_interval_s": -1}):
        with pytest.raises(InvalidParameter):
            LiveOptions(**bad)
