"""A Redis or Valkey endpoint: parsed from a URL, shown without its secrets, connected safely.

Secrets never travel inside URLs past this module: the password (user info) and every secret
URL option (`SECRET_OPTIONS`: `ssl_password`) are kept apart from the rest, `display_url` and
`identity` omit them, `repr` hides them, and connection errors are rewritten so redis-py's
messages cannot echo them. A URL may instead name an environment variable holding one
(`?password_env=NAME`, `?ssl_password_env=NAME`); that is how the CLI hands a password to a
flow without making it a Prefect parameter.

Because anyone allowed to set a URL could otherwise name any variable of the worker (and
have it sent as AUTH to a host of their choice), a named variable must be
`SESSION_MIGRATION_*` or listed, comma-separated, in `SESSION_MIGRATION_PASSWORD_VARIABLES` in
the environment of the process that connects (never in a URL); the tool's own settings
(names ending in `_KEY`, the list itself, `SESSION_MIGRATION_PROGRESS`) are never accepted.
Such a URL can still send an allowed variable's password to whatever host it names.

TLS (`rediss://`) verifies the server's certificate and host name unless the URL turns it off
with `ssl_cert_reqs=none` or `ssl_check_hostname=false`; both settings are passed to redis-py
explicitly, never left to its defaults.

Sentinel: `redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]` (and
`rediss+sentinel://`, TLS to the sentinels and the master alike). USER and PASSWORD are the data
server's; the sentinels' own are `?sentinel_username=` and `?sentinel_password_env=NAME` (or the
secret option `sentinel_password`). Every new connection asks the sentinels, in the order given,
where the master is, and checks that the server found there answers ROLE as a master; so a
connection made after a failover reaches the new master. The endpoint's display form and identity
stay the sentinel form: a failover does not change which checkpoints and state files are its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.connection import SSLConnection
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, SentinelConnectionPool, SentinelManagedConnection

from .errors import AuthenticationFailed, InvalidParameter, NotRedis, ServerUnavailable, is_transient_reply

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel", "valkey+sentinel", "valkeys+sentinel")
SCHEMES = ("redis", "rediss", "unix", "valkey", "valkeys", *SENTINEL_SCHEMES)
_TLS_SCHEMES = ("rediss", "valkeys", "rediss+sentinel", "valkeys+sentinel")
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 60.0
# redis-py retries a failed connection 10 times by default, with growing pauses; our retry policy
# (retry.py) decides, and tells the operator. One quick reconnect is kept for a dropped socket.
RECONNECT = Retry(ExponentialBackoff(cap=0.5, base=0.1), 1)

SECRET_OPTIONS = frozenset({"ssl_password", "sentinel_password"})  # URL options as secret as the password itself
SENTINEL_OPTIONS = frozenset({"sentinel_username", "sentinel_password", "sentinel_password_env"})
TLS_OPTIONS = frozenset({"ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs",
                         "ssl_check_hostname", "ssl_ciphers"})
_CERT_REQS = ("required", "optional", "none")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
PASSWORD_VARIABLE_PREFIX = "SESSION_MIGRATION_"
PASSWORD_VARIABLES_ENV = "SESSION_MIGRATION_PASSWORD_VARIABLES"
_OWN_SETTINGS = frozenset({PASSWORD_VARIABLES_ENV, "SESSION_MIGRATION_PROGRESS"})
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_MASTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_SENTINELS = 16


def password_variable_allowed(name: str) -> bool:
    """Whether a URL may name environment variable `name` for a password (see the module doc)."""
    if name in _OWN_SETTINGS or name.endswith("_KEY"):
        return False
    if name.startswith(PASSWORD_VARIABLE_PREFIX):
        return True
    listed = os.environ.get(PASSWORD_VARIABLES_ENV, "")
    return name in {item.strip() for item in listed.split(",") if item.strip()}


def carries_secret(connection: object) -> bool:
    """True when a connection string holds a secret itself: a password in the user info or a
    secret URL option (`ssl_password`, `sentinel_password`). Block names and `?password_env=` references do not.
    Unreadable URLs count as carrying one, so a caller refusing secrets refuses them too."""
    if not isinstance(connection, str) or "://" not in connection:
        return False
    try:
        parts = urlsplit(connection)
        return parts.password is not None or any(k in SECRET_OPTIONS for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    except ValueError:
        return True


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
    tls_options: tuple[tuple[str, str], ...] = ()  # TLS_OPTIONS only: never a secret
    ssl_password: str | None = field(default=None, repr=False)  # the client key's passphrase
    ssl_password_env: str | None = None
    # Redis Cluster (cluster.py): announced node address -> reachable one; reads from replicas
    cluster_address_map: tuple[tuple[str, str], ...] = ()
    read_from_replicas: bool = False
    # Sentinel: the sentinels' addresses (empty: not a Sentinel URL), the master's name there,
    # and the sentinels' own credentials (the data server's are username/password above)
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    sentinel_password_env: str | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisEndpoint:
        if not isinstance(url, str) or "://" not in url:
            raise InvalidParameter(
                f"{_safe(url)!r} is not a Redis URL; expected redis://[user[:password]@]host[:port][/db], rediss://..., "
                "redis+sentinel://host:port[,host:port...]/master_name[/db], or unix:///path/to.sock?db=N."
            )
        url_to_split, sentinel_hosts = _without_host_list(url)
        parts = urlsplit(url_to_split)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise InvalidParameter(
                f"Unknown URL scheme {scheme!r} in {_safe(url)!r}; use one of redis://, rediss://, redis+sentinel://, "
                "rediss+sentinel://, unix://."
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        sentinel = scheme in SENTINEL_SCHEMES
        db_text = query.pop("db", None)
        path = None
        host, port, sentinels, master_name = "127.0.0.1", DEFAULT_PORT, (), None
        if sentinel:
            sentinels = _sentinel_addresses(sentinel_hosts, url)
            master_name, path_db = _master_and_db(parts.path, url)
            db_text = path_db if path_db is not None else db_text
        else:
            try:
                port = parts.port or DEFAULT_PORT
            except ValueError as exc:
                raise InvalidParameter(f"Bad port in {_safe(url)!r}: {exc}.") from exc
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
        password_env = _variable_name(query.pop("password_env", None), url)
        ssl_password_env = _variable_name(query.pop("ssl_password_env", None), url)
        ssl_password = query.pop("ssl_password", None)
        address_map_text = query.pop("cluster_address_map", None)
        read_from_replicas = _boolean(query.pop("read_from_replicas", "false"), "read_from_replicas", url)
        sentinel_options = {k: query.pop(k) for k in SENTINEL_OPTIONS if k in query}
        if sentinel_options and not sentinel:
            raise InvalidParameter(f"Sentinel options ({', '.join(sorted(sentinel_options))}) need a redis+sentinel:// URL: "
                                   f"{_safe(url)!r}.")
        tls = tuple(sorted((k, v) for k, v in query.items() if k in TLS_OPTIONS))
        unknown = sorted(set(query) - {k for k, _ in tls})
        if unknown:
            raise InvalidParameter(f"Unknown URL option(s) {', '.join(unknown)} in {_safe(url)!r}.")
        has_tls_options = bool(tls) or ssl_password is not None or ssl_password_env is not None
        if has_tls_options and scheme not in _TLS_SCHEMES:
            raise InvalidParameter(f"TLS options need a rediss:// (or rediss+sentinel://) URL: {_safe(url)!r}.")
        _check_tls(dict(tls), url)
        username, password = _user_info(parts.netloc) if sentinel else (parts.username, parts.password)
        return cls(
            scheme="rediss" if scheme in _TLS_SCHEMES else ("unix" if scheme == "unix" else "redis"),
            host=host,
            port=port,
            path=path,
            db=db,
            username=unquote(username) if username else None,
            password=unquote(password) if password is not None else None,
            password_env=password_env,
            tls_options=tls,
            ssl_password=ssl_password,
            ssl_password_env=ssl_password_env,
            cluster_address_map=_address_map(address_map_text, url),
            read_from_replicas=read_from_replicas,
            sentinels=sentinels,
            master_name=master_name,
            sentinel_username=sentinel_options.get("sentinel_username") or None,
            sentinel_password=sentinel_options.get("sentinel_password"),
            sentinel_password_env=_variable_name(sentinel_options.get("sentinel_password_env"), url),
        )

    @property
    def has_inline_password(self) -> bool:
        return self.password is not None

    @property
    def has_inline_secret(self) -> bool:
        """A password or a secret URL option held by the endpoint itself (not by reference)."""
        return self.password is not None or self.ssl_password is not None or self.sentinel_password is not None

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)

    def resolved_password(self) -> str | None:
        return self.password if self.password is not None else self._from_environment(self.password_env)

    def resolved_ssl_password(self) -> str | None:
        return self.ssl_password if self.ssl_password is not None else self._from_environment(self.ssl_password_env)

    def resolved_sentinel_password(self) -> str | None:
        if self.sentinel_password is not None:
            return self.sentinel_password
        return self._from_environment(self.sentinel_password_env)

    def _from_environment(self, name: str | None) -> str | None:
        if not name:
            return None
        if not password_variable_allowed(name):  # checked before the variable is ever read
            raise InvalidParameter(
                f"{self.display_url} names the variable {name} for a password, which this worker does not allow: "
                f"use a {PASSWORD_VARIABLE_PREFIX}* variable, or list it in {PASSWORD_VARIABLES_ENV} in the worker's environment."
            )
        value = os.environ.get(name)
        if value is None:
            raise InvalidParameter(f"The password variable {name} named by {self.display_url} is not set in the environment.")
        return value

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
        query.update(dict(self.tls_options))  # never a secret: those live in their own fields
        if self.ssl_password_env:
            query["ssl_password_env"] = self.ssl_password_env
        if self.cluster_address_map:
            query["cluster_address_map"] = ",".join(f"{a}={b}" for a, b in self.cluster_address_map)
        if self.read_from_replicas:
            query["read_from_replicas"] = "true"
        if self.sentinel_username:
            query["sentinel_username"] = self.sentinel_username
        if self.sentinel_password_env and with_password_env:
            query["sentinel_password_env"] = self.sentinel_password_env
        if self.scheme == "unix":
            query = {"db": str(self.db), **query} if self.db else query
            base = f"unix://{user}{self.path}"
        elif self.sentinels:
            hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
            base = f"{self.scheme}+sentinel://{user}{hosts}/{quote(self.master_name or '', safe='')}/{self.db}"
        else:
            base = f"{self.scheme}://{user}{self.host}:{self.port}/{self.db}"
        return f"{base}?{urlencode(query)}" if query else base

    @property
    def identity(self) -> str:
        """The server and database alone (no user, password, secret option or variable name):
        stable across runs, so checkpoints and state files of the same target find each other.
        A Sentinel URL's identity is its sentinels (in sorted order) and master name, never the
        master's address, which a failover changes."""
        return replace(self, password=None, password_env=None, username=None, ssl_password=None,
                       ssl_password_env=None, sentinels=tuple(sorted(self.sentinels)), sentinel_username=None,
                       sentinel_password=None, sentinel_password_env=None, cluster_address_map=(),
                       read_from_replicas=False).display_url

    def without_password(self, password_env: str, ssl_password_env: str | None = None,
                         sentinel_password_env: str | None = None) -> RedisEndpoint:
        """This endpoint with its password (and, given `ssl_password_env` or
        `sentinel_password_env`, its ssl_password or sentinel_password) moved to environment
        variable references."""
        moved = replace(self, password=None, password_env=password_env)
        if ssl_password_env:
            moved = replace(moved, ssl_password=None, ssl_password_env=ssl_password_env)
        if sentinel_password_env:
            moved = replace(moved, sentinel_password=None, sentinel_password_env=sentinel_password_env)
        return moved

    def same_server(self, other: RedisEndpoint) -> bool:
        """Whether both name the same database of the same server: for Sentinel URLs, the same
        master name and database behind at least one common sentinel."""
        if self.sentinels or other.sentinels:
            return (self.master_name, self.db) == (other.master_name, other.db) and bool(
                set(self.sentinels) & set(other.sentinels))
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
        if self.sentinels:
            client = self._sentinel_client(common)
        elif self.scheme == "unix":
            client = redis.Redis(unix_socket_path=self.path, **common)
        elif self.scheme == "rediss":
            client = redis.Redis(host=self.host, port=self.port, ssl=True, **self._tls_settings(), **common)
        else:
            client = redis.Redis(host=self.host, port=self.port, **common)
        if check:
            with translate_redis_errors(self):
                client.ping()
        return client

    def _sentinel_client(self, common: dict[str, object]) -> redis.Redis:
        """A client whose every new connection asks the sentinels for the master first."""
        tls = self._tls_settings() if self.scheme == "rediss" else {}
        pool = SentinelConnectionPool(self.master_name, _Sentinels(self, tls), **common, **tls,
                                      connection_class=_MasterSSLConnection if tls else _MasterConnection)
        return redis.Redis(connection_pool=pool)

    def _tls_settings(self) -> dict[str, object]:
        """redis-py's TLS arguments, verification spelled out: certificate and host name are
        checked unless the URL says otherwise."""
        tls = dict(self.tls_options)
        cert_reqs = tls.pop("ssl_cert_reqs", "required")
        check_hostname = _BOOLEANS[tls.pop("ssl_check_hostname", "true").lower()] and cert_reqs != "none"
        return {**tls, "ssl_cert_reqs": cert_reqs, "ssl_check_hostname": check_hostname,
                "ssl_password": self.resolved_ssl_password()}


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
        for secret in (self.endpoint.password, self.endpoint.ssl_password, self.endpoint.sentinel_password):
            if secret:
                text = text.replace(secret, "***")
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
        if isinstance(exc, redis.exceptions.ResponseError) and is_transient_reply(text):
            raise ServerUnavailable(f"The Redis server at {where} cannot serve this now ({text.rstrip('.')}); "
                                    "a failover may be under way.") from None
        return False


