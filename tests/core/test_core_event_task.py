"""The EVENT task and asyncComplete (processors/event_task.py), the chain guard of
eventlog.append_event, and an HTTP task with asyncComplete."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.core import limits
from orchestrator.core.commands import (
    CompleteTask,
    FailTask,
    HttpResult,
    PublishEvent,
    RegisterEventHandler,
)
from orchestrator.core.errors import Code
from orchestrator.core.state import State
from tests.core_helpers import Harness, check_invariants, outcome_key, replay

JSON = Any


def event_task(ref: str = "publish", **params: JSON) -> dict[str, JSON]:
    return {"name": ref, "taskReferenceName": ref, "type": "EVENT", "inputParameters": params}


def flow(h: Harness, *tasks: JSON, name: str = "saga") -> None:
    after = {"name": "task_c", "taskReferenceName": "after"}
    h.register_workflow({"name": name, "version": 1, "tasks": [*tasks, after]})


def wait_for(event: str, key: str) -> dict[str, JSON]:
    params = {"event": event, "correlationKey": key}
    return {
        "name": "w",
        "taskReferenceName": "w",
        "type": "WAIT_FOR_EVENT",
        "inputParameters": params,
    }


@pytest.fixture
def e(h: Harness) -> Harness:
    h.register_defaults()
    return h


def test_an_event_task_publishes_its_input_and_completes(e: Harness) -> None:
    flow(
        e,
        event_task(
            sink="conductor:order.created",
            id="${workflow.input.id}",
            correlationKey="${workflow.input.id}",
        ),
    )
    wf = e.start("saga", {"id": "o-7"}, correlation_id="c-1")
    task = e.tasks_of(wf)[0]
    assert task.status == "COMPLETED"
    assert task.output == {"event": "order.created", "offset": 1, "sink": ""}
    record = e.state.event_log[1]
    assert record["name"] == "order.created"
    assert record["correlationKey"] == "o-7"
    assert record["sink"] == ""
    assert record["payload"] == {
        "id": "o-7",
        "workflowInstanceId": wf,
        "workflowType": "saga",
        "workflowVersion": 1,
        "correlationId": "c-1",
        "taskRefName": "publish",
    }
    assert e.last_task(wf).reference_task_name == "after"
    check_invariants(e.state)


def test_bare_conductor_names_the_event_after_workflow_and_task(e: Harness) -> None:
    flow(e, event_task(sink="conductor"))
    e.start("saga")
    assert e.state.event_log[1]["name"] == "saga:publish"


def test_a_broker_sink_marks_the_record_for_its_bridge(e: Harness) -> None:
    flow(e, event_task(sink="nats:orders.created"))
    wf = e.start("saga")
    assert e.state.event_log[1]["name"] == "orders.created"
    assert e.state.event_log[1]["sink"] == "nats:orders.created"
    assert e.tasks_of(wf)[0].output["sink"] == "nats:orders.created"


def test_unknown_or_missing_sinks_are_refused_at_registration(e: Harness) -> None:
    for params, words in (
        ({"sink": "kafka:topic"}, "unknown sink 'kafka'"),
        ({}, "inputParameters.sink (publish): required"),
        ({"sink": "nats:"}, "inputParameters.sink (publish)"),
    ):
        wf = {"name": "x", "version": 1, "tasks": [event_task(**params)]}
        out = e.register_workflow(wf, check=False)
        assert out.code is Code.INVALID_ARGUMENT, params
        assert words in out.message


def test_a_sink_from_a_template_is_checked_when_the_task_starts(e: Harness) -> None:
    flow(e, event_task(sink="${workflow.input.sink}"))
    wf = e.start("saga", {"sink": "smtp:x"})
    task = e.tasks_of(wf)[0]
    assert task.status == "FAILED_WITH_TERMINAL_ERROR"
    assert "unknown sink 'smtp'" in task.reason_for_incompletion
    assert e.state.event_log == {}


def test_async_complete_waits_for_a_signal(e: Harness) -> None:
    flow(e, event_task(sink="conductor:x", asyncComplete=True))
    wf = e.start("saga")
    task = e.tasks_of(wf)[0]
    assert task.status == "IN_PROGRESS"
    assert task.output == {"event": "x", "offset": 1, "sink": ""}
    assert "asyncComplete" not in e.state.event_log[1]["payload"]
    check_invariants(e.state)
    e.ok(CompleteTask("s", "", {"done": True}, workflow_id=wf, reference_task_name="publish"))
    assert task.status == "COMPLETED"
    assert e.last_task(wf).reference_task_name == "after"


def test_without_async_complete_an_event_task_cannot_be_signalled(e: Harness) -> None:
    e.register_workflow(
        {
            "name": "s",
            "version": 1,
            "tasks": [
                event_task(sink="conductor:x"),
                {"name": "h", "taskReferenceName": "h", "type": "HUMAN"},
            ],
        }
    )
    wf = e.start("s")
    out = e.apply_one(FailTask("s", "", "no", workflow_id=wf, reference_task_name="publish"))
    assert out.code is Code.FAILED_PRECONDITION


def test_the_task_level_async_complete_field_works_too(e: Harness) -> None:
    flow(e, {**event_task(sink="conductor:x"), "asyncComplete": True})
    wf = e.start("saga")
    assert e.tasks_of(wf)[0].status == "IN_PROGRESS"


def test_an_event_task_completes_a_waiting_task_of_another_workflow(e: Harness) -> None:
    wait = wait_for("reply", "${workflow.input.k}")
    e.register_workflow({"name": "waits", "version": 1, "tasks": [wait]})
    flow(e, event_task(sink="conductor:reply", correlationKey="${workflow.input.k}"))
    waiter = e.start("waits", {"k": "k1"})
    sender = e.start("saga", {"k": "k1"})
    assert e.state.workflows[waiter].status == "COMPLETED"
    assert e.state.event_log[1]["correlated"] == [e.tasks_of(waiter)[0].task_id]
    assert e.tasks_of(sender)[0].status == "COMPLETED"


def test_a_workflow_waiting_for_its_own_event_in_a_fork(e: Harness) -> None:
    wait = wait_for("self", "k")
    fork = {
        "name": "f",
        "taskReferenceName": "f",
        "type": "FORK_JOIN",
        "forkTasks": [[wait], [event_task(sink="conductor:self", correlationKey="k")]],
    }
    join = {"name": "j", "taskReferenceName": "j", "type": "JOIN", "joinOn": ["w", "publish"]}
    e.register_workflow({"name": "selfish", "version": 1, "tasks": [fork, join]})
    wf = e.start("selfish")
    assert e.state.workflows[wf].status == "COMPLETED"
    check_invariants(e.state)


def test_an_endless_chain_of_events_stops_at_the_limit(e: Harness) -> None:
    # The handler of "ping" starts a workflow whose EVENT task publishes "ping" again.
    flow(e, event_task(sink="conductor:ping"), name="pinger")
    spec = {
        "name": "h",
        "event": "ping",
        "actions": [{"action": "start_workflow", "start_workflow": {"name": "pinger"}}],
    }
    e.ok(RegisterEventHandler("r", spec))
    out = e.ok(PublishEvent("p", "ping"))
    assert out.result == {"offset": 1}
    assert e.state.event_offset == limits.MAX_EVENT_CHAIN
    failed = [t for t in e.state.tasks.values() if t.status == "FAILED_WITH_TERMINAL_ERROR"]
    assert len(failed) == 1
    assert "MAX_EVENT_CHAIN" in failed[0].reason_for_incompletion
    assert f"at most {limits.MAX_EVENT_CHAIN} deep" in failed[0].reason_for_incompletion
    check_invariants(e.state)


def test_http_with_async_complete_keeps_the_response_and_waits(h: Harness) -> None:
    h.leader_epoch(1)
    h.register_task_defs({"name": "task_c", "retryCount": 0, "responseTimeoutSeconds": 10})
    call = {
        "name": "call",
        "taskReferenceName": "call",
        "type": "HTTP",
        "asyncComplete": True,
        "inputParameters": {"http_request": {"uri": "http://example.com/x", "method": "GET"}},
    }
    flow(h, call)
    wf = h.start("saga")
    task = h.tasks_of(wf)[0]
    early = h.apply_one(CompleteTask("s0", "", {}, workflow_id=wf, reference_task_name="call"))
    assert early.code is Code.FAILED_PRECONDITION  # the request is still pending
    response = {"statusCode": 202, "body": {"id": 1}}
    h.ok(HttpResult(task_id=task.task_id, fence=task.script.fence, epoch=1, response=response))
    assert task.status == "IN_PROGRESS"
    assert task.output == {"response": response}
    assert task.script is None
    check_invariants(h.state)
    h.ok(CompleteTask("s1", "", {"ok": 1}, workflow_id=wf, reference_task_name="call"))
    assert task.status == "COMPLETED"


def test_replay_is_deterministic(e: Harness) -> None:
    base = e.state.snapshot_bytes()
    start = len(e.log)
    flow(e, event_task(sink="nats:a.b", correlationKey="${workflow.input.k}", ttl_ms=1000))
    for i in range(3):
        e.start("saga", {"k": f"k{i}"})
        e.advance(700)
    one, outs_one = replay(e.log[start:], State.from_snapshot_bytes(base))
    two, outs_two = replay(e.log[start:], State.from_snapshot_bytes(base))
    assert [outcome_key(o) for o in outs_one] == [outcome_key(o) for o in outs_two]
    assert one.snapshot_bytes() == two.snapshot_bytes() == e.state.snapshot_bytes()
    assert list(one.messages) == [2, 3]


def test_a_correlation_key_over_the_limit_fails_the_task(e: Harness) -> None:
    flow(e, event_task(sink="conductor:x", correlationKey="${workflow.input.k}"))
    wf = e.start("saga", {"k": "k" * (limits.MAX_CORRELATION_KEY_LENGTH + 1)})
    task = e.tasks_of(wf)[0]
    assert task.status == "FAILED_WITH_TERMINAL_ERROR"
    assert "correlationKey must resolve to a string of at most" in task.reason_for_incompletion
    assert e.state.event_log == {}
