"""ClusterService: this replica's and the cluster's status, and membership changes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from orchestrator_client.v1 import cluster_pb2 as cpb
from orchestrator_client.v1 import cluster_pb2_grpc

from ..config import HealthSettings
from ..replication.api import Member
from . import rpc
from . import validation as v
from .context import NodeContext
from .errors import outcome_error
from .health import serving_state
from .service import ServiceBase, propose_timeout

# How long GetClusterStatus waits for each other replica's own status.
PEER_STATUS_TIMEOUT_S = 1.0


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
        def go() -> Any:
            rid = v.request_id(request.request_id)
            member = Member(
                v.name(request.node_id, "node_id"),
                v.address(request.raft_address, "raft_address"),
                v.address(request.grpc_address, "grpc_address"),
            )
            if not self.replica.leader_ready():
                return self._forward(context, "AddReplica", request)
            outcome = self.replica.add_member(rid, member, propose_timeout(context))
            if not outcome.ok:
                raise outcome_error(outcome)
            self._set_seq(context, outcome.seq)
            return cpb.AddReplicaResponse()

        return self._run(context, go)

    def RemoveReplica(
        self, request: cpb.RemoveReplicaRequest, context: grpc.ServicerContext
    ) -> Any:
        def go() -> Any:
            rid = v.request_id(request.request_id)
            nid = v.name(request.node_id, "node_id")
            if not self.replica.leader_ready():
                return self._forward(context, "RemoveReplica", request)
            outcome = self.replica.remove_member(rid, nid, propose_timeout(context))
            if not outcome.ok:
                raise outcome_error(outcome)
            self._set_seq(context, outcome.seq)
            return cpb.RemoveReplicaResponse()

        return self._run(context, go)

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
