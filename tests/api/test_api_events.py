"""EventService through gRPC (api/events.py) on the one-replica server: publish, read, and
event handlers acting on events, with the client's methods."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from orchestrator_client import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    OrchestratorClient,
)

from orchestrator.server import ReplicaServer


@pytest.fixture(scope="module")
def client(server: ReplicaServer) -> Iterator[OrchestratorClient]:
    c = OrchestratorClient(server.grpc_addr, timeout_s=5.0, retry_budget_s=10.0)
    c.register_workflow_def(
        {
            "name": "ev_gate",
            "version": 1,
            "tasks": [{"name": "ev_wait", "taskReferenceName": "wait_here", "type": "HUMAN"}],
        }
    )
    yield c
    c.close()


def _name() -> str:
    return f"ev_{uuid.uuid4().hex[:8]}"


def test_publish_then_read_and_a_retry_keeps_its_offset(client: OrchestratorClient) -> None:
    name = _name()
    first = client.publish_event(name, {"n": 1}, "key-1", request_id="ev-retry-1")
    assert client.publish_event(name, {"n": 1}, "key-1", request_id="ev-retry-1") == first
    second = client.publish_event(name, {"n": 2})
    assert second == first + 1
    events = client.read_events(first, 10)
    assert [e["offset"] for e in events] == [first, second]
    assert events[0]["name"] == name and events[0]["payload"] == {"n": 1}
    assert events[0]["correlation_key"] == "key-1" and events[0]["time_ms"] > 0
    assert events[0]["actions"] == []
    assert client.read_events(second, 1) == events[1:]


def test_invalid_events_are_refused_naming_the_field(client: OrchestratorClient) -> None:
    with pytest.raises(InvalidArgumentError, match="name"):
        client.publish_event("bad name")
    with pytest.raises(InvalidArgumentError, match="correlation_key"):
        client.publish_event(_name(), {}, "k" * 300)
    with pytest.raises(InvalidArgumentError, match="limit"):
        client.read_events(0, 5000)


def test_a_handler_completes_a_waiting_task_and_starts_a_workflow(
    client: OrchestratorClient,
) -> None:
    event, handler = _name(), _name()
    waiting = client.start_workflow("ev_gate")
    client.register_event_handler(
        {
            "name": handler,
            "event": event,
            "condition": "$.approved == true",
            "actions": [
                {
                    "action": "complete_task",
                    "complete_task": {
                        "workflowId": "${payload.id}",
                        "taskRefName": "wait_here",
                        "output": {"by": "${correlationKey}"},
                    },
                },
                {"action": "start_workflow", "start_workflow": {"name": "ev_gate"}},
            ],
        }
    )
    assert handler in [h["name"] for h in client.list_event_handlers()]
    skipped = client.publish_event(event, {"id": waiting, "approved": False})
    done = client.publish_event(event, {"id": waiting, "approved": True}, "ann")
    assert client.read_events(skipped, 1)[0]["actions"] == []
    actions = client.read_events(done, 1)[0]["actions"]
    assert [a["code"] for a in actions] == ["OK", "OK"]
    assert client.get_workflow(waiting).status == "COMPLETED"
    started = actions[1]["result"]["workflow_id"]
    assert started == f"event-{done}-1"
    assert client.get_workflow(started).status == "RUNNING"
    client.remove_event_handler(handler)
    assert handler not in [h["name"] for h in client.list_event_handlers()]
    with pytest.raises(NotFoundError):
        client.remove_event_handler(handler)


def test_invalid_handlers_are_refused_with_clear_messages(client: OrchestratorClient) -> None:
    base = {"name": _name(), "event": "e", "actions": [{"action": "start_workflow"}]}
    with pytest.raises(InvalidArgumentError, match=r"handler\.actions\[0\]\.start_workflow"):
        client.register_event_handler(base)
    js = {
        **base,
        "condition": "JSON.parse($.x)",
        "actions": [{"action": "start_workflow", "start_workflow": {"name": "ev_gate"}}],
    }
    with pytest.raises(InvalidArgumentError, match="JavaScript condition is not"):
        client.register_event_handler(js)
    ok = {**js, "condition": ""}
    client.register_event_handler(ok)
    with pytest.raises(AlreadyExistsError):
        client.register_event_handler(ok)
    client.register_event_handler({**ok, "active": False}, overwrite=True)
    client.remove_event_handler(ok["name"])
