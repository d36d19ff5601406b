"""Admission control: how many calls one replica serves at once, so no load stops it answering.

gRPC Python runs every handler on the server's thread pool, and a long poll holds its thread
while it waits: about 130 idle long polls once took all 128 threads and the replica stopped
answering anything, health checks included. So every call is admitted into one of two classes
of capacity before its handler runs:

- status: health checks and ClusterService's status reads, up to `max_status_calls`, so they
  answer under any load (GetClusterStatus asks the peers' GetReplicaStatus, which lands here too);
- everything else, up to `max_in_flight`, of which long polls (PollTasks with a timeout; polls
  riding a completion never wait and are not long polls; ExecuteWorkflow, which waits for the
  workflow's end) take at most `max_long_polls`.
- server streams (SubscribeEvents, WatchWorkflows, api/streams.py), up to `max_streams`: each
  holds its thread for as long as its consumer reads, so they never take the others' capacity.

Beyond a bound the call is answered RESOURCE_EXHAUSTED at once, with the retry-after trailer
clients honour and a message naming the limit. A call a follower forwards to the leader counts
on both: the leader's bounds are its own, whatever its followers hold.

The interceptor runs on gRPC's polling thread, the handler on the pool; the pool is sized
`pool_workers()`, the two classes plus a headroom for answering rejections, so admitted calls
can never take every thread. A call is counted from the moment its handler starts until it
returns (a cancelled call whose handler never runs is never counted); when the non-status
capacity is already full the interceptor rejects without even decoding the request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc

from ..config import AdmissionSettings
from . import rpc
from .errors import abort, overloaded

# Threads beyond the admitted calls: rejections are answered on the pool too.
REJECT_HEADROOM = 16

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
STATUS_METHODS = frozenset(
    {
        HEALTH_CHECK,
        rpc.path(rpc.CLUSTER, "GetClusterStatus"),
        rpc.path(rpc.CLUSTER, "GetReplicaStatus"),
    }
)
POLL_TASKS = rpc.path(rpc.TASKS, "PollTasks")
# Waits for a workflow to end, so it is a long poll too.
EXECUTE_WORKFLOW = rpc.path(rpc.WORKFLOWS, "ExecuteWorkflow")
# Server streams (api/streams.py): a class of their own, admission.max_streams.
STREAM_METHODS = frozenset(
    {
        rpc.path(rpc.SUBSCRIPTIONS, "SubscribeEvents"),
        rpc.path(rpc.SUBSCRIPTIONS, "WatchWorkflows"),
    }
)

_NOT_DECODED = object()  # what a call rejected before decoding gets as its request


def pool_workers(settings: AdmissionSettings) -> int:
    """The gRPC server's thread pool size: every admitted call has a thread, with room left."""
    return (
        settings.max_in_flight + settings.max_status_calls + settings.max_streams + REJECT_HEADROOM
    )


class Slots:
    """A bounded count of calls in progress."""

    def __init__(self, limit: int, noun: str, setting: str) -> None:
        self.limit = limit
        self.noun = noun
        self.setting = setting
        self.used = 0
        self._lock = threading.Lock()

    def full(self) -> bool:
        return self.used >= self.limit  # a hint without the lock; acquire() decides

    def acquire(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.used -= 1


class Admission(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """The first interceptor: a rejected call costs no decoding, authentication or handler."""

    def __init__(self, settings: AdmissionSettings) -> None:
        self.settings = settings
        self.calls = Slots(settings.max_in_flight, "calls in flight", "max_in_flight")
        self.long_polls = Slots(settings.max_long_polls, "long polls", "max_long_polls")
        self.status = Slots(settings.max_status_calls, "status calls", "max_status_calls")
        self.streams = Slots(settings.max_streams, "open streams", "max_streams")

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or not hasattr(handler, "_replace"):
            return handler
        method = handler_call_details.method
        if handler.unary_unary is not None and method not in STATUS_METHODS and self.calls.full():
            return handler._replace(
                unary_unary=self._rejection(method), request_deserializer=_not_decoded
            )
        return rpc.wrap_handler(handler, self._guard(method))

    def _slots_for(self, method: str, request: Any) -> tuple[Slots, ...]:
        if method in STATUS_METHODS:
            return (self.status,)
        if method in STREAM_METHODS:
            return (self.streams,)
        if (
            method == POLL_TASKS and getattr(request, "timeout_ms", 0) > 0
        ) or method == EXECUTE_WORKFLOW:
            return (self.calls, self.long_polls)
        return (self.calls,)

    def _enter(self, method: str, request: Any, context: grpc.ServicerContext) -> list[Slots]:
        """The slots taken for this call; aborts RESOURCE_EXHAUSTED when one is full."""
        taken: list[Slots] = []
        for slots in self._slots_for(method, request):
            if not slots.acquire():
                _leave(taken)
                self._abort(method, slots, context)
            taken.append(slots)
        return taken

    def _guard(self, method: str) -> rpc.Guard:
        return rpc.around(lambda request, context: self._enter(method, request, context), _leave)

    def _rejection(self, method: str) -> rpc.Behaviour:
        def reject(request: Any, context: grpc.ServicerContext) -> Any:
            self._abort(method, self.calls, context)

        return reject

    def _abort(self, method: str, slots: Slots, context: grpc.ServicerContext) -> None:
        # No sequence trailer: a refusal for load reads no replica state.
        ms = self.settings.retry_after_ms
        err = overloaded(
            f"{method.rpartition('/')[2]}: this replica is at its limit of {slots.limit} "
            f"{slots.noun} (admission.{slots.setting}); retry after {ms} ms",
            ms,
            f"admission.{slots.setting}",
        )
        abort(context, err)


def _not_decoded(data: bytes) -> Any:
    return _NOT_DECODED


def _leave(taken: list[Slots]) -> None:
    for slots in taken:
        slots.release()
