"""`RedisConnection`: a Prefect block that keeps a Redis/Valkey password as a secret; and the
signing key, from the environment or a Prefect `Secret` block (`signing_keyring`).

Flows take a connection as a string: a Redis URL *without* a password, or the name of one of
these blocks. A URL carrying a password is refused, because Prefect stores flow parameters.
"""

from __future__ import annotations

from dataclasses import replace

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from session_migration.endpoints import RedisEndpoint
from session_migration.errors import InvalidParameter
from session_migration.signing import Keyring


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


def resolve_endpoint(connection: str) -> RedisEndpoint:
    """A flow's connection parameter -> endpoint: a password-free URL or a block name."""
    if not isinstance(connection, str) or not connection.strip():
        raise InvalidParameter("No Redis connection given: pass a redis:// URL or the name of a RedisConnection block.")
    if "://" not in connection:
        try:
            block = RedisConnection.load(connection)
        except ValueError as exc:
            raise InvalidParameter(f"No RedisConnection block named {connection!r}: {exc}") from None
        return block.endpoint()
    endpoint = RedisEndpoint.from_url(connection)
    if endpoint.has_inline_password:
        raise InvalidParameter(
            f"A password inside a flow parameter would be stored by Prefect ({endpoint.display_url}); "
            "use a RedisConnection block, or ?password_env=VARIABLE with the password in that environment variable."
        )
    return endpoint


def signing_keyring(signing_key_block: str | None = None, allow_unsigned: bool = False) -> Keyring:
    """The signing keys a task uses: the environment's (`SESSION_MIGRATION_SIGNING_KEY`,
    `SESSION_MIGRATION_SIGNING_KEYS`), with the current key taken from the Prefect `Secret`
    block named `signing_key_block` when one is named. Only the block's name is ever a
    parameter; its value stays inside the task."""
    if not signing_key_block:
        return Keyring.from_env(allow_unsigned=allow_unsigned)
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(signing_key_block).get()
    except ValueError as exc:
        raise InvalidParameter(f"No Secret block named {signing_key_block!r} holds a signing key: {exc}") from None
    if not isinstance(value, str):
        raise InvalidParameter(f"The Secret block {signing_key_block!r} must hold the signing key as a string.")
    return Keyring.from_env(current=value, allow_unsigned=allow_unsigned, where=f"the Secret block {signing_key_block!r}")
