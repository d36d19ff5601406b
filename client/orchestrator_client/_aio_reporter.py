"""The asyncio worker's bookkeeping and reporter: the sync worker's Ledger with an event the
coroutines wait on, and batched completions sent by a coroutine of their own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import grpc

from orchestrator_client._ledger import Ledger, Registration
from orchestrator_client._rpc import MAX_BATCH
from orchestrator_client._views import Task
from orchestrator_client.errors import OrchestratorError

if TYPE_CHECKING:
    from orchestrator_client.aio import AsyncOrchestratorClient

__all__ = ["AioLedger", "AioReporter"]

_log = logging.getLogger("orchestrator_client.worker")

# (task id, output, the output as JSON, its future)
_Item = tuple[str, Mapping[str, Any] | None, str, "asyncio.Future[None]"]


class AioLedger(Ledger):
    """The sync worker's Ledger (slots, leases, counters, stop flags), used from one event
    loop: its lock is never held across an await, so it never blocks the loop. ``changed`` is
    set whenever slots are returned or a task finishes (and on stop), to wake the coroutines
    that wait for either."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def return_slots(self, reg: Registration, count: int) -> None:
        super().return_slots(reg, count)
        self.changed.set()

    def finished(self, task: Task) -> None:
        super().finished(task)
        self.changed.set()

    async def acquire_slots(self, reg: Registration) -> int:
        """Waits for free slots of the type and takes them for a poll; 0 once stopping."""
        while reg.free_slots <= 0 and not self.stopping.is_set():
            # No await between the check and wait(): a set() cannot be missed.
            self.changed.clear()
            await self.changed.wait()
        if self.stopping.is_set():
            return 0
        with self.lock:
            count = min(reg.free_slots, reg.poll_cap)
            reg.free_slots -= count
        return count

    async def drained(self, timeout_s: float) -> bool:
        """Waits up to ``timeout_s`` until no task is leased; whether none is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.inflight > 0:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return self.inflight == 0
        return True


class AioReporter:
    """Sends task completions in CompleteTasks calls (as the sync worker's CompletionBatcher):
    whatever finished while the previous call was in flight goes together in the next one (at
    most 100); a lone completion is sent at once."""

    def __init__(self, client: AsyncOrchestratorClient, worker_id: str) -> None:
        self._client = client
        self._worker_id = worker_id
        self._queue: list[_Item] = []
        self._wakeup = asyncio.Event()
        self._closed = False
        self._unbatched = False  # a server without CompleteTasks: one CompleteTask each
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def complete(
        self, task_id: str, output: Mapping[str, Any] | None, output_json: str
    ) -> None:
        """Reports a completion; returns once applied, else raises its error."""
        if self._closed:
            raise RuntimeError("the worker's reporter is closed")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((task_id, output, output_json, fut))
        self._wakeup.set()
        await fut

    async def close(self, timeout_s: float) -> None:
        """Sends what is queued, then stops (cancelled after ``timeout_s``)."""
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            done, _ = await asyncio.wait([self._task], timeout=timeout_s)
            if not done:
                self._task.cancel()

    async def _loop(self) -> None:
        while True:
            while not self._queue:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                errors = await self._send(batch)
            except Exception as exc:
                if isinstance(exc, OrchestratorError) and exc.code == grpc.StatusCode.UNIMPLEMENTED:
                    _log.info("the server has no CompleteTasks; reporting one by one")
                    self._unbatched = True
                    self._queue[:0] = batch
                    continue
                # The whole call failed: every result shares its fate.
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (*_, fut), err in zip(batch, errors, strict=True):
                if fut.done():
                    continue  # its task was cancelled (the worker gave up stopping)
                if err is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(err)

    async def _send(self, batch: list[_Item]) -> list[OrchestratorError | None]:
        if not self._unbatched:
            answered, _ = await self._client._complete_call(
                [(task_id, output_json) for task_id, _, output_json, _ in batch],
                worker_id=self._worker_id,
            )
            return answered
        errors: list[OrchestratorError | None] = []
        for task_id, output, _, _ in batch:
            try:
                await self._client.complete_task(task_id, output, worker_id=self._worker_id)
                errors.append(None)
            except OrchestratorError as exc:
                errors.append(exc)
        return errors
