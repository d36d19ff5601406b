"""The worker's poll loops: lease as many tasks of a type as it has free handler slots."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from orchestrator_client._ledger import Ledger, Registration
from orchestrator_client._runner import TaskRunner
from orchestrator_client._views import Task
from orchestrator_client.client import OrchestratorClient
from orchestrator_client.errors import OrchestratorError

__all__ = ["Poller", "dispatch", "poll_answered", "poll_failed", "pollers_for"]

_log = logging.getLogger("orchestrator_client.worker")

_POLL_ERROR_BACKOFF_INITIAL_S: Final = 0.5
_POLL_ERROR_BACKOFF_MAX_S: Final = 5.0
# A poll that comes back empty faster than this did not long-poll (timeout 0, or a server that
# answers at once); pausing keeps such a poller from spinning.
_MIN_EMPTY_POLL_S: Final = 0.05
_EMPTY_POLL_PAUSE_S: Final = 0.1


def pollers_for(concurrency: int) -> int:
    """Poll loops per task type: two when the type may run two tasks at once.

    With one poller, the worker's next poll for a type is sent only after the previous poll
    returned; a fast handler's CompleteTask then often reaches the server before that poll, so
    the next task (made ready by that completion) must be leased by a separate PollTasks commit.
    With a second poll still waiting at the server, the completion's own commit leases the next
    task to it (the server parks waiting polls in its replicated state): one commit per task
    instead of two.
    """
    return 2 if concurrency >= 2 else 1


class Poller:
    """One poll loop of one task type (:meth:`run` is its thread's target).

    It takes the type's free slots, leases at most that many tasks, and hands each to the
    runner, so no leased task waits in a queue while its lease runs down.
    """

    def __init__(
        self,
        reg: Registration,
        ledger: Ledger,
        runner: TaskRunner,
        client: OrchestratorClient,
        *,
        worker_id: str,
        poll_timeout_ms: int,
        domain: str,
    ) -> None:
        self._reg = reg
        self._ledger = ledger
        self._runner = runner
        self._client = client
        self._worker_id = worker_id
        self._poll_timeout_ms = poll_timeout_ms
        self._domain = domain

    def run(self) -> None:
        reg, ledger = self._reg, self._ledger
        error_pause = _POLL_ERROR_BACKOFF_INITIAL_S
        while True:
            count = ledger.take_slots(reg)
            if count == 0:
                return
            started = time.monotonic()
            try:
                tasks = self._client.poll_tasks(
                    reg.task_type,
                    worker_id=self._worker_id,
                    count=count,
                    timeout_ms=self._poll_timeout_ms,
                    domain=self._domain,
                )
            except Exception as exc:
                # The client has already retried with backoff; this pause keeps a poller facing
                # a down cluster or a persistent error from spinning.
                if ledger.stopping.wait(poll_failed(ledger, reg, count, exc, error_pause)):
                    return
                error_pause = min(error_pause * 2.0, _POLL_ERROR_BACKOFF_MAX_S)
                continue
            error_pause = _POLL_ERROR_BACKOFF_INITIAL_S
            pause = poll_answered(ledger, reg, count, tasks, started)
            for task in tasks:
                self._dispatch(task)
            if pause and ledger.stopping.wait(pause):
                return

    def _dispatch(self, task: Task) -> None:
        if self._reg.executor is None:
            _drop(self._reg, self._ledger, task)
            return
        dispatch(self._reg, self._ledger, task, self._runner.submit_claimed)


def poll_failed(
    ledger: Ledger, reg: Registration, count: int, exc: Exception, error_pause: float
) -> float:
    """After a failed poll that took ``count`` slots: returns them, counts and logs the
    error; the pause before the next poll (``error_pause``)."""
    ledger.return_slots(reg, count)
    ledger.count("poll_errors")
    level = logging.WARNING if isinstance(exc, OrchestratorError) else logging.ERROR
    _log.log(
        level,
        "poll of %s failed (retrying in %.1fs): %s",
        reg.task_type,
        error_pause,
        exc,
        exc_info=not isinstance(exc, OrchestratorError),
    )
    return error_pause


def poll_answered(
    ledger: Ledger, reg: Registration, count: int, tasks: list[Task], started: float
) -> float:
    """After a poll that took ``count`` slots (sent at monotonic ``started``) leased
    ``tasks``: returns the slots left over and counts; the pause before the next poll (0 but
    for an empty answer that came too fast to have long-polled)."""
    # A server that returned more than asked oversubscribes the pool; the negative balance
    # makes the poller wait until the surplus has run.
    ledger.return_slots(reg, count - len(tasks))
    if tasks:
        ledger.count("polled", len(tasks))
    fast_empty = not tasks and time.monotonic() - started < _MIN_EMPTY_POLL_S
    return _EMPTY_POLL_PAUSE_S if fast_empty else 0.0


def dispatch(
    reg: Registration, ledger: Ledger, task: Task, run: Callable[[Registration, Task], None]
) -> None:
    """Hands a leased task to ``run`` (its slot already taken); drops it when the worker gave
    up stopping, or when it is running already (the slot returned)."""
    if ledger.abandoned.is_set():
        _drop(reg, ledger, task)
        return
    if not ledger.claim(task):
        ledger.return_slots(reg, 1)
        return
    run(reg, task)


def _drop(reg: Registration, ledger: Ledger, task: Task) -> None:
    _log.warning(
        "dropping task %s (%s) leased after the worker gave up stopping",
        task.task_id,
        task.task_type,
    )
    ledger.return_slots(reg, 1)
