"""`RedisConnection`: a Prefect block that keeps a Redis/Valkey password as a secret.

Flows take a connection as a string: a Redis URL *without* a password, or the name of one of
these blocks. A URL carrying a password is refused, because Prefect stores flow parameters.
"""

from __future__ import annotations

from dataclasses import replace

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from session_migration.endpoints import RedisEndpoint
from session_migration.errors import InvalidParameter


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
