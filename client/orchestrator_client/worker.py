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
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Final, Self, TypeVar, cast

import grpc

from orchestrator_client._codec import encode_document, new_request_id
from orchestrator_client._rpc import MAX_BATCH
from orchestrator_client.client import OrchestratorClient, Task
from orchestrator_client.errors import (
    FailedPreconditionError,
    NotFoundError,
    OrchestratorError,
)
from orchestrator_client.v1 import tasks_pb2

__all__ = ["Handler", "TaskContext", "TaskFailure", "Worker", "WorkerStats"]

_log = logging.getLogger("orchestrator_client.worker")

_MAX_REASON_CHARS: Final = 1000
_MAX_POLL_COUNT: Final = 100
_MAX_RIDING_POLLS: Final = 16  # polls riding on one CompleteTasks call (the server's limit)
_POLL_ERROR_BACKOFF_INITIAL_S: Final = 0.5
_POLL_ERROR_BACKOFF_MAX_S: Final = 5.0
# A poll that comes back empty faster than this did not long-poll (timeout 0, or a server that
# answers at once); pausing keeps such a poller from spinning.
_MIN_EMPTY_POLL_S: Final = 0.05
_EMPTY_POLL_PAUSE_S: Final = 0.1
_MIN_HEARTBEAT_INTERVAL_S: Final = 0.1


