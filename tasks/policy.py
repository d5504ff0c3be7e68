"""The one retry policy: only transient errors are retried, with exponential backoff and jitter."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from session_migration.errors import is_transient

RETRIES = 3
RETRY_DELAYS = exponential_backoff(backoff_factor=2)(RETRIES)  # 2, 4, 8 s
RETRY_JITTER = 0.5


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry when the failure is marked transient."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception as raised:  # noqa: BLE001 - the failure itself
            exc = raised
    return isinstance(exc, BaseException) and is_transient(exc)


RETRY_POLICY: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_transient,
}
