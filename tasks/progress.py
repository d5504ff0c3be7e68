"""Progress of long tasks: a Prefect progress artifact, plus in-process listeners (the CLI's bar)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from prefect.artifacts import create_progress_artifact, update_progress_artifact

_listeners: list[Callable[[Any], None]] = []
_lock = threading.Lock()
ARTIFACT_EVERY_S = 2.0


def subscribe(listener: Callable[[Any], None]) -> Callable[[], None]:
    """Receive every progress event in this process; returns the unsubscribe function."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


class ProgressReporter:
    """A core progress callback that updates one progress artifact (throttled) and the listeners."""

    def __init__(self, key: str, description: str):
        self.artifact_id = create_progress_artifact(progress=0.0, key=key, description=description)
        self._last = 0.0

    def __call__(self, event: Any) -> None:
        for listener in list(_listeners):
            listener(event)
        now = time.monotonic()
        if now - self._last >= ARTIFACT_EVERY_S:
            self._last = now
            update_progress_artifact(self.artifact_id, progress=round(100 * event.fraction, 1))

    def done(self) -> None:
        update_progress_artifact(self.artifact_id, progress=100.0)
