"""What a failed attempt's trailers say beyond its code: the structured details (a
google.rpc.Status in ``grpc-status-details-bin``: ErrorInfo's reason, RetryInfo, the LeaderHint;
protos/orchestrator/v1/errors.proto), falling back to the older x-orchestrator trailers for a
server that sends no details.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from orchestrator_client.v1 import errors_pb2

__all__ = [
    "DETAILS_METADATA_KEY",
    "LEADER_METADATA_KEY",
    "RETRY_AFTER_METADATA_KEY",
    "ErrorDetails",
    "error_details",
]

DETAILS_METADATA_KEY: Final = "grpc-status-details-bin"
LEADER_METADATA_KEY: Final = "x-orchestrator-leader"
RETRY_AFTER_METADATA_KEY: Final = "x-orchestrator-retry-after-ms"
_DOMAIN: Final = "orchestrator.v1"

_Pairs = Iterable[tuple[str, str | bytes]] | None


class ErrorDetails(NamedTuple):
    """``reason``: ErrorInfo's (e.g. ``"NOT_LEADER"``); ``retry_delay``: the pause the server
    suggests, in seconds; ``leader``: the address of the replica to ask instead. None when the
    server said nothing of it."""

    reason: str | None = None
    retry_delay: float | None = None
    leader: str | None = None


def _raw_value(metadata: _Pairs, key: str) -> str | bytes | None:
    found: str | bytes | None = None
    for k, v in metadata or ():
        if k.lower() == key:
            found = v  # the last value wins, as with a repeated HTTP header
    return found


def _metadata_value(metadata: _Pairs, key: str) -> str | None:
    found = _raw_value(metadata, key)
    return found.decode("utf-8", "replace") if isinstance(found, bytes) else found


def _parse_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _status(metadata: _Pairs) -> status_pb2.Status | None:
    raw = _raw_value(metadata, DETAILS_METADATA_KEY)
    if not isinstance(raw, bytes):
        return None
    try:
        return status_pb2.Status.FromString(raw)
    except DecodeError:
        return None


def error_details(metadata: _Pairs) -> ErrorDetails:
    """The details of a failed attempt from its trailing metadata."""
    reason: str | None = None
    retry_delay: float | None = None
    leader: str | None = None
    status = _status(metadata)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == _DOMAIN or reason is None:
                reason = str(info.reason) or None
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_delay = max(0.0, float(retry.retry_delay.ToMilliseconds()) / 1000.0)
        elif detail.Is(errors_pb2.LeaderHint.DESCRIPTOR):
            hint = errors_pb2.LeaderHint()
            detail.Unpack(hint)
            leader = hint.address.strip() or None
    if leader is None:
        leader = (_metadata_value(metadata, LEADER_METADATA_KEY) or "").strip() or None
    if retry_delay is None:
        ms = _parse_int(_metadata_value(metadata, RETRY_AFTER_METADATA_KEY))
        retry_delay = max(0.0, ms / 1000.0) if ms is not None else None
    return ErrorDetails(reason, retry_delay, leader)
