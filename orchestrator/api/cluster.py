"""ClusterService: this replica's and the cluster's status, and membership changes."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from orchestrator_client.v1 import cluster_pb2 as cpb
from orchestrator_client.v1 import cluster_pb2_grpc

from ..config import HealthSettings
from ..core import commands as C
from ..core import queries
from ..core.machine import Outcome
from ..replication.api import Member
from . import rpc
from . import validation as v
from .context import NodeContext
from .errors import invalid, outcome_error
from .health import serving_state
from .service import ServiceBase, propose_timeout

# How long GetClusterStatus waits for each other replica's own status.
PEER_STATUS_TIMEOUT_S = 1.0

# The shortest history retention SetHistoryRetention accepts.
MIN_RETENTION_MS = 60_000

# A validated membership change, run with the time it may take.
Change = Callable[[float], Outcome]


class ClusterService(ServiceBase, cluster_pb2_grpc.ClusterServiceServicer):
    SERVICE = rpc.CLUSTER

    def __init__(self, node: NodeContext, health: HealthSettings) -> None:
        super().__init__(node)
        self.health = health

    def local_status(self) -> cpb.ReplicaStatus:
        st = self.replica.status()
        me = self.node.me()
        leader = self.node.leader_peer()
        serving, detail = serving_state(self.replica, self.health)
        return cpb.ReplicaStatus(
            node_id=self.node.node_id,
            role=st.role,
            term=st.term,
            applied_sequence=st.applied_sequence,
            grpc_address=me.grpc if me else "",
            raft_address=me.raft if me else "",
            leader_id=leader.node_id if leader else "",
            leader_grpc_address=leader.grpc if leader else "",
            commit_index=st.commit_index,
            raft_log_length=st.log_len,
            serving=serving,
            detail=detail,
            cluster_time_ms=st.cluster_time_ms,
            workflows=st.workflows,
            applied_hash=st.applied_hash,
        )

    def AddReplica(self, request: cpb.AddReplicaRequest, context: grpc.ServicerContext) -> Any:
        def validated() -> Change:
            rid = v.request_id(request.request_id)
            member = Member(
                v.name(request.node_id, "node_id"),
                v.address(request.raft_address, "raft_address"),
                v.address(request.grpc_address, "grpc_address"),
            )
            return lambda timeout_s: self.replica.add_member(rid, member, timeout_s)

        return self._membership(context, request, "AddReplica", validated)

    def RemoveReplica(
        self, request: cpb.RemoveReplicaRequest, context: grpc.ServicerContext
    ) -> Any:
        def validated() -> Change:
            rid = v.request_id(request.request_id)
            nid = v.name(request.node_id, "node_id")
            return lambda timeout_s: self.replica.remove_member(rid, nid, timeout_s)

        return self._membership(context, request, "RemoveReplica", validated)

    def _membership(
        self,
        context: grpc.ServicerContext,
        request: Any,
        method: str,
        validated: Callable[[], Change],
    ) -> Any:
        """One membership change, on the ready leader (a follower forwards it)."""

        def go() -> Any:
            change = validated()
            if not self.replica.leader_ready():
                return self._forward(context, method, request)
            outcome = change(propose_timeout(context))
            if not outcome.ok:
                raise outcome_error(outcome)
            self._set_seq(context, outcome.seq)
            return rpc.response_type(self.SERVICE, method)()

        return self._run(context, go)

    def SetHistoryRetention(
        self, request: cpb.SetHistoryRetentionRequest, context: grpc.ServicerContext
    ) -> Any:
        def build() -> C.Command:
            if request.retention_ms < MIN_RETENTION_MS:
                raise invalid(f"retention_ms: at least {MIN_RETENTION_MS} (one minute)")
            if request.max_workflows < 0:
                raise invalid("max_workflows: must be >= 0 (0 means no bound)")
            return C.SetHistoryRetention(
                request_id=v.request_id(request.request_id),
                retention_ms=request.retention_ms,
                max_workflows=request.max_workflows,
            )

        return self._mutate(
            context,
            request,
            "SetHistoryRetention",
            build,
            lambda o: cpb.SetHistoryRetentionResponse(settings=_settings_pb(o.result)),
        )

    def GetClusterSettings(
        self, request: cpb.GetClusterSettingsRequest, context: grpc.ServicerContext
    ) -> Any:
        return self._read(
            context,
            lambda st: cpb.GetClusterSettingsResponse(settings=_settings_pb(queries.settings(st))),
        )

    def GetReplicaStatus(
        self, request: cpb.GetReplicaStatusRequest, context: grpc.ServicerContext
    ) -> Any:
        return self._run(context, self.local_status)

    def GetClusterStatus(
        self, request: cpb.GetClusterStatusRequest, context: grpc.ServicerContext
    ) -> Any:
        def go() -> Any:
            peers = self.node.peers
            with ThreadPoolExecutor(max_workers=max(1, len(peers))) as pool:
                replicas = list(pool.map(self._status_of, peers))
            leader = self.node.leader_peer()
            return cpb.GetClusterStatusResponse(
                replicas=replicas, leader_id=leader.node_id if leader else ""
            )

        return self._run(context, go)

    def _status_of(self, peer: Member) -> cpb.ReplicaStatus:
        if peer.node_id == self.node.node_id:
            return self.local_status()
        stub = cluster_pb2_grpc.ClusterServiceStub(self.node.channel(peer.grpc))
        try:
            resp: cpb.ReplicaStatus = stub.GetReplicaStatus(
                cpb.GetReplicaStatusRequest(), timeout=PEER_STATUS_TIMEOUT_S
            )
            return resp
        except grpc.RpcError as err:
            return cpb.ReplicaStatus(
                node_id=peer.node_id,
                role="UNREACHABLE",
                grpc_address=peer.grpc,
                raft_address=peer.raft,
                detail=f"{err.code().name}: {err.details()}",
            )


def _settings_pb(settings: dict[str, Any]) -> cpb.ClusterSettings:
    return cpb.ClusterSettings(
        history_retention_ms=settings["history_retention_ms"],
        history_max_workflows=settings["history_max_workflows"],
    )
