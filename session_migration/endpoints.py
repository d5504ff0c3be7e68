"""A Redis or Valkey endpoint: parsed from a URL, shown without its password, connected safely.

Passwords never travel inside URLs past this module: `RedisEndpoint.password` is kept apart,
`display_url` omits it, `repr` hides it, and connection errors are rewritten so redis-py's
messages cannot echo it. A URL may also name an environment variable holding the password
(`?password_env=NAME`); that is how the CLI hands a password to a flow without making it a
Prefect parameter.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .errors import AuthenticationFailed, InvalidParameter, NotRedis, ServerUnavailable

SCHEMES = ("redis", "rediss", "unix", "valkey", "valkeys")
DEFAULT_PORT = 6379
CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 60.0
# redis-py retries a failed connection 10 times by default, with growing pauses; our retry policy
# (retry.py) decides, and tells the operator. One quick reconnect is kept for a dropped socket.
RECONNECT = Retry(ExponentialBackoff(cap=0.5, base=0.1), 1)


@dataclass(frozen=True)
class RedisEndpoint:
    scheme: str = "redis"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    path: str | None = None  # unix socket
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_env: str | None = None
    tls_options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_url(cls, url: str) -> RedisEndpoint:
        if not isinstance(url, str) or "://" not in url:
            raise InvalidParameter(
                f"{_safe(url)!r} is not a Redis URL; expected redis://[user[:password]@]host[:port][/db], rediss://..., or unix:///path/to.sock?db=N."
            )
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise InvalidParameter(
                f"Unknown URL scheme {scheme!r} in {_safe(url)!r}; use one of redis://, rediss://, unix://."
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError as exc:
            raise InvalidParameter(f"Bad port in {_safe(url)!r}: {exc}.") from exc
        db_text = query.pop("db", None)
        path = None
        host = parts.hostname or "127.0.0.1"
        if scheme == "unix":
            path = unquote(parts.path)
            if not path:
                raise InvalidParameter(f"{_safe(url)!r} names no socket path.")
        elif parts.path.strip("/"):
            db_text = parts.path.strip("/")
        try:
            db = int(db_text) if db_text is not None else 0
        except ValueError:
            raise InvalidParameter(f"Database {db_text!r} in {_safe(url)!r} is not a number.") from None
        if not 0 <= db <= 100_000:
            raise InvalidParameter(f"Database {db} in {_safe(url)!r} is out of range.")
        password_env = query.pop("password_env", None)
        tls = tuple(sorted((k, v) for k, v in query.items() if k.startswith("ssl_")))
        unknown = sorted(set(query) - {k for k, _ in tls})
        if unknown:
            raise InvalidParameter(f"Unknown URL option(s) {', '.join(unknown)} in {_safe(url)!r}.")
        return cls(
            scheme="rediss" if scheme in ("rediss", "valkeys") else ("unix" if scheme == "unix" else "redis"),
            host=host,
            port=port,
            path=path,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            password_env=password_env,
            tls_options=tls,
        )

    @property
    def has_inline_password(self) -> bool:
        return self.password is not None

    def resolved_password(self) -> str | None:
        if self.password is not None:
            return self.password
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise InvalidParameter(
                    f"The password variable {self.password_env} named by {self.display_url} is not set in the environment."
                )
            return value
        return None

    @property
    def display_url(self) -> str:
        """The URL with the password (and where it comes from) removed: safe for logs,
        manifests and reports, and what the operator recognises as the server they named."""
        return self._url(with_password_env=False)

    @property
    def parameter_url(self) -> str:
        """The password-free URL a flow takes as a parameter: it keeps `?password_env=`, so the
        flow finds the password in its environment."""
        return self._url(with_password_env=True)

    def _url(self, with_password_env: bool) -> str:
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        query = {}
        if self.password_env and with_password_env:
            query["password_env"] = self.password_env
        query.update(dict(self.tls_options))
        if self.scheme == "unix":
            query = {"db": str(self.db), **query} if self.db else query
            base = f"unix://{user}{self.path}"
        else:
            base = f"{self.scheme}://{user}{self.host}:{self.port}/{self.db}"
        return f"{base}?{urlencode(query)}" if query else base

    @property
    def identity(self) -> str:
        """The server and database alone (no user, password or password_env): stable across
        runs, so checkpoints and state files of the same target find each other."""
        return replace(self, password=None, password_env=None, username=None).display_url

    def without_password(self, password_env: str) -> RedisEndpoint:
        """This endpoint with its password moved to an environment variable reference."""
        return replace(self, password=None, password_env=password_env)

    def same_server(self, other: RedisEndpoint) -> bool:
        return (self.scheme, self.host, self.port, self.path, self.db) == (
            other.scheme, other.host, other.port, other.path, other.db,
        )

    def connect(self, *, decode_responses: bool = False, check: bool = True) -> redis.Redis:
        """A client for this endpoint; with `check`, PING it so errors surface here, clearly."""
        common = dict(
            db=self.db,
            username=self.username,
            password=self.resolved_password(),
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            decode_responses=decode_responses,
            health_check_interval=0,
            retry=RECONNECT,
        )
        if self.scheme == "unix":
            client = redis.Redis(unix_socket_path=self.path, **common)
        else:
            tls = dict(self.tls_options)
            client = redis.Redis(
                host=self.host,
                port=self.port,
                ssl=self.scheme == "rediss",
                **({k: v for k, v in tls.items()} if self.scheme == "rediss" else {}),
                **common,
            )
        if check:
            with translate_redis_errors(self):
                client.ping()
        return client


class translate_redis_errors:
    """Context manager: redis-py exceptions become this tool's errors, naming the endpoint
    by its display URL and never carrying the password along (`from None`)."""

    def __init__(self, endpoint: RedisEndpoint):
        self.endpoint = endpoint

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not isinstance(exc, redis.exceptions.RedisError):
            return False
        where = self.endpoint.display_url
        text = str(exc)
        password = self.endpoint.password
        if password:
            text = text.replace(password, "***")
        if isinstance(exc, (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)) or (
            isinstance(exc, redis.exceptions.ResponseError) and ("WRONGPASS" in text or "NOAUTH" in text)
        ):
            raise AuthenticationFailed(
                f"Authentication to {where} failed: check the username and password ({text})."
            ) from None
        if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            raise ServerUnavailable(f"Cannot reach the Redis server at {where}: {text.rstrip('.')}.") from None
        if isinstance(exc, redis.exceptions.InvalidResponse):
            raise NotRedis(f"Something answers at {where}, but not in the Redis protocol ({text}); "
                           "check the host and port.") from None
        if isinstance(exc, redis.exceptions.BusyLoadingError):
            raise ServerUnavailable(f"The Redis server at {where} is still loading its data; try again shortly.") from None
        return False


def _safe(url: object) -> str:
    """A URL for an error message, with anything that looks like a password masked."""
    text = str(url)
    try:
        parts = urlsplit(text)
        if parts.password:
            return text.replace(f":{parts.password}@", ":***@")
    except ValueError:
        pass
    return text


# -- connections as operations take them: a URL, a block name, or an endpoint ------------------

_BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
_SCHEME_TYPO = re.compile(r"^(redis|rediss|valkey|valkeys|unix)[:/]+(.*)$", re.IGNORECASE)
_block_loader: Callable[[str], RedisEndpoint] | None = None


def register_block_loader(loader: Callable[[str], RedisEndpoint]) -> None:
    """How a block name becomes an endpoint (Prefect's `RedisConnection` blocks: tasks/blocks.py)."""
    global _block_loader
    _block_loader = loader


def is_block_name(text: str) -> bool:
    return bool(_BLOCK_NAME.match(text))


def resolve_connection(connection: str | RedisEndpoint) -> RedisEndpoint:
    """An endpoint from a Redis URL, the name of a connection block, or an endpoint."""
    if isinstance(connection, RedisEndpoint):
        return connection
    if not isinstance(connection, str) or not connection.strip():
        raise InvalidParameter("No Redis connection given: pass a redis:// URL or the name of a RedisConnection block.")
    if "://" in connection:
        return RedisEndpoint.from_url(connection)
    typo = _SCHEME_TYPO.match(connection)
    if typo:
        raise InvalidParameter(
            f"{_safe(connection)!r} is not a Redis URL; did you mean {typo.group(1).lower()}://{_safe(typo.group(2))}?")
    if not _BLOCK_NAME.match(connection):
        raise InvalidParameter(
            f"{_safe(connection)!r} is neither a Redis URL (redis://host:port/db, rediss://..., unix:///path.sock) "
            "nor a connection block name (lower-case letters, digits and dashes).")
    if _block_loader is None:
        raise InvalidParameter(
            f"{connection!r} names a RedisConnection block, and blocks live in Prefect: load it through the flows "
            "(or the CLI), or pass a redis:// URL.")
    return _block_loader(connection)
