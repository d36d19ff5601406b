"""How a call reaches the cluster: attempts, retries, failover, sequence tracking, history.

* A replica that cannot serve answers UNAVAILABLE, possibly naming the leader (the LeaderHint
  detail, else the x-orchestrator-leader trailer: _details); the call follows that hint, else
  rotates through the configured addresses (see _routing).
* RESOURCE_EXHAUSTED is backpressure; the call waits the server's delay (RetryInfo, else the
  retry-after trailer), or backs off.
* Each response names the replica's applied sequence number; the highest seen so far goes with
  every later call, so a read after a write sees that write (read-your-writes).
* The caller gives each logical call one request id, reused on every attempt, so the server
  applies it at most once and a retry returns the first outcome.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar, cast

import grpc
import grpc.aio
from google.protobuf.message import Message

from orchestrator_client._channels import ChannelPool
from orchestrator_client._codec import new_request_id
from orchestrator_client._details import (
    LEADER_METADATA_KEY,
    RETRY_AFTER_METADATA_KEY,
    ErrorDetails,
    error_details,
)

# Re-exported for _streams: one reading of trailer values for the whole client.
from orchestrator_client._details import _metadata_value as _metadata_value
from orchestrator_client._details import _parse_int as _parse_int
from orchestrator_client._routing import Route, Router, parse_addresses
from orchestrator_client._rpc import Rpc, rpc_of
from orchestrator_client.errors import (
    LIMIT_EXCEEDED,
    OrchestratorError,
    ResourceExhaustedError,
    UnavailableError,
    error_for_status,
)

__all__ = [
    "LEADER_METADATA_KEY",
    "MIN_SEQ_METADATA_KEY",
    "RETRY_AFTER_METADATA_KEY",
    "SEQ_METADATA_KEY",
    "Attempts",
    "MetadataLike",
    "Recorder",
    "Transport",
    "TransportCore",
    "checked",
    "failure_of",
]

_log = logging.getLogger("orchestrator_client")

SEQ_METADATA_KEY: Final = "x-orchestrator-seq"
MIN_SEQ_METADATA_KEY: Final = "x-orchestrator-min-seq"

# Every mutating call carries one request id on all its attempts and the server applies it at
# most once, so retrying is safe whenever the outcome is open: also when a replica that is
# shutting down or was killed mid-call ends it with CANCELLED or UNKNOWN ("Stream removed").
_RETRYABLE_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
    }
)
_STATUS_BY_NUMBER: Final = {c.value[0]: c for c in grpc.StatusCode}

_NO_DETAILS: Final = ErrorDetails()
_BACKOFF_INITIAL_S: Final = 0.05
_BACKOFF_MAX_S: Final = 1.0
# UNAVAILABLE is mostly an election (0.3-0.6 s with pre-vote): a longer pause outlasts it.
_UNAVAILABLE_BACKOFF_MAX_S: Final = 0.25
# Below this, an attempt could not even complete a round trip; treat the budget as spent.
_MIN_ATTEMPT_S: Final = 0.005

Recorder = Callable[[str, str, str, Any], None]
"""``recorder(event, op, request_id, detail)``; see :class:`OrchestratorClient`."""

MetadataLike = Sequence[tuple[str, str]] | Mapping[str, str]

_RespT = TypeVar("_RespT", bound=Message)
_Trailers = tuple[tuple[str, str | bytes], ...]


def _is_retryable(code: grpc.StatusCode, details: str, reason: str | None = None) -> bool:
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and (
        "larger than max" in details or reason == LIMIT_EXCEEDED
    ):
        # grpc's own message-size limit, or a limit of the replicated state, not backpressure:
        # every retry would fail the same way.
        return False
    return code in _RETRYABLE_CODES


def _normalize_metadata(metadata: MetadataLike | None) -> tuple[tuple[str, str], ...]:
    if metadata is None:
        return ()
    items = metadata.items() if isinstance(metadata, Mapping) else metadata
    out: list[tuple[str, str]] = []
    for key, value in items:
        lowered = key.lower()
        if lowered == MIN_SEQ_METADATA_KEY:
            raise ValueError(f"metadata key {key!r} is managed by the client")
        # grpc rejects upper-case keys at call time; failing at construction is clearer.
        out.append((lowered, value))
    return tuple(out)


def _retry_delay(
    code: grpc.StatusCode, retry_delay: float | None, backoff: float
) -> tuple[float, float]:
    """(pause before the next attempt, the backoff after it) when no hint is followed."""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_delay is not None:
        # Honour the server's delay, with a little jitter so a crowd of throttled clients does
        # not come back in lockstep.
        return retry_delay * random.uniform(1.0, 1.2), backoff
    cap = _UNAVAILABLE_BACKOFF_MAX_S if code == grpc.StatusCode.UNAVAILABLE else _BACKOFF_MAX_S
    return random.uniform(backoff / 2.0, backoff), min(backoff * 2.0, cap)


def failure_of(
    err: grpc.RpcError, closed: threading.Event
) -> tuple[grpc.StatusCode, str, _Trailers]:
    """(code, details, trailing metadata) of a failed attempt, sync or asyncio."""
    if isinstance(err, grpc.aio.AioRpcError):
        code = err.code() or grpc.StatusCode.UNKNOWN
        details = err.details() or ""
        # grpc.aio.Metadata iterates (key, value) pairs; its stub says Mapping.
        pairs = cast(Iterable[tuple[str, str | bytes]], err.trailing_metadata() or ())
        trailers: _Trailers = tuple(pairs)
    elif isinstance(err, grpc.Call):
        code = err.code() or grpc.StatusCode.UNKNOWN
        details = err.details() or ""
        trailers = tuple(err.trailing_metadata() or ())
    else:
        code, details, trailers = grpc.StatusCode.UNKNOWN, str(err), ()
    if code == grpc.StatusCode.CANCELLED and closed.is_set():
        details = details or "client closed"
    return code, details, trailers


def checked(rpc: Rpc, response: object, response_type: type[_RespT]) -> _RespT:
    # The table's response type (the deserializer's) must be what the caller reads.
    if not isinstance(response, response_type):
        raise TypeError(
            f"{rpc.name}: expected {response_type.__name__}, got {type(response).__name__}"
        )
    return response


class Attempts:
    """The retry plan of one logical call, without I/O: where each attempt goes, with which
    deadline, and after a failure either the pause before the next one or the error to raise.
    The sync and asyncio transports drive it with their own attempts and sleeps.
    """

    def __init__(
        self,
        route: Route,
        rpc: Rpc,
        request_id: str,
        attempt_timeout: float,
        budget: float,
        closed: threading.Event,
    ) -> None:
        # Retries may start until the budget is spent; the first attempt always gets its full
        # deadline, so a budget shorter than one attempt (or zero) means "no retries" rather
        # than "no time".
        self._retry_deadline = time.monotonic() + budget
        self.route = route
        self._rpc = rpc
        self._request_id = request_id
        self._attempt_timeout = attempt_timeout
        self._timeout = attempt_timeout
        self._closed = closed
        self._backoff = _BACKOFF_INITIAL_S
        self._attempts = 0
        self._address = route.address
        self._pending: tuple[str, float] | None = None

    def next(self) -> tuple[str, float]:
        """(address, deadline) of the next attempt."""
        if self._pending is not None:
            self.route.address, self._timeout = self._pending
            self._pending = None
        self._attempts += 1
        self._address = self.route.address
        return self._address, self._timeout

    def failed(self, code: grpc.StatusCode, details: str, trailers: _Trailers) -> float:
        """After the attempt failed with ``code``: the pause before the next attempt.

        Raises:
            OrchestratorError: The call is over (a definite answer, or no budget left).
        """
        closed = code == grpc.StatusCode.CANCELLED and self._closed.is_set()
        info = error_details(trailers)
        make: Callable[..., OrchestratorError]
        if closed or not _is_retryable(code, details, info.reason):
            # The replica answered, so it is healthy: keep routing to it.
            self.route.answered()
            make = error_for_status
        else:
            _log.debug(
                "%s attempt %d to %s failed with %s: %s",
                self._rpc.name,
                self._attempts,
                self._address,
                code.name,
                details,
            )
            next_address, hinted = self.route.next_address(info.leader)
            delay = 0.0
            if not hinted:
                delay, self._backoff = _retry_delay(code, info.retry_delay, self._backoff)
            remaining = self._retry_deadline - time.monotonic() - delay
            if next_address is not None and remaining >= _MIN_ATTEMPT_S:
                self._pending = (next_address, min(self._attempt_timeout, remaining))
                return delay
            exhausted = code == grpc.StatusCode.RESOURCE_EXHAUSTED
            make = ResourceExhaustedError if exhausted else UnavailableError
        raise self._error(make, code, details, info)

    def closed_during_retries(self) -> OrchestratorError:
        """The error of a call whose client was closed while it waited to retry."""
        return self._error(
            OrchestratorError, grpc.StatusCode.CANCELLED, "client closed during retries"
        )

    def _error(
        self,
        make: Callable[..., OrchestratorError],
        code: grpc.StatusCode,
        details: str,
        info: ErrorDetails = _NO_DETAILS,
    ) -> OrchestratorError:
        return make(
            code,
            details,
            op=self._rpc.name,
            request_id=self._request_id,
            attempts=self._attempts,
            address=self._address,
            **info._asdict(),
        )


class TransportCore:
    """What the sync and asyncio transports share, none of it I/O: deadlines, routing,
    sequence tracking, the recorder.

    ``timeout_s`` and ``retry_budget_s`` are the client's defaults; ``closed`` is set by
    ``close()`` and wakes calls sleeping between retries.
    """

    def __init__(
        self,
        addresses: Sequence[str] | str,
        *,
        timeout_s: float,
        retry_budget_s: float,
        metadata: MetadataLike | None,
        recorder: Recorder | None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if retry_budget_s < 0:
            raise ValueError("retry_budget_s must not be negative")
        self.addresses = parse_addresses(addresses)
        self.timeout_s = float(timeout_s)
        self.retry_budget_s = float(retry_budget_s)
        self._metadata = _normalize_metadata(metadata)
        self._recorder = recorder
        # An Event rather than a bool so that close() wakes calls sleeping between retries.
        self.closed = threading.Event()
        self._router = Router(self.addresses)
        self._seq_lock = threading.Lock()
        self._max_seq = 0

    @property
    def last_sequence(self) -> int:
        with self._seq_lock:
            return self._max_seq

    def record(self, event: str, op: str, request_id: str, detail: object) -> None:
        recorder = self._recorder
        if recorder is None:
            return
        try:
            recorder(event, op, request_id, detail)
        except Exception:
            _log.exception("recorder raised on %s %s %s", event, op, request_id)

    def record_failed(self, op: str, request_ids: Sequence[str], exc: BaseException) -> None:
        """Records the end of calls that raised: "fail" when the server's answer was definite,
        else "unknown" (whatever else interrupted a call, the server may have applied it)."""
        unknown = not isinstance(exc, OrchestratorError) or exc.outcome_unknown
        for rid in request_ids:
            self.record("unknown" if unknown else "fail", op, rid, exc)

    def begin_batch(
        self,
        request: Message,
        items: Sequence[Message],
        rids: Sequence[str],
        timeout_s: float | None,
        retry_budget_s: float | None,
    ) -> tuple[Rpc, str, float, float]:
        """Opens a batch call (see Transport.invoke_batch): records each item's invoke;
        (the batch's RPC, the items' op name, per-attempt deadline, budget)."""
        rpc = rpc_of(request)
        op = rpc_of(items[0]).name
        attempt_timeout, budget = self._limits(timeout_s, retry_budget_s)
        for rid, item in zip(rids, items, strict=True):
            self.record("invoke", op, rid, item)
        return rpc, op, attempt_timeout, budget

    def settle_batch(
        self, rpc: Rpc, op: str, rids: Sequence[str], answers: Sequence[Any]
    ) -> list[Any]:
        """Per item of an answered batch call, its answer (code 0) or the error for it, each
        recorded; raises (recorded as unknown for every item) when the count does not match."""
        if len(answers) != len(rids):
            mismatch = OrchestratorError(
                grpc.StatusCode.INTERNAL,
                f"{rpc.name} answered {len(answers)} results for {len(rids)} requests",
                op=op,
            )
            for rid in rids:
                self.record("unknown", op, rid, mismatch)
            raise mismatch
        out: list[Any] = []
        for rid, answer in zip(rids, answers, strict=True):
            if answer.code == 0:
                self.record("ok", op, rid, answer)
                out.append(answer)
                continue
            err = error_for_status(
                _STATUS_BY_NUMBER.get(answer.code, grpc.StatusCode.UNKNOWN),
                answer.message,
                op=op,
                request_id=rid,
            )
            self.record("fail", op, rid, err)
            out.append(err)
        return out

    def _limits(self, timeout_s: float | None, retry_budget_s: float | None) -> tuple[float, float]:
        """(per-attempt deadline, overall budget) of a call; refuses a closed client."""
        if self.closed.is_set():
            raise RuntimeError("OrchestratorClient is closed")
        attempt_timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        if attempt_timeout <= 0:
            raise ValueError("timeout_s must be positive")
        budget = self.retry_budget_s if retry_budget_s is None else float(retry_budget_s)
        return attempt_timeout, budget

    def attempts(
        self,
        rpc: Rpc,
        request_id: str,
        attempt_timeout: float,
        budget: float,
        pinned_address: str | None,
    ) -> Attempts:
        """The retry plan of one logical call."""
        route = self._router.route(pinned_address)
        return Attempts(route, rpc, request_id, attempt_timeout, budget, self.closed)

    def call_metadata(self) -> tuple[tuple[str, str], ...]:
        """An attempt's metadata: the highest sequence seen (read-your-writes), then the user's."""
        return ((MIN_SEQ_METADATA_KEY, str(self.last_sequence)), *self._metadata)

    def _observe_sequence(self, trailers: _Trailers) -> None:
        seq = _parse_int(_metadata_value(trailers, SEQ_METADATA_KEY))
        if seq is None:
            return
        with self._seq_lock:
            self._max_seq = max(self._max_seq, seq)


class Transport(TransportCore):
    """The replica-aware, retrying caller under one OrchestratorClient (thread-safe)."""

    def __init__(
        self,
        addresses: Sequence[str] | str,
        *,
        timeout_s: float,
        retry_budget_s: float,
        metadata: MetadataLike | None,
        recorder: Recorder | None,
        credentials: grpc.ChannelCredentials | None,
        channel_options: Sequence[tuple[str, Any]] | None,
    ) -> None:
        super().__init__(
            addresses,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
            metadata=metadata,
            recorder=recorder,
        )
        self._channels = ChannelPool(credentials, channel_options, self.closed)

    def close(self) -> None:
        self.closed.set()
        self._channels.close()

    def invoke(
        self,
        request: Message,
        response_type: type[_RespT],
        request_id: str | None = None,
        *,
        timeout_s: float | None,
        retry_budget_s: float | None,
        pinned_address: str | None = None,
    ) -> _RespT:
        """One logical call of the RPC that takes ``request``, recorded as one operation.

        ``request_id`` is the one in a mutating request; a read gets one for the recorder.
        """
        rid = request_id or new_request_id()
        rpc = rpc_of(request)
        attempt_timeout, budget = self._limits(timeout_s, retry_budget_s)
        self.record("invoke", rpc.name, rid, request)
        try:
            response = self._call_with_retries(
                rpc, request, response_type, rid, attempt_timeout, budget, pinned_address
            )
        except BaseException as exc:
            # The history must not be left with an open invoke.
            self.record_failed(rpc.name, (rid,), exc)
            raise
        self.record("ok", rpc.name, rid, response)
        return response

    def invoke_batch(
        self,
        request: Message,
        response_type: type[_RespT],
        items: Sequence[Message],
        rids: list[str],
        answers_of: Callable[[_RespT], Sequence[Any]],
        *,
        timeout_s: float | None,
        retry_budget_s: float | None,
    ) -> list[Any]:
        """One call carrying several requests (``items``, with ids ``rids``), each recorded as
        an operation of its own RPC (the items of StartWorkflows as StartWorkflow).

        Returns, per item, its answer (code 0) or the error for it. Raises what failed the
        whole call, recorded for every item (a retry of the same call is deduplicated item by
        item, so an item is never applied twice).
        """
        rpc, op, attempt_timeout, budget = self.begin_batch(
            request, items, rids, timeout_s, retry_budget_s
        )
        try:
            response = self._call_with_retries(
                rpc, request, response_type, rids[0], attempt_timeout, budget, None
            )
        except BaseException as exc:
            self.record_failed(op, rids, exc)
            raise
        return self.settle_batch(rpc, op, rids, answers_of(response))

    def _call_with_retries(
        self,
        rpc: Rpc,
        request: Message,
        response_type: type[_RespT],
        request_id: str,
        attempt_timeout: float,
        budget: float,
        pinned_address: str | None,
    ) -> _RespT:
        plan = self.attempts(rpc, request_id, attempt_timeout, budget, pinned_address)
        while True:
            address, timeout = plan.next()
            code, details, trailers, response = self._attempt(
                rpc, request, response_type, address, timeout
            )
            self._observe_sequence(trailers)
            if response is not None:
                plan.route.answered()
                return response
            # Raises when the call is over; else the pause before the next attempt.
            delay = plan.failed(code, details, trailers)
            if delay > 0 and self.closed.wait(delay):
                raise plan.closed_during_retries()

    def _attempt(
        self,
        rpc: Rpc,
        request: Message,
        response_type: type[_RespT],
        address: str,
        timeout: float,
    ) -> tuple[grpc.StatusCode, str, _Trailers, _RespT | None]:
        """Makes one attempt; returns (code, details, trailing metadata, response or None)."""
        try:
            callable_ = self._channels.callable(address, rpc)
            response, call = callable_.with_call(
                request, timeout=max(timeout, _MIN_ATTEMPT_S), metadata=self.call_metadata()
            )
        except grpc.RpcError as err:
            return (*failure_of(err, self.closed), None)
        except ValueError:
            # grpc raises ValueError for a call on a channel that close() just shut.
            if self.closed.is_set():
                return grpc.StatusCode.CANCELLED, "client closed", (), None
            raise
        trailers = tuple(call.trailing_metadata() or ())
        return grpc.StatusCode.OK, "", trailers, checked(rpc, response, response_type)
