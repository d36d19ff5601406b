"""Membership decided in apply: a node id, Raft address or gRPC address taken by another member
(configured or added at run time) is refused, and removing a non-member changes nothing."""

from __future__ import annotations

from orchestrator.core.commands import RemoveMember, SetMember
from orchestrator.core.errors import Code
from tests.core_helpers import Harness, state_without_requests

CONFIGURED = [
    ["n1", "10.0.0.1:4000", "10.0.0.1:5000"],
    ["n2", "10.0.0.2:4000", "10.0.0.2:5000"],
    ["n3", "10.0.0.3:4000", "10.0.0.3:5000"],
]


def set_member(h: Harness, node_id: str, raft: str, grpc: str) -> SetMember:
    return SetMember(
        request_id=h.new_id("member"),
        node_id=node_id,
        raft=raft,
        grpc=grpc,
        configured=CONFIGURED,
    )


def remove(h: Harness, node_id: str) -> RemoveMember:
    return RemoveMember(request_id=h.new_id("rm"), node_id=node_id, configured=CONFIGURED)


def test_an_alias_of_the_leaders_raft_address_is_refused(h: Harness) -> None:
    before = state_without_requests(h.state)
    out = h.apply_one(set_member(h, "alias", "10.0.0.1:4000", "10.0.0.2:5000"))
    assert out.code is Code.ALREADY_EXISTS
    assert out.message == "raft address 10.0.0.1:4000 belongs to member n1"
    assert state_without_requests(h.state) == before


def test_a_grpc_address_of_a_configured_replica_is_refused(h: Harness) -> None:
    out = h.apply_one(set_member(h, "n4", "10.0.0.4:4000", "10.0.0.3:5000"))
    assert out.code is Code.ALREADY_EXISTS
    assert out.message == "grpc address 10.0.0.3:5000 belongs to member n3"


def test_a_configured_id_at_another_address_is_refused(h: Harness) -> None:
    out = h.apply_one(set_member(h, "n2", "10.0.0.9:4000", "10.0.0.9:5000"))
    assert out.code is Code.ALREADY_EXISTS
    assert "replica n2 is a member at 10.0.0.2:4000" in out.message


def test_an_added_members_addresses_are_taken_until_it_is_removed(h: Harness) -> None:
    h.ok(set_member(h, "n4", "10.0.0.4:4000", "10.0.0.4:5000"))
    taken = h.apply_one(set_member(h, "n5", "10.0.0.5:4000", "10.0.0.4:5000"))
    assert taken.code is Code.ALREADY_EXISTS and "belongs to member n4" in taken.message
    h.ok(remove(h, "n4"))
    h.ok(set_member(h, "n5", "10.0.0.5:4000", "10.0.0.4:5000"))


def test_a_removed_configured_replicas_addresses_are_free(h: Harness) -> None:
    h.ok(remove(h, "n3"))
    h.ok(set_member(h, "n6", "10.0.0.3:4000", "10.0.0.3:5000"))


def test_removing_a_non_member_is_not_found_and_changes_nothing(h: Harness) -> None:
    before = state_without_requests(h.state)
    out = h.apply_one(remove(h, "alias"))
    assert out.code is Code.NOT_FOUND and out.message == "replica alias is not a member"
    assert state_without_requests(h.state) == before
    h.ok(remove(h, "n2"))
    again = h.apply_one(remove(h, "n2"))
    assert again.code is Code.NOT_FOUND, "a removed member is no longer one"


def test_a_malformed_configuration_is_refused(h: Harness) -> None:
    cmd = SetMember(request_id="m", node_id="n4", raft="a:1", grpc="a:2", configured=[["n1", "x"]])
    assert h.apply_one(cmd).code is Code.INVALID_ARGUMENT