def _variable_name(name: str | None, url: str) -> str | None:
    if name is not None and not _VARIABLE_NAME.fullmatch(name):
        raise InvalidParameter(f"{name[:40]!r} in {_safe(url)!r} is not an environment variable name.")
    return name


def _without_host_list(url: str) -> tuple[str, str]:
    """A Sentinel URL with its host list replaced by one placeholder name, and that list:
    `urlsplit` reads a netloc as one host, and some Python builds refuse a list such as
    `s1:26379,[::1]:26381` outright ("Invalid IPv6 URL"). Other URLs are returned as they are."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() not in SENTINEL_SCHEMES:
        return url, ""
    end = min([i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0] or [len(rest)])
    userinfo, at, hosts = rest[:end].rpartition("@")
    return f"{scheme}{sep}{userinfo}{at}sentinels{rest[end:]}", hosts


def _boolean(text: str, name: str, url: str) -> bool:
    if text.lower() not in _BOOLEANS:
        raise InvalidParameter(f"{name} in {_safe(url)!r} must be true or false.")
    return _BOOLEANS[text.lower()]


def _address_map(text: str | None, url: str) -> tuple[tuple[str, str], ...]:
    if text is None:
        return ()
    from .cluster import parse_address_map  # cluster.py imports this module

    return parse_address_map(text, _safe(url))
def _user_info(netloc: str) -> tuple[str | None, str | None]:
    """User and password of a netloc whose host part urlsplit cannot read (a host list)."""
    info, at, _hosts = netloc.rpartition("@")
    if not at:
        return None, None
    user, colon, password = info.partition(":")
    return user or None, password if colon else None


def _sentinel_addresses(hosts: str, url: str) -> tuple[tuple[str, int], ...]:
    found = []
    for item in hosts.split(","):
        try:
            parts = urlsplit(f"//{item.strip()}")
            host, port = parts.hostname, parts.port or DEFAULT_SENTINEL_PORT
        except ValueError:
            host = None
        if not host or not item.strip():
            raise InvalidParameter(f"Bad sentinel address {item.strip()[:60]!r} in {_safe(url)!r}: expected "
                                   "HOST:PORT[,HOST:PORT...] with ports from 1 to 65535.")
        found.append((host, port))
    if len(found) > MAX_SENTINELS:
        raise InvalidParameter(f"{_safe(url)!r} lists {len(found)} sentinels; at most {MAX_SENTINELS} are accepted.")
    return tuple(dict.fromkeys(found))


def _master_and_db(path: str, url: str) -> tuple[str, str | None]:
    """The master name and the database (None: not in the path) of a Sentinel URL's path."""
    segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
    if not segments or len(segments) > 2 or not _MASTER_NAME.fullmatch(segments[0]):
        raise InvalidParameter(f"{_safe(url)!r} names no master: a Sentinel URL is "
                               "redis+sentinel://host:port[,host:port...]/MASTER_NAME[/DB].")
    return segments[0], segments[1] if len(segments) == 2 else None


