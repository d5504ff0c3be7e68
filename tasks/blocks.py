"""`RedisConnection`: a Prefect block that keeps a Redis/Valkey password as a secret.

Flows take a connection as a string: a Redis URL *without* a password, or the name of one of
these blocks (a URL carrying a password is refused before the flow run exists: flows/_edge.py).
Importing this module teaches the core (`endpoints.resolve_connection`) to load such blocks.
"""

from __future__ import annotations

from dataclasses import replace

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from session_migration.endpoints import RedisEndpoint, register_block_loader
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


def load_endpoint(name: str) -> RedisEndpoint:
    """The endpoint a `RedisConnection` block names (the core's block loader)."""
    try:
        block = RedisConnection.load(name)
    except ValueError as exc:
        raise InvalidParameter(f"No RedisConnection block named {name!r}: {exc}") from None
    return block.endpoint()


register_block_loader(load_endpoint)
