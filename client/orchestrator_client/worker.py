"""A task worker: polls task queues, runs handlers in a thread pool, reports the results.

Example::

    client = OrchestratorClient("10.0.0.1:7070,10.0.0.2:7070")
    worker = Worker(client, concurrency=8)

    @worker.task("reserve_stock")
    def reserve_stock(task: Task) -> dict[str, Any]:
        return {"reserved": task.input["quantity"]}

    worker.run_forever()

A handler returns the task output (a dict, or None for ``{}``); raising fails the task (raise
:class:`TaskFailure` to choose the reason, a terminal failure, or an output). Long-running tasks
are kept leased by automatic heartbeats while their handler runs.

This module is the public Worker. Behind it: _polling (a poll loop per type and slot share),
_runner (runs a handler, then reports; a quiet worker's completion carries the next poll),
_reporter (batched completions, on a thread of its own), _heartbeats, _ledger (the slots,
leases and counters the threads share, and WorkerStats) and _handler (TaskContext,
TaskFailure, and how a handler is called).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any, Self, TypeVar, cast

from orchestrator_client._handler import Handler, TaskContext, TaskFailure
from orchestrator_client._heartbeats import Heartbeats
from orchestrator_client._ledger import (
    Ledger,
    Registration,
    WorkerStats,
    check_settings,
    new_registration,
)
from orchestrator_client._polling import Poller, pollers_for
from orchestrator_client._reporter import CompletionBatcher
from orchestrator_client._rpc import MAX_POLL_COUNT
from orchestrator_client._runner import TaskRunner
from orchestrator_client.client import OrchestratorClient

__all__ = ["Handler", "TaskContext", "TaskFailure", "Worker", "WorkerStats"]

_log = logging.getLogger("orchestrator_client.worker")

_HandlerT = TypeVar("_HandlerT", bound=Handler)


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Worker:
    """Polls tasks of the registered types, runs their handlers, and reports the results.

    Each task type gets poller threads and a pool of ``concurrency`` handler threads. The
    pollers lease at most as many tasks as there are free handler threads, so no leased task
    waits in a queue while its lease runs down. With batched completions a handler thread is
    free again as soon as its handler returns; the result is reported on the reporter's
    thread, and the task counts as running (``stats.running``, ``stop()`` waits for it) until
    the report is answered.

    Reports are retried by the client with one request id per report. A report the server
    refuses with FAILED_PRECONDITION (the lease was lost: the task timed out and was
    rescheduled, or was canceled) is logged and dropped, never retried.
    """

    def __init__(
        self,
        client: OrchestratorClient,
        *,
        worker_id: str | None = None,
        concurrency: int = 4,
        poll_timeout_ms: int = 1000,
        heartbeat_interval_s: float | None = None,
        domain: str = "",
        batch_completions: bool = True,
    ) -> None:
        """Creates a worker; nothing runs until :meth:`start`.

        Args:
            client: The client to poll and report through; the worker does not close it.
            worker_id: Identifies this worker to the server; defaults to host-pid-random.
            concurrency: Handler threads per task type (and so the most handlers of one type
                running at once); :meth:`register` can override it per type.
            poll_timeout_ms: Long-poll wait of each poll, in milliseconds (0-30000).
            heartbeat_interval_s: Seconds between automatic heartbeats of a running task; None
                derives it from each task's ``response_timeout_seconds`` (a third of it, and no
                heartbeats when that is 0).
            domain: Poll this task domain's queues (tasks routed there by a workflow's
                ``task_to_domain``); ``""`` polls the default queues.
            batch_completions: Report the completions that finish while a report is in flight
                together, in one CompleteTasks call (False: one CompleteTask call each).

        Raises:
            ValueError: A non-positive concurrency or heartbeat interval, or a negative poll
                timeout.
        """
        check_settings(concurrency, poll_timeout_ms, heartbeat_interval_s)
        self.client = client
        self.worker_id = worker_id or _default_worker_id()
        self.concurrency = concurrency
        self.poll_timeout_ms = poll_timeout_ms
        self.heartbeat_interval_s = heartbeat_interval_s
        self.domain = domain
        self.batch_completions = batch_completions
        self._registrations: dict[str, Registration] = {}
        self._ledger = Ledger()
        self._started = False
        self._batcher: CompletionBatcher | None = None
        self._heartbeat_thread: threading.Thread | None = None

    # -- registration -------------------------------------------------------------------------

    def register(self, task_type: str, fn: Handler, *, concurrency: int | None = None) -> None:
        """Registers the handler of one task type.

        The handler is called as ``fn(task, ctx)`` when it accepts two positional arguments
        (or ``*args``), else as ``fn(task)``.

        Args:
            task_type: The task type (task definition name) to poll.
            fn: The handler; returns the output dict (or None), raises to fail the task.
            concurrency: Handler threads for this type; defaults to the worker's.

        Raises:
            ValueError: The type is registered already, or the concurrency is not positive.
            RuntimeError: The worker has been started.
        """
        slots = self.concurrency if concurrency is None else concurrency
        reg = new_registration(task_type, cast(Callable[..., Any], fn), slots)
        with self._ledger.lock:
            if self._started:
                raise RuntimeError("register handlers before starting the worker")
            if task_type in self._registrations:
                raise ValueError(f"a handler for {task_type!r} is registered already")
            self._registrations[task_type] = reg

    def task(
        self, task_type: str, *, concurrency: int | None = None
    ) -> Callable[[_HandlerT], _HandlerT]:
        """Decorator form of :meth:`register`.

        Args:
            task_type: The task type (task definition name) to poll.
            concurrency: Handler threads for this type; defaults to the worker's.

        Returns:
            A decorator that registers the function and returns it unchanged.
        """

        def decorate(fn: _HandlerT) -> _HandlerT:
            self.register(task_type, fn, concurrency=concurrency)
            return fn

        return decorate

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` has begun.

        Returns:
            True once stopping.
        """
        return self._ledger.stopping.is_set()

    @property
    def stats(self) -> WorkerStats:
        """A snapshot of the worker's counters.

        Returns:
            The counters.
        """
        return self._ledger.stats()

    def start(self) -> None:
        """Starts the poller, handler and heartbeat threads, and returns.

        Raises:
            RuntimeError: No handler is registered, or the worker was started before.
        """
        with self._ledger.lock:
            if self._started or self._ledger.stopping.is_set():
                raise RuntimeError("a worker can be started only once")
            if not self._registrations:
                raise RuntimeError("register at least one handler before starting the worker")
            self._started = True
            registrations = list(self._registrations.values())
        self._heartbeat_thread = threading.Thread(
            target=Heartbeats(self._ledger, self.client, self.worker_id).run,
            name=f"orchestrator-heartbeat-{self.worker_id}",
            daemon=True,
        )
        self._heartbeat_thread.start()
        if self.batch_completions:
            self._batcher = CompletionBatcher(self.client, self.worker_id)
        runner = TaskRunner(self, self._ledger, self._registrations, self._batcher)
        for reg in registrations:
            reg.executor = ThreadPoolExecutor(
                max_workers=reg.concurrency, thread_name_prefix=f"orchestrator-{reg.task_type}"
            )
            n = pollers_for(reg.concurrency)
            reg.poll_cap = min(MAX_POLL_COUNT, -(-reg.concurrency // n))
            poller = Poller(
                reg,
                self._ledger,
                runner,
                self.client,
                worker_id=self.worker_id,
                poll_timeout_ms=self.poll_timeout_ms,
                domain=self.domain,
            )
            # Daemon pollers: a poll stuck on an unreachable cluster must not keep the process
            # alive after stop() has given up on it.
            reg.pollers = [
                threading.Thread(
                    target=poller.run, name=f"orchestrator-poll-{reg.task_type}-{i}", daemon=True
                )
                for i in range(n)
            ]
            for t in reg.pollers:
                t.start()
        _log.info(
            "worker %s started for %s", self.worker_id, ", ".join(sorted(self._registrations))
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stops gracefully: no new polls, running tasks finish and report, then returns.

        Tasks leased by a poll in flight when stopping began are still run. After
        ``timeout_s``, the worker stops waiting: tasks not yet started are dropped (their leases
        expire and the server reschedules them) and handlers still running are left to finish
        in the background. Safe to call more than once and from any thread.

        Args:
            timeout_s: How long to wait for polls and running tasks, in seconds.
        """
        ledger = self._ledger
        deadline = time.monotonic() + timeout_s
        with ledger.lock:
            already = ledger.stopping.is_set()
            ledger.stopping.set()
            ledger.slots_changed.notify_all()
            started = self._started
        if not started:
            ledger.stopped.set()
            return
        if already:
            ledger.stopped.wait(max(0.0, deadline - time.monotonic()))
            return

        for reg in self._registrations.values():
            for t in reg.pollers:
                t.join(max(0.0, deadline - time.monotonic()))
        with ledger.lock:
            while ledger.inflight > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                ledger.idle.wait(remaining)
            unfinished = ledger.inflight
        if unfinished:
            ledger.abandoned.set()
            _log.warning(
                "worker %s stopped waiting with %d task(s) still leased or running",
                self.worker_id,
                unfinished,
            )
        for reg in self._registrations.values():
            if reg.executor is not None:
                reg.executor.shutdown(wait=False, cancel_futures=bool(unfinished))
        with ledger.lock:
            ledger.heartbeat_wakeup.notify_all()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(max(0.0, deadline - time.monotonic()))
        if self._batcher is not None:
            self._batcher.close(max(0.0, deadline - time.monotonic()))
        ledger.stopped.set()
        _log.info("worker %s stopped", self.worker_id)

    def run_forever(self, stop_timeout_s: float = 30.0) -> None:
        """Starts the worker and blocks until SIGINT or SIGTERM, then stops gracefully.

        A second signal during the graceful stop gets the default handling (e.g.
        KeyboardInterrupt), for an operator who does not want to wait.

        Args:
            stop_timeout_s: How long the graceful stop may wait for running tasks.

        Raises:
            RuntimeError: Not called from the main thread (signals are delivered there only),
                or as for :meth:`start`.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("run_forever must be called from the main thread")
        received: list[int] = []

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Only record it: the handler runs between bytecodes of the main thread, where
            # taking locks could deadlock.
            received.append(signum)

        watched = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, on_signal) for sig in watched}
        try:
            self.start()
            while not received and not self._ledger.stopping.is_set():
                self._ledger.stopping.wait(0.2)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if received:
            _log.info("worker %s got signal %d, stopping", self.worker_id, received[0])
        self.stop(stop_timeout_s)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
