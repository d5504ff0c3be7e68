"""The one retry policy: only transient errors are retried, three times, after 2, 4 and 8 s
(each with up to 50% jitter).

Prefect tasks take it through `tasks/policy.py`; the CLI's direct mode (no Prefect) runs each
step through `call_with_retries`. Both decide with `errors.is_transient`, so a step is retried
for the same reasons and as often whichever way it runs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import is_transient

RETRIES = 3
RETRY_DELAYS_S = (2.0, 4.0, 8.0)  # exponential backoff, factor 2
RETRY_JITTER = 0.5  # a delay may grow by up to this fraction of itself

T = TypeVar("T")


@dataclass(frozen=True)
class Retry:
    """What an operator is told before a transient failure is tried again."""

    step: str
    attempt: int  # 1 for the first retry
    retries: int
    delay_s: float
    error: str

    def sentence(self) -> str:
        return f"{self.step} failed: {self.error.rstrip('. ')}; retrying in {self.delay_s:.0f} s ({self.attempt}/{self.retries})"


def retry_delay(attempt: int, jitter: bool = True) -> float:
    """The wait before retry number `attempt` (1-based)."""
    base = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S)) - 1]
    return base * (1 + random.uniform(0, RETRY_JITTER)) if jitter else base


def call_with_retries(fn: Callable[..., T], *args: Any, step: str | None = None,
                      on_retry: Callable[[Retry], None] | None = None, sleep: Callable[[float], None] = time.sleep,
                      **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, tried again on a transient error as the policy says."""
    for attempt in range(1, RETRIES + 2):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt > RETRIES or not is_transient(exc):
                raise
            retry = Retry(step or getattr(fn, "__name__", "step"), attempt, RETRIES, retry_delay(attempt),
                          str(exc) or exc.__class__.__name__)
            if on_retry:
                on_retry(retry)
            sleep(retry.delay_s)
    raise AssertionError("unreachable")
