"""Durable subscriptions of OrchestratorClient: the event log and the workflow change feed as
server streams, read by a consumer group with acks (SubscriptionService).

Delivery is at least once. Every replica serves a stream; when the one a subscription reads
from fails (killed, partitioned, shut down) the subscription opens the stream again on the next
configured address and resumes after the group's committed offset, so what was delivered and
not acked is delivered again. Without a group nothing is committed: a subscription resumes
after the last record it delivered (at least once only for what this process saw).

Acks: the iterator acks a record when the next one is pulled (the loop body that handled it has
returned) and when it is closed; ``auto_ack=False`` leaves it to ``delivery.ack()``. An ack
commits every offset up to the record's, so acking out of order is a mistake the server does
not catch. ``consume_events`` / ``watch_workflows_with`` run a handler per record in a thread
and ack after the handler returns; a handler that raises gets the record again (the stream is
reopened from the committed offset after a pause).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import grpc
from google.protobuf.message import Message

from orchestrator_client._codec import new_request_id
from orchestrator_client._details import error_details
from orchestrator_client._events import event_dict
from orchestrator_client._rpc import rpc_of
from orchestrator_client._transport import (
    MIN_SEQ_METADATA_KEY,
    Transport,
    _metadata_value,
    _parse_int,
)
from orchestrator_client.errors import OrchestratorError, error_for_status
from orchestrator_client.v1 import events_pb2

__all__ = ["Consumer", "Delivery", "StreamCalls", "StreamGapError", "Subscription"]

_log = logging.getLogger("orchestrator_client")

OLDEST_OFFSET_METADATA_KEY: Final = "x-orchestrator-oldest-offset"
# A stream that ends this way moved or lost its replica: open it again elsewhere.
_REOPEN_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.OK,
    }
)
_BACKOFF_INITIAL_S: Final = 0.05
_BACKOFF_MAX_S: Final = 2.0


class StreamGapError(OrchestratorError):
    """The records the subscription was to read next were dropped by the stream's retention
    bound before they were delivered. ``oldest_offset`` is the oldest kept: subscribe again
    with ``from_offset=oldest_offset`` to skip the gap knowingly."""

    def __init__(
        self, code: grpc.StatusCode, details: str, oldest_offset: int, reason: str | None = None
    ) -> None:
        super().__init__(code, details, op="Subscribe", reason=reason)
        self.oldest_offset = oldest_offset

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.code, self.details, self.oldest_offset, self.reason))


class Delivery(dict[str, Any]):
    """One record of a stream (a dict: an event's offset, name, payload, correlation_key,
    time_ms and actions; a workflow change's offset, workflow_id, name, version, status,
    correlation_id and time_ms), with ``ack()``."""

    def __init__(self, data: dict[str, Any], ack: Callable[[int], None]) -> None:
        super().__init__(data)
        self._ack = ack

    @property
    def offset(self) -> int:
        return int(self["offset"])

    def ack(self) -> None:
        """Commits this record's offset for the group (and every offset before it)."""
        self._ack(self.offset)


def _change(c: Any) -> dict[str, Any]:
    return {
        "offset": c.offset,
        "workflow_id": c.workflow_id,
        "name": c.name,
        "version": c.version,
        "status": c.status,
        "correlation_id": c.correlation_id,
        "time_ms": c.time_ms,
    }


