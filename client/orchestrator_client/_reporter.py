"""The worker's reporter: sends task completions in CompleteTasks calls, on a thread of its own."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import grpc

from orchestrator_client._rpc import MAX_BATCH
from orchestrator_client.client import OrchestratorClient
from orchestrator_client.errors import OrchestratorError

__all__ = ["CompletionBatcher"]

_log = logging.getLogger("orchestrator_client.worker")


class CompletionBatcher:
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
