"""The worker's task runner: runs a leased task's handler on its type's pool, then reports.

A completion goes to the reporter (batched with others), or, when the worker is otherwise
quiet, is sent from the handler's thread with polls riding behind it so the workflow's next
task comes back in the same answer. Failures are reported one by one.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import TYPE_CHECKING

import grpc

from orchestrator_client._codec import encode_document, new_request_id
from orchestrator_client._handler import (
    MAX_REASON_CHARS,
    Outcome,
    TaskContext,
    TaskFailure,
    call_handler,
)
from orchestrator_client._heartbeats import interval_for
from orchestrator_client._ledger import Ledger, Registration
from orchestrator_client._reporter import CompletionBatcher
from orchestrator_client._rpc import MAX_RIDING_POLLS
from orchestrator_client._views import Task
from orchestrator_client.errors import FailedPreconditionError, NotFoundError, OrchestratorError
from orchestrator_client.v1 import tasks_pb2

if TYPE_CHECKING:
    from orchestrator_client.worker import Worker

__all__ = ["TaskRunner", "output_dropped", "report_error"]

_log = logging.getLogger("orchestrator_client.worker")


class TaskRunner:
    """Runs and reports the tasks of one started worker (thread-safe)."""

    def __init__(
        self,
        worker: Worker,
        ledger: Ledger,
        registrations: dict[str, Registration],
        batcher: CompletionBatcher | None,
    ) -> None:
        self._worker = worker  # handed to each TaskContext
        self._client = worker.client
        self._worker_id = worker.worker_id
        self._domain = worker.domain
        self._heartbeat_interval_s = worker.heartbeat_interval_s
        self._ledger = ledger
        self._registrations = registrations
        self.batcher = batcher
        # A completion sent by its handler's thread with a poll riding behind it is in flight
        # (see _complete_and_take_next); False once the server showed it cannot do that.
        self._eager_busy = False
        self._eager_supported = True

    def submit_claimed(self, reg: Registration, task: Task) -> None:
        """Runs a claimed task on the pool (its slot already taken)."""
        try:
            if reg.executor is None:
                raise RuntimeError("no executor")
            reg.executor.submit(self.execute, reg, task)
        except RuntimeError:
            # The executor was shut down under us (stop() timed out): the lease will expire.
            self._ledger.task_done(reg, task)
            _log.warning("dropping task %s (%s): worker stopped", task.task_id, task.task_type)

    def execute(self, reg: Registration, task: Task) -> None:
        next_task: Task | None = task
        while next_task is not None:
            next_task = self._execute_one(reg, next_task)

    def _execute_one(self, reg: Registration, task: Task) -> Task | None:
        """Runs one task and reports it; returns the next task to run in this slot, if the
        report brought one (see _complete_and_take_next)."""
        ledger = self._ledger
        reporting = False
        next_task: Task | None = None
        try:
            ctx = TaskContext(task, self._worker, interval_for(task, self._heartbeat_interval_s))
            with ledger.lock:
                ledger.running[task.task_id] = ctx
                ledger.heartbeat_wakeup.notify_all()
            try:
                outcome = call_handler(reg.fn, reg.takes_context, task, ctx)
            finally:
                # Stop heartbeats before reporting: a heartbeat after the report only earns a
                # FAILED_PRECONDITION.
                with ledger.lock:
                    ledger.running.pop(task.task_id, None)
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
                ledger.free_slot(reg)
            if not reporting:
                ledger.finished(task)
        return next_task

    def _complete_and_take_next(
        self, reg: Registration, task: Task, ctx: TaskContext, outcome: Outcome
    ) -> list[Task] | None:
        """When the worker is otherwise quiet, completes the task from this thread with polls
        riding behind the completion (CompleteTasks with `polls`: one task of this type for this
        slot, and one of each other registered type), so the workflow's next task comes back in
        the same answer: one round trip per task, against a completion and a long poll's
        answer. A task of this type runs next in this slot (no thread hand-off); one of another
        type goes to that type's pool, in the slot its poll took. Under load completions go to
        the batcher instead (fewer, larger calls).

        Returns None when not taken (the caller reports the usual way), else the task to run
        next in this slot (a list of at most one).
        """
        batcher = self.batcher
        if (
            batcher is None
            or isinstance(outcome, TaskFailure)
            or ctx.lease_lost
            or not self._eager_supported
            or self._ledger.stopping.is_set()
            # A first look without the lock (taken again below): under load, skip the encoding.
            or self._eager_busy
            or self._ledger.inflight > 1
        ):
            return None
        try:
            output_json = encode_document(outcome)
        except (TypeError, ValueError):
            return None  # the usual path fails the task, saying why
        regs = self._reserve_riding_slots(reg, batcher)
        if regs is None:
            return None
        polls = [
            tasks_pb2.PollTasksRequest(
                request_id=new_request_id(),
                task_type=r.task_type,
                worker_id=self._worker_id,
                count=1,
                domain=self._domain,
            )
            for r in regs
        ]
        try:
            errors, polled = self._client._complete_call(
                [(task.task_id, output_json)], worker_id=self._worker_id, polls=polls
            )
        except Exception as exc:
            for other in regs[1:]:
                self._ledger.return_slots(other, 1)
            if isinstance(exc, OrchestratorError) and exc.code == grpc.StatusCode.UNIMPLEMENTED:
                self._eager_supported = False  # a server without CompleteTasks
                return None
            self._report_error(task, "complete", exc)
            return []
        finally:
            with self._ledger.lock:
                self._eager_busy = False
        if errors[0] is None:
            self._ledger.count("completed")
        else:
            self._report_error(task, "complete", errors[0])
        return self._take_polled(reg, regs, polled)

    def _reserve_riding_slots(
        self, reg: Registration, batcher: CompletionBatcher
    ) -> list[Registration] | None:
        """The types to poll with the completion (reg first), a slot of each taken; None when
        the worker is not quiet after all."""
        with self._ledger.lock:
            # Only a worker with nothing else in flight: under any load, batched completions
            # and multi-task polls cost the cluster less per task (each poll here is a command
            # of its own). Measured at concurrency 64: ~3 % fewer tasks/s when every quiet
            # moment of the batcher was used.
            if self._eager_busy or self._ledger.inflight > 1 or not batcher.idle():
                return None
            self._eager_busy = True
            # This slot is reg's. Another type's poll takes a slot of that type, oversubscribing
            # it when its long polls hold them all (as a poll answered with more than it asked
            # for does): nothing of it runs now, and its pool still bounds running handlers.
            regs = [reg]
            for other in self._registrations.values():
                if len(regs) >= MAX_RIDING_POLLS:
                    break
                if other is not reg and other.executor is not None:
                    other.free_slots -= 1
                    regs.append(other)
            return regs

    def _take_polled(
        self, reg: Registration, regs: list[Registration], polled: list[list[Task]]
    ) -> list[Task]:
        """Claims what the riding polls leased: the task for this slot (returned), the others
        submitted to their types' pools."""
        ledger = self._ledger
        mine: list[Task] = []
        for r, leased in zip(regs, polled, strict=True):
            slot_free = True  # this slot (reg), or the slot the poll took (another type)
            for t in leased:
                if not ledger.claim(t):
                    continue
                if ledger.abandoned.is_set():
                    ledger.finished(t)  # stop() gave up: nothing new starts; the lease expires
                    continue
                with ledger.lock:
                    ledger.counts["polled"] += 1
                    ledger.counts["taken_with_completion"] += 1
                    if not slot_free:
                        r.free_slots -= 1  # more than asked: oversubscribe, as a poll would
                if slot_free and r is reg:
                    mine.append(t)
                else:
                    self.submit_claimed(r, t)
                slot_free = False
            if slot_free and r is not reg:
                ledger.return_slots(r, 1)
        return mine

    def _on_reported(self, task: Task, fut: Future[None]) -> None:
        """A batched completion was answered (runs on the reporter's thread)."""
        try:
            exc = fut.exception()
            if exc is None:
                self._ledger.count("completed")
            elif isinstance(exc, Exception):
                self._report_error(task, "complete", exc)
            else:
                _log.error("report of task %s interrupted: %r", task.task_id, exc)
        finally:
            self._ledger.finished(task)

    def _report(self, task: Task, ctx: TaskContext, outcome: Outcome) -> bool:
        """Reports the outcome; True when a batched completion will finish it later."""
        if ctx.lease_lost:
            self._ledger.count("lost")
            _log.warning(
                "not reporting task %s (%s): its lease was lost", task.task_id, task.task_type
            )
            return False
        if not isinstance(outcome, TaskFailure):
            try:
                batcher = self.batcher
                if batcher is None:
                    self._client.complete_task(task.task_id, outcome, worker_id=self._worker_id)
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
                self._ledger.count("completed")
                return False
        try:
            try:
                self._send_failure(task, outcome)
            except (TypeError, ValueError) as exc:
                # The failure's output could not be encoded; report the failure without it.
                self._send_failure(task, output_dropped(outcome, exc))
        except Exception as exc:
            self._report_error(task, "fail", exc)
            return False
        self._ledger.count("failed")
        return False

    def _send_failure(self, task: Task, failure: TaskFailure) -> None:
        self._client.fail_task(
            task.task_id,
            failure.reason[:MAX_REASON_CHARS],
            terminal=failure.terminal,
            output=failure.output,
            worker_id=self._worker_id,
        )

    def _report_error(self, task: Task, what: str, exc: Exception) -> None:
        report_error(self._ledger, task, what, exc)


def output_dropped(failure: TaskFailure, exc: Exception) -> TaskFailure:
    """The failure to report when ``failure``'s output cannot be encoded: without it."""
    return TaskFailure(
        f"output dropped (not valid JSON: {exc}); {failure.reason}", terminal=failure.terminal
    )


def report_error(ledger: Ledger, task: Task, what: str, exc: Exception) -> None:
    """Counts and logs a report ("complete" or "fail") the server refused or that failed;
    never retried (the client already retried what could be)."""
    if isinstance(exc, (FailedPreconditionError, NotFoundError)):
        # A late result: the task timed out and was rescheduled, or its workflow ended.
        # Retrying cannot help, and the new attempt belongs to someone else.
        ledger.count("lost")
        _log.warning(
            "server refused %s of task %s (%s), lease lost: %s",
            what,
            task.task_id,
            task.task_type,
            exc,
        )
        return
    ledger.count("report_errors")
    _log.error(
        "could not report %s of task %s (%s): %s",
        what,
        task.task_id,
        task.task_type,
        exc,
        exc_info=not isinstance(exc, OrchestratorError),
    )
