"""The one table that maps state-machine rejections and replication failures to gRPC status."""

from __future__ import annotations

import grpc

from ..core.errors import Code

CODE_TO_STATUS: dict[Code, grpc.StatusCode] = {
    Code.OK: grpc.StatusCode.OK,
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Code.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.INTERNAL: grpc.StatusCode.INTERNAL,
}

LEADER_KEY = "x-orchestrator-leader"
SEQ_KEY = "x-orchestrator-seq"
MIN_SEQ_KEY = "x-orchestrator-min-seq"
RETRY_AFTER_KEY = "x-orchestrator-retry-after-ms"
FORWARDED_KEY = "x-orchestrator-forwarded"


class ApiError(Exception):
    def __init__(
        self, status: grpc.StatusCode, message: str, trailers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.trailers = trailers


def invalid(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message)
