"""Rejection codes of the state machine; api/ maps each to one gRPC status."""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    OK = "OK"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    # The caller is not the principal the task is leased to.
    PERMISSION_DENIED = "PERMISSION_DENIED"
    # A bug inside apply: the command was rejected identically on every replica.
    INTERNAL = "INTERNAL"


class Rejected(Exception):
    """Raised inside apply to reject a command; never escapes the machine."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> Rejected:
    return Rejected(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> Rejected:
    return Rejected(Code.NOT_FOUND, message)


def already_exists(message: str) -> Rejected:
    return Rejected(Code.ALREADY_EXISTS, message)


def denied(message: str) -> Rejected:
    return Rejected(Code.PERMISSION_DENIED, message)


def precondition(message: str) -> Rejected:
    return Rejected(Code.FAILED_PRECONDITION, message)


class TaskCannotRun(Exception):
    """Scheduling a task is impossible (bad input at run time): the task fails terminally."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
