"""The one retry policy (session_migration/retry.py) as Prefect task options: only transient
errors are retried, after 2, 4 and 8 s with jitter; an operator watching the CLI is told."""

from __future__ import annotations

from typing import Any

from session_migration.errors import is_transient
from session_migration.retry import RETRIES, RETRY_DELAYS_S, RETRY_JITTER, Retry

from .progress import listeners


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry when the failure is marked transient."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception as raised:  # noqa: BLE001 - the failure itself
            exc = raised
    retry = isinstance(exc, BaseException) and is_transient(exc)
    attempt = getattr(task_run, "run_count", 1) or 1
    if retry and attempt <= RETRIES:
        told = Retry(getattr(task, "name", "task"), attempt, RETRIES, RETRY_DELAYS_S[min(attempt, RETRIES) - 1], str(exc))
        for feedback in listeners():
            feedback.retrying(told)
    return retry


RETRY_POLICY: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": list(RETRY_DELAYS_S),
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_transient,
}