class Subscription(Iterator[Delivery]):
    """An endless iterator over one stream's records (see the module docstring); ``close()``
    (or leaving a ``with`` block) ends it, acking the last record when auto-acking."""

    def __init__(
        self,
        transport: Transport,
        stream: str,
        request: Message,
        decode: Callable[[Any], dict[str, Any]],
        auto_ack: bool,
    ) -> None:
        self._transport = transport
        self._stream = stream
        self._request = request
        self._decode = decode
        self._group: str = getattr(request, "group", "")
        self._auto_ack = auto_ack and bool(self._group)
        self._rpc = rpc_of(request)
        self._pos = random.randrange(len(transport.addresses))
        self._call: Any = None
        self._next_offset = int(getattr(request, "from_offset", 0))
        self._pending: Delivery | None = None
        self._acked = 0
        self._closed = threading.Event()
        self._backoff = _BACKOFF_INITIAL_S

    def __iter__(self) -> Subscription:
        return self

    @property
    def address(self) -> str:
        """The replica the stream is read from (the next one tried, between two streams)."""
        return self._transport.addresses[self._pos]

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # A loop body that raised did not finish its record: it is not acked.
        self.close(ack=exc_type is None)

    def close(self, ack: bool = True) -> None:
        """Ends the subscription; when auto-acking (and ``ack``), acks the last record."""
        if self._closed.is_set():
            return
        self._closed.set()
        pending = self._pending is not None and self._auto_ack and ack
        if pending and self._pending is not None and not self._transport.closed.is_set():
            self._pending.ack()
        if self._call is not None:
            self._call.cancel()

    def ack(self, offset: int) -> None:
        """Commits ``offset`` for the group (a no-op without one, or when already acked)."""
        if not self._group or offset <= self._acked:
            return
        rid = new_request_id()
        request = events_pb2.AckRequest(
            request_id=rid, stream=self._stream, group=self._group, offset=offset
        )
        self._transport.invoke(
            request, events_pb2.AckResponse, rid, timeout_s=None, retry_budget_s=None
        )
        self._acked = offset

    def __next__(self) -> Delivery:
        if self._pending is not None and self._auto_ack:
            self._pending.ack()
        self._pending = None
        while not self._closed.is_set():
            if self._call is None:
                self._call = self._open()
            try:
                message = next(self._call)
            except StopIteration:
                self._reopen(grpc.StatusCode.OK, "the stream ended")
                continue
            except grpc.RpcError as err:
                self._failed(err)
                continue
            self._backoff = _BACKOFF_INITIAL_S
            delivery = Delivery(self._decode(message), self.ack)
            self._next_offset = delivery.offset + 1
            self._pending = delivery
            return delivery
        raise StopIteration

    def _open(self) -> Any:
        request: Any = type(self._request)()
        request.CopyFrom(self._request)
        if not self._group:
            # Nothing committed: resume after what this subscription delivered.
            request.from_offset = max(request.from_offset, self._next_offset)
        address = self._transport.addresses[self._pos]
        metadata = (
            (MIN_SEQ_METADATA_KEY, str(self._transport.last_sequence)),
            *self._transport._metadata,
        )
        callable_ = self._transport._channels.stream_callable(address, self._rpc)
        return callable_(request, metadata=metadata)

    def _failed(self, err: grpc.RpcError) -> None:
        code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = (err.details() if isinstance(err, grpc.Call) else str(err)) or ""
        if self._closed.is_set() or self._transport.closed.is_set():
            self._closed.set()
            return
        trailers = err.trailing_metadata() if isinstance(err, grpc.Call) else None
        info = error_details(trailers)
        if code == grpc.StatusCode.OUT_OF_RANGE:
            oldest = _parse_int(_metadata_value(trailers, OLDEST_OFFSET_METADATA_KEY))
            if oldest is not None:
                raise StreamGapError(code, details, oldest, info.reason) from None
        if code not in _REOPEN_CODES:
            raise error_for_status(
                code, details, op=self._rpc.name, reason=info.reason, leader=info.leader
            ) from None
        self._reopen(code, details)

    def _reopen(self, code: grpc.StatusCode, details: str) -> None:
        """Moves to the next replica after a pause (backing off while none serves)."""
        address = self._transport.addresses[self._pos]
        _log.info("%s on %s ended (%s: %s); reopening", self._rpc.name, address, code.name, details)
        if self._call is not None:
            self._call.cancel()
        self._call = None
        self._pos = (self._pos + 1) % len(self._transport.addresses)
        self._closed.wait(random.uniform(self._backoff / 2.0, self._backoff))
        self._backoff = min(self._backoff * 2.0, _BACKOFF_MAX_S)


