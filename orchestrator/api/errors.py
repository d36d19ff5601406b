"""The one table that maps state-machine rejections and replication failures to gRPC status."""

from __future__ import annotations

import grpc
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

Trailers = tuple[tuple[str, str], ...]

# Backpressure: how long a client waits before retrying an overloaded leader.
_RETRY_LATER: Trailers = ((RETRY_AFTER_KEY, "200"),)

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


class ApiError(Exception):
    def __init__(self, status: grpc.StatusCode, message: str, trailers: Trailers = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.trailers = trailers


def invalid(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message)


def outcome_error(
    outcome: Outcome, leader: Trailers = (), *, epoch_fenced: bool = False
) -> ApiError:
    """A rejected command's status. A command the leader's runtime stamps with its epoch (a
    poll: `epoch_fenced`) is rejected FAILED_PRECONDITION only for a stale epoch: leadership
    moved, which the caller sees as UNAVAILABLE with the leader hint."""
    if epoch_fenced and outcome.code is Code.FAILED_PRECONDITION:
        return ApiError(grpc.StatusCode.UNAVAILABLE, outcome.message, leader)
    return ApiError(CODE_TO_STATUS.get(outcome.code, grpc.StatusCode.INTERNAL), outcome.message)


def item_status(status: grpc.StatusCode, message: str) -> tpb.ItemStatus:
    """One item's verdict in a batch answer (the gRPC status code as a number)."""
    return tpb.ItemStatus(code=status.value[0], message=bounded(message))


def outcome_status(outcome: Outcome) -> tpb.ItemStatus:
    if outcome.ok:
        return tpb.ItemStatus()
    err = outcome_error(outcome)
    return item_status(err.status, err.message)


def proposal_error(exc: ProposalError, leader: Trailers) -> ApiError:
    """Why a proposal has no outcome: overload (retry later), or not (known to be) applied
    (retry with the same request id, on the leader the trailers name)."""
    if isinstance(exc, Overloaded):
        return ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"overloaded: {exc}", _RETRY_LATER)
    if isinstance(exc, MembershipIncomplete):
        return ApiError(grpc.StatusCode.UNAVAILABLE, str(exc), leader)
    what = "outcome unknown" if isinstance(exc, OutcomeUnknown) else "not applied"
    return ApiError(
        grpc.StatusCode.UNAVAILABLE, f"{what}: {exc}; retry with the same request_id", leader
    )


def not_committed_in_time(leader: Trailers) -> ApiError:
    return ApiError(
        grpc.StatusCode.UNAVAILABLE,
        "outcome unknown: not committed in time; retry with the same request_id",
        leader,
    )


def no_leader(leader: Trailers) -> ApiError:
    return ApiError(
        grpc.StatusCode.UNAVAILABLE, "no ready leader known to this replica; retry shortly", leader
    )
