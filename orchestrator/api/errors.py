"""The one table that maps state-machine rejections and replication failures to gRPC status,
and the one place that turns an ApiError into what goes on the wire: the status, the
x-orchestrator trailers, and the structured details (protos/orchestrator/v1/errors.proto lists
every reason and when it is sent)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, NoReturn

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from orchestrator_client.v1 import errors_pb2
from orchestrator_client.v1 import tasks_pb2 as tpb

from ..core.errors import Code
from ..core.machine import Outcome
from ..replication.api import MembershipIncomplete, OutcomeUnknown, Overloaded, ProposalError

CODE_TO_STATUS: dict[Code, grpc.StatusCode] = {
    Code.OK: grpc.StatusCode.OK,
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Code.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Code.INTERNAL: grpc.StatusCode.INTERNAL,
}

LEADER_KEY = "x-orchestrator-leader"
SEQ_KEY = "x-orchestrator-seq"
MIN_SEQ_KEY = "x-orchestrator-min-seq"
RETRY_AFTER_KEY = "x-orchestrator-retry-after-ms"
FORWARDED_KEY = "x-orchestrator-forwarded"
# The standard trailer of a google.rpc.Status (what grpc-status's rpc_status reads).
DETAILS_KEY = "grpc-status-details-bin"
DOMAIN = "orchestrator.v1"

Trailers = tuple[tuple[str, str], ...]

# Backpressure: how long a client waits before retrying an overloaded leader.
RETRY_LATER_MS = 200
# No leader, an unreachable one, a replica behind: about an election's worth of waiting is
# enough for the next attempt to find things changed.
RETRY_SHORTLY_MS = 100

# How much of a caller's input an error message quotes, and how long a whole message may get:
# the message travels as the grpc-message trailer, and a client refuses trailers beyond its
# metadata limit (8 KiB by default), so a 1 MiB bad name must not come back in full.
QUOTE_CHARS = 100
MAX_MESSAGE_CHARS = 1024


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """`value` as an error message may embed it: at most `limit` characters of it, and its
    full length when cut."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def bounded(message: str) -> str:
    """A status message that fits in a trailer and encodes as UTF-8 whatever it embeds (a
    message quoting a lone surrogate would otherwise fail in gRPC as UNKNOWN)."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = f"{message[:MAX_MESSAGE_CHARS]}... ({len(message)} characters)"
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


class Leader(NamedTuple):
    """The leader as a replica names it in an error. `here`: the answering replica itself (not
    ready yet); the trailer names it as before, but no LeaderHint sends the client back."""

    address: str
    replica_id: str
    here: bool = False


class ApiError(Exception):
    """A status to answer with. `reason` is ErrorInfo's (the status code's name when not
    given); `leader` adds the x-orchestrator-leader trailer and a LeaderHint; `retry_ms` a
    RetryInfo (and, on RESOURCE_EXHAUSTED, the retry-after trailer); `info` ErrorInfo's
    metadata; `relayed` the leader's own google.rpc.Status, passed on as it came. `trailers`
    holds the x-orchestrator trailers sent with it."""

    def __init__(
        self,
        status: grpc.StatusCode,
        message: str,
        trailers: Trailers = (),
        *,
        reason: str = "",
        leader: Leader | None = None,
        retry_ms: int | None = None,
        info: Mapping[str, str] | None = None,
        relayed: bytes | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or status.name
        self.leader = leader
        self.retry_ms = retry_ms
        self.info = dict(info or {})
        self.relayed = relayed
        extra: Trailers = ((LEADER_KEY, leader.address),) if leader is not None else ()
        if retry_ms is not None and status == grpc.StatusCode.RESOURCE_EXHAUSTED:
            extra += ((RETRY_AFTER_KEY, str(retry_ms)),)
        self.trailers = (*trailers, *extra)

    def details(self) -> bytes:
        """The google.rpc.Status for the grpc-status-details-bin trailer."""
        if self.relayed is not None:
            return self.relayed
        status = status_pb2.Status(code=self.status.value[0], message=bounded(self.message))
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.info)
        packed = [info]
        if self.retry_ms is not None:
            retry = error_details_pb2.RetryInfo()
            retry.retry_delay.FromMilliseconds(self.retry_ms)
            packed.append(retry)
        if self.leader is not None and not self.leader.here:
            packed.append(
                errors_pb2.LeaderHint(
                    address=self.leader.address, replica_id=self.leader.replica_id
                )
            )
        for message in packed:
            any_ = any_pb2.Any()
            any_.Pack(message)
            status.details.append(any_)
        return bytes(status.SerializeToString())


def abort(context: grpc.ServicerContext, err: ApiError, before: Trailers = ()) -> NoReturn:
    """Ends the call with `err`: its status and message, `before` (trailers already meant for
    this answer, e.g. its sequence) and its own trailers, and its details."""
    trailers: tuple[tuple[str, str | bytes], ...] = (
        *before,
        *err.trailers,
        (DETAILS_KEY, err.details()),
    )
    context.set_trailing_metadata(trailers)
    context.abort(err.status, bounded(err.message))
    raise AssertionError("context.abort returned")  # it raises; NoReturn for the type checker


def invalid(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message)


def rejection(code: Code, message: str) -> ApiError:
    """The state machine's rejection (a core Code): reason the code's name, but a limit of the
    replicated state reached is LIMIT_EXCEEDED (retrying will not help, unlike OVERLOADED)."""
    reason = "LIMIT_EXCEEDED" if code is Code.RESOURCE_EXHAUSTED else code.name
    return ApiError(CODE_TO_STATUS.get(code, grpc.StatusCode.INTERNAL), message, reason=reason)


def leader_moved(message: str, leader: Leader | None) -> ApiError:
    """UNAVAILABLE because another replica must serve the call: NOT_LEADER naming it, or
    NO_LEADER (retry shortly) when none is known but this one."""
    if leader is not None and not leader.here:
        return ApiError(grpc.StatusCode.UNAVAILABLE, message, reason="NOT_LEADER", leader=leader)
    return ApiError(
        grpc.StatusCode.UNAVAILABLE,
        message,
        reason="NO_LEADER",
        leader=leader,
        retry_ms=RETRY_SHORTLY_MS,
    )


def outcome_error(
    outcome: Outcome, leader: Leader | None = None, *, epoch_fenced: bool = False
) -> ApiError:
    """A rejected command's status. A command the leader's runtime stamps with its epoch (a
    poll: `epoch_fenced`) is rejected FAILED_PRECONDITION only for a stale epoch: leadership
    moved, which the caller sees as UNAVAILABLE with the leader hint."""
    if epoch_fenced and outcome.code is Code.FAILED_PRECONDITION:
        return leader_moved(outcome.message, leader)
    return rejection(outcome.code, outcome.message)


def item_status(status: grpc.StatusCode, message: str) -> tpb.ItemStatus:
    """One item's verdict in a batch answer (the gRPC status code as a number)."""
    return tpb.ItemStatus(code=status.value[0], message=bounded(message))