class Consumer:
    """A handler run per record of a subscription in a thread of its own (see
    ``consume_events``); ``stop()`` ends it, ``error`` holds what stopped it otherwise."""

    def __init__(
        self, open_subscription: Callable[[], Subscription], handler: Callable[[Delivery], Any]
    ) -> None:
        self._open = open_subscription
        self._handler = handler
        self._stop = threading.Event()
        self._sub: Subscription | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="orchestrator-consumer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = 10.0) -> None:
        self._stop.set()
        sub = self._sub
        if sub is not None:
            sub.close()
        self._thread.join(timeout_s)

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    @property
    def address(self) -> str | None:
        """The replica the consumer's stream is read from (None before it opened)."""
        sub = self._sub
        return None if sub is None else sub.address

    def _run(self) -> None:
        backoff = _BACKOFF_INITIAL_S
        while not self._stop.is_set():
            self._sub = sub = self._open()
            try:
                backoff = self._drain(sub, backoff)
            except OrchestratorError as err:
                # A gap, a bad argument, a denied call: reopening would fail the same way.
                self.error = err
                return
            finally:
                sub.close()

    def _drain(self, sub: Subscription, backoff: float) -> float:
        """Handles records until the subscription ends or a handler (or its ack) fails; the
        backoff to use after a failure."""
        while not self._stop.is_set():
            try:
                delivery = next(sub)
            except StopIteration:
                return backoff
            try:
                self._handler(delivery)
                delivery.ack()
            except Exception:
                # At least once: not acked, the record comes again from the group's offset.
                _log.exception("consumer handler failed; the record will be delivered again")
                self._stop.wait(backoff)
                return min(backoff * 2.0, _BACKOFF_MAX_S)
            backoff = _BACKOFF_INITIAL_S
        return backoff


class StreamCalls:
    """SubscriptionService, as methods of OrchestratorClient."""

    _transport: Transport

    def subscribe_events(
        self,
        group: str = "",
        *,
        from_offset: int = 0,
        names: Sequence[str] = (),
        max_in_flight: int = 0,
        auto_ack: bool = True,
    ) -> Subscription:
        """The event log from max(``from_offset``, the group's committed offset + 1) on, as an
        endless iterator of :class:`Delivery` (see the module docstring for acks and
        failover). ``from_offset`` 0 for a group without a committed offset: from the oldest
        kept. ``max_in_flight``: records delivered and not acked, at most (0: 100).

        Raises (while iterating):
            StreamGapError: The next records were dropped by retention before delivery.
            OrchestratorError: A bad argument (INVALID_ARGUMENT) or a denied call.
        """
        request = events_pb2.SubscribeEventsRequest(
            group=group, from_offset=from_offset, names=list(names), max_in_flight=max_in_flight
        )
        return Subscription(self._transport, "events", request, event_dict, auto_ack)

    def watch_workflows(
        self,
        group: str = "",
        *,
        from_offset: int = 0,
        names: Sequence[str] = (),
        statuses: Sequence[str] = (),
        correlation_id: str = "",
        max_in_flight: int = 0,
        auto_ack: bool = True,
    ) -> Subscription:
        """Every change of a workflow's status (start, end, pause...) from the change feed,
        filtered by definition names, statuses and correlation id; as subscribe_events."""
        request = events_pb2.WatchWorkflowsRequest(
            group=group,
            from_offset=from_offset,
            names=list(names),
            statuses=list(statuses),
            correlation_id=correlation_id,
            max_in_flight=max_in_flight,
        )
        return Subscription(self._transport, "workflows", request, _change, auto_ack)

    def consume_events(
        self, group: str, handler: Callable[[Delivery], Any], **subscribe: Any
    ) -> Consumer:
        """Runs ``handler(delivery)`` for each event in a thread, acking after it returns (at
        least once); keyword arguments as subscribe_events (auto_ack aside)."""
        return Consumer(lambda: self.subscribe_events(group, auto_ack=False, **subscribe), handler)

    def consume_workflow_changes(
        self, group: str, handler: Callable[[Delivery], Any], **watch: Any
    ) -> Consumer:
        """As consume_events, over watch_workflows."""
        return Consumer(lambda: self.watch_workflows(group, auto_ack=False, **watch), handler)

    def get_consumer_group(self, stream: str, group: str) -> dict[str, int]:
        """{"committed", "last_offset", "oldest_offset"} of a group on "events" or "workflows"."""
        response = self._transport.invoke(
            events_pb2.GetConsumerGroupRequest(stream=stream, group=group),
            events_pb2.GetConsumerGroupResponse,
            timeout_s=None,
            retry_budget_s=None,
        )
        return consumer_group_dict(response)


def consumer_group_dict(response: events_pb2.GetConsumerGroupResponse) -> dict[str, int]:
    """A GetConsumerGroup answer as StreamCalls.get_consumer_group returns it (also the
    asyncio client's)."""
    return {
        "committed": response.committed,
        "last_offset": response.last_offset,
        "oldest_offset": response.oldest_offset,
    }
