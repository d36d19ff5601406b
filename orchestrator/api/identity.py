"""Who is calling: the authenticated principal of the RPC being served.

The authentication interceptor (api/auth.py) sets it for the duration of a call; servicers read
it to bind what they propose to the caller (a task's lease is owned by the principal that took
it). A ContextVar, because gRPC's Python server runs an interceptor's wrapper and the handler in
the same thread but gives them no shared per-call object of ours.

`""` means no authentication is configured (an `--insecure` cluster without tokens): then
nothing is bound to a caller and every caller may do everything.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    name: str  # the token's or certificate's identity; "" when unauthenticated
    role: str  # admin | operator | worker | reader; "" when unauthenticated


ANONYMOUS = Principal("", "")

_current: ContextVar[Principal] = ContextVar("orchestrator_principal", default=ANONYMOUS)


def current() -> Principal:
    return _current.get()


def set_current(principal: Principal) -> object:
    """Sets the caller for this thread's call; returns the token reset_current() takes."""
    return _current.set(principal)


def reset_current(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
