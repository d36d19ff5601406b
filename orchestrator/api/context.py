"""What every servicer shares: the replica, the dispatcher, and channels to the other replicas."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import grpc

from ..replication.api import Member, Replica
from ..runtime.dispatcher import Dispatcher
from . import identity
from .auth import AUTHORIZATION_KEY, PRINCIPAL_KEY, ROLE_KEY
from .errors import Leader

# Called with (command name, request id) once a command this replica proposed is committed,
# before the reply leaves (the fault tests' failpoints; nothing in production).
AfterCommit = Callable[[str, str], None]


def _nothing_after_commit(cmd_name: str, request_id: str) -> None:
    return None


class HistoryReader(Protocol):
    """What the API reads of this replica's durable history (orchestrator/history/search.py's
    History); None on a replica without one (memory only)."""

    def search(self, replica: Replica, q: Any, min_seq: int = 0) -> Any: ...

    def get_doc(self, workflow_id: str, min_seq: int = 0) -> dict[str, Any] | None: ...

    def seq(self) -> int: ...


class NodeContext:
    def __init__(
        self,
        node_id: str,
        replica: Replica,
        dispatcher: Dispatcher,
        after_commit: AfterCommit | None = None,
        peer_credentials: grpc.ChannelCredentials | None = None,
        forward_token: str = "",
        history: HistoryReader | None = None,
    ) -> None:
        """`peer_credentials`: TLS towards the other replicas (None: plaintext);
        `forward_token`: the replica credential every call to a peer carries (api/auth.py);
        `history`: this replica's durable history (may also be set later, before serving)."""
        self.node_id = node_id
        self.replica = replica
        self.history = history
        self.dispatcher = dispatcher
        self.after_commit = after_commit or _nothing_after_commit
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        self._peer_credentials = peer_credentials
        self._as_caller = _AsCaller(forward_token)

    def channel(self, grpc_addr: str) -> grpc.Channel:
        with self._lock:
            ch = self._channels.get(grpc_addr)
            if ch is None:
                options = [
                    ("grpc.keepalive_time_ms", 10_000),
                    ("grpc.keepalive_timeout_ms", 5_000),
                    ("grpc.enable_retries", 0),
                    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ]
                creds = self._peer_credentials
                base = (
                    grpc.insecure_channel(grpc_addr, options=options)
                    if creds is None
                    else grpc.secure_channel(grpc_addr, creds, options=options)
                )
                ch = grpc.intercept_channel(base, self._as_caller)
                self._channels[grpc_addr] = ch
            return ch

    @property
    def peers(self) -> list[Member]:
        return self.replica.members()

    def me(self) -> Member | None:
        return next((p for p in self.peers if p.node_id == self.node_id), None)

    def leader_peer(self) -> Member | None:
        addr = self.replica.leader_addr()
        if not addr:
            return None
        return next((p for p in self.peers if p.raft == addr), None)

    def leader(self) -> Leader | None:
        """The leader to name in an error (errors.py), when one is known."""
        peer = self.leader_peer()
        if peer is None:
            return None
        return Leader(peer.grpc, peer.node_id, here=peer.node_id == self.node_id)

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class _AsCaller(grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Every call to a peer carries the replica credential and, when there is one, the
    principal of the call this thread serves: the leader judges a forwarded call as its
    original caller's (api/auth.py), and binds a forwarded poll's leases to that caller."""

    def __init__(self, forward_token: str) -> None:
        self._auth = ((AUTHORIZATION_KEY, f"Bearer {forward_token}"),) if forward_token else ()

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        who = identity.current()
        asserted = ((PRINCIPAL_KEY, who.name), (ROLE_KEY, who.role)) if who.name else ()
        md = (*(details.metadata or ()), *self._auth, *asserted)
        return continuation(
            _Details(
                details.method,
                details.timeout,
                md,
                details.credentials,
                details.wait_for_ready,
                details.compression,
            ),
            request,
        )
