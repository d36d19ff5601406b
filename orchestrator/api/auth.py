"""Who may call what: the server interceptor that authenticates every call and checks the
permission table (security/permissions.py) before the handler runs.

A caller is known by a bearer token (`authorization: Bearer <token>` metadata, looked up in
security/tokens.py) or, under mutual TLS, by its verified certificate's CN or SAN when the
tokens file maps that subject to a role. The principal is set for the handler's duration
(api/identity.py), so servicers bind what they propose to it (a task's lease).

Replicas forward calls to the leader on behalf of their callers. A follower authenticates with
the replica credential (security/tokens.forward_token, derived from the Raft password) and
asserts the original caller in PRINCIPAL_KEY/ROLE_KEY; the leader honours those two keys only
with that credential, so a forwarded call is judged as its original caller's. The credential
without an assertion (a replica's own status calls) is a reader.

The health check is open (probes carry no credentials). Tokens are never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

from ..security.permissions import (
    INTERNAL,
    OPEN,
    READER,
    REPLICA_ROLE,
    ROLES,
    allowed_roles,
    method_name,
)
from ..security.tokens import TokenStore
from . import identity, rpc
from .errors import ApiError, abort
from .identity import Principal

AUTHORIZATION_KEY = "authorization"
PRINCIPAL_KEY = "x-orchestrator-principal"
ROLE_KEY = "x-orchestrator-role"
REPLICA = Principal("(replica)", READER)


def bearer(metadata: Any) -> str | None:
    """The bearer token of a call's metadata, or None."""
    for key, value in metadata or ():
        if key == AUTHORIZATION_KEY and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class Authenticator:
    """Decides a call's principal, or why it is refused (an (code, message) pair)."""

    def __init__(self, tokens: TokenStore, forward_token: str) -> None:
        self.tokens = tokens
        self._forward = forward_token.encode("utf-8")

    def principal(
        self, path: str, context: grpc.ServicerContext
    ) -> Principal | tuple[grpc.StatusCode, str]:
        method = method_name(path)
        md = context.invocation_metadata() or ()
        token = bearer(md)
        if token is not None:
            if hmac.compare_digest(token.encode("utf-8"), self._forward):
                who: Principal | None = _asserted(md)
                if who is REPLICA and path in INTERNAL:  # a replica calling for itself
                    who = Principal(REPLICA.name, REPLICA_ROLE)
            else:
                who = self.tokens.by_token(token)
            if who is None:
                return grpc.StatusCode.UNAUTHENTICATED, f"{method}: the bearer token is not valid"
        else:
            who = self.tokens.by_subject(_certificate_identities(context))
            if who is None:
                return (
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"{method} needs credentials: a bearer token in the 'authorization' "
                    "metadata, or a client certificate mapped to a role",
                )
        roles = allowed_roles(path)
        if who.role not in roles:
            need = " or ".join(r for r in ROLES if r in roles) or "a role nobody has"
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method} needs role {need}; {who.name!r} has role {who.role!r}",
            )
        return who


def _asserted(md: Any) -> Principal:
    values = {k: v for k, v in md if k in (PRINCIPAL_KEY, ROLE_KEY) and isinstance(v, str)}
    name, role = values.get(PRINCIPAL_KEY, ""), values.get(ROLE_KEY, "")
    return Principal(name, role) if name and role in ROLES else REPLICA


def _certificate_identities(context: grpc.ServicerContext) -> list[str]:
    auth = context.auth_context() or {}
    names = [*auth.get("x509_common_name", ()), *auth.get("x509_subject_alternative_name", ())]
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps every handler but the open ones: the check runs in the handler's thread, where the
    principal must be set (gRPC runs interceptors on its polling thread)."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        path = handler_call_details.method
        if handler is None or path in OPEN:
            return handler
        return rpc.wrap_handler(handler, self._guard(path))

    def _guard(self, path: str) -> rpc.Guard:
        return rpc.around(lambda _, context: self._enter(path, context), identity.reset_current)

    def _enter(self, path: str, context: grpc.ServicerContext) -> object:
        who = self.authenticator.principal(path, context)
        if not isinstance(who, Principal):
            # No sequence trailer: the interceptor holds no replica (and a refused caller has
            # no write of its own to read).
            abort(context, ApiError(*who))
        return identity.set_current(who)
