"""ClusterService on the fake replica: membership as one operation with one answer, and status.

Whether a member's id or address is taken is decided in apply (SetMember), not by the servicer;
the Raft step that follows is the fake's, which a test can make fail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from orchestrator_client.v1 import cluster_pb2 as cpb
from orchestrator_client.v1 import cluster_pb2_grpc

from orchestrator.replication.api import NotLeader
from orchestrator.server import ReplicaServer
from tests.cluster_support import wait_for
from tests.fakes import fake_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[ReplicaServer]:  # three configured replicas
    with fake_server(tmp_path_factory.mktemp("cluster"), n=3) as srv:
        yield srv


@pytest.fixture(scope="module")
def stub(server: ReplicaServer) -> Iterator[Any]:
    ch = grpc.insecure_channel(server.grpc_addr)
    yield cluster_pb2_grpc.ClusterServiceStub(ch)
    ch.close()


def rid() -> str:
    return uuid.uuid4().hex


def add(node_id: str, raft: str, request_id: str = "") -> cpb.AddReplicaRequest:
    return cpb.AddReplicaRequest(
        request_id=request_id or rid(),
        node_id=node_id,
        raft_address=raft,
        grpc_address="127.0.0.1:1",
    )


def _members(server: ReplicaServer) -> dict[str, str]:
    return {m.node_id: m.raft for m in server.replica.members()}


def test_a_member_is_committed_and_made_a_voter_in_one_call(
    server: ReplicaServer, stub: Any
) -> None:
    stub.AddReplica(add("n4", "127.0.0.1:4004"))
    assert _members(server)["n4"] == "127.0.0.1:4004"
    assert "127.0.0.1:4004" in server.replica.voters
    stub.RemoveReplica(cpb.RemoveReplicaRequest(request_id=rid(), node_id="n4"))
    assert "n4" not in _members(server)
    assert "127.0.0.1:4004" not in server.replica.voters


def test_a_configured_member_at_another_address_is_refused_in_apply(
    server: ReplicaServer, stub: Any
) -> None:
    before = server.replica.status().log_len
    n2 = _members(server)["n2"]
    with pytest.raises(grpc.RpcError) as info:
        stub.AddReplica(add("n2", "127.0.0.1:4002"))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert f"replica n2 is a member at {n2}" in info.value.details()
    assert server.replica.status().log_len == before + 1, "decided by the committed SetMember"
    assert _members(server)["n2"] == n2


def test_an_address_of_another_member_is_refused(server: ReplicaServer, stub: Any) -> None:
    stub.AddReplica(add("n5", "127.0.0.1:4005"))
    with pytest.raises(grpc.RpcError) as info:
        stub.AddReplica(add("n6", "127.0.0.1:4005"))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "belongs to member n5" in info.value.details()
    stub.RemoveReplica(cpb.RemoveReplicaRequest(request_id=rid(), node_id="n5"))


def test_a_failed_raft_step_says_so_and_a_retry_finishes_it(
    server: ReplicaServer, stub: Any
) -> None:
    server.replica.refuse_voter_change = NotLeader("Raft refused the membership change")
    request_id = rid()
    with pytest.raises(grpc.RpcError) as info:
        stub.AddReplica(add("n7", "127.0.0.1:4007", request_id))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "addresses are committed, but Raft has not added" in info.value.details()
    assert "retry with the same request_id" in info.value.details()
    assert _members(server)["n7"] == "127.0.0.1:4007"
    assert "127.0.0.1:4007" not in server.replica.voters
    stub.AddReplica(add("n7", "127.0.0.1:4007", request_id))
    assert "127.0.0.1:4007" in server.replica.voters
    stub.RemoveReplica(cpb.RemoveReplicaRequest(request_id=rid(), node_id="n7"))


def test_removing_a_non_member_is_not_found(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.RemoveReplica(cpb.RemoveReplicaRequest(request_id=rid(), node_id="n9"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_alias_of_the_leaders_raft_address_is_refused(server: ReplicaServer, stub: Any) -> None:
    # The alias attack: a new node id at the leader's own Raft address and a follower's gRPC
    # address would make the member table and Raft disagree about who leads.
    members = {m.node_id: m for m in server.replica.members()}
    leader, follower = members["n1"], members["n2"]
    request = cpb.AddReplicaRequest(
        request_id=rid(), node_id="alias", raft_address=leader.raft, grpc_address=follower.grpc
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.AddReplica(request)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert f"raft address {leader.raft} belongs to member n1" in info.value.details()
    assert "alias" not in _members(server)
    assert leader.raft not in server.replica.voters, "the leader is not its own peer"


def test_a_follower_grpc_address_under_a_new_id_is_refused(
    server: ReplicaServer, stub: Any
) -> None:
    follower = {m.node_id: m for m in server.replica.members()}["n2"]
    request = cpb.AddReplicaRequest(
        request_id=rid(), node_id="alias", raft_address="127.0.0.1:4099", grpc_address=follower.grpc
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.AddReplica(request)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert f"grpc address {follower.grpc} belongs to member n2" in info.value.details()
    assert "alias" not in _members(server)


def test_removing_an_unknown_alias_is_decided_in_apply_and_changes_nothing(
    server: ReplicaServer, stub: Any
) -> None:
    before_members = _members(server)
    voters = set(server.replica.voters)
    log_len = server.replica.status().log_len
    with pytest.raises(grpc.RpcError) as info:
        stub.RemoveReplica(cpb.RemoveReplicaRequest(request_id=rid(), node_id="alias"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "replica alias is not a member" in info.value.details()
    assert server.replica.status().log_len == log_len + 1, "decided by the committed RemoveMember"
    assert _members(server) == before_members
    assert server.replica.voters == voters
    assert not server.replica.step_down_requested


def test_the_cluster_status_names_every_member(server: ReplicaServer, stub: Any) -> None:
    resp = stub.GetClusterStatus(cpb.GetClusterStatusRequest())
    assert resp.leader_id == "n1"
    by_id = {r.node_id: r for r in resp.replicas}
    assert sorted(by_id) == ["n1", "n2", "n3"]
    assert by_id["n1"].role == "LEADER" and by_id["n1"].serving
    assert by_id["n2"].role == "UNREACHABLE"  # only configured: no process behind it


def test_removing_the_leader_makes_it_step_aside(server: ReplicaServer, stub: Any) -> None:
    try:
        with pytest.raises(grpc.RpcError) as info:
            stub.RemoveReplica(cpb.RemoveReplicaRequest(request_id=rid(), node_id="n1"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "stepping aside" in info.value.details()
        assert server.replica.step_down_requested
    finally:
        server.replica.regain_leadership()
        wait_for(server.replica.leader_ready, 10, "the fake replica to lead again")
