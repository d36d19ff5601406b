"""The worker's shared bookkeeping: handler slots per task type, the tasks leased and running,
the counters behind WorkerStats, and the stop signals, all under one lock."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from orchestrator_client._handler import TaskContext, takes_context
from orchestrator_client._rpc import MAX_POLL_COUNT
from orchestrator_client._views import Task

__all__ = ["Ledger", "Registration", "WorkerStats", "check_settings", "new_registration"]

_log = logging.getLogger("orchestrator_client.worker")


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """Counters of a worker since it was created.

    Attributes:
        polled: Tasks received from polls.
        taken_with_completion: Of those, tasks that came in the answer to a completion (a
            worker with nothing else in flight asks for its next task with each completion).
        completed: Tasks reported COMPLETED (acknowledged by the server).
        failed: Tasks reported failed (acknowledged by the server).
        lost: Results the server refused because the lease was gone (late results), or that
            were not sent because a heartbeat had already found the lease gone.
        report_errors: Results that could not be delivered within the client's retry budget.
        poll_errors: Polls that failed.
        running: Tasks leased and not yet reported.
    """

    polled: int = 0
    taken_with_completion: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    report_errors: int = 0
    poll_errors: int = 0
    running: int = 0


_COUNTERS: Final = tuple(f.name for f in dataclasses.fields(WorkerStats) if f.name != "running")


@dataclass(slots=True)
class Registration:
    """One registered task type: its handler, its pool and pollers, and its free slots."""

    task_type: str
    fn: Callable[..., Any]
    takes_context: bool
    concurrency: int
    executor: ThreadPoolExecutor | None = None
    pollers: list[threading.Thread] = field(default_factory=list)
    free_slots: int = 0
    # Most slots one poll may take: with two pollers each takes half, so one poll is still
    # waiting at the server while the other's tasks run (see _polling.pollers_for).
    poll_cap: int = MAX_POLL_COUNT


def check_settings(
    concurrency: int, poll_timeout_ms: int, heartbeat_interval_s: float | None
) -> None:
    """Refuses a worker's settings (ValueError) unless valid (see Worker.__init__)."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if poll_timeout_ms < 0:
        raise ValueError("poll_timeout_ms must not be negative")
    if heartbeat_interval_s is not None and heartbeat_interval_s <= 0:
        raise ValueError("heartbeat_interval_s must be positive")


def new_registration(task_type: str, fn: Callable[..., Any], concurrency: int) -> Registration:
    """A task type's registration with all its slots free; ValueError for an empty type or a
    concurrency below 1 (see Worker.register)."""
    if not task_type:
        raise ValueError("task_type must not be empty")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    return Registration(
        task_type=task_type,
        fn=fn,
        takes_context=takes_context(fn),
        concurrency=concurrency,
        free_slots=concurrency,
    )


class Ledger:
    """What the threads of one worker share.

    A task is leased (``leased``, counted in ``inflight``) from the poll that brought it until
    its result is reported or given up; ``running`` holds the contexts of the handlers running
    now, for the heartbeats. A type's free slots are its handler threads not taken by a task or
    a poll in flight.
    """

    def __init__(self) -> None:
        # One lock guards slots, running tasks and counters: it is taken a few times per task,
        # far too rarely for finer locking to pay.
        self.lock = threading.Lock()
        self.slots_changed = threading.Condition(self.lock)
        self.idle = threading.Condition(self.lock)
        self.heartbeat_wakeup = threading.Condition(self.lock)
        self.running: dict[str, TaskContext] = {}  # handler started, not yet reported
        self.leased: set[str] = set()  # dispatched, not yet reported
        self.inflight = 0
        self.counts: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        # Set when stop() gave up waiting: tasks that arrive later are dropped, not started.
        self.abandoned = threading.Event()

    def stats(self) -> WorkerStats:
        with self.lock:
            return WorkerStats(running=self.inflight, **self.counts)

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n

    def take_slots(self, reg: Registration) -> int:
        """Waits for free slots of the type and takes them for a poll; 0 once stopping."""
        with self.lock:
            while reg.free_slots <= 0 and not self.stopping.is_set():
                self.slots_changed.wait()
            if self.stopping.is_set():
                return 0
            count = min(reg.free_slots, reg.poll_cap)
            reg.free_slots -= count
            return count

    def return_slots(self, reg: Registration, count: int) -> None:
        with self.lock:
            reg.free_slots += count
            self.slots_changed.notify_all()

    def free_slot(self, reg: Registration) -> None:
        """The handler is done: its slot takes another task while the result is reported."""
        self.return_slots(reg, 1)

    def claim(self, task: Task) -> bool:
        """Counts a leased task as this worker's; False for one already running."""
        with self.lock:
            duplicate = task.task_id in self.leased
            if not duplicate:
                self.leased.add(task.task_id)
                self.inflight += 1
        if duplicate:
            # Running one lease twice would report twice; the running handler owns it.
            _log.warning("ignoring task %s (%s): already running", task.task_id, task.task_type)
        return not duplicate

    def finished(self, task: Task) -> None:
        """The task's result is reported (or given up): it no longer holds the worker."""
        with self.lock:
            self.leased.discard(task.task_id)
            self.inflight -= 1
            if self.inflight == 0:
                self.idle.notify_all()
                # Lets the heartbeat thread notice it has nothing left to do when stopping.
                self.heartbeat_wakeup.notify_all()

    def task_done(self, reg: Registration, task: Task) -> None:
        self.free_slot(reg)
        self.finished(task)
