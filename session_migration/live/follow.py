"""Follow the source after the copy until told to stop, then cut over: drain, verify, report.

    feed = start_following(source, options.patterns, live, spill=(fs, dir))  # before the copy
    ... the copy (transfer or backup + restore) ...
    summary = follow(feed, mirror, live, stop=StopFlag(), progress=...)      # after it

Notify mode: the pending keys of the feed are applied oldest first, in batches; on every gap
of the feed (a reconnection: messages may be lost) the pending keys are dropped and a
compare-and-repair pass runs instead, which covers them. Scan mode: compare-and-repair passes,
`scan_interval_s` apart.

Stopping (`StopFlag`: the first SIGINT/SIGTERM, `live_until`, or a caller's check such as a
Prefect cancellation): the keys pending at that moment are applied, then every key changed since
the copy is compared again on both sides (the final targeted verify; a full compare pass when
more keys changed than are remembered, and in scan mode). Keys found different are applied
once more and compared again, so a key changed during the stop itself is not reported as lost.
A second signal stops at once, as without --live.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..endpoints import RedisEndpoint
from ..options import LiveOptions
from .feed import ChangeFeed
from .mirror import DIFFERENCES, Mirror
from .pending import PendingKeys

REMEMBERED_CHANGES = 1_000_000  # changed keys kept by name for the final verify
_REPORT_EVERY_S = 1.0
_IDLE_S = 0.02
_LAGS = 100_000  # lag samples kept for the percentiles


_STOP_CHECKS: list[Callable[[], str | None]] = []


def add_stop_check(check: Callable[[], str | None]) -> None:
    """Ask `check` every few seconds while following whether to stop (it returns a reason, or
    None): how an orchestrator's cancellation reaches the loop (flows/ adds Prefect's)."""
    if check not in _STOP_CHECKS:
        _STOP_CHECKS.append(check)


def _any_stop_check() -> str | None:
    for check in _STOP_CHECKS:
        reason = check()
        if reason:
            return reason
    return None


class StopFlag:
    """Set when following should end; says why."""

    def __init__(self, check: Callable[[], str | None] | None = _any_stop_check):
        self._event = threading.Event()
        self.reason: str | None = None
        self._check = check  # asked now and then: a reason to stop, or None
        self._checked = time.monotonic()

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        if not self._event.is_set() and self._check is not None and time.monotonic() - self._checked > 2:
            self._checked = time.monotonic()
            reason = self._check()
            if reason:
                self.set(reason)
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.is_set():
                return True
            self._event.wait(min(0.2, end - time.monotonic()))
        return self.is_set()


@contextmanager
def stop_on_signals(stop: StopFlag) -> Iterator[None]:
    """While following, the first SIGINT or SIGTERM asks for a clean stop; a second one raises
    as usual (KeyboardInterrupt). Only the main thread can take signals; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def first(signum: int, frame: Any) -> None:
        stop.set("SIGINT" if signum == signal.SIGINT else "SIGTERM")
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    for sig in previous:
        signal.signal(sig, first)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_ANNOUNCED: list[StopFlag] = []  # the stop of the following the operator was just told about


@contextmanager
def signals_stop_following() -> Iterator[StopFlag]:
    """From the moment the operator is told that Ctrl-C or SIGTERM stops following (before the
    follow step has even started): such a signal sets the flag the follower then uses
    (`announced_stop`). Without it, a signal in that gap interrupted the run instead."""
    stop = StopFlag()
    _ANNOUNCED.append(stop)
    try:
        with stop_on_signals(stop):
            yield stop
    finally:
        _ANNOUNCED.remove(stop)


def announced_stop() -> StopFlag | None:
    """The flag of `signals_stop_following`, when it is in force."""
    return _ANNOUNCED[-1] if _ANNOUNCED else None


