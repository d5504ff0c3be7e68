"""The source's keyspace notifications, as changed keys added to a `PendingKeys`.

A thread holds a pub/sub connection with one PSUBSCRIBE per pattern in scope
(`__keyspace@<db>__:<pattern>`: the server matches the key part by the same glob rules as SCAN
MATCH) and adds the key of every event (set, del, expire, expired, evicted, hset, ...) to the
pending keys. Which event it was does not matter: applying a key re-reads it from the source.

Pub/sub is fire-and-forget: a message is lost when the connection drops (a network blip, a
server restart, the server closing a subscriber over its output buffer limit). So every
reconnection counts as a *gap*: the follower then runs a compare-and-repair pass, started after
the new subscription is confirmed, so that nothing changed in the gap is missed. A connection
that answers nothing (no message, no PONG to our PING) for `_SILENT_S` is treated as dropped.
Messages are read in bulk from a connection of our own and parsed by hiredis (~1 us each).
"""

from __future__ import annotations

import threading
import time

import hiredis
import redis

from ..endpoints import RedisEndpoint
from ..cluster import is_cluster
from ..errors import LiveUnavailable
from ..sources import resp
from .pending import PendingKeys

CONFIG = "notify-keyspace-events"
NEEDED_CLASSES = "g$lshzxet"  # generic, string, list, set, hash, zset, expired, evicted, stream
_PING_EVERY_S = 2.0
_SILENT_S = 6.0
_RECONNECT_S = (0.1, 0.25, 0.5, 1.0, 2.0)


def notifications_suffice(flags: str) -> bool:
    """Whether `notify-keyspace-events` set to `flags` names every change to a key by its name."""
    return "K" in flags and ("A" in flags or all(c in flags for c in NEEDED_CLASSES))


def with_needed(flags: str) -> str:
    """`flags` plus what following needs (K and every class of event that changes a key)."""
    return "".join(dict.fromkeys(flags + "KA"))


def enable_notifications(client: redis.Redis, display_url: str) -> str | None:
    """Make the server publish keyspace events for every change; returns the setting to put back
    afterwards (None when nothing was changed). Raises LiveUnavailable, saying what to set, when
    the setting is off and CONFIG is not allowed."""
    try:
        current = client.config_get(CONFIG).get(CONFIG)
    except redis.exceptions.ResponseError as exc:
        raise LiveUnavailable(_unavailable(display_url, f"CONFIG GET is refused ({exc})")) from None
    current = current.decode() if isinstance(current, bytes) else str(current or "")
    if notifications_suffice(current):
        return None
    try:
        client.config_set(CONFIG, with_needed(current))
    except redis.exceptions.ResponseError as exc:
        raise LiveUnavailable(_unavailable(display_url, f"{CONFIG} is {current!r} and CONFIG SET is refused ({exc})")) \
            from None
    return current


def restore_notifications(client: redis.Redis, previous: str | None) -> None:
    if previous is not None:
        client.config_set(CONFIG, previous)


def _unavailable(display_url: str, why: str) -> str:
    return (f"Cannot follow {display_url} by keyspace notifications: {why}. Set {CONFIG} to include K and A "
            f"(for example KA, or add them to what is set) in the server's configuration or your provider's "
            f"console, or run with --live-mode scan (compare-and-repair passes, no notifications needed).")


class _Subscription:
    """One pub/sub connection of our own (made from the client's settings: AUTH, SELECT, TLS),
    read in bulk with hiredis: redis-py's `PubSub` costs ~20 us of Python per message and, on
    a dropped connection, reconnects and subscribes again by itself, which would hide a gap."""

    def __init__(self, client: redis.Redis, channels: list[bytes]):
        self.conn = client.connection_pool.make_connection()
        self.reader = resp.ReplyReader()
        try:
            self.conn.connect()
            self.conn.send_packed_command([resp.pack([b"PSUBSCRIBE", *channels])])
            confirmed, deadline = 0, time.monotonic() + 10
            while confirmed < len(channels):
                if time.monotonic() > deadline:
                    raise redis.exceptions.TimeoutError("the server did not confirm the keyspace subscriptions")
                confirmed += sum(1 for m in self.read(1.0) if m[0] == b"psubscribe")
        except BaseException:
            self.close()
            raise

    def read(self, timeout: float) -> list[list]:
        """The messages that arrived, waiting up to `timeout` s for the first ones."""
        messages = self._parsed()
        if messages:
            return messages
        sock = self.conn._sock  # redis-py's socket: opened, authenticated, selected
        sock.settimeout(timeout)
        try:
            self.reader.receive_from(sock)
        except redis.exceptions.TimeoutError:
            return []
        return self._parsed()

    def _parsed(self) -> list[list]:
        out = []
        while (message := self.reader.gets()) is not resp.MORE:
            if isinstance(message, hiredis.ReplyError):
                raise redis.exceptions.ResponseError(str(message))
            out.append(message)
        return out

    def ping(self) -> None:
        try:
            self.conn.send_packed_command([resp.pack([b"PING"])])
        except OSError as exc:
            raise redis.exceptions.ConnectionError(str(exc)) from None

    def close(self) -> None:
        self.conn.disconnect()


