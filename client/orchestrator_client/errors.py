"""Exceptions raised by the orchestrator client.

Every error the server reports becomes an :class:`OrchestratorError` carrying the gRPC status
code and details, so callers can catch one base class, or the subclass for the one condition
they care about (a missing workflow, a lost lease, an unreachable cluster). The server's
structured details add why (``reason``, e.g. ``"POSSIBLY_STALE_READ"``), when to retry
(``retry_delay``) and where (``leader``): protos/orchestrator/v1/errors.proto lists the reasons.
"""

from __future__ import annotations

import grpc

__all__ = [
    "AlreadyExistsError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "OrchestratorError",
    "ResourceExhaustedError",
    "UnavailableError",
    "error_for_status",
]

# Codes after which the server has definitely not applied the call (or, for a retried call with
# the same request_id, has replayed the first definite outcome). Anything else that is not
# retried (UNKNOWN, INTERNAL, CANCELLED, ...) leaves the outcome open.
_DEFINITE_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.ABORTED,
    }
)


# The reason of a RESOURCE_EXHAUSTED that is a limit of the replicated state (e.g. the number of
# consumer groups), decided by the server: final and definite, unlike backpressure.
LIMIT_EXCEEDED = "LIMIT_EXCEEDED"


class OrchestratorError(Exception):
    """An RPC to the orchestrator failed.

    Attributes:
        code: The gRPC status code of the (last) failed attempt.
        details: The status details the server (or the gRPC runtime) gave.
        op: The RPC method name, e.g. ``"StartWorkflow"``; empty if unknown.
        request_id: The request id of the logical call; empty if unknown.
        attempts: How many attempts were made.
        address: The replica address of the last attempt; empty if unknown.
        reason: The server's reason (ErrorInfo), e.g. ``"NOT_FOUND"`` or
            ``"POSSIBLY_STALE_READ"``; None when it gave none (or the error is the client's).
        retry_delay: The pause in seconds the server suggested before a retry; None if none.
        leader: The leader's address the server named; None if it named none.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        *,
        op: str = "",
        request_id: str = "",
        attempts: int = 1,
        address: str = "",
        reason: str | None = None,
        retry_delay: float | None = None,
        leader: str | None = None,
    ) -> None:
        """Builds the error; see the class docstring for the attributes.

        Args:
            code: The gRPC status code.
            details: The status details.
            op: The RPC method name.
            request_id: The request id of the logical call.
            attempts: How many attempts were made.
            address: The replica address of the last attempt.
            reason: The server's reason for the error.
            retry_delay: The pause in seconds the server suggested before a retry.
            leader: The leader's address the server named.
        """
        self.code = code
        self.details = details
        self.op = op
        self.request_id = request_id
        self.attempts = attempts
        self.address = address
        self.reason = reason
        self.retry_delay = retry_delay
        self.leader = leader
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.op}: " if self.op else ""
        return f"{where}{self.code.name}: {self.details}"

    @property
    def outcome_unknown(self) -> bool:
        """Whether the call may or may not have taken effect on the server.

        Returns:
            False when the server gave a definite answer that nothing was applied (or replayed
            the definite outcome of an earlier attempt); True otherwise.
        """
        return self.code not in _DEFINITE_CODES and self.reason != LIMIT_EXCEEDED

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructor arguments defeat the default pickling of exceptions, which
        # matters to users who ship errors across process pools.
        return (
            _rebuild,
            (
                type(self),
                self.code,
                self.details,
                self.op,
                self.request_id,
                self.attempts,
                self.address,
                self.reason,
                self.retry_delay,
                self.leader,
            ),
        )


def _rebuild(
    cls: type[OrchestratorError],
    code: grpc.StatusCode,
    details: str,
    op: str,
    request_id: str,
    attempts: int,
    address: str,
    reason: str | None = None,
    retry_delay: float | None = None,
    leader: str | None = None,
) -> OrchestratorError:
    return cls(
        code,
        details,
        op=op,
        request_id=request_id,
        attempts=attempts,
        address=address,
        reason=reason,
        retry_delay=retry_delay,
        leader=leader,
    )


class NotFoundError(OrchestratorError):
    """The workflow, task or definition does not exist (NOT_FOUND)."""


class AlreadyExistsError(OrchestratorError):
    """The entity exists already, e.g. an idempotency key is taken (ALREADY_EXISTS)."""


class InvalidArgumentError(OrchestratorError):
    """The server rejected the request as malformed (INVALID_ARGUMENT)."""


class FailedPreconditionError(OrchestratorError):
    """The request does not fit the current state (FAILED_PRECONDITION).

    For task reports and heartbeats: the lease was lost (the task timed out and was
    rescheduled, or was reported already), so the result was not applied.
    """


class UnavailableError(OrchestratorError):
    """The retry budget ran out while no replica could serve the call.

    The call may or may not have taken effect; repeating it with the same ``request_id`` is
    safe for every mutating call.
    """

    def _message(self) -> str:
        where = f"{self.op}: " if self.op else ""
        rid = f", request_id={self.request_id}" if self.request_id else ""
        source = f" from {self.address}" if self.address else ""
        return (
            f"{where}no replica served the call after {self.attempts} attempt(s){rid}; "
            f"last error{source}: {self.code.name}: {self.details}"
        )


class ResourceExhaustedError(UnavailableError):
    """The retry budget ran out while the cluster kept applying backpressure (RESOURCE_EXHAUSTED).

    A subclass of :class:`UnavailableError` because, to a caller, both mean the cluster could not
    take the call in time and it is safe to repeat with the same ``request_id``.
    """


_BY_CODE: dict[grpc.StatusCode, type[OrchestratorError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: UnavailableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
}


def error_for_status(
    code: grpc.StatusCode,
    details: str,
    *,
    op: str = "",
    request_id: str = "",
    attempts: int = 1,
    address: str = "",
    reason: str | None = None,
    retry_delay: float | None = None,
    leader: str | None = None,
) -> OrchestratorError:
    """Builds the exception subclass that matches a gRPC status code.

    Args:
        code: The gRPC status code.
        details: The status details.
        op: The RPC method name.
        request_id: The request id of the logical call.
        attempts: How many attempts were made.
        address: The replica address of the last attempt.
        reason: The server's reason for the error.
        retry_delay: The pause in seconds the server suggested before a retry.
        leader: The leader's address the server named.

    Returns:
        An instance of the most specific :class:`OrchestratorError` subclass for ``code``.
    """
    cls = OrchestratorError if reason == LIMIT_EXCEEDED else _BY_CODE.get(code, OrchestratorError)
    return _rebuild(
        cls, code, details, op, request_id, attempts, address, reason, retry_delay, leader
    )