class _Sentinels:
    """Where the master is, as the sentinels say: asked in the URL's order, an unreachable one
    skipped (within the connect timeout). What redis-py's `SentinelConnectionPool` calls on
    every new connection.

    One client stays with the master it first found: should the sentinels name another one
    later (a failover), its next connection fails (transient) instead of silently going on
    against another server, where a SCAN cursor would skip keys and writes just sent to the
    old master could be lost unseen. The step is retried with a new client, which finds the new
    master, and resumes from its checkpoint (which notices the new server's run id)."""

    def __init__(self, endpoint: RedisEndpoint, tls: dict[str, object]):
        self.endpoint = endpoint
        self.pinned: tuple[str, int] | None = None
        self.replicas = 0  # the pinned master's replicas when first reached (ROLE)
        settings = dict(username=endpoint.sentinel_username, password=endpoint.resolved_sentinel_password(),
                        socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S,
                        retry=Retry(ExponentialBackoff(), 0), health_check_interval=0)
        tls_settings = {"ssl": True, **tls} if tls else {}
        self.clients = [(f"{h}:{p}", redis.Redis(host=h, port=p, **settings, **tls_settings))
                        for h, p in endpoint.sentinels]

    def discover_master(self, name: str) -> tuple[str, int]:
        return self._pin(self._ask(name), name)

    def _ask(self, name: str) -> tuple[str, int]:
        problems = []
        for where, client in self.clients:
            try:
                answer = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
            except (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError,
                    redis.exceptions.NoPermissionError, redis.exceptions.AuthenticationWrongNumberOfArgsError) as exc:
                raise redis.exceptions.AuthenticationError(  # terminal: retrying cannot help
                    f"the sentinel at {where} refused us ({str(exc).rstrip('.')}); check sentinel_username and "
                    "sentinel_password (the sentinels' own, apart from the master's)") from None
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                problems.append(f"{where}: {str(exc).rstrip('.')}")
                continue
            except redis.exceptions.ResponseError as exc:
                if "AUTH" in str(exc):  # "AUTH <password> called without any password configured", ...
                    raise redis.exceptions.AuthenticationError(
                        f"the sentinel at {where} refused us ({str(exc).rstrip('.')}); check sentinel_username and "
                        "sentinel_password") from None
                problems.append(f"{where}: {exc}")
                continue
            finally:
                client.connection_pool.disconnect()  # asked only when a connection is made: keep none open
            if answer:
                host, port = answer
                return host.decode() if isinstance(host, bytes) else host, int(port)
            problems.append(f"{where} knows no master named {name!r}")
        raise MasterNotFoundError(f"no sentinel ({', '.join(w for w, _ in self.clients)}) names a master {name!r} "
                                  f"({'; '.join(problems)})")

    def _pin(self, address: tuple[str, int], name: str) -> tuple[str, int]:
        if self.pinned is None:
            self.pinned = address
        elif address != self.pinned:
            raise MasterNotFoundError(
                f"the master {name!r} moved from {self.pinned[0]}:{self.pinned[1]} to {address[0]}:{address[1]} "
                "(a failover) while this step was using it; it starts again against the new master")
        return address

    def discover_slaves(self, name: str) -> list:
        return []  # only masters are ever asked for


