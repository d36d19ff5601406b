"""Workflow-level limits at the API: a start beyond a definition's limits answers `queued`
(QUEUE) or FAILED_PRECONDITION naming the limit (REJECT); the Workflow view shows QUEUED and
when it started running."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from orchestrator_client import OrchestratorClient
from orchestrator_client.v1 import workflows_pb2 as wpb

from tests.cluster_support import api_stubs


def _limited(name: str, **lim: Any) -> dict[str, Any]:
    return {"name": name, "limits": lim, "tasks": [{"name": "wl_t", "taskReferenceName": "a"}]}


@pytest.fixture(scope="module")
def client(server: Any) -> Iterator[OrchestratorClient]:
    c = OrchestratorClient([server.grpc_addr], retry_budget_s=10)
    c.register_task_defs([{"name": "wl_t", "retryCount": 0, "responseTimeoutSeconds": 60}])
    c.register_workflow_def(_limited("wl_queue", maxRunning=1))
    c.register_workflow_def(_limited("wl_reject", maxRunning=1, whenLimited="REJECT"))
    c.register_workflow_def(_limited("wl_batch", maxRunningPerCorrelationId=1))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def stub(server: Any) -> Iterator[Any]:
    channel = grpc.insecure_channel(server.grpc_addr)
    yield api_stubs(channel).wfs
    channel.close()


def _start(stub: Any, rid: str, name: str, **kw: Any) -> Any:
    return stub.StartWorkflow(wpb.StartWorkflowRequest(request_id=rid, name=name, **kw), timeout=10)


def _get(stub: Any, workflow_id: str) -> Any:
    return stub.GetWorkflow(wpb.GetWorkflowRequest(workflow_id=workflow_id), timeout=10).workflow


def test_a_start_beyond_max_running_answers_queued_and_runs_when_a_slot_frees(
    client: OrchestratorClient, stub: Any
) -> None:
    first = _start(stub, "wl-q-1", "wl_queue")
    second = _start(stub, "wl-q-2", "wl_queue")
    assert first.created and not first.queued
    assert second.created and second.queued
    running, queued = _get(stub, first.workflow_id), _get(stub, second.workflow_id)
    assert running.status == wpb.WORKFLOW_STATUS_RUNNING and running.start_time_ms > 0
    assert queued.status == wpb.WORKFLOW_STATUS_QUEUED and queued.start_time_ms == 0
    # A retried start answers as the first did.
    assert _start(stub, "wl-q-2", "wl_queue") == second
    client.terminate_workflow(first.workflow_id, reason="make room")
    view = client.get_workflow(second.workflow_id)
    assert view.status == "RUNNING"
    assert view.start_time_ms >= running.start_time_ms and view.start_time_ms > view.create_time_ms
    client.terminate_workflow(second.workflow_id)


def test_a_start_beyond_a_reject_limit_is_failed_precondition_naming_it(stub: Any) -> None:
    first = _start(stub, "wl-r-1", "wl_reject")
    with pytest.raises(grpc.RpcError) as err:
        _start(stub, "wl-r-2", "wl_reject")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'wl_reject'" in (err.value.details() or "")
    assert "maxRunning is 1" in (err.value.details() or "")
    stub.TerminateWorkflow(
        wpb.TerminateWorkflowRequest(request_id="wl-r-t", workflow_id=first.workflow_id),
        timeout=10,
    )


def test_a_batch_of_starts_answers_queued_per_item(stub: Any) -> None:
    items = [
        wpb.StartWorkflowRequest(request_id=f"wl-b-{i}", name="wl_batch", correlation_id=corr)
        for i, corr in enumerate(["alice", "alice", "bob"])
    ]
    results = stub.StartWorkflows(wpb.StartWorkflowsRequest(items=items), timeout=10).results
    assert [r.code for r in results] == [0, 0, 0]
    assert [r.queued for r in results] == [False, True, False]
    assert _get(stub, results[1].workflow_id).status == wpb.WORKFLOW_STATUS_QUEUED
