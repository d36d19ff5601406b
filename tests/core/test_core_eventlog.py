"""The replicated event log and event handlers (processors/eventlog.py, event_handlers.py)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.core import codec, limits
from orchestrator.core.commands import PublishEvent, RegisterEventHandler, RemoveEventHandler
from orchestrator.core.errors import Code
from orchestrator.core.machine import Outcome
from orchestrator.core.state import State
from tests.core_helpers import Harness, check_invariants, outcome_key, replay, wire

JSON = Any

GATE: dict[str, JSON] = {
    "name": "gate",
    "version": 1,
    "tasks": [{"name": "approve", "taskReferenceName": "approve", "type": "HUMAN"}],
}


@pytest.fixture
def g(h: Harness) -> Harness:
    h.register_workflow(GATE)
    return h


def publish(h: Harness, name: str, payload: JSON = None, key: str = "", **kw: Any) -> Outcome:
    kw.setdefault("request_id", h.new_id("event"))
    cmd = PublishEvent(
        name=name, payload={} if payload is None else payload, correlation_key=key, **kw
    )
    return h.apply_one(cmd)


def handler(h: Harness, check: bool = True, overwrite: bool = False, **spec: JSON) -> Outcome:
    cmd = RegisterEventHandler(h.new_id("handler"), spec, overwrite)
    return h.ok(cmd) if check else h.apply_one(cmd)


def act(kind: str, **params: JSON) -> dict[str, JSON]:
    return {"action": kind, kind: params}


def test_published_events_get_increasing_offsets_and_cluster_time(h: Harness) -> None:
    first = publish(h, "order.placed", {"id": 1}, key="o-1")
    second = publish(h, "order.placed", {"id": 2})
    assert (first.result, second.result) == ({"offset": 1}, {"offset": 2})
    record = h.state.event_log[1]
    assert record["name"] == "order.placed"
    assert record["payload"] == {"id": 1}
    assert record["correlationKey"] == "o-1"
    assert record["time"] == h.state.clock_ms
    assert record["actions"] == []


def test_a_retried_publish_is_answered_from_the_dedup_table(h: Harness) -> None:
    assert publish(h, "e", {"a": 1}, request_id="same").result == {"offset": 1}
    again = publish(h, "e", {"a": 1}, request_id="same").result
    assert again == {"offset": 1, "deduplicated": True}
    assert list(h.state.event_log) == [1]


@pytest.mark.parametrize(
    ("name", "payload", "key", "field"),
    [
        ("", {}, "", "name"),
        ("bad name", {}, "", "name"),
        ("e", [1], "", "payload"),
        ("e", {}, "k" * (limits.MAX_CORRELATION_KEY_LENGTH + 1), "correlation_key"),
    ],
)
def test_an_invalid_event_is_refused_naming_the_field(
    h: Harness, name: str, payload: JSON, key: str, field: str
) -> None:
    out = publish(h, name, payload, key)
    assert out.code is Code.INVALID_ARGUMENT
    assert out.message.startswith(field)
    assert h.state.event_offset == 0 and not h.state.event_log


def test_the_oldest_events_are_dropped_beyond_the_bound(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_EVENTS", 3)
    for i in range(5):
        publish(h, "e", {"i": i})
    assert list(h.state.event_log) == [3, 4, 5]
    assert h.state.event_offset == 5
    assert publish(h, "e").result == {"offset": 6}


def test_the_oldest_events_are_dropped_beyond_the_byte_bound(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three events of ~1 KiB fit in 3.5 KiB, a fourth does not: the oldest leaves; the size
    # kept is the records' encoded size, also after a snapshot (where it is rebuilt).
    monkeypatch.setattr(limits, "MAX_EVENT_LOG_BYTES", 3_500)
    for i in range(4):
        publish(h, "e", {"i": i, "pad": "x" * 1_000})
    assert list(h.state.event_log) == [2, 3, 4]
    size = sum(len(codec.dumps_bytes(e)) for e in h.state.event_log.values())
    assert h.state.event_bytes == size <= 3_500
    assert State.from_snapshot_bytes(h.state.snapshot_bytes()).event_bytes == size
    # A refused publish changes nothing, its size included.
    assert publish(h, "", {"pad": "x"}).code is Code.INVALID_ARGUMENT
    assert h.state.event_bytes == size


def test_a_snapshot_round_trip_keeps_the_log_and_the_handlers(g: Harness) -> None:
    handler(g, name="h1", event="e", actions=[act("start_workflow", name="gate")])
    publish(g, "e", {"x": 1}, key="k")
    loaded = State.from_snapshot_bytes(g.state.snapshot_bytes())
    assert loaded.digest() == g.state.digest()
    assert loaded.event_log == g.state.event_log
    assert loaded.event_offset == 1
    assert loaded.event_handlers == g.state.event_handlers


def test_a_snapshot_written_before_the_event_log_loads_empty(h: Harness) -> None:
    snap = h.state.to_snapshot()
    for key in ("event_log", "event_offset", "event_handlers"):
        del snap[key]
    loaded = State.from_snapshot(snap)
    assert (loaded.event_log, loaded.event_offset, loaded.event_handlers) == ({}, 0, {})


def test_start_workflow_action_with_templates_and_a_derived_id(g: Harness) -> None:
    start = act(
        "start_workflow",
        name="two_step",
        input={"x": "${payload.amount}", "from": "${event}"},
        correlationId="${correlationKey}",
    )
    handler(g, name="starter", event="order.placed", actions=[start])
    out = publish(g, "order.placed", {"amount": 7}, key="o-9")
    assert out.ok
    wf = g.wf("event-1-0")
    assert wf.input == {"x": 7, "from": "order.placed"}
    assert wf.correlation_id == "o-9"
    [outcome] = g.state.event_log[1]["actions"]
    assert outcome["handler"] == "starter" and outcome["action"] == "start_workflow"
    assert outcome["code"] == Code.OK.value
    assert outcome["result"]["workflow_id"] == "event-1-0"
    check_invariants(g.state)


def test_complete_task_and_fail_task_actions_end_waiting_tasks(g: Harness) -> None:
    done, failed = g.start("gate"), g.start("gate")
    handler(
        g,
        name="approvals",
        event="approved",
        actions=[
            act(
                "complete_task",
                workflowId="${payload.ok}",
                taskRefName="approve",
                output={"by": "${payload.by}"},
            ),
            act("fail_task", workflowId="${payload.no}", taskRefName="approve", reason="denied"),
        ],
    )
    assert publish(g, "approved", {"ok": done, "no": failed, "by": "ann"}).ok
    assert g.wf(done).status == "COMPLETED"
    assert g.last_task(done).output == {"by": "ann"}
    assert g.wf(failed).status == "FAILED"
    assert g.last_task(failed).reason_for_incompletion == "denied"
    check_invariants(g.state)


def test_terminate_workflow_action(g: Harness) -> None:
    wf = g.start("gate")
    handler(
        g,
        name="stop",
        event="cancel",
        actions=[act("terminate_workflow", workflowId="${payload.id}")],
    )
    publish(g, "cancel", {"id": wf})
    assert g.wf(wf).status == "TERMINATED"
    assert g.wf(wf).reason_for_incompletion == "terminated by an event handler"


def test_a_refused_action_is_recorded_and_undoes_neither_the_event_nor_the_others(
    g: Harness,
) -> None:
    wf = g.start("gate")
    handler(
        g,
        name="h",
        event="e",
        actions=[
            act("start_workflow", name="two_step", input={"x": 1}),
            act("complete_task", workflowId="no-such-workflow", taskRefName="approve"),
            act("start_workflow", name="no_such_definition"),
            act("terminate_workflow", workflowId=wf),
        ],
    )
    out = publish(g, "e")
    assert out.ok and out.result == {"offset": 1}
    codes = [a["code"] for a in g.state.event_log[1]["actions"]]
    assert codes == [Code.OK.value, Code.NOT_FOUND.value, Code.NOT_FOUND.value, Code.OK.value]
    assert g.wf("event-1-0").status == "RUNNING"
    assert "event-1-2" not in g.state.workflows
    assert g.wf(wf).status == "TERMINATED"
    check_invariants(g.state)


def test_a_task_completed_twice_by_events_is_refused_the_second_time(g: Harness) -> None:
    wf = g.start("gate")
    handler(
        g, name="h", event="e", actions=[act("complete_task", workflowId=wf, taskRefName="approve")]
    )
    publish(g, "e")
    publish(g, "e")
    [second] = g.state.event_log[2]["actions"]
    assert second["code"] != Code.OK.value and second["message"]
    assert g.wf(wf).status == "COMPLETED"


def test_the_condition_selects_events_by_their_payload(g: Harness) -> None:
    handler(
        g,
        name="big",
        event="order",
        condition="$.amount > 100",
        actions=[act("start_workflow", name="gate")],
    )
    publish(g, "order", {"amount": 5})
    publish(g, "order", {"amount": 500})
    assert g.state.event_log[1]["actions"] == []
    assert [a["result"]["workflow_id"] for a in g.state.event_log[2]["actions"]] == ["event-2-0"]


def test_inactive_handlers_and_other_event_names_do_nothing(g: Harness) -> None:
    handler(g, name="off", event="e", active=False, actions=[act("start_workflow", name="gate")])
    handler(g, name="other", event="f", actions=[act("start_workflow", name="gate")])
    publish(g, "e")
    assert g.state.event_log[1]["actions"] == []


def test_handlers_are_registered_replaced_and_removed(g: Harness) -> None:
    spec: dict[str, JSON] = {
        "name": "h",
        "event": "e",
        "actions": [act("start_workflow", name="gate")],
    }
    handler(g, **spec)
    assert g.state.event_handlers["h"] == {**spec, "condition": "", "active": True}
    assert handler(g, check=False, **spec).code is Code.ALREADY_EXISTS
    handler(g, overwrite=True, **{**spec, "active": False})
    assert g.state.event_handlers["h"]["active"] is False
    g.ok(RemoveEventHandler(g.new_id("rm"), "h"))
    assert g.state.event_handlers == {}
    assert g.apply_one(RemoveEventHandler(g.new_id("rm"), "h")).code is Code.NOT_FOUND


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"event": "e", "actions": []}, "handler.name"),
        ({"name": "h", "actions": []}, "handler.event"),
        ({"name": "h", "event": "e", "actions": []}, "handler.actions"),
        (
            {"name": "h", "event": "e", "actions": [{"action": "send_email"}]},
            "handler.actions[0].action",
        ),
        (
            {"name": "h", "event": "e", "actions": [{"action": "start_workflow"}]},
            "handler.actions[0].start_workflow",
        ),
        (
            {"name": "h", "event": "e", "actions": [act("start_workflow")]},
            "handler.actions[0].start_workflow.name",
        ),
        (
            {"name": "h", "event": "e", "actions": [act("complete_task", workflowId="w")]},
            "handler.actions[0].complete_task.taskRefName",
        ),
        (
            {
                "name": "h",
                "event": "e",
                "actions": [act("terminate_workflow", workflowId="w", x=1)],
            },
            "handler.actions[0].terminate_workflow.x",
        ),
        (
            {"name": "h", "event": "e", "actions": [act("start_workflow", name="n", input=[1])]},
            "handler.actions[0].start_workflow.input",
        ),
        (
            {
                "name": "h",
                "event": "e",
                "active": "yes",
                "actions": [act("start_workflow", name="n")],
            },
            "handler.active",
        ),
        (
            {"name": "h", "event": "e", "extra": 1, "actions": [act("start_workflow", name="n")]},
            "handler: unknown fields",
        ),
        (
            {
                "name": "h",
                "event": "e",
                "condition": "$.a.map(x => x)",
                "actions": [act("start_workflow", name="n")],
            },
            "handler.condition",
        ),
    ],
)
def test_an_invalid_handler_is_refused_naming_the_field(
    h: Harness, spec: dict[str, JSON], message: str
) -> None:
    out = handler(h, check=False, **spec)
    assert out.code is Code.INVALID_ARGUMENT
    assert out.message.startswith(message), out.message
    assert h.state.event_handlers == {}


def test_a_javascript_condition_is_refused_with_a_clear_message(h: Harness) -> None:
    out = handler(
        h,
        check=False,
        name="h",
        event="e",
        condition="JSON.parse($.x).ok",
        actions=[act("start_workflow", name="n")],
    )
    assert out.code is Code.INVALID_ARGUMENT
    assert "JavaScript condition is not" in out.message


def test_replicas_applying_the_same_log_agree(g: Harness) -> None:
    start = act("start_workflow", name="two_step", input={"x": "${payload.n}"})
    spec = {"name": "h", "event": "e", "actions": [start, start]}
    log = [
        (2_000_000, wire([RegisterEventHandler("r0", spec)])),
        (2_000_010, wire([PublishEvent("r1", "e", {"n": 1}), PublishEvent("r2", "e", {"n": 2})])),
    ]
    base = g.state.snapshot_bytes()
    one, outs_one = replay(log, State.from_snapshot_bytes(base))
    two, outs_two = replay(log, State.from_snapshot_bytes(base))
    assert [outcome_key(o) for o in outs_one] == [outcome_key(o) for o in outs_two]
    assert one.digest() == two.digest()
    assert [*one.workflows][-4:] == ["event-1-0", "event-1-1", "event-2-0", "event-2-1"]