class _MasterConnection(SentinelManagedConnection):
    """A connection to the master the sentinels name, checked to answer ROLE as a master: right
    after a failover a sentinel may still name the old master, now a replica."""

    def connect_to(self, address: tuple[str, int]) -> None:
        super().connect_to(address)
        try:
            self.send_command("ROLE")
            role = self.read_response()
        except redis.exceptions.ResponseError as exc:
            if "NOPERM" in str(exc):
                return  # a user without ROLE: the sentinels' word is all there is
            self.disconnect()
            raise
        kind = role[0].decode() if isinstance(role[0], bytes) else str(role[0])
        if kind != "master":
            self.disconnect()
            raise redis.exceptions.ConnectionError(
                f"{address[0]}:{address[1]}, named by the sentinels as the master, is a {kind}: a failover is under way")
        sentinels = self.connection_pool.sentinel_manager
        sentinels.replicas = sentinels.replicas or len(role[2])


class _MasterSSLConnection(_MasterConnection, SSLConnection):
    pass


CONFIRM_TIMEOUT_MS = 5000


def confirm_writes(client: redis.Redis) -> None:
    """Behind Sentinel, make the writes this client made so far safe to count as done (before a
    checkpoint records them): every replica the master had when first reached has them (WAIT),
    and the sentinels still name that master. Replication is asynchronous: after a failover the
    old master takes writes for several seconds until the sentinels demote it, and then drops
    them; a failed confirmation is transient, so the step is retried from its last checkpoint,
    against the new master. WAIT counts this connection's writes: the sinks write over one
    connection at a time. Without Sentinel this does nothing."""
    sentinels = getattr(client.connection_pool, "sentinel_manager", None)
    if not isinstance(sentinels, _Sentinels):
        return
    if sentinels.replicas:
        try:
            acked = int(client.execute_command("WAIT", sentinels.replicas, CONFIRM_TIMEOUT_MS))
        except redis.exceptions.ResponseError as exc:
            if "NOPERM" not in str(exc):
                raise
            acked = sentinels.replicas  # a user without WAIT: the sentinels' word below is all there is
        if acked < sentinels.replicas:
            raise redis.exceptions.ConnectionError(
                f"only {acked} of the master's {sentinels.replicas} replicas confirmed the writes within "
                f"{CONFIRM_TIMEOUT_MS // 1000} s (a failover under way?)")
    sentinels.discover_master(sentinels.endpoint.master_name or "")


