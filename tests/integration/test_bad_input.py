"""Bad input fails fast, with one sentence naming the problem, and leaves no manifest."""

from __future__ import annotations

import pytest

from session_migration import backup
from session_migration.errors import (
    AuthenticationFailed,
    DestinationNotWritable,
    InvalidParameter,
    ServerUnavailable,
    SnapshotExists,
)
from servers import free_port, start_server

pytestmark = pytest.mark.integration


def no_manifest_under(path):
    return not list(path.rglob("manifest.json")) if path.exists() else True


def test_unreachable_server(tmp_path):
    with pytest.raises(ServerUnavailable, match=r"Cannot reach the Redis server at redis://127\.0\.0\.1:\d+/0"):
        backup(f"redis://127.0.0.1:{free_port()}/0", str(tmp_path))
    assert no_manifest_under(tmp_path)


@pytest.fixture(scope="module")
def locked_server():
    server = start_server("valkey", password="s3cret-pass")
    yield server
    server.stop()


def test_wrong_password_is_named_and_never_echoed(locked_server, tmp_path):
    url = f"redis://:wrong-pass-123@127.0.0.1:{locked_server.port}/0"
    with pytest.raises(AuthenticationFailed) as info:
        backup(url, str(tmp_path))
    assert "Authentication" in str(info.value)
    assert "wrong-pass-123" not in str(info.value) and "wrong-pass-123" not in repr(info.value.__cause__)
    assert no_manifest_under(tmp_path)


def test_right_password_works_and_stays_out_of_the_manifest(locked_server, tmp_path):
    locked_server.client().set("sess:x", "v")
    result = backup(locked_server.url, str(tmp_path), patterns=["sess:*"])
    manifest = (tmp_path / result.snapshot_id / "manifest.json").read_text()
    assert "s3cret-pass" not in manifest
    assert f"redis://127.0.0.1:{locked_server.port}/0" in manifest


@pytest.mark.parametrize("url, message", [
    ("http://localhost:6379", "Unknown URL scheme 'http'"),
    ("localhost:6379", "is not a Redis URL"),
    ("redis://localhost:6379/abc", "is not a number"),
    ("redis://localhost:99999/0", "Bad port"),
    ("redis://localhost/0?password_env=NOT_SET_ANYWHERE", "NOT_SET_ANYWHERE"),
])
def test_bad_urls(url, message, tmp_path):
    with pytest.raises(InvalidParameter, match=message):
        backup(url, str(tmp_path))
    assert no_manifest_under(tmp_path)


def test_unwritable_destination(valkey, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DestinationNotWritable, match="not writable"):
        backup(valkey.url, str(blocker / "snapshots"))


def test_existing_snapshot_id(valkey, tmp_path):
    valkey.client().set("sess:x", "v")
    backup(valkey.url, str(tmp_path), patterns=["sess:*"], snapshot_id="nightly")
    with pytest.raises(SnapshotExists, match="nightly already exists"):
        backup(valkey.url, str(tmp_path), patterns=["sess:*"], snapshot_id="nightly")


@pytest.mark.parametrize("options, message", [
    ({"batch_size": 0}, "batch_size must be"),
    ({"batch_size": "100"}, "batch_size must be"),
    ({"compression": "zip"}, "Unknown compression 'zip'"),
    ({"patterns": []}, "No key pattern"),
    ({"patterns": [""]}, "is empty"),
    ({"snapshot_id": "../escape"}, "is not valid"),
])
def test_invalid_parameters_fail_before_connecting(options, message, tmp_path):
    # The port is closed: a parameter error must come before any connection attempt.
    with pytest.raises(InvalidParameter, match=message):
        backup(f"redis://127.0.0.1:{free_port()}/0", str(tmp_path), **options)
    assert no_manifest_under(tmp_path)
