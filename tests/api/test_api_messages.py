"""Message correlation, the EVENT task and signals through gRPC on the one-replica server:
WAIT_FOR_EVENT completed by publish_event (also when the message came first, with ttl_ms),
signal_task for any waiting task, an EVENT task's event read back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from orchestrator_client import (
    FailedPreconditionError,
    InvalidArgumentError,
    OrchestratorClient,
)

from orchestrator.server import ReplicaServer

WAITER = {
    "name": "msg_waiter",
    "version": 1,
    "tasks": [
        {
            "name": "reserved",
            "taskReferenceName": "reserved",
            "type": "WAIT_FOR_EVENT",
            "inputParameters": {
                "event": "msg.reserved",
                "correlationKey": "${workflow.input.order}",
            },
        }
    ],
}
PUBLISHER = {
    "name": "msg_publisher",
    "version": 1,
    "tasks": [
        {
            "name": "publish",
            "taskReferenceName": "publish",
            "type": "EVENT",
            "asyncComplete": True,
            "inputParameters": {
                "sink": "conductor:msg.created",
                "order": "${workflow.input.order}",
                "correlationKey": "${workflow.input.order}",
            },
        }
    ],
}


@pytest.fixture(scope="module")
def client(server: ReplicaServer) -> Iterator[OrchestratorClient]:
    c = OrchestratorClient(server.grpc_addr, timeout_s=5.0, retry_budget_s=10.0)
    c.register_workflow_def(WAITER)
    c.register_workflow_def(PUBLISHER)
    yield c
    c.close()


def _key() -> str:
    return f"o-{uuid.uuid4().hex[:8]}"


def test_a_published_event_completes_the_waiting_task(client: OrchestratorClient) -> None:
    key = _key()
    wf = client.start_workflow("msg_waiter", {"order": key})
    assert client.get_workflow(wf).tasks[0].status == "IN_PROGRESS"
    offset = client.publish_event("msg.reserved", {"qty": 2}, key)
    done = client.wait_for_workflow(wf, timeout_s=10)
    assert done.status == "COMPLETED"
    out = done.tasks[0].output
    assert out["offset"] == offset and out["payload"] == {"qty": 2}
    assert out["correlationKey"] == key


def test_a_message_before_its_task_waits_for_it_with_ttl(client: OrchestratorClient) -> None:
    key = _key()
    client.publish_event("msg.reserved", {"early": True}, key, ttl_ms=60_000)
    wf = client.start_workflow("msg_waiter", {"order": key})
    done = client.wait_for_workflow(wf, timeout_s=10)
    assert done.status == "COMPLETED"
    assert done.tasks[0].output["payload"] == {"early": True}
    with pytest.raises(InvalidArgumentError, match="ttl_ms"):
        client.publish_event("msg.reserved", {}, key, ttl_ms=8 * 24 * 3600 * 1000)


def test_signal_task_ends_a_waiting_task(client: OrchestratorClient) -> None:
    wf = client.start_workflow("msg_waiter", {"order": _key()})
    client.signal_task(wf, "reserved", {"by": "signal"})
    done = client.wait_for_workflow(wf, timeout_s=10)
    assert done.status == "COMPLETED" and done.tasks[0].output == {"by": "signal"}
    wf = client.start_workflow("msg_waiter", {"order": _key()})
    client.signal_task(wf, "reserved", failed=True, reason="no stock")
    failed = client.wait_for_workflow(wf, timeout_s=10)
    assert failed.status == "FAILED" and "no stock" in failed.reason_for_incompletion
    with pytest.raises(FailedPreconditionError):
        client.signal_task(wf, "reserved")


def test_an_event_task_publishes_and_waits_for_its_signal(client: OrchestratorClient) -> None:
    key = _key()
    wf = client.start_workflow("msg_publisher", {"order": key})
    task = client.get_workflow(wf).tasks[0]
    assert task.status == "IN_PROGRESS"
    assert task.output["event"] == "msg.created" and task.output["sink"] == ""
    (record,) = client.read_events(task.output["offset"], 1)
    assert record["name"] == "msg.created" and record["correlation_key"] == key
    assert record["payload"]["order"] == key
    assert record["payload"]["workflowInstanceId"] == wf
    client.signal_task(wf, "publish", {"acknowledged": True})
    assert client.wait_for_workflow(wf, timeout_s=10).status == "COMPLETED"