def _check_tls(tls: dict[str, str], url: str) -> None:
    if tls.get("ssl_cert_reqs", "required") not in _CERT_REQS:
        raise InvalidParameter(f"ssl_cert_reqs in {_safe(url)!r} must be one of {', '.join(_CERT_REQS)}.")
    if tls.get("ssl_check_hostname", "true").lower() not in _BOOLEANS:
        raise InvalidParameter(f"ssl_check_hostname in {_safe(url)!r} must be true or false.")


def _safe(url: object) -> str:
    """A URL for an error message, with the password and every secret option masked."""
    text = str(url)
    try:
        parts = urlsplit(text)
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@") if parts.password else parts.netloc
        query = "&".join(f"{k}=***" if k in SECRET_OPTIONS else f"{k}={v}" for k, v in parse_qsl(parts.query, True))
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "(unreadable URL)"


# -- connections as operations take them: a URL, a block name, or an endpoint ------------------

# a block's name; prefect-redis's RedisDatabase blocks after their type's slug (tasks/blocks.py)
_BLOCK_NAME = re.compile(r"^(?:redis-database/)?[a-z0-9][a-z0-9-]{0,127}$")
_SCHEME_TYPO = re.compile(r"^((?:redis|rediss|valkey|valkeys)(?:\+sentinel)?|unix)[:/]+(.*)$", re.IGNORECASE)
_block_loader: Callable[[str], RedisEndpoint] | None = None


def register_block_loader(loader: Callable[[str], RedisEndpoint]) -> None:
    """How a block name becomes an endpoint (Prefect's `RedisConnection` blocks, and
    prefect-redis's `RedisDatabase` ones as `redis-database/NAME`: tasks/blocks.py)."""
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
            "nor a connection block name (lower-case letters, digits and dashes; redis-database/NAME for a "
            "prefect-redis RedisDatabase block).")
    if _block_loader is None:
        raise InvalidParameter(
            f"{connection!r} names a RedisConnection block, and blocks live in Prefect: load it through the flows "
            "(or the CLI), or pass a redis:// URL.")
    return _block_loader(connection)
