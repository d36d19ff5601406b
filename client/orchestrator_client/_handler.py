"""What a handler sees and returns (TaskContext, TaskFailure, Handler), and how it is called."""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from orchestrator_client._views import Task
from orchestrator_client.errors import FailedPreconditionError, NotFoundError

if TYPE_CHECKING:
    from orchestrator_client.worker import Worker

__all__ = [
    "MAX_REASON_CHARS",
    "Handler",
    "LeaseContext",
    "Outcome",
    "TaskContext",
    "TaskFailure",
    "TaskOutput",
    "call_handler",
    "failure_of",
    "outcome_of",
    "reason_of",
    "takes_context",
]

_log = logging.getLogger("orchestrator_client.worker")

MAX_REASON_CHARS: Final = 1000


class TaskFailure(Exception):
    """Raised by a handler to fail its task with a chosen reason.

    Attributes:
        reason: The reason for incompletion (truncated to 1000 characters when reported).
        terminal: Fail with FAILED_WITH_TERMINAL_ERROR, which the server never retries.
        output: Optional output to record with the failure.
    """

    def __init__(
        self, reason: str, *, terminal: bool = False, output: Mapping[str, Any] | None = None
    ) -> None:
        """Builds the failure; see the class docstring for the attributes.

        Args:
            reason: The reason for incompletion.
            terminal: Whether the failure is terminal (no retry).
            output: Optional output to record with the failure.
        """
        super().__init__(reason)
        self.reason = reason
        self.terminal = terminal
        self.output = output

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments defeat the default pickling of exceptions.
        return (_rebuild_failure, (self.reason, self.terminal, self.output))


def _rebuild_failure(reason: str, terminal: bool, output: Mapping[str, Any] | None) -> TaskFailure:
    return TaskFailure(reason, terminal=terminal, output=output)


class _WorkerView(Protocol):
    """What a context reads of its worker (the sync Worker or the asyncio one)."""

    @property
    def worker_id(self) -> str: ...

    @property
    def stopping(self) -> bool: ...


class LeaseContext:
    """A running task's lease as its worker keeps it: the part of TaskContext that the
    asyncio worker's context (aio_worker.AsyncTaskContext) shares.

    Attributes:
        task: The task being executed.
        worker_id: The id of the worker that holds the lease.
    """

    def __init__(self, task: Task, worker: _WorkerView, heartbeat_interval_s: float | None) -> None:
        self.task = task
        self.worker_id = worker.worker_id
        self._view = worker
        self._lock = threading.Lock()
        self._lease_expires_ms = task.lease_expires_ms
        self._lease_lost = False
        self._done = False
        self.heartbeat_interval_s = heartbeat_interval_s
        self._next_heartbeat = (
            time.monotonic() + heartbeat_interval_s if heartbeat_interval_s is not None else None
        )

    @property
    def lease_expires_ms(self) -> int:
        """When the lease ends unless renewed, in cluster time (epoch milliseconds).

        Returns:
            The expiry from the poll or the latest successful heartbeat.
        """
        with self._lock:
            return self._lease_expires_ms

    @property
    def lease_lost(self) -> bool:
        """Whether a heartbeat found the lease gone; the result will not be accepted.

        Returns:
            True once the server refused a heartbeat for this task.
        """
        with self._lock:
            return self._lease_lost

    @property
    def worker_stopping(self) -> bool:
        """Whether the worker is shutting down; long handlers may wrap up early.

        Returns:
            True once :meth:`Worker.stop` has begun.
        """
        return self._view.stopping

    def _renewed(self, lease_expires_ms: int) -> None:
        with self._lock:
            self._lease_expires_ms = max(self._lease_expires_ms, lease_expires_ms)

    def _mark_lost(self) -> None:
        with self._lock:
            self._lease_lost = True


class TaskContext(LeaseContext):
    """What a handler that takes a second argument gets besides its task.

    Attributes:
        task: The task being executed.
        worker_id: The id of the worker that holds the lease.
    """

    def __init__(self, task: Task, worker: Worker, heartbeat_interval_s: float | None) -> None:
        """Created by the worker for each task; not meant to be built by users.

        Args:
            task: The task being executed.
            worker: The worker executing it.
            heartbeat_interval_s: Seconds between automatic heartbeats; None for none.
        """
        super().__init__(task, worker, heartbeat_interval_s)
        self._worker = worker

    def heartbeat(self) -> None:
        """Extends the task's lease now, besides the automatic heartbeats.

        Raises:
            FailedPreconditionError: The lease was lost; stop working on the task.
            NotFoundError: The task no longer exists.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        try:
            expires = self._worker.client.heartbeat_task(
                self.task.task_id, worker_id=self.worker_id
            )
        except (FailedPreconditionError, NotFoundError):
            self._mark_lost()
            raise
        self._renewed(expires)


TaskOutput = Mapping[str, Any] | None
Handler = Callable[[Task], TaskOutput] | Callable[[Task, TaskContext], TaskOutput]
"""A task handler: ``fn(task)`` or ``fn(task, ctx)``, returning the output (or None)."""


def takes_context(fn: Callable[..., Any]) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        # Builtins and some C callables have no signature; they get the task only.
        return False
    positional = 0
    for param in sig.parameters.values():
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if param.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            positional += 1
    return positional >= 2


def reason_of(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:MAX_REASON_CHARS]


Outcome = TaskFailure | Mapping[str, Any] | None
"""What running a handler came to: the output to complete with, or the failure to report."""


def call_handler(
    fn: Callable[..., Any], with_context: bool, task: Task, ctx: TaskContext
) -> Outcome:
    """Runs a handler; whatever it raises or returns becomes the task's outcome."""
    try:
        result = fn(task, ctx) if with_context else fn(task)
    except Exception as exc:
        return failure_of(task, exc)
    return outcome_of(result)


def failure_of(task: Task, exc: Exception) -> TaskFailure:
    """The failure a handler's exception reports (a TaskFailure as raised)."""
    if isinstance(exc, TaskFailure):
        return exc
    _log.warning(
        "handler for %s failed task %s: %s",
        task.task_type,
        task.task_id,
        exc,
        exc_info=True,
    )
    return TaskFailure(reason_of(exc))


def outcome_of(result: object) -> Outcome:
    """What a handler's return value comes to: the output, or a failure for a non-dict."""
    if result is None or isinstance(result, Mapping):
        return result
    return TaskFailure(
        f"handler returned {type(result).__name__}; a task output must be a dict or None"
    )