@dataclass(frozen=True)
class LiveProgress:
    keys: int  # changed keys applied so far
    pending: int
    rate: float  # keys applied per second over the last report interval
    lag_ms: int  # how long the oldest pending key has waited
    gaps: int
    repairs: int
    fraction: float  # of the time until live_until, 0 when following until stopped

    @property
    def detail(self) -> str:
        return (f"{self.keys:,} applied, {self.rate:,.0f}/s, {self.pending:,} pending, lag {self.lag_ms:,} ms, "
                f"{self.gaps} gap(s), {self.repairs} repair pass(es)")


class Lags:
    """How long applied keys waited (ms), for percentiles; the last `_LAGS` samples."""

    def __init__(self) -> None:
        self.samples: deque[int] = deque(maxlen=_LAGS)
        self.max = 0

    def add(self, now: float, seen: list[float]) -> None:
        for at in seen:
            lag = int((now - at) * 1000)
            self.samples.append(lag)
            self.max = max(self.max, lag)

    def summary(self) -> dict[str, int]:
        ordered = sorted(self.samples)
        pick = (lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]) if ordered else (lambda q: 0)
        return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": self.max}


def start_following(source: RedisEndpoint, patterns: tuple[str, ...], live: LiveOptions, spill_fs: Any,
                    spill_dir: str) -> tuple[PendingKeys, ChangeFeed | None]:
    """Start recording the source's changes (notify mode), before any key is copied."""
    pending = PendingKeys(live.max_pending_keys, spill_fs, spill_dir)
    if live.mode != "notify":
        return pending, None
    feed = ChangeFeed(source, patterns, pending)
    feed.start()
    return pending, feed


