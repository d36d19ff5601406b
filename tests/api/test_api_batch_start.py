"""StartWorkflows: several starts in one call, each its own request, and the client's coalescer
that makes a client shared by many threads use it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from orchestrator_client import OrchestratorClient
from orchestrator_client.v1 import workflows_pb2 as wpb
from orchestrator_client.v1 import workflows_pb2_grpc

from tests.cluster_support import History


@pytest.fixture(scope="module", autouse=True)
def definitions(server: Any) -> None:
    c = OrchestratorClient([server.grpc_addr], retry_budget_s=10)
    c.register_task_defs([{"name": "bs_t", "retryCount": 0, "responseTimeoutSeconds": 60}])
    c.register_workflow_def(
        {"name": "bs_flow", "tasks": [{"name": "bs_t", "taskReferenceName": "a"}]}
    )
    c.close()


@pytest.fixture
def stub(server: Any) -> Iterator[Any]:
    channel = grpc.insecure_channel(server.grpc_addr)
    try:
        yield workflows_pb2_grpc.WorkflowServiceStub(channel)
    finally:
        channel.close()


def _req(rid: str, name: str = "bs_flow", **kw: Any) -> wpb.StartWorkflowRequest:
    return wpb.StartWorkflowRequest(request_id=rid, name=name, **kw)


def test_each_start_is_judged_alone_and_a_retry_is_deduplicated(server: Any, stub: Any) -> None:
    request = wpb.StartWorkflowsRequest(
        items=[
            _req("s-0", input_json='{"k": 0}'),
            _req("s-1", name="no_such_flow"),
            _req("s-2", priority=500),
            _req("s-3", input_json='{"k": 3}'),
        ]
    )
    results = stub.StartWorkflows(request, timeout=10).results
    assert [r.code for r in results] == [
        0,
        grpc.StatusCode.NOT_FOUND.value[0],
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        0,
    ]
    assert "no_such_flow" in results[1].message
    assert results[2].message.startswith("items[2].priority:"), results[2].message
    assert results[0].created and results[3].created
    state = server.replica.state
    assert state.workflows[results[0].workflow_id].input == {"k": 0}
    assert state.workflows[results[3].workflow_id].input == {"k": 3}
    # The same batch again (a retry after a lost answer): the same workflows, none started twice.
    before = len(state.workflows)
    again = stub.StartWorkflows(request, timeout=10).results
    assert [r.workflow_id for r in again] == [r.workflow_id for r in results]
    assert [r.code for r in again] == [r.code for r in results]
    assert len(server.replica.state.workflows) == before


@pytest.mark.parametrize("n", [0, 101])
def test_a_batch_must_hold_1_to_100_starts(stub: Any, n: int) -> None:
    request = wpb.StartWorkflowsRequest(items=[_req(f"n-{n}-{i}") for i in range(n)])
    with pytest.raises(grpc.RpcError) as info:
        stub.StartWorkflows(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "items" in (info.value.details() or "")


def test_threads_sharing_a_client_share_calls_and_each_start_is_recorded(server: Any) -> None:
    history = History()
    client = OrchestratorClient([server.grpc_addr], retry_budget_s=10, recorder=history)
    batches: list[int] = []
    send = client._start_batch

    def counting(requests: list[Any]) -> list[Any]:
        batches.append(len(requests))
        return send(requests)

    client._start_batch = counting  # type: ignore[method-assign]
    ids: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(32)

    def starter(i: int) -> None:
        barrier.wait(10)
        for j in range(4):
            wid = client.start_workflow("bs_flow", {"i": i, "j": j})
            with lock:
                ids.append(wid)

    threads = [threading.Thread(target=starter, args=(i,)) for i in range(32)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
    finally:
        client.close()
    assert len(ids) == 128 and len(set(ids)) == 128
    state = server.replica.state
    assert sorted((state.workflows[w].input["i"], state.workflows[w].input["j"]) for w in ids) == [
        (i, j) for i in range(32) for j in range(4)
    ]
    starts = history.by_request("StartWorkflow")
    assert len(starts) == 128 and all(events == ["invoke", "ok"] for events in starts.values())
    # 32 threads starting at once: while one call is in flight the others queue behind it.
    assert batches and max(batches) > 1