class _CompletionBatcher:
    """Sends task completions in CompleteTasks calls: whatever finished while the previous call
    was in flight goes together in the next one (at most 100). A lone completion is sent at
    once, so batching adds no wait at low load and saves calls (and server work) at high load.
    """

    def __init__(self, client: OrchestratorClient, worker_id: str) -> None:
        self.client = client
        self.worker_id = worker_id
        self._cond = threading.Condition()
        # (task id, output, the output as JSON, its future)
        self._queue: list[tuple[str, Mapping[str, Any] | None, str, Future[None]]] = []
        self._closed = False
        self._unbatched = False
        self._sending = False  # a call is in flight
        self._thread = threading.Thread(
            target=self._loop, name=f"orchestrator-report-{worker_id}", daemon=True
        )
        self._thread.start()

    def submit(
        self, task_id: str, output: Mapping[str, Any] | None, output_json: str
    ) -> Future[None]:
        fut: Future[None] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the worker's reporter is closed")
            self._queue.append((task_id, output, output_json, fut))
            self._cond.notify()
        return fut

    def idle(self) -> bool:
        """Nothing queued and no call in flight."""
        with self._cond:
            return not self._queue and not self._sending and not self._closed

    def close(self, timeout_s: float) -> None:
        """Send what is queued, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout_s)

    def _one_by_one(
        self, batch: list[tuple[str, Mapping[str, Any] | None, str, Future[None]]]
    ) -> list[OrchestratorError | None]:
        errors: list[OrchestratorError | None] = []
        for task_id, output, _, _ in batch:
            try:
                self.client.complete_task(task_id, output, worker_id=self.worker_id)
                errors.append(None)
            except OrchestratorError as exc:
                errors.append(exc)
        return errors

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._sending = False
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._sending = True
            try:
                if self._unbatched:
                    errors = self._one_by_one(batch)
                else:
                    errors, _ = self.client._complete_call(
                        [(task_id, output_json) for task_id, _, output_json, _ in batch],
                        worker_id=self.worker_id,
                    )
            except BaseException as exc:
                if isinstance(exc, OrchestratorError) and exc.code == grpc.StatusCode.UNIMPLEMENTED:
                    # A server from before CompleteTasks: report one by one from now on.
                    _log.info("the server has no CompleteTasks; reporting one by one")
                    self._unbatched = True
                    with self._cond:
                        self._queue[:0] = batch
                    continue
                # The whole call failed: every result shares its fate.
                for *_, fut in batch:
                    fut.set_exception(exc)
                continue
            for (*_, fut), err in zip(batch, errors, strict=True):
                if err is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(err)


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


class TaskContext:
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
        self.task = task
        self.worker_id = worker.worker_id
        self._worker = worker
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
        return self._worker.stopping

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

    def _renewed(self, lease_expires_ms: int) -> None:
        with self._lock:
            self._lease_expires_ms = max(self._lease_expires_ms, lease_expires_ms)

    def _mark_lost(self) -> None:
        with self._lock:
            self._lease_lost = True


TaskOutput = Mapping[str, Any] | None
Handler = Callable[[Task], TaskOutput] | Callable[[Task, TaskContext], TaskOutput]
"""A task handler: ``fn(task)`` or ``fn(task, ctx)``, returning the output (or None)."""


_HandlerT = TypeVar("_HandlerT", bound=Handler)


@dataclass(slots=True)
class _Registration:
    task_type: str
    fn: Callable[..., Any]
    takes_context: bool
    concurrency: int
    executor: ThreadPoolExecutor | None = None
    pollers: list[threading.Thread] = field(default_factory=list)
    free_slots: int = 0
    # Most slots one poll may take: with two pollers each takes half, so one poll is still
    # waiting at the server while the other's tasks run (see _pollers_for).
    poll_cap: int = _MAX_POLL_COUNT


def _pollers_for(concurrency: int) -> int:
    """Poll loops per task type: two when the type may run two tasks at once.

    With one poller, the worker's next poll for a type is sent only after the previous poll
    returned; a fast handler's CompleteTask then often reaches the server before that poll, so
    the next task (made ready by that completion) must be leased by a separate PollTasks commit.
    With a second poll still waiting at the server, the completion's own commit leases the next
    task to it (the server parks waiting polls in its replicated state): one commit per task
    instead of two.
    """
    return 2 if concurrency >= 2 else 1


def _takes_context(fn: Callable[..., Any]) -> bool:
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


def _reason_of(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:_MAX_REASON_CHARS]


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
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if poll_timeout_ms < 0:
            raise ValueError("poll_timeout_ms must not be negative")
        if heartbeat_interval_s is not None and heartbeat_interval_s <= 0:
            raise ValueError("heartbeat_interval_s must be positive")
        self.client = client
        self.worker_id = worker_id or _default_worker_id()
        self.concurrency = concurrency
        self.poll_timeout_ms = poll_timeout_ms
        self.heartbeat_interval_s = heartbeat_interval_s
        self.domain = domain
        self.batch_completions = batch_completions
        self._batcher: _CompletionBatcher | None = None
        # A completion sent by its handler's thread with a poll riding behind it is in flight
        # (see _complete_and_take_next); False once the server showed it cannot do that.
        self._eager_busy = False
        self._eager_supported = True

        self._registrations: dict[str, _Registration] = {}
        # One lock guards slots, running tasks and counters: it is taken a few times per task,
        # far too rarely for finer locking to pay.
        self._lock = threading.Lock()
        self._slots_changed = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._heartbeat_wakeup = threading.Condition(self._lock)
        self._running: dict[str, TaskContext] = {}  # handler started, not yet reported
        self._leased: set[str] = set()  # dispatched, not yet reported
        self._inflight = 0
        self._counts: dict[str, int] = {
            "polled": 0,
            "taken_with_completion": 0,
            "completed": 0,
            "failed": 0,
            "lost": 0,
            "report_errors": 0,
            "poll_errors": 0,
        }
        self._started = False
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        # Set when stop() gave up waiting: tasks that arrive later are dropped, not started.
        self._abandoned = threading.Event()
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
        if not task_type:
            raise ValueError("task_type must not be empty")
        slots = self.concurrency if concurrency is None else concurrency
        if slots < 1:
            raise ValueError("concurrency must be at least 1")
        with self._lock:
            if self._started:
                raise RuntimeError("register handlers before starting the worker")
            if task_type in self._registrations:
                raise ValueError(f"a handler for {task_type!r} is registered already")
            callable_fn = cast(Callable[..., Any], fn)
            self._registrations[task_type] = _Registration(
                task_type=task_type,
                fn=callable_fn,
                takes_context=_takes_context(callable_fn),
                concurrency=slots,
                free_slots=slots,
            )

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
        return self._stopping.is_set()

    @property
    def stats(self) -> WorkerStats:
        """A snapshot of the worker's counters.

        Returns:
            The counters.
        """
        with self._lock:
            return WorkerStats(running=self._inflight, **self._counts)

    def start(self) -> None:
        """Starts the poller, handler and heartbeat threads, and returns.

        Raises:
            RuntimeError: No handler is registered, or the worker was started before.
        """
        with self._lock:
            if self._started or self._stopping.is_set():
                raise RuntimeError("a worker can be started only once")
            if not self._registrations:
                raise RuntimeError("register at least one handler before starting the worker")
            self._started = True
            registrations = list(self._registrations.values())
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop,
            name=f"orchestrator-heartbeat-{self.worker_id}",
            daemon=True,
        )
        self._heartbeat_thread.start()
        if self.batch_completions:
            self._batcher = _CompletionBatcher(self.client, self.worker_id)
        for reg in registrations:
            reg.executor = ThreadPoolExecutor(
                max_workers=reg.concurrency, thread_name_prefix=f"orchestrator-{reg.task_type}"
            )
            # Daemon pollers: a poll stuck on an unreachable cluster must not keep the process
            # alive after stop() has given up on it.
            n = _pollers_for(reg.concurrency)
            reg.poll_cap = min(_MAX_POLL_COUNT, -(-reg.concurrency // n))
            reg.pollers = [
                threading.Thread(
                    target=self._poll_loop,
                    args=(reg,),
                    name=f"orchestrator-poll-{reg.task_type}-{i}",
                    daemon=True,
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
        deadline = time.monotonic() + timeout_s
        with self._lock:
            already = self._stopping.is_set()
            self._stopping.set()
            self._slots_changed.notify_all()
            started = self._started
        if not started:
            self._stopped.set()
            return
        if already:
            self._stopped.wait(max(0.0, deadline - time.monotonic()))
            return

        for reg in self._registrations.values():
            for t in reg.pollers:
                t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            while self._inflight > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._idle.wait(remaining)
            unfinished = self._inflight
        if unfinished:
            self._abandoned.set()
            _log.warning(
                "worker %s stopped waiting with %d task(s) still leased or running",
                self.worker_id,
                unfinished,
            )
        for reg in self._registrations.values():
            if reg.executor is not None:
                reg.executor.shutdown(wait=False, cancel_futures=bool(unfinished))
        with self._lock:
            self._heartbeat_wakeup.notify_all()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(max(0.0, deadline - time.monotonic()))
        if self._batcher is not None:
            self._batcher.close(max(0.0, deadline - time.monotonic()))
        self._stopped.set()
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
            while not received and not self._stopping.is_set():
                self._stopping.wait(0.2)
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

    # -- polling ------------------------------------------------------------------------------

    def _take_slots(self, reg: _Registration) -> int:
        with self._lock:
            while reg.free_slots <= 0 and not self._stopping.is_set():
                self._slots_changed.wait()
            if self._stopping.is_set():
                return 0
            count = min(reg.free_slots, reg.poll_cap)
            reg.free_slots -= count
            return count

    def _return_slots(self, reg: _Registration, count: int) -> None:
        with self._lock:
            reg.free_slots += count
            self._slots_changed.notify_all()

    def _poll_loop(self, reg: _Registration) -> None:
        error_pause = _POLL_ERROR_BACKOFF_INITIAL_S
        while True:
            count = self._take_slots(reg)
            if count == 0:
                return
            started = time.monotonic()
            try:
                tasks = self.client.poll_tasks(
                    reg.task_type,
                    worker_id=self.worker_id,
                    count=count,
                    timeout_ms=self.poll_timeout_ms,
                    domain=self.domain,
                )
            except Exception as exc:
                self._return_slots(reg, count)
                with self._lock:
                    self._counts["poll_errors"] += 1
                level = logging.WARNING if isinstance(exc, OrchestratorError) else logging.ERROR
                _log.log(
                    level,
                    "poll of %s failed (retrying in %.1fs): %s",
                    reg.task_type,
                    error_pause,
                    exc,
                    exc_info=not isinstance(exc, OrchestratorError),
                )
                # The client has already retried with backoff; this pause keeps a poller facing
                # a down cluster or a persistent error from spinning.
                if self._stopping.wait(error_pause):
                    return
                error_pause = min(error_pause * 2.0, _POLL_ERROR_BACKOFF_MAX_S)
                continue
            error_pause = _POLL_ERROR_BACKOFF_INITIAL_S
            # A server that returned more than asked oversubscribes the pool; the negative
            # balance makes the poller wait until the surplus has run.
            self._return_slots(reg, count - len(tasks))
            if tasks:
                with self._lock:
                    self._counts["polled"] += len(tasks)
            for task in tasks:
                self._dispatch(reg, task)
            fast_empty = not tasks and time.monotonic() - started < _MIN_EMPTY_POLL_S
            if fast_empty and self._stopping.wait(_EMPTY_POLL_PAUSE_S):
                return

    def _dispatch(self, reg: _Registration, task: Task) -> None:
        if self._abandoned.is_set() or reg.executor is None:
            _log.warning(
                "dropping task %s (%s) leased after the worker gave up stopping",
                task.task_id,
                task.task_type,
            )
            self._return_slots(reg, 1)
            return
        if not self._claim(task):
            self._return_slots(reg, 1)
            return
        self._submit_claimed(reg, task)

    def _submit_claimed(self, reg: _Registration, task: Task) -> None:
        """Runs a claimed task on the pool (its slot already taken)."""
        try:
            if reg.executor is None:
                raise RuntimeError("no executor")
            reg.executor.submit(self._execute, reg, task)
        except RuntimeError:
            # The executor was shut down under us (stop() timed out): the lease will expire.
            self._task_done(reg, task)
            _log.warning("dropping task %s (%s): worker stopped", task.task_id, task.task_type)

    def _claim(self, task: Task) -> bool:
        """Counts a leased task as this worker's; False for one already running."""
        with self._lock:
            duplicate = task.task_id in self._leased
            if not duplicate:
                self._leased.add(task.task_id)
                self._inflight += 1
        if duplicate:
            # Running one lease twice would report twice; the running handler owns it.
            _log.warning("ignoring task %s (%s): already running", task.task_id, task.task_type)
        return not duplicate

    def _task_done(self, reg: _Registration, task: Task) -> None:
        self._free_slot(reg)
        self._finished(task)

    def _free_slot(self, reg: _Registration) -> None:
        """The handler is done: its slot takes another task while the result is reported."""
        with self._lock:
            reg.free_slots += 1
            self._slots_changed.notify_all()

    def _finished(self, task: Task) -> None:
        """The task's result is reported (or given up): it no longer holds the worker."""
        with self._lock:
            self._leased.discard(task.task_id)
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()
                # Lets the heartbeat thread notice it has nothing left to do when stopping.
                self._heartbeat_wakeup.notify_all()

    # -- execution ----------------------------------------------------------------------------

    def _heartbeat_interval(self, task: Task) -> float | None:
        if self.heartbeat_interval_s is not None:
            return self.heartbeat_interval_s
        if task.response_timeout_seconds <= 0:
            return None
        return max(task.response_timeout_seconds / 3.0, _MIN_HEARTBEAT_INTERVAL_S)

    def _execute(self, reg: _Registration, task: Task) -> None:
        next_task: Task | None = task
        while next_task is not None:
            next_task = self._execute_one(reg, next_task)

    def _execute_one(self, reg: _Registration, task: Task) -> Task | None:
        """Runs one task and reports it; returns the next task to run in this slot, if the
        report brought one (see _complete_and_take_next)."""
        reporting = False
        next_task: Task | None = None
        try:
            ctx = TaskContext(task, self, self._heartbeat_interval(task))
            with self._lock:
                self._running[task.task_id] = ctx
                self._heartbeat_wakeup.notify_all()
            try:
                outcome = self._run_handler(reg, task, ctx)
            finally:
                # Stop heartbeats before reporting: a heartbeat after the report only earns a
                # FAILED_PRECONDITION.
                with self._lock:
                    self._running.pop(task.task_id, None)
                    ctx._done = True
            took = self._complete_and_take_next(reg, task, ctx, outcome)
            if took is None:
                reporting = self._report(task, ctx, outcome)
            else:
                next_task = took[0] if took else None
        except Exception:
            _log.exception("unexpected error handling task %s (%s)", task.task_id, task.task_type)
        finally:
            # The slot is free once the handler has returned: with batched reports the result
            # travels on its own, and the next poll need not wait for its acknowledgement. A
            # task that came with the report keeps the slot.
            if next_task is None:
                self._free_slot(reg)
            if not reporting:
                self._finished(task)
        return next_task

    def _complete_and_take_next(
        self,
        reg: _Registration,
        task: Task,
        ctx: TaskContext,
        outcome: TaskFailure | Mapping[str, Any] | None,
    ) -> list[Task] | None:
        """When the worker is otherwise quiet, completes the task from this thread with polls
        riding behind the completion (CompleteTasks with `polls`: one task of this type for this
        slot, and one of each other registered type), so the workflow's next
        task comes back in the same answer: one round trip per task, against a completion and
        a long poll's answer. A task of this type runs next in this slot (no thread hand-off);
        one of another type goes to that type's pool, in the slot its poll took. Under load
        completions go to the batcher instead (fewer, larger calls).

        Returns None when not taken (the caller reports the usual way), else the task to run
        next in this slot (a list of at most one).
        """
        batcher = self._batcher
        if (
            batcher is None
            or isinstance(outcome, TaskFailure)
            or ctx.lease_lost
            or not self._eager_supported
            or self._stopping.is_set()
            # A first look without the lock (taken again below): under load, skip the encoding.
            or self._eager_busy
            or self._inflight > 1
        ):
            return None
        try:
            output_json = encode_document(outcome)
        except (TypeError, ValueError):
            return None  # the usual path fails the task, saying why
        with self._lock:
            # Only a worker with nothing else in flight: under any load, batched completions
            # and multi-task polls cost the cluster less per task (each poll here is a command
            # of its own). Measured at concurrency 64: ~3 % fewer tasks/s when every quiet
            # moment of the batcher was used.
            if self._eager_busy or self._inflight > 1 or not batcher.idle():
                return None
            self._eager_busy = True
            # This slot is reg's. Another type's poll takes a slot of that type, oversubscribing
            # it when its long polls hold them all (as a poll answered with more than it asked
            # for does): nothing of it runs now, and its pool still bounds running handlers.
            regs = [reg]
            for other in self._registrations.values():
                if len(regs) >= _MAX_RIDING_POLLS:
                    break
                if other is not reg and other.executor is not None:
                    other.free_slots -= 1
                    regs.append(other)
        polls = [
            tasks_pb2.PollTasksRequest(
                request_id=new_request_id(),
                task_type=r.task_type,
                worker_id=self.worker_id,
                count=1,
                domain=self.domain,
            )
            for r in regs
        ]
        try:
            errors, polled = self.client._complete_call(
                [(task.task_id, output_json)], worker_id=self.worker_id, polls=polls
            )
        except Exception as exc:
            for other in regs[1:]:
                self._return_slots(other, 1)
            if isinstance(exc, OrchestratorError) and exc.code == grpc.StatusCode.UNIMPLEMENTED:
                self._eager_supported = False  # a server without CompleteTasks
                return None
            self._report_error(task, "complete", exc)
            return []
        finally:
            with self._lock:
                self._eager_busy = False
        if errors[0] is None:
            self._count("completed")
        else:
            self._report_error(task, "complete", errors[0])
        mine: list[Task] = []
        for r, leased in zip(regs, polled, strict=True):
            slot_free = True  # this slot (reg), or the slot the poll took (another type)
            for t in leased:
                if not self._claim(t):
                    continue
                if self._abandoned.is_set():
                    self._finished(t)  # stop() gave up: nothing new starts; the lease expires
                    continue
                with self._lock:
                    self._counts["polled"] += 1
                    self._counts["taken_with_completion"] += 1
                    if not slot_free:
                        r.free_slots -= 1  # more than asked: oversubscribe, as a poll would
                if slot_free and r is reg:
                    mine.append(t)
                else:
                    self._submit_claimed(r, t)
                slot_free = False
            if slot_free and r is not reg:
                self._return_slots(r, 1)
        return mine

    def _on_reported(self, task: Task, fut: Future[None]) -> None:
        """A batched completion was answered (runs on the reporter's thread)."""
        try:
            exc = fut.exception()
            if exc is None:
                self._count("completed")
            elif isinstance(exc, Exception):
                self._report_error(task, "complete", exc)
            else:
                _log.error("report of task %s interrupted: %r", task.task_id, exc)
        finally:
            self._finished(task)

    def _run_handler(
        self, reg: _Registration, task: Task, ctx: TaskContext
    ) -> TaskFailure | Mapping[str, Any] | None:
        try:
            result = reg.fn(task, ctx) if reg.takes_context else reg.fn(task)
        except TaskFailure as failure:
            return failure
        except Exception as exc:
            _log.warning(
                "handler for %s failed task %s: %s",
                task.task_type,
                task.task_id,
                exc,
                exc_info=True,
            )
            return TaskFailure(_reason_of(exc))
        if result is None or isinstance(result, Mapping):
            return result
        return TaskFailure(
            f"handler returned {type(result).__name__}; a task output must be a dict or None"
        )

    def _report(
        self, task: Task, ctx: TaskContext, outcome: TaskFailure | Mapping[str, Any] | None
    ) -> bool:
        """Reports the outcome; True when a batched completion will finish it later."""
        if ctx.lease_lost:
            self._count("lost")
            _log.warning(
                "not reporting task %s (%s): its lease was lost", task.task_id, task.task_type
            )
            return False
        if not isinstance(outcome, TaskFailure):
            try:
                batcher = self._batcher
                if batcher is None:
                    self.client.complete_task(task.task_id, outcome, worker_id=self.worker_id)
                else:
                    # Encoded here (once): an output that is not JSON fails only its own task.
                    output_json = encode_document(outcome)
                    fut = batcher.submit(task.task_id, outcome, output_json)
                    fut.add_done_callback(lambda f: self._on_reported(task, f))
                    return True
            except (TypeError, ValueError) as exc:
                # The output could not be encoded as JSON; nothing was sent, so fail the task
                # rather than leave it to time out.
                outcome = TaskFailure(f"task output is not valid JSON: {exc}")
            except Exception as exc:
                self._report_error(task, "complete", exc)
                return False
            else:
                self._count("completed")
                return False
        try:
            try:
                self._send_failure(task, outcome)
            except (TypeError, ValueError) as exc:
                # The failure's output could not be encoded; report the failure without it.
                self._send_failure(
                    task,
                    TaskFailure(
                        f"output dropped (not valid JSON: {exc}); {outcome.reason}",
                        terminal=outcome.terminal,
                    ),
                )
        except Exception as exc:
            self._report_error(task, "fail", exc)
            return False
        self._count("failed")
        return False

    def _send_failure(self, task: Task, failure: TaskFailure) -> None:
        self.client.fail_task(
            task.task_id,
            failure.reason[:_MAX_REASON_CHARS],
            terminal=failure.terminal,
            output=failure.output,
            worker_id=self.worker_id,
        )

    def _report_error(self, task: Task, what: str, exc: Exception) -> None:
        if isinstance(exc, (FailedPreconditionError, NotFoundError)):
            # A late result: the task timed out and was rescheduled, or its workflow ended.
            # Retrying cannot help, and the new attempt belongs to someone else.
            self._count("lost")
            _log.warning(
                "server refused %s of task %s (%s), lease lost: %s",
                what,
                task.task_id,
                task.task_type,
                exc,
            )
            return
        self._count("report_errors")
        _log.error(
            "could not report %s of task %s (%s): %s",
            what,
            task.task_id,
            task.task_type,
            exc,
            exc_info=not isinstance(exc, OrchestratorError),
        )

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    # -- heartbeats ---------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while True:
            due: list[TaskContext] = []
            with self._lock:
                if self._stopped.is_set() or (
                    self._stopping.is_set() and self._inflight == 0 and not self._running
                ):
                    return
                now = time.monotonic()
                next_wake: float | None = None
                for ctx in self._running.values():
                    when = ctx._next_heartbeat
                    if when is None:
                        continue
                    if when <= now:
                        due.append(ctx)
                    elif next_wake is None or when < next_wake:
                        next_wake = when
                if not due:
                    self._heartbeat_wakeup.wait(
                        None if next_wake is None else max(0.0, next_wake - now)
                    )
                    continue
                for ctx in due:
                    interval = ctx.heartbeat_interval_s
                    assert interval is not None
                    ctx._next_heartbeat = now + interval
            for ctx in due:
                self._send_heartbeat(ctx)

    def _send_heartbeat(self, ctx: TaskContext) -> None:
        with self._lock:
            if ctx._done:
                return
        interval = ctx.heartbeat_interval_s or 1.0
        try:
            # One stuck heartbeat must not starve the others for longer than an interval.
            expires = self.client.heartbeat_task(
                ctx.task.task_id,
                worker_id=self.worker_id,
                retry_budget_s=max(interval, 1.0),
            )
        except (FailedPreconditionError, NotFoundError) as exc:
            ctx._mark_lost()
            with self._lock:
                ctx._next_heartbeat = None
            _log.warning(
                "lease of task %s (%s) lost: %s", ctx.task.task_id, ctx.task.task_type, exc
            )
        except Exception as exc:
            _log.warning(
                "heartbeat of task %s (%s) failed: %s", ctx.task.task_id, ctx.task.task_type, exc
            )
        else:
            ctx._renewed(expires)