def outcome_status(outcome: Outcome) -> tpb.ItemStatus:
    if outcome.ok:
        return tpb.ItemStatus()
    err = outcome_error(outcome)
    return item_status(err.status, err.message)


def overloaded(message: str, retry_ms: int, limit: str = "") -> ApiError:
    return ApiError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        message,
        reason="OVERLOADED",
        retry_ms=retry_ms,
        info={"limit": limit} if limit else None,
    )


def proposal_error(exc: ProposalError, leader: Leader | None) -> ApiError:
    """Why a proposal has no outcome: overload (retry later), or not (known to be) applied
    (retry with the same request id, on the leader named)."""
    if isinstance(exc, Overloaded):
        return overloaded(f"overloaded: {exc}", RETRY_LATER_MS)
    unavailable = grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, MembershipIncomplete):
        return ApiError(unavailable, str(exc), reason="MEMBERSHIP_INCOMPLETE", leader=leader)
    unknown = isinstance(exc, OutcomeUnknown)
    what = "outcome unknown" if unknown else "not applied"
    return ApiError(
        unavailable,
        f"{what}: {exc}; retry with the same request_id",
        reason="OUTCOME_UNKNOWN" if unknown else "NOT_APPLIED",
        leader=leader,
    )


def not_committed_in_time(leader: Leader | None) -> ApiError:
    return ApiError(
        grpc.StatusCode.UNAVAILABLE,
        "outcome unknown: not committed in time; retry with the same request_id",
        reason="OUTCOME_UNKNOWN",
        leader=leader,
    )


def no_leader(leader: Leader | None) -> ApiError:
    return ApiError(
        grpc.StatusCode.UNAVAILABLE,
        "no ready leader known to this replica; retry shortly",
        reason="NO_LEADER",
        leader=leader,
        retry_ms=RETRY_SHORTLY_MS,
    )


def behind(message: str, leader: Leader | None, applied_seq: int, min_seq: int = 0) -> ApiError:
    """This replica cannot serve a read yet (not fresh, not caught up, before min-seq)."""
    info = {"applied_seq": str(applied_seq)}
    if min_seq:
        info["min_seq"] = str(min_seq)
    return ApiError(
        grpc.StatusCode.UNAVAILABLE,
        message,
        ((SEQ_KEY, str(applied_seq)),),  # the trailer says what the metadata says
        reason="REPLICA_BEHIND",
        leader=leader,
        retry_ms=RETRY_SHORTLY_MS,
        info=info,
    )


def leader_unreachable() -> ApiError:
    # No hint: naming a leader that does not answer sends the client to a replica that cannot
    # serve it; an election may be on.
    return ApiError(
        grpc.StatusCode.UNAVAILABLE,
        "this replica cannot reach the leader; retry shortly",
        reason="LEADER_UNREACHABLE",
        retry_ms=RETRY_SHORTLY_MS,
    )


def possibly_stale(message: str, applied_seq: int) -> ApiError:
    return ApiError(
        grpc.StatusCode.NOT_FOUND,
        f"{message} on this replica (a follower at sequence {applied_seq}), which could not "
        "confirm with the leader: it may exist; retry, or send x-orchestrator-min-seq",
        ((SEQ_KEY, str(applied_seq)),),
        reason="POSSIBLY_STALE_READ",
        info={"applied_seq": str(applied_seq)},
    )


def relayed_details(trailers: Any, status: grpc.StatusCode, message: str) -> bytes | None:
    """The google.rpc.Status among a forwarded call's trailers, when it describes the status
    passed on (a code changed on the way, DEADLINE_EXCEEDED to UNAVAILABLE, is not)."""
    for key, value in trailers or ():
        if key == DETAILS_KEY and isinstance(value, bytes):
            try:
                st = status_pb2.Status.FromString(value)
            except DecodeError:
                return None
            if st.code == status.value[0] and st.message == bounded(message):
                return value
    return None
