"""Task domains and failure workflows through the gRPC API and the Python SDK (one replica)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from orchestrator_client import OrchestratorClient, Worker
from orchestrator_client.errors import InvalidArgumentError

from tests.cluster_support import wait_for


@pytest.fixture(scope="module")
def client(server: Any) -> Iterator[OrchestratorClient]:
    c = OrchestratorClient([server.grpc_addr], retry_budget_s=10)
    c.register_task_defs([{"name": "dom_t", "retryCount": 0, "responseTimeoutSeconds": 60}])
    c.register_workflow_def(
        {"name": "dom_flow", "tasks": [{"name": "dom_t", "taskReferenceName": "a"}]}
    )
    c.register_workflow_def(
        {
            "name": "undo_flow",
            "tasks": [{"name": "noop", "taskReferenceName": "n", "type": "NOOP"}],
        }
    )
    c.register_workflow_def(
        {
            "name": "failing_flow",
            "failureWorkflow": "undo_flow",
            "tasks": [{"name": "dom_t", "taskReferenceName": "a"}],
        }
    )
    try:
        yield c
    finally:
        c.close()


def test_a_domain_task_goes_only_to_workers_of_that_domain(client: OrchestratorClient) -> None:
    wid = client.start_workflow("dom_flow", {"k": 1}, task_to_domain={"dom_t": "blue"})
    wf = client.get_workflow(wid)
    assert wf.task_to_domain == {"dom_t": "blue"}
    assert client.poll_tasks("dom_t", worker_id="plain", timeout_ms=0) == []
    seen: list[str] = []
    worker = Worker(client, worker_id="blue-1", domain="blue", poll_timeout_ms=200)
    worker.register("dom_t", lambda t: seen.append(t.domain) or {"by": "blue"})
    worker.start()
    try:
        done = wait_for(
            lambda: (lambda w: w if w.is_terminal else None)(client.get_workflow(wid)),
            30,
            "the blue worker to complete the task",
        )
    finally:
        worker.stop(timeout_s=5)
    assert done.status == "COMPLETED" and done.output == {"by": "blue"}
    assert seen == ["blue"]
    assert done.tasks[0].domain == "blue"


def test_a_bad_task_to_domain_is_rejected(client: OrchestratorClient) -> None:
    with pytest.raises(InvalidArgumentError, match=r"task_to_domain\.dom_t: 'a b' is not a valid"):
        client.start_workflow("dom_flow", {}, task_to_domain={"dom_t": "a b"})


def test_a_failed_workflow_starts_its_failure_workflow(client: OrchestratorClient) -> None:
    wid = client.start_workflow("failing_flow", {"order": 9})
    task = wait_for(
        lambda: client.poll_tasks("dom_t", worker_id="w", timeout_ms=200),
        30,
        "the task to be pollable",
    )[0]
    client.fail_task(task.task_id, "card declined", worker_id="w")
    wf = client.get_workflow(wid)
    assert wf.status == "FAILED"
    fid = wf.output["conductor.failure_workflow"]
    failure = wait_for(
        lambda: (lambda w: w if w.is_terminal else None)(client.get_workflow(fid)),
        30,
        "the failure workflow to finish",
    )
    assert failure.workflow_name == "undo_flow" and failure.status == "COMPLETED"
    assert failure.triggering_workflow_id == wid
    assert failure.input["order"] == 9 and failure.input["failureStatus"] == "FAILED"
    assert "card declined" in failure.input["reason"]


def test_an_idle_worker_keeps_its_domain_active(server: Any, client: OrchestratorClient) -> None:
    # A worker long-polls domain "green" of a type that has no work: its polls commit nothing,
    # yet the domain must count as active, so a fallback list "green,NO_DOMAIN" picks it.
    got: list[Any] = []
    poller = threading.Thread(
        target=lambda: got.extend(
            client.poll_tasks("dom_t", worker_id="green-1", domain="green", timeout_ms=20_000)
        )
    )
    poller.start()
    try:
        wait_for(
            lambda: "dom_t@green" in server.replica.state.last_poll,
            30,
            "the leader to record the green domain's poll activity",
        )
        wid = client.start_workflow("dom_flow", {}, task_to_domain={"dom_t": "green,NO_DOMAIN"})
    finally:
        poller.join(30)
    assert not poller.is_alive()
    assert [t.workflow_id for t in got] == [wid]
    assert got[0].domain == "green"
