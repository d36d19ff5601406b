"""The asyncio task worker: polls task queues, runs coroutine handlers, reports the results.

Example::

    async with AsyncOrchestratorClient("10.0.0.1:7070,10.0.0.2:7070") as client:
        worker = Worker(client, concurrency=8)

        @worker.task("reserve_stock")
        async def reserve_stock(task: Task) -> dict[str, Any]:
            return {"reserved": task.input["quantity"]}

        await worker.run()  # until SIGINT, SIGTERM or worker.stop()

The rules are the sync Worker's, and so are their pure parts (_ledger, _polling, _handler,
_heartbeats, _runner): a type's polls lease at most as many tasks as it has free slots
(``concurrency`` handlers of the type at once); a leased task is kept by heartbeats while its
handler runs; its result is reported once, with one request id retried by the client;
completions that finish while a report is in flight go together in one CompleteTasks call; a
report the server refuses because the lease is gone (FAILED_PRECONDITION, NOT_FOUND) is
counted as lost and never retried; a result whose lease a heartbeat found gone is not sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Self, TypeVar

from orchestrator_client._aio_reporter import AioLedger, AioReporter
from orchestrator_client._codec import encode_document
from orchestrator_client._handler import (
    MAX_REASON_CHARS,
    LeaseContext,
    Outcome,
    TaskFailure,
    TaskOutput,
    failure_of,
    outcome_of,
)
from orchestrator_client._heartbeats import heartbeat_failed, interval_for
from orchestrator_client._ledger import Registration, WorkerStats, check_settings, new_registration
from orchestrator_client._polling import (
    _POLL_ERROR_BACKOFF_INITIAL_S,
    _POLL_ERROR_BACKOFF_MAX_S,
    dispatch,
    poll_answered,
    poll_failed,
    pollers_for,
)
from orchestrator_client._rpc import MAX_POLL_COUNT
from orchestrator_client._runner import output_dropped, report_error
from orchestrator_client._views import Task
from orchestrator_client.errors import FailedPreconditionError, NotFoundError
from orchestrator_client.worker import _default_worker_id

if TYPE_CHECKING:
    from orchestrator_client.aio import AsyncOrchestratorClient

__all__ = ["AsyncHandler", "AsyncTaskContext", "Worker"]

_log = logging.getLogger("orchestrator_client.worker")


class AsyncTaskContext(LeaseContext):
    """What a handler that takes a second argument gets besides its task (the asyncio
    TaskContext: ``lease_expires_ms``, ``lease_lost``, ``worker_stopping``, and
    ``await ctx.heartbeat()``).

    Attributes:
        task: The task being executed.
        worker_id: The id of the worker that holds the lease.
    """

    def __init__(self, task: Task, worker: Worker, heartbeat_interval_s: float | None) -> None:
        super().__init__(task, worker, heartbeat_interval_s)
        self._client = worker.client

    async def heartbeat(self) -> None:
        """Extends the task's lease now, besides the automatic heartbeats.

        Raises:
            FailedPreconditionError: The lease was lost; stop working on the task.
            NotFoundError: The task no longer exists.
            OrchestratorError: Any other error, as for the client's heartbeat_task.
        """
        try:
            expires = await self._client.heartbeat_task(self.task.task_id, worker_id=self.worker_id)
        except (FailedPreconditionError, NotFoundError):
            self._mark_lost()
            raise
        self._renewed(expires)


AsyncHandler = (
    Callable[[Task], Awaitable[TaskOutput]]
    | Callable[[Task, AsyncTaskContext], Awaitable[TaskOutput]]
)
"""A task handler: ``async def fn(task)`` or ``async def fn(task, ctx)``, returning the output
(or None); raising fails the task (raise TaskFailure to choose how)."""

_HandlerT = TypeVar("_HandlerT", bound=AsyncHandler)


class Worker:
    """Polls tasks of the registered types, runs their coroutine handlers on the event loop,
    and reports the results (see the module docstring for the rules).

    A handler is an ``async def`` taking the task (and, with a second parameter, its
    :class:`AsyncTaskContext`); a plain function is called on the loop and must not block.
    """

    def __init__(
        self,
        client: AsyncOrchestratorClient,
        *,
        worker_id: str | None = None,
        concurrency: int = 4,
        poll_timeout_ms: int = 1000,
        heartbeat_interval_s: float | None = None,
        domain: str = "",
        batch_completions: bool = True,
    ) -> None:
        """Creates a worker; nothing runs until :meth:`start`. The arguments are the sync
        Worker's (``concurrency``: handlers of one type running at once).

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
        self._ledger = AioLedger()
        self._started = False
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._reporter: AioReporter | None = None
        self._pollers: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()

    def register(self, task_type: str, fn: AsyncHandler, *, concurrency: int | None = None) -> None:
        """Registers the handler of one task type (see the sync Worker.register).

        Raises:
            ValueError: The type is registered already, or the concurrency is not positive.
            RuntimeError: The worker has been started.
        """
        slots = self.concurrency if concurrency is None else concurrency
        reg = new_registration(task_type, fn, slots)
        if self._started:
            raise RuntimeError("register handlers before starting the worker")
        if task_type in self._registrations:
            raise ValueError(f"a handler for {task_type!r} is registered already")
        self._registrations[task_type] = reg

    def task(
        self, task_type: str, *, concurrency: int | None = None
    ) -> Callable[[_HandlerT], _HandlerT]:
        """Decorator form of :meth:`register`."""

        def decorate(fn: _HandlerT) -> _HandlerT:
            self.register(task_type, fn, concurrency=concurrency)
            return fn

        return decorate

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` has begun."""
        return self._ledger.stopping.is_set()

    @property
    def stats(self) -> WorkerStats:
        """A snapshot of the worker's counters (the sync Worker's)."""
        return self._ledger.stats()

    async def start(self) -> None:
        """Starts the poll loops (and the reporter) on the running loop, and returns.

        Raises:
            RuntimeError: No handler is registered, or the worker was started before.
        """
        if self._started or self.stopping:
            raise RuntimeError("a worker can be started only once")
        if not self._registrations:
            raise RuntimeError("register at least one handler before starting the worker")
        self._started = True
        loop = asyncio.get_running_loop()
        if self.batch_completions:
            self._reporter = AioReporter(self.client, self.worker_id)
            self._reporter.start()
        for reg in self._registrations.values():
            n = pollers_for(reg.concurrency)
            reg.poll_cap = min(MAX_POLL_COUNT, -(-reg.concurrency // n))
            self._pollers += [loop.create_task(self._poll_loop(reg)) for _ in range(n)]
        _log.info(
            "worker %s started for %s", self.worker_id, ", ".join(sorted(self._registrations))
        )

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stops gracefully: no new polls, running tasks finish and report, then returns.

        Tasks leased by a poll in flight when stopping began are still run. After
        ``timeout_s`` the worker stops waiting: polls and handlers still running are cancelled
        (their leases expire and the server reschedules the tasks). Safe to call more than once.
        """
        ledger = self._ledger
        deadline = time.monotonic() + timeout_s
        already = ledger.stopping.is_set()
        ledger.stopping.set()
        ledger.changed.set()
        self._stop_requested.set()
        if not self._started:
            self._stopped.set()
            return
        if already:
            await _wait(self._stopped.wait(), deadline)
            return
        await _wait(asyncio.wait(self._pollers), deadline)
        if not await ledger.drained(max(0.0, deadline - time.monotonic())):
            ledger.abandoned.set()
            _log.warning(
                "worker %s stopped waiting with %d task(s) still leased or running",
                self.worker_id,
                ledger.inflight,
            )
        for task in (*self._pollers, *self._running):
            task.cancel()
        if self._reporter is not None:
            await self._reporter.close(max(0.0, deadline - time.monotonic()))
        ledger.stopped.set()
        self._stopped.set()
        _log.info("worker %s stopped", self.worker_id)

    async def run(self, stop_timeout_s: float = 30.0) -> None:
        """Starts the worker and runs until SIGINT or SIGTERM (when the loop runs in the main
        thread) or :meth:`stop`, then stops gracefully within ``stop_timeout_s``."""
        loop = asyncio.get_running_loop()
        previous: dict[signal.Signals, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, self._stop_requested.set)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or a loop without signal support
            previous[sig] = handler
        try:
            await self.start()
            await self._stop_requested.wait()
        finally:
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)
                # remove_signal_handler installs the default; the caller's comes back instead
                # (None: one set outside Python, which cannot be put back).
                if handler is not None:
                    signal.signal(sig, handler)
        await self.stop(stop_timeout_s)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- polling and running ------------------------------------------------------------------

    async def _poll_loop(self, reg: Registration) -> None:
        ledger = self._ledger
        error_pause = _POLL_ERROR_BACKOFF_INITIAL_S
        while True:
            count = await ledger.acquire_slots(reg)
            if count == 0:
                return
            started = time.monotonic()
            try:
                tasks = await self.client.poll_tasks(
                    reg.task_type,
                    worker_id=self.worker_id,
                    count=count,
                    timeout_ms=self.poll_timeout_ms,
                    domain=self.domain,
                )
            except Exception as exc:
                # The client has already retried with backoff; this pause keeps a poll loop
                # facing a down cluster or a persistent error from spinning.
                if await self._stopped_within(poll_failed(ledger, reg, count, exc, error_pause)):
                    return
                error_pause = min(error_pause * 2.0, _POLL_ERROR_BACKOFF_MAX_S)
                continue
            error_pause = _POLL_ERROR_BACKOFF_INITIAL_S
            pause = poll_answered(ledger, reg, count, tasks, started)
            for task in tasks:
                dispatch(reg, ledger, task, self._spawn)
            if pause and await self._stopped_within(pause):
                return

    async def _stopped_within(self, pause_s: float) -> bool:
        try:
            await asyncio.wait_for(self._stop_requested.wait(), pause_s)
        except TimeoutError:
            return False
        return True

    def _spawn(self, reg: Registration, task: Task) -> None:
        """Runs a claimed task (its slot taken) in a coroutine of its own."""
        job = asyncio.get_running_loop().create_task(self._execute(reg, task))
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    async def _execute(self, reg: Registration, task: Task) -> None:
        ledger = self._ledger
        try:
            ctx = AsyncTaskContext(task, self, interval_for(task, self.heartbeat_interval_s))
            beats = None
            if ctx.heartbeat_interval_s is not None:
                beats = asyncio.get_running_loop().create_task(self._heartbeats(ctx))
            try:
                outcome = await _call_handler(reg, task, ctx)
            finally:
                # Stop heartbeats before reporting (one after the report only earns a
                # FAILED_PRECONDITION); the slot takes another task while this one reports.
                ctx._done = True
                if beats is not None:
                    beats.cancel()
                ledger.free_slot(reg)
            await self._report(task, ctx, outcome)
        except Exception:
            _log.exception("unexpected error handling task %s (%s)", task.task_id, task.task_type)
        finally:
            ledger.finished(task)

    async def _heartbeats(self, ctx: AsyncTaskContext) -> None:
        interval = ctx.heartbeat_interval_s or 1.0
        while not ctx._done:
            await asyncio.sleep(interval)
            try:
                # One stuck heartbeat must not outlast the next one's turn by much.
                expires = await self.client.heartbeat_task(
                    ctx.task.task_id, worker_id=self.worker_id, retry_budget_s=max(interval, 1.0)
                )
            except Exception as exc:
                if heartbeat_failed(ctx, exc):
                    return
            else:
                ctx._renewed(expires)

    async def _report(self, task: Task, ctx: AsyncTaskContext, outcome: Outcome) -> None:
        ledger = self._ledger
        if ctx.lease_lost:
            ledger.count("lost")
            _log.warning(
                "not reporting task %s (%s): its lease was lost", task.task_id, task.task_type
            )
            return
        if not isinstance(outcome, TaskFailure):
            try:
                # Encoded here (once): an output that is not JSON fails only its own task.
                output_json = encode_document(outcome)
            except (TypeError, ValueError) as exc:
                outcome = TaskFailure(f"task output is not valid JSON: {exc}")
            else:
                try:
                    if self._reporter is not None:
                        await self._reporter.complete(task.task_id, outcome, output_json)
                    else:
                        await self.client.complete_task(
                            task.task_id, outcome, worker_id=self.worker_id
                        )
                except Exception as exc:
                    report_error(ledger, task, "complete", exc)
                else:
                    ledger.count("completed")
                return
        try:
            try:
                await self._send_failure(task, outcome)
            except (TypeError, ValueError) as exc:
                # The failure's output could not be encoded; report the failure without it.
                await self._send_failure(task, output_dropped(outcome, exc))
        except Exception as exc:
            report_error(ledger, task, "fail", exc)
            return
        ledger.count("failed")

    async def _send_failure(self, task: Task, failure: TaskFailure) -> None:
        await self.client.fail_task(
            task.task_id,
            failure.reason[:MAX_REASON_CHARS],
            terminal=failure.terminal,
            output=failure.output,
            worker_id=self.worker_id,
        )


async def _call_handler(reg: Registration, task: Task, ctx: AsyncTaskContext) -> Outcome:
    """Runs a handler; whatever it raises or returns becomes the task's outcome."""
    try:
        result: Any = reg.fn(task, ctx) if reg.takes_context else reg.fn(task)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        return failure_of(task, exc)
    return outcome_of(result)


async def _wait(aw: Awaitable[Any], deadline: float) -> None:
    """Awaits ``aw`` until the monotonic ``deadline`` at most."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(aw, max(0.0, deadline - time.monotonic()))
