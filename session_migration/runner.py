"""How an operation's steps run, and where its feedback goes.

Every operation (`operations.py`) is written once, against a `Runner`:

- `DirectRunner` (here, no Prefect): each step is a plain call under the retry policy
  (`retry.call_with_retries`). The CLI uses it when no Prefect API is configured; notebooks and
  scripts may use it too.
- `flows/_runner.PrefectRunner`: each step runs as its Prefect task (same retry policy, attached
  to the task), progress becomes a progress artifact and sentences go to the flow run's log.

Either way the operator's feedback (sentences, progress, retries) reaches a `Feedback`: the CLI
implements one that draws progress bars and prints on stderr.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from .retry import Retry, call_with_retries

T = TypeVar("T")


class Feedback:
    """Receives what an operation tells its operator. The base class ignores everything."""

    def run_started(self, run_id: str) -> None:
        """The operation runs as a recorded run with this id (a Prefect flow run)."""

    def say(self, text: str) -> None:
        """One sentence: what is being done or what was done (counts, ids, paths)."""

    def progress(self, key: str, description: str, event: Any) -> None:
        """A progress event of a long step; `event.fraction` is 0..1."""

    def progress_done(self, key: str) -> None:
        """The step that reported under `key` has finished."""

    def retrying(self, retry: Retry) -> None:
        """A transient failure; the step is tried again after `retry.delay_s`."""

    def reached(self, step: str, info: dict[str, Any]) -> None:
        """A named stage of a multi-stage operation is behind us (a migration's "backup", ...)."""


class Progress(Protocol):
    """A progress callback handed to a core step; `done()` when the step has finished."""

    def __call__(self, event: Any) -> None: ...

    def done(self) -> None: ...


class Runner(Protocol):
    # How many steps of `each` run at once (the threads of a Dask cluster); None: the runner has
    # no task runner for them, and operations run as they always did (one step at a time).
    spread: int | None

    def step(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run one step of an operation (a function of `steps.py`), retried on transient errors."""

    def each(self, fn: Callable[..., T], calls: Sequence[tuple[Any, ...]], /, **kwargs: Any) -> list[T]:
        """`fn(*call, **kwargs)` for every call, as independent steps (at once where the runner
        can); the results in call order, once all have ended; the first failure is raised."""

    def progress(self, key: str, description: str) -> Progress:
        """A progress callback for one long step."""

    def say(self, text: str) -> None:
        """Tell the operator (stderr in the CLI, the flow run's log under Prefect)."""

    def reached(self, step: str, info: dict[str, Any]) -> None:
        """Report that a named stage is done (`Feedback.reached`)."""


class FeedbackProgress:
    """A `Progress` that forwards to a `Feedback` under one key."""

    def __init__(self, feedback: Feedback, key: str, description: str):
        self.feedback, self.key, self.description = feedback, key, description

    def __call__(self, event: Any) -> None:
        self.feedback.progress(self.key, self.description, event)

    def done(self) -> None:
        self.feedback.progress_done(self.key)


class DirectRunner:
    """Steps as plain calls in this process, under the one retry policy."""

    spread = None

    def __init__(self, feedback: Feedback | None = None):
        self.feedback = feedback or Feedback()

    def step(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return call_with_retries(fn, *args, step=step_name(fn), on_retry=self.feedback.retrying, **kwargs)

    def each(self, fn: Callable[..., T], calls: Sequence[tuple[Any, ...]], /, **kwargs: Any) -> list[T]:
        return [self.step(fn, *call, **kwargs) for call in calls]

    def progress(self, key: str, description: str) -> Progress:
        return FeedbackProgress(self.feedback, key, description)

    def say(self, text: str) -> None:
        self.feedback.say(text)

    def reached(self, step: str, info: dict[str, Any]) -> None:
        self.feedback.reached(step, info)


def step_name(fn: Callable[..., Any]) -> str:
    """`check_backup` -> `check backup`: how a step is named to the operator."""
    return getattr(fn, "__name__", "step").replace("_", " ")
