"""What every flow shares: the runner that makes each step a task, the flow class that refuses
secrets before Prefect records a run, and the connection parameter type.

Prefect stores a flow run's parameters (in its database, in the UI). A password inside a
connection URL must therefore be refused before the run is created:

- on direct calls (`backup_sessions(source="redis://:pw@host")`, notebooks, the CLI in flow
  mode), `SessionFlow.__call__` checks the parameters first and raises `InvalidParameter`;
  no flow run exists;
- for runs of a deployment (UI, schedules, `prefect deployment run`), the parameter schema
  carries a pattern that refuses such URLs, and Prefect's server checks it when the run is
  created (`enforce_parameter_schema`, on by default).

What remains possible: a deployment created with `enforce_parameter_schema=False`, or a run
created through the API with `enforce_parameter_schema: false`. Such a run fails in its first
line (`session_flow` runs the same check again inside the flow, before any task or connection),
but its parameters are already stored.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from prefect import Flow, get_run_logger
from prefect.utilities.annotations import quote
from prefect.utilities.hashing import file_hash
from pydantic import Field

from session_migration.endpoints import RedisEndpoint, carries_secret
from session_migration.errors import InvalidParameter
from session_migration.live.follow import add_stop_check
import tasks.blocks  # noqa: F401 - registers the loader of RedisConnection blocks with the core
from tasks.progress import ProgressReporter, listeners
from tasks.steps import TASKS

from ._dask import UNITS, dask_threads, task_runner, units_on

# Connection parameters: a Redis URL without a password (or secret URL option), or a block name.
CONNECTION_PARAMETERS = ("source", "target", "a", "b")
_NO_SECRET = r"^(?![A-Za-z][A-Za-z0-9+.-]*://[^/?#@]*:[^/?#@]*@)(?!.*[?&](ssl|sentinel)_password=).*$"
Connection = Annotated[str, Field(
    description="A Redis URL without a password (use ?password_env=VARIABLE) or a RedisConnection block name.",
    json_schema_extra={"pattern": _NO_SECRET},
)]
# verify's sides: a connection, or a snapshot folder/URL
ConnectionOrSnapshot = Annotated[str, Field(
    description="A Redis URL without a password, a RedisConnection block name, or a snapshot folder/URL.",
    json_schema_extra={"pattern": _NO_SECRET},
)]


NO_RUN = "No flow run was created."
IN_RUN = ("This flow run stops here, before any connection; Prefect has stored its parameters, "
          "so delete the run and change that password.")


def refuse_secrets(parameters: dict[str, Any], outcome: str = NO_RUN) -> None:
    """Raise `InvalidParameter` when a connection parameter carries a password or secret option."""
    for name in CONNECTION_PARAMETERS:
        value = parameters.get(name)
        if carries_secret(value):
            raise InvalidParameter(
                f"The {name} URL holds a password, and Prefect would store it with the flow run "
                f"({_shown(value, name)}); use a RedisConnection block, or ?password_env=SESSION_MIGRATION_... "
                f"with the password in that environment variable. {outcome}")


def _shown(value: str, name: str) -> str:
    try:
        return RedisEndpoint.from_url(value).display_url
    except ValueError:
        return f"the {name} URL"


class SessionFlow(Flow):
    """A Prefect flow whose connection parameters are checked before the run is created."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        signature = inspect.signature(self.fn)
        own = {k: v for k, v in kwargs.items() if k in signature.parameters}  # not return_state, wait_for, ...
        parameters = dict(signature.bind_partial(*args, **own).arguments)
        refuse_secrets(parameters)
        address = parameters.get("dask_address")
        if address:  # the run's task runner, chosen now: a wrong address is told before any run exists
            dask_threads(address)
            return self.with_options(task_runner=task_runner(address))(*args, **kwargs)
        return super().__call__(*args, **kwargs)


def session_flow(**options: Any) -> Callable[[Callable[..., Any]], SessionFlow]:
    """`@session_flow(name=...)`: `@flow`, with the secret check of `SessionFlow` before a run
    is created, and the same check again as the run's first line (for a run created without
    the parameter schema, which Prefect's engine starts without going through `__call__`)."""

    def decorate(fn: Callable[..., Any]) -> SessionFlow:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def checked(*args: Any, **kwargs: Any) -> Any:
            parameters = dict(signature.bind_partial(*args, **kwargs).arguments)
            refuse_secrets(parameters, IN_RUN)
            with units_on(parameters.get("dask_address")):
                return fn(*args, **kwargs)

        # Prefect names a flow's version after the file that defines it: the flow's, not this one
        options.setdefault("version", file_hash(inspect.getsourcefile(fn)))
        return SessionFlow(checked, **options)

    return decorate


class PrefectRunner:
    """Runs an operation's steps as Prefect tasks (see session_migration/runner.py)."""

    def __init__(self) -> None:
        self._announced: str | None = None

    def _announce(self) -> None:
        """Tell in-process listeners (the CLI) which flow run this is, once per run."""
        from prefect.runtime import flow_run

        run_id = flow_run.id
        if run_id and run_id != self._announced:
            self._announced = run_id
            for feedback in listeners():
                feedback.run_started(str(run_id))

    @property
    def spread(self) -> int | None:
        """The Dask cluster's threads in a flow run with dask_address; None otherwise."""
        units = UNITS.get()
        return None if units is None else units[1]

    def step(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self._announce()
        # quote(): Prefect need not walk large arguments (statistics, reports) looking for futures.
        return TASKS[fn](*map(_quoted, args), **{k: _quoted(v) for k, v in kwargs.items()})

    def each(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], /, **kwargs: Any) -> list[Any]:
        """One task per call, all submitted to the Dask cluster at once (dask_address); without
        one, one after the other in this process."""
        units = UNITS.get()
        if units is None:
            return [self.step(fn, *call, **kwargs) for call in calls]
        self._announce()
        runner, _threads = units
        signature = inspect.signature(fn)
        futures = [runner.submit(TASKS[fn], parameters=dict(signature.bind(*call, **kwargs).arguments))
                   for call in calls]
        for future in futures:  # every task ends (done or failed) before the first failure is raised
            future.wait()
        return [future.result() for future in futures]

    def progress(self, key: str, description: str) -> ProgressReporter:
        return ProgressReporter(key, description)

    def say(self, text: str) -> None:
        self._announce()
        get_run_logger().info(text)
        for feedback in listeners():
            feedback.say(text)

    def reached(self, step: str, info: dict[str, Any]) -> None:
        for feedback in listeners():
            feedback.reached(step, info)


def _cancel_requested() -> str | None:
    """"cancelled" when the flow run of the running task is being cancelled (from the UI or the
    API): a live run's follow loop then stops cleanly, as on SIGTERM."""
    from prefect.client.orchestration import get_client
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    if context is None or context.task_run.flow_run_id is None:
        return None
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(context.task_run.flow_run_id).state
    except Exception:  # noqa: BLE001 - the API unreachable for a moment: ask again later
        return None
    return "cancelled" if state is not None and state.type.value in ("CANCELLING", "CANCELLED") else None


add_stop_check(_cancel_requested)


def _quoted(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else quote(value)


PREFECT = PrefectRunner()
