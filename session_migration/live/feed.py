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
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from ..endpoints import RedisEndpoint
from ..errors import LiveUnavailable
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
        self._pubsub: Any = None
        self._thread: threading.Thread | None = None
        self._admin = endpoint.connect()

    def start(self) -> None:
        """Enable notifications (if needed) and subscribe; returns once the server confirmed
        every subscription, so every change from now on is seen."""
        self._subscribe()
        self._thread = threading.Thread(target=self._run, name="live-feed", daemon=True)
        self._thread.start()

    def take_gap(self) -> bool:
        """True once after each reconnection, once the new subscription is confirmed: changes
        may have been missed, and from now on none is."""
        if self._gap.is_set() and self._pubsub is not None:
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

    def _enable(self) -> None:
        previous = enable_notifications(self._admin, self.endpoint.display_url)
        if previous is not None and not self.changed_setting:
            self.previous, self.changed_setting = previous, True

    def _subscribe(self) -> None:
        self._enable()
        pubsub = self._admin.pubsub()
        pubsub.psubscribe(*self.channels)
        confirmed, deadline = 0, time.monotonic() + 10
        while confirmed < len(self.channels):
            if time.monotonic() > deadline:
                pubsub.close()
                raise redis.exceptions.TimeoutError("the server did not confirm the keyspace subscriptions")
            message = pubsub.get_message(timeout=1.0)
            if message and message["type"] == "psubscribe":
                confirmed += 1
        self._pubsub = pubsub
        self._heard = time.monotonic()

    def _close(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
            self._pubsub = None

    def _run(self) -> None:
        pinged = time.monotonic()
        failures = 0
        while not self._stop.is_set():
            try:
                if self._pubsub is None:
                    self._subscribe()
                    self.gaps += 1
                    self._gap.set()  # after the new subscription: a repair pass then misses nothing
                    failures = 0
                keys = self._drain()
                if keys:
                    self.events += len(keys)
                    self.pending.add(keys)
                now = time.monotonic()
                if now - pinged > _PING_EVERY_S:
                    self._pubsub.ping()
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

    def _drain(self) -> list[bytes]:
        """The keys of the messages waiting (up to 10,000), after waiting up to 0.2 s for one."""
        keys: list[bytes] = []
        message = self._pubsub.get_message(timeout=0.2)
        while message is not None:
            self._heard = time.monotonic()
            if message["type"] == "pmessage":
                channel = message["channel"]
                if channel.startswith(self.prefix):
                    keys.append(channel[len(self.prefix):])
            elif message["type"] == "psubscribe" and message["data"] == len(self.channels):
                # redis-py reconnected and subscribed again on its own: messages were lost, and a
                # restarted server may have its notifications off again
                self.pending.add(keys)
                keys = []
                self._enable()
                self.gaps += 1
                self._gap.set()
            if len(keys) >= 10_000:
                break
            message = self._pubsub.get_message(timeout=0)
        return keys

    @property
    def connected(self) -> bool:
        return self._pubsub is not None
