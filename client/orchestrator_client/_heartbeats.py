"""The worker's heartbeats: keep the leases of running tasks whose handlers take long."""

from __future__ import annotations

import logging
import time
from typing import Final

from orchestrator_client._handler import LeaseContext, TaskContext
from orchestrator_client._ledger import Ledger
from orchestrator_client._views import Task
from orchestrator_client.client import OrchestratorClient
from orchestrator_client.errors import FailedPreconditionError, NotFoundError

__all__ = ["Heartbeats", "heartbeat_failed", "interval_for"]

_log = logging.getLogger("orchestrator_client.worker")

_MIN_HEARTBEAT_INTERVAL_S: Final = 0.1


def interval_for(task: Task, configured_s: float | None) -> float | None:
    """Seconds between a task's heartbeats: as configured, else a third of its response
    timeout; None (no heartbeats) for a task without one."""
    if configured_s is not None:
        return configured_s
    if task.response_timeout_seconds <= 0:
        return None
    return max(task.response_timeout_seconds / 3.0, _MIN_HEARTBEAT_INTERVAL_S)


class Heartbeats:
    """Sends the due heartbeats of the running tasks (:meth:`run` is its thread's target);
    returns once the worker stopped, or is stopping with nothing left leased or running."""

    def __init__(self, ledger: Ledger, client: OrchestratorClient, worker_id: str) -> None:
        self._ledger = ledger
        self._client = client
        self._worker_id = worker_id

    def run(self) -> None:
        ledger = self._ledger
        while True:
            due: list[TaskContext] = []
            with ledger.lock:
                if ledger.stopped.is_set() or (
                    ledger.stopping.is_set() and ledger.inflight == 0 and not ledger.running
                ):
                    return
                now = time.monotonic()
                next_wake: float | None = None
                for ctx in ledger.running.values():
                    when = ctx._next_heartbeat
                    if when is None:
                        continue
                    if when <= now:
                        due.append(ctx)
                    elif next_wake is None or when < next_wake:
                        next_wake = when
                if not due:
                    ledger.heartbeat_wakeup.wait(
                        None if next_wake is None else max(0.0, next_wake - now)
                    )
                    continue
                for ctx in due:
                    interval = ctx.heartbeat_interval_s
                    assert interval is not None
                    ctx._next_heartbeat = now + interval
            for ctx in due:
                self._send(ctx)

    def _send(self, ctx: TaskContext) -> None:
        with self._ledger.lock:
            if ctx._done:
                return
        interval = ctx.heartbeat_interval_s or 1.0
        try:
            # One stuck heartbeat must not starve the others for longer than an interval.
            expires = self._client.heartbeat_task(
                ctx.task.task_id,
                worker_id=self._worker_id,
                retry_budget_s=max(interval, 1.0),
            )
        except Exception as exc:
            if heartbeat_failed(ctx, exc):
                with self._ledger.lock:
                    ctx._next_heartbeat = None
        else:
            ctx._renewed(expires)


def heartbeat_failed(ctx: LeaseContext, exc: Exception) -> bool:
    """Logs a failed heartbeat; True when the server refused it (the lease is lost: marked so,
    and no more heartbeats), False when it may succeed next time."""
    task = ctx.task
    if isinstance(exc, (FailedPreconditionError, NotFoundError)):
        ctx._mark_lost()
        _log.warning("lease of task %s (%s) lost: %s", task.task_id, task.task_type, exc)
        return True
    _log.warning("heartbeat of task %s (%s) failed: %s", task.task_id, task.task_type, exc)
    return False