class Follower:
    """The loop after the copy: apply changes (or repair passes) until stopped, then cut over."""

    def __init__(self, mirror: Mirror, pending: PendingKeys, feed: ChangeFeed | None, live: LiveOptions,
                 stop: StopFlag, progress: Callable[[LiveProgress], None] | None = None,
                 checkpoint: Callable[[dict[str, Any]], None] | None = None, repair_first: bool = False):
        self.mirror, self.pending, self.feed, self.live = mirror, pending, feed, live
        self.stop, self.progress, self.checkpoint = stop, progress, checkpoint
        self.repair_first = repair_first
        self.counts = Counter()
        self.lags = Lags()
        self.changed: set[bytes] | None = set()  # names for the final verify; None once too many
        self.started = time.monotonic()
        self.started_ms = int(time.time() * 1000)

    def run(self) -> dict[str, Any]:
        deadline = self.live.deadline_ms(self.started_ms)
        if self.repair_first:  # a resumed run: what changed while nobody followed is unknown
            self._repair()
        last_report, applied_then = time.monotonic(), 0
        scan_next = time.monotonic() + self.live.scan_interval_s
        while not self.stop.is_set():
            if deadline is not None and time.time() * 1000 >= deadline:
                self.stop.set("live_until")
                break
            if self.feed is not None:
                self.feed.check()
                if self.feed.take_gap():
                    self._repair()
                    continue
                if not self._apply_pending(self.mirror.batch_rows):
                    self.stop.wait(_IDLE_S)
            elif time.monotonic() >= scan_next:
                self._repair()
                scan_next = time.monotonic() + self.live.scan_interval_s
            else:
                self.stop.wait(min(0.5, scan_next - time.monotonic()))
            now = time.monotonic()
            if now - last_report >= _REPORT_EVERY_S:
                self._report(now - last_report, self.counts["changes"] - applied_then, deadline)
                last_report, applied_then = now, self.counts["changes"]
        return self._cut_over()

    def _apply_pending(self, n: int) -> bool:
        taken = self.pending.take(n)
        if not taken:
            return False
        keys = [k for k, _ in taken]
        try:
            done = self.mirror.apply(keys)
        except BaseException:
            self.pending.put_back(taken)
            raise
        if done.retry:
            self.pending.add(done.retry)
        self.lags.add(time.monotonic(), [at for _, at in taken])
        self.counts["changes"] += len(keys)
        self.counts["written"] += done.written
        self.counts["deleted"] += done.deleted
        self._remember(keys)
        return True

    def _remember(self, keys: list[bytes]) -> None:
        if self.changed is None:
            return
        self.changed.update(keys)
        if len(self.changed) > REMEMBERED_CHANGES:
            self.changed = None  # the final verify compares everything instead

    def _repair(self) -> None:
        self.pending.clear()  # the pass covers them, and whatever changed in a gap
        result = self.mirror.repair_pass(fix=True)
        self.counts["repairs"] += 1
        self.counts["repaired"] += result["fixed"]
        if self.changed is not None and result["fixed"]:
            self.changed = None  # the keys a pass fixed are not named: verify everything at the end

    def _report(self, seconds: float, applied: int, deadline: int | None) -> None:
        oldest = self.pending.oldest()
        lag = int((time.monotonic() - oldest) * 1000) if oldest is not None else 0
        fraction = 0.0  # of the time until live_until; following until stopped has no end to measure
        if deadline is not None:
            fraction = min(1.0, (time.time() * 1000 - self.started_ms) / max(1, deadline - self.started_ms))
        event = LiveProgress(self.counts["changes"], len(self.pending), applied / max(seconds, 1e-6), lag,
                             self._gaps(), self.counts["repairs"], fraction)
        if self.progress:
            self.progress(event)
        if self.checkpoint:
            self.checkpoint(self._summary(final=False))

    def _gaps(self) -> int:
        return self.feed.gaps if self.feed is not None else 0

    def _cut_over(self) -> dict[str, Any]:
        """Apply what was pending at the stop, then the final verify (see the module's docstring)."""
        oldest = self.pending.oldest()
        self.counts["final_lag_ms"] = int((time.monotonic() - oldest) * 1000) if oldest is not None else 0
        if self.feed is not None:
            left = len(self.pending)
            while left > 0 and self._apply_pending(rows := min(left, self.mirror.batch_rows)):
                left -= rows
            if self.feed.take_gap():
                self._repair()
        verify = self._final_verify()
        return self._summary(final=True, verify=verify)

    def _final_verify(self) -> dict[str, Any]:
        if self.changed is None or self.feed is None:
            first = self.mirror.repair_pass(fix=True)
            again = self.mirror.repair_pass(fix=False) if first["fixed"] else first
            scope = "every key in scope"
            checked = sum(again["counts"][c] for c in ("OK", *DIFFERENCES))
        else:
            keys = sorted(self.changed)
            counts, examples = Counter(), {}
            different = []
            for some in self.mirror.in_batches(keys):
                different += self.mirror.differing(some, Counter(), {})
            if different:
                self.mirror.apply_all(different)
            for some in self.mirror.in_batches(keys):
                self.mirror.differing(some, counts, examples)
            again = {"counts": {c: counts[c] for c in ("OK", *DIFFERENCES, "EXPIRED")}, "examples": examples}
            scope = "the keys changed since the copy"
            checked = len(keys)
        mismatches = sum(again["counts"][c] for c in DIFFERENCES)
        return {"ok": mismatches == 0, "scope": scope, "keys": checked, "counts": again["counts"],
                "mismatches": mismatches, "examples": again["examples"]}

    def _summary(self, final: bool, verify: dict[str, Any] | None = None) -> dict[str, Any]:
        summary = {
            "mode": self.live.mode, "following_s": round(time.monotonic() - self.started, 1),
            "events": self.feed.events if self.feed is not None else 0, "changes": self.counts["changes"], "written": self.counts["written"], "deleted": self.counts["deleted"],
            "repairs": self.counts["repairs"], "repaired": self.counts["repaired"], "gaps": self._gaps(),
            "pending": len(self.pending), "spills": self.pending.spills, "lag_ms": self.lags.summary(),
        }
        if final:
            summary.update(stopped_by=self.stop.reason, final_lag_ms=self.counts["final_lag_ms"], verify=verify)
        return summary
