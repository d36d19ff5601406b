"""Shares StartWorkflows calls among the threads of one client that start workflows at once."""

from __future__ import annotations

import copy
import threading
from typing import Any, Protocol

import grpc

from orchestrator_client._rpc import MAX_BATCH
from orchestrator_client.errors import OrchestratorError
from orchestrator_client.v1 import workflows_pb2

__all__ = ["StartCoalescer", "StartSender", "StartSlot"]


class StartSender(Protocol):
    """What the coalescer sends through (the client)."""

    def _start_one(self, request: workflows_pb2.StartWorkflowRequest) -> str:
        """One StartWorkflow call; the workflow id."""
        ...

    def _start_batch(self, requests: list[workflows_pb2.StartWorkflowRequest]) -> list[Any]:
        """One StartWorkflows call; per request the workflow id or the error for it."""
        ...


class StartSlot:
    __slots__ = ("done", "lead", "outcome", "request")

    def __init__(self, request: workflows_pb2.StartWorkflowRequest) -> None:
        self.request = request
        self.done = threading.Event()
        self.lead = False  # woken to send the next batch rather than with an outcome
        self.outcome: Any = None  # the workflow id, or the exception to raise


def _one_error_each(exc: BaseException, batch: list[StartSlot]) -> list[BaseException]:
    """The error of a failed batch call, one object per caller: each caller raises its own
    (an exception object raised in several threads at once grows one traceback with all of
    their frames), naming its own request id."""
    out: list[BaseException] = []
    for slot in batch:
        try:
            err = copy.copy(exc)
        except Exception:  # an exception type that cannot be copied: share it
            out.append(exc)
            continue
        err.__cause__, err.__context__ = exc.__cause__, exc.__context__
        err.__traceback__ = exc.__traceback__
        if isinstance(err, OrchestratorError):
            err.request_id = slot.request.request_id
        out.append(err)
    return out


class StartCoalescer:
    """Shares StartWorkflows calls among the threads of one client that start at once.

    No thread of its own: the first caller finding no call in flight sends at once (a lone
    start as a plain StartWorkflow); callers arriving meanwhile queue. When a call returns,
    its sender hands the queue to the first waiting caller, which sends it as one batch (at
    most the server's limit), so each batch costs one wake-up besides its callers' own.
    A server without StartWorkflows (UNIMPLEMENTED) turns batching off for this client.
    """

    def __init__(self, client: StartSender) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._queue: list[StartSlot] = []
        self._sending = False
        self._unbatched = False

    def start(self, request: workflows_pb2.StartWorkflowRequest) -> str:
        slot = StartSlot(request)
        with self._lock:
            unbatched = self._unbatched
            if not unbatched:
                self._queue.append(slot)
                lead = not self._sending
                self._sending = True
        if unbatched:
            return self._client._start_one(request)
        if not lead:
            slot.done.wait()
            if not slot.lead:
                return self._result(slot)
        self._send()
        return self._result(slot)

    def _each_alone(self, batch: list[StartSlot]) -> list[Any]:
        outcomes: list[Any] = []
        for s in batch:
            try:
                outcomes.append(self._client._start_one(s.request))
            except BaseException as exc:
                outcomes.append(exc)
        return outcomes

    @staticmethod
    def _result(slot: StartSlot) -> str:
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        return str(slot.outcome)

    def _send(self) -> None:
        """Send the queue's head batch, settle its slots, then pass the turn on."""
        with self._lock:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            unbatched = self._unbatched
        outcomes: list[Any]
        try:
            if len(batch) == 1 or unbatched:
                outcomes = self._each_alone(batch)
            else:
                outcomes = self._client._start_batch([s.request for s in batch])
        except OrchestratorError as exc:
            if exc.code == grpc.StatusCode.UNIMPLEMENTED:
                # A server from before StartWorkflows: every caller sends its own from now on.
                with self._lock:
                    self._unbatched = True
                outcomes = self._each_alone(batch)
            else:
                outcomes = _one_error_each(exc, batch)
        except BaseException as exc:
            outcomes = _one_error_each(exc, batch)
        with self._lock:
            nxt = self._queue[0] if self._queue else None
            if nxt is None:
                self._sending = False
            else:
                nxt.lead = True  # the head of what queued meanwhile sends the next batch
        for s, outcome in zip(batch, outcomes, strict=True):
            s.outcome = outcome
            s.done.set()  # the sender's own slot (batch[0]) is not waiting: harmless
        if nxt is not None:
            nxt.done.set()
