"""Credentials in connection URLs (issue 14): which variables a URL may name, secret options,
TLS verification. The servers here are plain sockets in the test, listening on loopback:
they record what a client sends them, which is the point."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
from pathlib import Path

import pytest

from session_migration.audit import password_free
from session_migration.endpoints import RedisEndpoint, carries_secret, password_variable_allowed
from session_migration.errors import InvalidParameter, ServerUnavailable

SECRET = "aws-secret-value-7f3a"


class Listener:
    """A TCP listener on loopback that records every byte it receives and answers every read
    with a RESP error, so a client gives up at once instead of waiting for a reply."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.tls = tls
        self.received = bytearray()
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            try:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                while chunk := conn.recv(65536):
                    self.received += chunk
                    conn.sendall(b"-ERR this is not a Redis server\r\n")
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def test_a_url_cannot_send_a_foreign_variable_to_any_server(listener, monkeypatch):
    """Issue 14: `?password_env=AWS_SECRET_ACCESS_KEY` sent that secret as AUTH to the URL's host."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("SESSION_MIGRATION_REDACTION_KEY", SECRET)  # the tool's own setting: no password either
    for name in ("AWS_SECRET_ACCESS_KEY", "SESSION_MIGRATION_REDACTION_KEY"):
        endpoint = RedisEndpoint.from_url(f"redis://attacker@127.0.0.1:{listener.port}/0?password_env={name}")
        with pytest.raises(InvalidParameter, match=f"names the variable {name} for a password, which this worker does not allow"):
            endpoint.connect()
    assert listener.connections == 0 and SECRET.encode() not in listener.received


def test_allowed_variables_are_the_tools_own_and_the_workers_list(listener, monkeypatch):
    monkeypatch.setenv("SESSION_MIGRATION_SOURCE_PASSWORD", "pw-one")
    monkeypatch.setenv("APP_REDIS_PASSWORD", "pw-two")
    assert password_variable_allowed("SESSION_MIGRATION_SOURCE_PASSWORD")
    assert not password_variable_allowed("APP_REDIS_PASSWORD")
    monkeypatch.setenv("SESSION_MIGRATION_PASSWORD_VARIABLES", "OTHER, APP_REDIS_PASSWORD")
    assert password_variable_allowed("APP_REDIS_PASSWORD")
    assert not password_variable_allowed("SESSION_MIGRATION_PASSWORD_VARIABLES")
    assert not password_variable_allowed("SESSION_MIGRATION_SIGNING_KEY")
    for name, value in (("SESSION_MIGRATION_SOURCE_PASSWORD", b"pw-one"), ("APP_REDIS_PASSWORD", b"pw-two")):
        endpoint = RedisEndpoint.from_url(f"redis://127.0.0.1:{listener.port}/0?password_env={name}")
        with pytest.raises(Exception):  # the fake server refuses everything
            endpoint.connect()
        assert value in listener.received  # an allowed variable is used


def test_a_variable_name_in_a_url_must_be_a_name():
    with pytest.raises(InvalidParameter, match="not an environment variable name"):
        RedisEndpoint.from_url("redis://h/0?password_env=A%3DB")


def test_ssl_password_never_displayed_nor_in_identity_nor_manifest(tmp_path: Path):
    """Issue 14: `ssl_password` stayed in display_url/identity, so it reached logs and manifests."""
    import fsspec

    from session_migration.options import BackupOptions
    from session_migration.pipeline import write_snapshot
    from session_migration.sources.redis import ServerInfo

    url = f"rediss://app:pw-main@cache.internal:6380/1?ssl_certfile=/etc/c.pem&ssl_password={SECRET}"
    endpoint = RedisEndpoint.from_url(url)
    assert endpoint.ssl_password == SECRET and endpoint.has_inline_secret
    for shown in (endpoint.display_url, endpoint.identity, repr(endpoint), password_free(url)):
        assert SECRET not in shown and "ssl_password=" not in shown and "pw-main" not in shown, shown
    assert "ssl_certfile=%2Fetc%2Fc.pem" in endpoint.display_url
    moved = endpoint.without_password("SESSION_MIGRATION_TARGET_PASSWORD", "SESSION_MIGRATION_TARGET_SSL_PASSWORD")
    assert moved.ssl_password is None and not moved.has_inline_secret
    assert moved.display_url.endswith("ssl_password_env=SESSION_MIGRATION_TARGET_SSL_PASSWORD")
    fs = fsspec.filesystem("file")
    result = write_snapshot(fs, str(tmp_path), [], endpoint, ServerInfo("redis", "7.0.15", True), BackupOptions())
    manifest = (tmp_path / result.snapshot_id / "manifest.json").read_text()
    assert SECRET not in manifest and "pw-main" not in manifest
    assert json.loads(manifest)["source"]["url"] == endpoint.display_url
    with pytest.raises(InvalidParameter) as info:
        RedisEndpoint.from_url(url.replace("6380", "99999"))  # a bad port: the message quotes the URL
    assert SECRET not in str(info.value) and "pw-main" not in str(info.value)


@pytest.mark.parametrize("connection, secret", [
    ("redis://:pw@h:6379/0", True),
    ("redis://user:pw@h:6379/0", True),
    ("rediss://h:6380/0?ssl_password=x", True),
    ("rediss://h:6380/0?ssl_certfile=/c.pem&ssl_password=", True),
    ("redis://user@h:6379/0", False),
    ("redis://h:6379/0?password_env=SESSION_MIGRATION_SOURCE_PASSWORD", False),
    ("rediss://h:6380/0?ssl_password_env=SESSION_MIGRATION_SSL_PASSWORD", False),
    ("my-redis-block", False),
    ("redis://[::1", True),  # unreadable: treated as carrying one
])
def test_carries_secret(connection, secret):
    assert carries_secret(connection) is secret


def test_tls_options_are_checked_and_verification_is_explicit():
    for bad, message in (("redis://h/0?ssl_certfile=/c.pem", "need a rediss"), ("rediss://h/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
                         ("rediss://h/0?ssl_check_hostname=perhaps", "true or false"), ("rediss://h/0?ssl_keyfil=/k", "Unknown URL option")):
        with pytest.raises(InvalidParameter, match=message):
            RedisEndpoint.from_url(bad)
    kwargs = RedisEndpoint.from_url("rediss://h:6380/0").connect(check=False).connection_pool.connection_kwargs
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"]) == ("required", True)
    off = RedisEndpoint.from_url("rediss://h:6380/0?ssl_cert_reqs=none").connect(check=False).connection_pool.connection_kwargs
    assert (off["ssl_cert_reqs"], off["ssl_check_hostname"]) == ("none", False)


def _self_signed(tmp_path: Path, host: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_tls_refuses_a_certificate_for_another_host_before_sending_the_password(tmp_path, monkeypatch):
    cert, key = _self_signed(tmp_path, "cache.example.internal")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = Listener(tls=context)
    try:
        monkeypatch.setenv("SESSION_MIGRATION_TARGET_PASSWORD", SECRET)
        url = f"rediss://127.0.0.1:{server.port}/0?password_env=SESSION_MIGRATION_TARGET_PASSWORD&ssl_ca_certs={cert}"
        with pytest.raises(ServerUnavailable, match="certificate|hostname|match"):
            RedisEndpoint.from_url(url).connect()
        assert SECRET.encode() not in server.received
        with pytest.raises(Exception):  # with host names unchecked the handshake passes; the fake server refuses AUTH
            RedisEndpoint.from_url(url + "&ssl_check_hostname=false").connect()
        assert SECRET.encode() in server.received  # proves the first refusal was the host name check
    finally:
        server.close()
