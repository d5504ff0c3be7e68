"""Prefect blocks the flows name by parameter, so that no secret is ever a parameter:
`RedisConnection` (a Redis/Valkey endpoint; its password a secret), `SnapshotStorage` (the
storage options of the snapshot filesystem, e.g. S3 credentials and endpoint), and Prefect's
own `Secret` holding the signing key.

Flows take a connection as a string: a Redis URL *without* a password, or the name of a block
(a URL carrying a password is refused before the flow run exists: flows/_edge.py). A bare name
(`sessions-prod`) is one of our `RedisConnection` blocks; `redis-database/NAME` is a block of
prefect-redis's `RedisDatabase` type (its block type slug, then the name, as Prefect itself
writes block references), which Prefect users may already keep. So a name means one block
whichever kinds exist. The block's password (a SecretStr) is read in the process that
connects, inside the task; only the name is a parameter.
Importing this module teaches the core (`endpoints.resolve_connection`) to load such blocks.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefect.blocks.core import Block
from prefect.types import SecretDict
from pydantic import Field, SecretStr

from session_migration.endpoints import RedisEndpoint, register_block_loader
from session_migration.errors import InvalidParameter
from session_migration.storage import register_options_loader
from session_migration.signing import register_secret_loader


class RedisConnection(Block):
    _block_type_name = "Session Migration Redis Connection"
    _block_type_slug = "session-migration-redis"
    _description = "A Redis or Valkey endpoint for redis-session-migration; the password is kept secret."

    url: str = Field(description="redis://host:port/db, rediss://..., or unix:///path?db=N; no password in it.")
    username: str | None = Field(default=None, description="ACL user name, if any.")
    password: SecretStr | None = Field(default=None, description="The password; stored encrypted by Prefect.")

    def endpoint(self) -> RedisEndpoint:
        endpoint = RedisEndpoint.from_url(self.url)
        if endpoint.has_inline_password:
            raise InvalidParameter(f"The block's url must not hold a password; put it in the block's password field ({endpoint.display_url}).")
        password = self.password.get_secret_value() if self.password else None
        return replace(endpoint, username=self.username or endpoint.username, password=password)


REDIS_DATABASE = "redis-database/"  # prefect-redis's RedisDatabase: its block type slug


def load_endpoint(name: str) -> RedisEndpoint:
    """The endpoint a block names (the core's block loader): `redis-database/NAME`, a
    prefect-redis `RedisDatabase` block; any other name, a `RedisConnection` block."""
    if name.startswith(REDIS_DATABASE):
        return _redis_database(name.removeprefix(REDIS_DATABASE))
    try:
        block = RedisConnection.load(name)
    except ValueError as exc:
        hint = (f" A prefect-redis RedisDatabase block of that name exists: name it {REDIS_DATABASE}{name}."
                if _exists(name) else "")
        raise InvalidParameter(f"No RedisConnection block named {name!r}: {exc}.{hint}") from None
    return block.endpoint()


def _redis_database(name: str) -> RedisEndpoint:
    """The endpoint of prefect-redis's `RedisDatabase` block `name`: its `connection_url` when
    set (redis://, rediss://, redis+sentinel://, ...; a secret there), else host, port, db,
    username, password and ssl."""
    from prefect_redis import RedisDatabase

    try:
        block = RedisDatabase.load(name)
    except ValueError as exc:
        raise InvalidParameter(f"No RedisDatabase block named {name!r}: {exc}") from None
    connection_url = getattr(block, "connection_url", None)
    if connection_url is not None:
        return RedisEndpoint.from_url(connection_url.get_secret_value())
    host = f"[{block.host}]" if ":" in block.host else block.host
    endpoint = RedisEndpoint.from_url(f"{'rediss' if block.ssl else 'redis'}://{host}:{block.port}/{block.db}")
    return replace(endpoint, username=block.username.get_secret_value() if block.username else None,
                   password=block.password.get_secret_value() if block.password else None)


def _exists(name: str) -> bool:
    from prefect_redis import RedisDatabase

    try:
        RedisDatabase.load(name)
    except ValueError:
        return False
    return True


register_block_loader(load_endpoint)


def load_secret(name: str) -> str:
    """The value of the Prefect `Secret` block `name` (the core's loader of signing keys): only
    the name is ever a parameter; the value stays inside the task that needs it."""
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name).get()
    except ValueError as exc:
        raise InvalidParameter(f"No Secret block named {name!r} holds a signing key: {exc}") from None
    if not isinstance(value, str):
        raise InvalidParameter(f"The Secret block {name!r} must hold the signing key as a string.")
    return value


register_secret_loader(load_secret)


class SnapshotStorage(Block):
    _block_type_name = "Session Migration Snapshot Storage"
    _block_type_slug = "session-migration-storage"
    _description = ("fsspec storage options for the snapshot filesystem (s3://, gcs://, ...); the secret ones "
                    "(keys, tokens) are kept encrypted by Prefect.")

    options: dict[str, Any] = Field(default_factory=dict, description="Storage options that are not secret, e.g. "
                                    "{\"client_kwargs\": {\"endpoint_url\": \"https://s3.example\"}}.")
    secret_options: SecretDict = Field(default_factory=lambda: SecretDict({}),
                                       description="Storage options that are secret, e.g. {\"key\": ..., \"secret\": ...}.")

    def storage_options(self) -> dict[str, Any]:
        return {**self.options, **self.secret_options.get_secret_value()}


def load_storage_options(name: str) -> dict[str, Any]:
    """The storage options a `SnapshotStorage` block names (the core's loader of them)."""
    try:
        return SnapshotStorage.load(name).storage_options()
    except ValueError as exc:
        raise InvalidParameter(f"No SnapshotStorage block named {name!r}: {exc}") from None


register_options_loader(load_storage_options)
