"""Feedback of flows run in this process: progress artifacts, and in-process listeners (the
CLI's progress bars and messages when it runs a flow)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from session_migration.runner import Feedback

_listeners: list[Feedback] = []
_lock = threading.Lock()
ARTIFACT_EVERY_S = 2.0
LOG_DETAIL_EVERY_S = 10.0


class _ProgressListener(Feedback):
    """A plain callable that wants only the progress events."""

    def __init__(self, callback: Callable[[Any], None]):
        self.callback = callback

    def progress(self, key: str, description: str, event: Any) -> None:
        self.callback(event)


def subscribe(feedback: Feedback | Callable[[Any], None]) -> Callable[[], None]:
    """Receive the feedback of every flow run in this process (a `Feedback`, or a callable that
    takes progress events); returns the unsubscribe function."""
    if not isinstance(feedback, Feedback):
        feedback = _ProgressListener(feedback)
    with _lock:
        _listeners.append(feedback)

    def unsubscribe() -> None:
        with _lock:
            if feedback in _listeners:
                _listeners.remove(feedback)

    return unsubscribe


def listeners() -> list[Feedback]:
    with _lock:
        return list(_listeners)


class ProgressReporter:
    """A core progress callback that updates one progress artifact (throttled) and the listeners."""

    def __init__(self, key: str, description: str):
        self.key, self.description = key, description
        self.artifact_id = create_progress_artifact(progress=0.0, key=key, description=description)
        self._last = 0.0
        self._logged = 0.0

    def __call__(self, event: Any) -> None:
        for feedback in listeners():
            feedback.progress(self.key, self.description, event)
        now = time.monotonic()
        if now - self._last >= ARTIFACT_EVERY_S:
            self._last = now
            update_progress_artifact(self.artifact_id, progress=round(100 * event.fraction, 1))
        detail = getattr(event, "detail", None)  # a live run's rates and lag: to the run's log too
        if detail and now - self._logged >= LOG_DETAIL_EVERY_S:
            self._logged = now
            get_run_logger().info(f"{self.description}: {detail}")

    def done(self) -> None:
        update_progress_artifact(self.artifact_id, progress=100.0)
        for feedback in listeners():
            feedback.progress_done(self.key)
