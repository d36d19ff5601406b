"""Clean wire answers: undecodable requests are INVALID_ARGUMENT naming the method (no traceback
logged), error messages quote a bounded part of the input, and List RPCs answer in pages."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from orchestrator_client import OrchestratorClient
from orchestrator_client.v1 import cluster_pb2 as cpb
from orchestrator_client.v1 import cluster_pb2_grpc
from orchestrator_client.v1 import definitions_pb2 as dpb
from orchestrator_client.v1 import workflows_pb2 as wpb

from orchestrator.api import rpc
from orchestrator.api.errors import MAX_MESSAGE_CHARS, QUOTE_CHARS, bounded, quote
from orchestrator.server import ReplicaServer
from tests.cluster_support import api_stubs


@pytest.fixture(scope="module")
def channel(server: ReplicaServer) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(server.grpc_addr)
    yield ch
    ch.close()


def _raw(channel: grpc.Channel, service: Any, method: str) -> Any:
    """The method, sending bytes as they are."""
    return channel.unary_unary(
        rpc.path(service, method),
        request_serializer=None,
        response_deserializer=rpc.response_type(service, method).FromString,
    )


GARBAGE = b"\xff\xff\xff\xff"


def _not_utf8(method: Any) -> bytes | None:
    """The request with its first string field holding bytes that are not UTF-8 (None when it
    has no string field)."""
    for field in method.input_type.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            return bytes([field.number << 3 | 2, 2, 0xFF, 0xFE])
    return None


@pytest.mark.parametrize("kind", ["not-utf8", "garbage"])
def test_an_undecodable_request_is_invalid_argument_without_a_logged_traceback(
    channel: grpc.Channel, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    for service in rpc.SERVICES:
        for method, desc in service.methods_by_name.items():
            data = GARBAGE if kind == "garbage" else _not_utf8(desc)
            if data is None:
                continue
            with pytest.raises(grpc.RpcError) as info:
                _raw(channel, service, method)(data, timeout=5)
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, (method, info.value)
            assert info.value.details().startswith(f"{method}: the request is not a valid")
    assert not [r for r in caplog.records if "deserializ" in r.getMessage().lower()]
    # The replica serves on.
    api_stubs(channel).wfs.ListWorkflows(wpb.ListWorkflowsRequest(), timeout=5)


def test_a_huge_bad_value_comes_back_as_a_short_message(channel: grpc.Channel) -> None:
    stub = cluster_pb2_grpc.ClusterServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.AddReplica(
            cpb.AddReplicaRequest(
                request_id="big", node_id="n9", raft_address="x" * 2**20, grpc_address="h:1"
            ),
            timeout=5,
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "raft_address" in info.value.details()
    assert len(info.value.details()) < MAX_MESSAGE_CHARS + 64


def test_quote_and_bounded() -> None:
    assert quote("short") == "short"
    long = quote("y" * 5000)
    assert long.startswith("y" * QUOTE_CHARS + "...") and "5000 characters" in long
    assert len(long) < QUOTE_CHARS + 40
    assert len(bounded("z" * 10**6)) < MAX_MESSAGE_CHARS + 40
    # A lone surrogate (JSON can carry one) must not make the status unsendable.
    assert bounded("bad \udc80 text").encode("utf-8")


# ---- pages of the List RPCs


def _task_defs(stubs: Any, names: list[str]) -> None:
    stubs.defs.RegisterTaskDefs(
        dpb.RegisterTaskDefsRequest(
            request_id=uuid.uuid4().hex, task_def_json=[json.dumps({"name": n}) for n in names]
        ),
        timeout=10,
    )


def _invalid(call: Any) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    return str(info.value.details())


def test_task_defs_come_in_pages_stable_under_concurrent_registrations(
    channel: grpc.Channel,
) -> None:
    stubs = api_stubs(channel)
    _task_defs(stubs, [f"pg_m{i:02}" for i in range(25)])
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = stubs.defs.ListTaskDefs(
            dpb.ListTaskDefsRequest(page_size=10, page_token=token), timeout=5
        )
        seen += [json.loads(t)["name"] for t in page.task_def_json]
        pages += 1
        if pages == 1:  # one before the cursor (not listed), one after it (listed)
            _task_defs(stubs, ["pg_a_before", "pg_z_after"])
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(set(seen))
    mine = [n for n in seen if n.startswith("pg_m")]
    assert mine == [f"pg_m{i:02}" for i in range(25)] and "pg_z_after" in seen
    assert pages > 1
    assert "page_token" in _invalid(
        lambda: stubs.defs.ListTaskDefs(dpb.ListTaskDefsRequest(page_token="nonsense"), timeout=5)
    )
    assert "page_size" in _invalid(
        lambda: stubs.defs.ListTaskDefs(dpb.ListTaskDefsRequest(page_size=1001), timeout=5)
    )


def test_a_page_ends_before_a_megabyte_and_the_client_pages_through(
    server: ReplicaServer, channel: grpc.Channel
) -> None:
    stubs = api_stubs(channel)
    _task_defs(stubs, ["pg_big_t"])
    for version in range(1, 7):
        definition = {
            "name": "pg_big",
            "version": version,
            "description": "d" * (300 * 1024),
            "tasks": [{"name": "pg_big_t", "taskReferenceName": "a"}],
        }
        stubs.defs.RegisterWorkflowDef(
            dpb.RegisterWorkflowDefRequest(
                request_id=uuid.uuid4().hex, definition_json=json.dumps(definition)
            ),
            timeout=10,
        )
    first = stubs.defs.ListWorkflowDefs(dpb.ListWorkflowDefsRequest(), timeout=5)
    assert first.next_page_token and first.ByteSize() < 2 * 1024 * 1024
    with OrchestratorClient([server.grpc_addr], retry_budget_s=10) as client:
        listed = [(d["name"], d["version"]) for d in client.list_workflow_defs()]
        assert [v for n, v in listed if n == "pg_big"] == [1, 2, 3, 4, 5, 6]
        names = [d["name"] for d in client.list_task_defs()]
        assert names == sorted(set(names)) and "pg_big_t" in names


def test_workflows_come_in_pages_newest_first_while_more_start(
    server: ReplicaServer, channel: grpc.Channel
) -> None:
    stubs = api_stubs(channel)
    _task_defs(stubs, ["pg_wf_t"])
    stubs.defs.RegisterWorkflowDef(
        dpb.RegisterWorkflowDefRequest(
            request_id=uuid.uuid4().hex,
            definition_json=json.dumps(
                {"name": "pg_wf", "tasks": [{"name": "pg_wf_t", "taskReferenceName": "a"}]}
            ),
        ),
        timeout=10,
    )

    def start() -> str:
        request = wpb.StartWorkflowRequest(request_id=uuid.uuid4().hex, name="pg_wf")
        return str(stubs.wfs.StartWorkflow(request, timeout=5).workflow_id)

    started = [start() for _ in range(25)]
    listed: list[str] = []
    token = ""
    while True:
        page = stubs.wfs.ListWorkflows(
            wpb.ListWorkflowsRequest(workflow_name="pg_wf", page_size=10, page_token=token),
            timeout=5,
        )
        listed += [w.workflow_id for w in page.workflows]
        start()  # newer than everything listed: never on a later page
        token = page.next_page_token
        if not token:
            break
    assert listed == started[::-1]
    with OrchestratorClient([server.grpc_addr], retry_budget_s=10) as client:
        assert len(client.list_workflows(name="pg_wf", limit=1500)) == 25 + 3
        assert len(client.list_workflows(name="pg_wf", limit=7)) == 7
    assert "status" in _invalid(
        lambda: stubs.wfs.ListWorkflows(wpb.ListWorkflowsRequest(status=99), timeout=5)  # type: ignore[arg-type]
    )
    assert "page_token" in _invalid(
        lambda: stubs.wfs.ListWorkflows(wpb.ListWorkflowsRequest(page_token="W10="), timeout=5)
    )


def test_a_replica_behind_its_leaders_commit_answers_unavailable_not_not_found(
    server: ReplicaServer, channel: grpc.Channel, monkeypatch: Any
) -> None:
    # A follower resumed after a pause is fresh (it heard the leader) before it has applied
    # what that leader committed meanwhile; a read then must not say NOT_FOUND.
    stubs = api_stubs(channel)
    monkeypatch.setattr(server.node.replica, "caught_up", lambda timeout_s: False)
    with pytest.raises(grpc.RpcError) as err:
        stubs.wfs.GetWorkflow(wpb.GetWorkflowRequest(workflow_id="no-such-id"), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "not yet applied what its leader has committed" in (err.value.details() or "")
    monkeypatch.undo()
    with pytest.raises(grpc.RpcError) as err:
        stubs.wfs.GetWorkflow(wpb.GetWorkflowRequest(workflow_id="no-such-id"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
