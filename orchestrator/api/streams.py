"""SubscriptionService: durable subscriptions over gRPC server streaming (issue 15 item 5).

SubscribeEvents streams the event log and WatchWorkflows the workflow change feed
(core/processors/subscriptions.py) from max(from_offset, the group's committed offset + 1). Any
replica serves a stream from its own applied state; Ack is a replicated command (forwarded to
the leader like any mutation), so a consumer that fails over to another replica resumes after
its last ack there: at least once.

A stream waits for new records on the replica's applied condition (woken by every apply,
re-checked at least every WAIT_S for shutdown and a caller gone), never by polling the state in
a loop. With a group at most max_in_flight records past the committed offset are outstanding:
the stream waits for acks (an Ack's apply wakes it too), so a slow consumer holds a bounded
window on the server; without a group gRPC's flow control bounds what is queued (a send blocks
while the client's window is full). A stream holds one server thread for its life, so streams
are admitted in their own class (api/admission.py, admission.max_streams) and the pool has
threads for them beside the unary calls'.

A start or a cursor behind the retention bound (records dropped before they were delivered)
fails OUT_OF_RANGE, naming the oldest kept offset in the message and in the trailer
OLDEST_OFFSET_KEY: the consumer decides to skip by resubscribing from it, nothing is skipped
silently.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from orchestrator_client.v1 import events_pb2 as epb
from orchestrator_client.v1 import events_pb2_grpc

from ..core import commands as C
from ..core import limits
from ..core.definitions import name_field
from ..core.errors import Rejected
from ..core.processors import subscriptions as S
from ..core.records import WorkflowStatus
from ..core.state import State
from . import rpc
from . import validation as v
from .errors import SEQ_KEY, ApiError, behind, invalid, rejection
from .events import _event
from .service import ServiceBase, abort

OLDEST_OFFSET_KEY = "x-orchestrator-oldest-offset"
DEFAULT_IN_FLIGHT = 100
MAX_IN_FLIGHT = 1_000
# Records looked at per read of the state (a stream without a group sends them all).
READ_BATCH = 100
# The longest a stream waits without re-checking shutdown and its caller.
WAIT_S = 0.5
MAX_FILTERS = 100
STATUSES = frozenset(s.value for s in WorkflowStatus)

Record = dict[str, Any]


class Cursor:
    """Where one stream is: the next offset to look at and the offsets sent and not yet
    acked (with a group)."""

    def __init__(self, stream: str, group: str, max_in_flight: int) -> None:
        self.stream = stream
        self.group = group
        self.max_in_flight = max_in_flight
        self.next = 0
        self.in_flight: deque[int] = deque()

    def start(self, st: State, from_offset: int) -> None:
        committed = S.committed(st, self.stream, self.group) if self.group else 0
        oldest = S.oldest_offset(st, self.stream)
        if from_offset == 0 and committed == 0:
            self.next = oldest  # a new consumer asked for whatever is kept
        else:
            self.next = max(from_offset, committed + 1, 1)

    def take(self, st: State) -> tuple[list[Record], int]:
        """The records to look at now (none while the window is full), and the state's seq.
        Raises ApiError when the cursor fell behind the retention bound."""
        if self.group:
            committed = S.committed(st, self.stream, self.group)
            while self.in_flight and self.in_flight[0] <= committed:
                self.in_flight.popleft()
            if len(self.in_flight) >= self.max_in_flight:
                return [], st.seq
        oldest = S.oldest_offset(st, self.stream)
        if self.next < oldest:
            raise expired(self.stream, self.next, oldest)
        return S.read_stream(st, self.stream, self.next, READ_BATCH), st.seq

    def room(self) -> bool:
        return not self.group or len(self.in_flight) < self.max_in_flight

    def sent(self, offset: int) -> None:
        if self.group:
            self.in_flight.append(offset)


def expired(stream: str, wanted: int, oldest: int) -> ApiError:
    return ApiError(
        grpc.StatusCode.OUT_OF_RANGE,
        f"{stream} offset {wanted} was dropped by retention before it was delivered; the "
        f"oldest kept is {oldest}: resubscribe with from_offset={oldest} to skip the gap",
        ((OLDEST_OFFSET_KEY, str(oldest)),),
        reason="OFFSET_EXPIRED",
        info={"oldest_offset": str(oldest)},
    )


class SubscriptionService(ServiceBase, events_pb2_grpc.SubscriptionServiceServicer):
    SERVICE = rpc.SUBSCRIPTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._closing = threading.Event()

    def close(self) -> None:
        """Ends every open stream (UNAVAILABLE: its consumer resumes on another replica)."""
        self._closing.set()

    def SubscribeEvents(
        self, request: epb.SubscribeEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[epb.Event]:
        def keep() -> Callable[[Record], bool]:
            names = frozenset(_filters(request.names, "names"))
            return lambda r: not names or r["name"] in names

        yield from self._serve(context, "events", request, keep, _event)

    def WatchWorkflows(
        self, request: epb.WatchWorkflowsRequest, context: grpc.ServicerContext
    ) -> Iterator[epb.WorkflowChange]:
        def keep() -> Callable[[Record], bool]:
            names = frozenset(_filters(request.names, "names"))
            statuses = frozenset(_filters(request.statuses, "statuses"))
            unknown = sorted(statuses - STATUSES)
            if unknown:
                raise invalid(f"statuses: unknown {unknown}; known: {', '.join(sorted(STATUSES))}")
            corr = request.correlation_id
            return lambda r: (
                (not names or r["name"] in names)
                and (not statuses or r["status"] in statuses)
                and (not corr or r["correlationId"] == corr)
            )

        yield from self._serve(context, "workflows", request, keep, _change)

    def Ack(self, request: epb.AckRequest, context: grpc.ServicerContext) -> Any:
        def build() -> C.Command:
            stream, group = _stream_and_group(request.stream, request.group, required=True)
            if request.offset < 0:
                raise invalid("offset: must be >= 0")
            return C.AckEvents(v.request_id(request.request_id), stream, group, request.offset)

        return self._mutate(
            context,
            request,
            "Ack",
            build,
            lambda o: epb.AckResponse(committed=o.result["committed"]),
        )

    def GetConsumerGroup(
        self, request: epb.GetConsumerGroupRequest, context: grpc.ServicerContext
    ) -> Any:
        def fn(st: State) -> Any:
            stream, group = _stream_and_group(request.stream, request.group, required=True)
            return epb.GetConsumerGroupResponse(
                committed=S.committed(st, stream, group),
                last_offset=S.last_offset(st, stream),
                oldest_offset=S.oldest_offset(st, stream),
            )

        return self._read(context, fn)

    # ---- the stream loop

    def _serve(
        self,
        context: grpc.ServicerContext,
        stream: str,
        request: Any,
        keep: Callable[[], Callable[[Record], bool]],
        message: Callable[[Record], Any],
    ) -> Iterator[Any]:
        try:
            wanted = keep()
            cursor = self._open(context, stream, request)
            yield from self._follow(context, cursor, wanted, message)
        except ApiError as err:
            abort(context, err, self.applied_seq)
        except Rejected as rej:
            abort(context, rejection(rej.code, rej.message), self.applied_seq)

    def _open(self, context: grpc.ServicerContext, stream: str, request: Any) -> Cursor:
        _, group = _stream_and_group(stream, request.group, required=False)
        if request.from_offset < 0:
            raise invalid("from_offset: must be >= 0")
        n = request.max_in_flight or DEFAULT_IN_FLIGHT
        if not 1 <= n <= MAX_IN_FLIGHT:
            raise invalid(
                f"max_in_flight: between 0 (meaning {DEFAULT_IN_FLIGHT}) and {MAX_IN_FLIGHT}"
            )
        cursor = Cursor(stream, group, n)
        # Fresh and caught up with what the caller last saw, as any read (service.py).
        _, seq = self._fresh_read(context, lambda st: cursor.start(st, request.from_offset))
        context.send_initial_metadata(((SEQ_KEY, str(seq)),))
        return cursor

    def _follow(
        self,
        context: grpc.ServicerContext,
        cursor: Cursor,
        keep: Callable[[Record], bool],
        message: Callable[[Record], Any],
    ) -> Iterator[Any]:
        while context.is_active():
            if self._closing.is_set():
                raise ApiError(
                    grpc.StatusCode.UNAVAILABLE,
                    "this replica is shutting down; resubscribe",
                    reason="SHUTTING_DOWN",
                )
            if not self.replica.fresh():
                raise behind(
                    "this replica has not heard from a leader or a majority recently; "
                    "resubscribe on another replica",
                    self.node.leader(),
                    self.applied_seq(),
                )
            records, seq = self.replica.read(cursor.take)
            for record in records:
                if not cursor.room():
                    break
                cursor.next = record["offset"] + 1
                if keep(record):
                    cursor.sent(record["offset"])
                    yield message(record)
            if not records or not cursor.room():
                # Woken by the next apply (a new record, or an ack that opens the window).
                self.replica.wait_applied(seq + 1, WAIT_S)


def _stream_and_group(stream: str, group: str, *, required: bool) -> tuple[str, str]:
    stream = S.check_stream(stream)
    if group or required:
        group = name_field(group, "group")
    return stream, group


def _filters(values: Any, field: str) -> list[str]:
    if len(values) > MAX_FILTERS:
        raise invalid(f"{field}: at most {MAX_FILTERS}")
    for value in values:
        if len(value) > limits.MAX_NAME_LENGTH:
            raise invalid(f"{field}: each at most {limits.MAX_NAME_LENGTH} characters")
    return list(values)


def _change(record: Record) -> epb.WorkflowChange:
    return epb.WorkflowChange(
        offset=record["offset"],
        workflow_id=record["workflowId"],
        name=record["name"],
        version=record["version"],
        status=record["status"],
        correlation_id=record["correlationId"],
        time_ms=record["time"],
    )