class ChangeFeed:
    """Keyspace events of `patterns` in the source database, into `pending`, from a thread."""

    def __init__(self, endpoint: RedisEndpoint, patterns: tuple[str, ...], pending: PendingKeys):
        self.endpoint, self.pending = endpoint, pending
        self.prefix = b"__keyspace@%d__:" % endpoint.db
        self.channels = [self.prefix + p.encode() for p in patterns]
        self.previous: str | None = None  # the notify-keyspace-events we changed, to put back
        self.changed_setting = False
        self.gaps = 0  # reconnections after the first subscription
        self.events = 0
        self.error: BaseException | None = None  # what stopped the thread for good
        self._gap = threading.Event()
        self._stop = threading.Event()
        self._subscription: _Subscription | None = None
        self._thread: threading.Thread | None = None
        self._admin = endpoint.connect()
        if is_cluster(self._admin):  # keyspace events are per node: one subscription would miss most changes
            self._admin.close()
            raise LiveUnavailable(f"{endpoint.display_url} is a Redis Cluster node, and following a cluster's keyspace "
                                  "events is not supported yet; use --live-mode scan (compare-and-repair passes).")

    def start(self) -> None:
        """Enable notifications (if needed) and subscribe; returns once the server confirmed
        every subscription, so every change from now on is seen."""
        self._subscribe()
        self._thread = threading.Thread(target=self._run, name="live-feed", daemon=True)
        self._thread.start()

    def take_gap(self) -> bool:
        """True once after each reconnection, once the new subscription is confirmed: changes
        may have been missed, and from now on none is."""
        if self._gap.is_set() and self._subscription is not None:
            self._gap.clear()
            return True
        return False

    def check(self) -> None:
        """Raise what stopped the feed for good (an authentication refused after a restart, ...)."""
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Stop listening and put `notify-keyspace-events` back as it was."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close()
        try:
            if self.changed_setting:
                restore_notifications(self._admin, self.previous)
        finally:
            self._admin.close()

    def _subscribe(self) -> None:
        previous = enable_notifications(self._admin, self.endpoint.display_url)
        if previous is not None and not self.changed_setting:
            self.previous, self.changed_setting = previous, True
        self._subscription = _Subscription(self._admin, self.channels)
        self._heard = time.monotonic()

    def _close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    def _run(self) -> None:
        pinged = time.monotonic()
        failures = 0
        while not self._stop.is_set():
            try:
                if self._subscription is None:
                    self._subscribe()  # notifications on again first: a restarted server forgot them
                    self.gaps += 1
                    self._gap.set()  # after the new subscription: a repair pass then misses nothing
                    failures = 0
                messages = self._subscription.read(0.2)
                now = time.monotonic()
                if messages:
                    self._heard = now
                    start = len(self.prefix)
                    keys = [m[2][start:] for m in messages if m[0] == b"pmessage" and m[2].startswith(self.prefix)]
                    if keys:
                        self.events += len(keys)
                        self.pending.add(keys)
                if now - pinged > _PING_EVERY_S:
                    self._subscription.ping()
                    pinged = now
                if now - self._heard > _SILENT_S:
                    raise redis.exceptions.ConnectionError("the subscription went silent")
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
                self._close()
                self._gap.set()  # tell the follower at once; the repair waits for the new subscription
                time.sleep(_RECONNECT_S[min(failures, len(_RECONNECT_S) - 1)])
                failures += 1
            except BaseException as exc:  # noqa: BLE001 - handed to the follower, which raises it
                self.error = exc
                self._close()
                return
