"""What every servicer shares: the replica, the dispatcher, and channels to the other replicas."""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc

from ..replication.api import Member, Replica
from ..runtime.dispatcher import Dispatcher
from .errors import LEADER_KEY, Trailers

# Called with (command name, request id) once a command this replica proposed is committed,
# before the reply leaves (the fault tests' failpoints; nothing in production).
AfterCommit = Callable[[str, str], None]


def _nothing_after_commit(cmd_name: str, request_id: str) -> None:
    return None


class NodeContext:
    def __init__(
        self,
        node_id: str,
        replica: Replica,
        dispatcher: Dispatcher,
        after_commit: AfterCommit | None = None,
    ) -> None:
        self.node_id = node_id
        self.replica = replica
        self.dispatcher = dispatcher
        self.after_commit = after_commit or _nothing_after_commit
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def channel(self, grpc_addr: str) -> grpc.Channel:
        with self._lock:
            ch = self._channels.get(grpc_addr)
            if ch is None:
                ch = grpc.insecure_channel(
                    grpc_addr,
                    options=[
                        ("grpc.keepalive_time_ms", 10_000),
                        ("grpc.keepalive_timeout_ms", 5_000),
                        ("grpc.enable_retries", 0),
                        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                    ],
                )
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

    def leader_trailers(self) -> Trailers:
        peer = self.leader_peer()
        return ((LEADER_KEY, peer.grpc),) if peer is not None else ()

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()
