"""Message correlation (processors/messages.py): WAIT_FOR_EVENT, buffered messages with a time
to live, and signals to any waiting task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core import limits
from orchestrator.core.commands import CompleteTask, FailTask, PublishEvent
from orchestrator.core.errors import Code
from orchestrator.core.machine import Outcome
from orchestrator.core.state import State
from tests.core_helpers import Harness, check_invariants, outcome_key, replay

JSON = Any

WAITER: dict[str, JSON] = {
    "name": "waiter",
    "version": 1,
    "tasks": [
        {
            "name": "reserved",
            "taskReferenceName": "reserved",
            "type": "WAIT_FOR_EVENT",
            "inputParameters": {
                "event": "inventory.reserved",
                "correlationKey": "${workflow.input.order}",
            },
        },
        {
            "name": "task_c",
            "taskReferenceName": "after",
            "inputParameters": {"r": "${reserved.output.payload}"},
        },
    ],
}


@pytest.fixture
def w(h: Harness) -> Harness:
    h.register_defaults()
    h.register_workflow(WAITER)
    return h


def publish(h: Harness, name: str, key: str = "", payload: JSON = None, ttl_ms: int = 0) -> Outcome:
    cmd = PublishEvent(h.new_id("ev"), name, {} if payload is None else payload, key, ttl_ms)
    return h.apply_one(cmd)


def waiting(h: Harness, wf_id: str) -> Any:
    return h.state.tasks[h.state.workflows[wf_id].ref_index["reserved"]]


def test_an_event_completes_the_waiting_task_with_its_output(w: Harness) -> None:
    wf = w.start("waiter", {"order": "o-1"})
    task = waiting(w, wf)
    assert task.status == "IN_PROGRESS"
    assert w.state.event_waits == {("inventory.reserved", "o-1"): {task.task_id: None}}
    publish(w, "inventory.reserved", "o-2", {"n": 0})  # another key: nothing
    assert task.status == "IN_PROGRESS"
    check_invariants(w.state)
    out = publish(w, "inventory.reserved", "o-1", {"n": 1})
    assert out.ok
    assert task.status == "COMPLETED"
    assert task.output == {
        "event": "inventory.reserved",
        "offset": 2,
        "payload": {"n": 1},
        "correlationKey": "o-1",
        "time": w.clock_ms,
    }
    assert w.state.event_log[2]["correlated"] == [task.task_id]
    assert w.state.event_log[1]["correlated"] == []
    assert w.state.event_waits == {}
    assert w.last_task(wf).input == {"r": {"n": 1}}  # the workflow went on
    check_invariants(w.state)


def test_one_event_completes_one_task_in_each_of_two_workflows(w: Harness) -> None:
    first, second = w.start("waiter", {"order": "o-1"}), w.start("waiter", {"order": "o-1"})
    publish(w, "inventory.reserved", "o-1")
    assert waiting(w, first).status == waiting(w, second).status == "COMPLETED"
    ids = [waiting(w, first).task_id, waiting(w, second).task_id]
    assert w.state.event_log[1]["correlated"] == ids  # in order of waiting


def test_a_workflow_takes_one_event_per_task_the_oldest_waiting_first(w: Harness) -> None:
    fork = {
        "name": "two_waits",
        "version": 1,
        "tasks": [
            {
                "name": "f",
                "taskReferenceName": "f",
                "type": "FORK_JOIN",
                "forkTasks": [
                    [_wait("w1", "k")],
                    [_wait("w2", "k")],
                ],
            },
            {"name": "j", "taskReferenceName": "j", "type": "JOIN", "joinOn": ["w1", "w2"]},
        ],
    }
    w.register_workflow(fork)
    wf = w.start("two_waits")
    w1 = w.state.tasks[w.state.workflows[wf].ref_index["w1"]]
    w2 = w.state.tasks[w.state.workflows[wf].ref_index["w2"]]
    publish(w, "e", "k")
    assert (w1.status, w2.status) == ("COMPLETED", "IN_PROGRESS")
    publish(w, "e", "k")
    assert w2.status == "COMPLETED"
    assert w.state.workflows[wf].status == "COMPLETED"


def _wait(ref: str, key: str, event: str = "e") -> dict[str, JSON]:
    params = {"event": event, "correlationKey": key}
    return {
        "name": ref,
        "taskReferenceName": ref,
        "type": "WAIT_FOR_EVENT",
        "inputParameters": params,
    }


def test_a_message_arriving_before_the_task_waits_for_it_within_its_ttl(w: Harness) -> None:
    publish(w, "inventory.reserved", "o-1", {"n": 1}, ttl_ms=60_000)
    publish(w, "inventory.reserved", "o-1", {"n": 2}, ttl_ms=60_000)
    publish(w, "inventory.reserved", "o-1", {"n": 3})  # no ttl: not kept
    assert list(w.state.messages) == [1, 2]
    wf = w.start("waiter", {"order": "o-1"})
    task = waiting(w, wf)
    assert task.status == "COMPLETED"
    assert task.output["payload"] == {"n": 1}  # the oldest first
    assert list(w.state.messages) == [2]
    assert w.state.event_log[1]["correlated"] == [task.task_id]
    assert w.state.event_waits == {}


def test_a_buffered_message_expires_by_cluster_time(w: Harness) -> None:
    publish(w, "inventory.reserved", "o-1", ttl_ms=1_000)
    w.advance(1_000)
    wf = w.start("waiter", {"order": "o-1"})
    assert waiting(w, wf).status == "IN_PROGRESS"
    assert w.state.messages == {}  # dropped as the scan met it


def test_expired_messages_at_the_front_go_when_another_is_buffered(w: Harness) -> None:
    publish(w, "a", "k", ttl_ms=1_000)
    publish(w, "b", "k", ttl_ms=100_000)
    w.advance(5_000)
    publish(w, "c", "k", ttl_ms=1_000)
    assert list(w.state.messages) == [2, 3]


def test_buffered_messages_are_bounded_oldest_dropped_first(
    w: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_BUFFERED_MESSAGES", 2)
    for _ in range(3):
        publish(w, "e", "k", ttl_ms=60_000)
    assert list(w.state.messages) == [2, 3]


def test_a_message_whose_event_left_the_log_is_gone(
    w: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_EVENTS", 1)
    publish(w, "inventory.reserved", "o-1", ttl_ms=60_000)
    publish(w, "other", "")
    wf = w.start("waiter", {"order": "o-1"})
    assert waiting(w, wf).status == "IN_PROGRESS"
    assert w.state.messages == {}


def test_ttl_is_checked(w: Harness) -> None:
    for bad in (-1, limits.MAX_MESSAGE_TTL_MS + 1):
        out = publish(w, "e", "k", ttl_ms=bad)
        assert out.code is Code.INVALID_ARGUMENT
        assert "ttl_ms" in out.message


def test_a_key_that_resolves_empty_fails_the_task(w: Harness) -> None:
    wf = w.start("waiter", {})
    task = waiting(w, wf)
    assert task.status == "FAILED_WITH_TERMINAL_ERROR"
    assert "correlationKey must resolve to a non-empty string" in task.reason_for_incompletion


def test_registration_checks_event_and_key(h: Harness) -> None:
    bad = {"name": "x", "version": 1, "tasks": [_wait("w", "")]}
    out = h.register_workflow(bad, check=False)
    assert out.code is Code.INVALID_ARGUMENT
    assert "inputParameters.correlationKey (w): required" in out.message
    bad["tasks"] = [_wait("w", "k", event="no spaces")]
    out = h.register_workflow(bad, check=False)
    assert "inputParameters.event (w)" in out.message


def test_a_terminated_workflow_stops_waiting(w: Harness) -> None:
    wf = w.start("waiter", {"order": "o-1"})
    w.terminate(wf)
    assert w.state.event_waits == {}
    publish(w, "inventory.reserved", "o-1")
    assert w.state.event_log[1]["correlated"] == []


def test_snapshot_keeps_messages_and_rebuilds_the_waiting_index(w: Harness) -> None:
    wf = w.start("waiter", {"order": "o-1"})
    publish(w, "inventory.reserved", "o-9", ttl_ms=60_000)
    loaded = State.from_snapshot_bytes(w.state.snapshot_bytes())
    assert loaded.messages == w.state.messages
    assert loaded.event_waits == w.state.event_waits
    assert loaded.snapshot_bytes() == w.state.snapshot_bytes()
    h2 = Harness(loaded, clock_ms=w.clock_ms)
    publish(h2, "inventory.reserved", "o-1")
    assert waiting(h2, wf).status == "COMPLETED"
    h2.start("waiter", {"order": "o-9"})
    assert h2.state.messages == {}


def test_a_snapshot_written_before_messages_loads_empty(w: Harness) -> None:
    w.start("waiter", {"order": "o-1"})
    snap = w.state.to_snapshot()
    del snap["messages"]
    loaded = State.from_snapshot(snap)
    assert loaded.messages == {}
    assert len(loaded.event_waits) == 1


def test_signals_end_any_waiting_task_by_workflow_and_reference(w: Harness) -> None:
    wf = w.start("waiter", {"order": "o-1"})
    w.ok(CompleteTask("s1", "", {"by": "signal"}, workflow_id=wf, reference_task_name="reserved"))
    assert waiting(w, wf).output == {"by": "signal"}
    assert w.state.event_waits == {}
    wf2 = w.start("waiter", {"order": "o-2"})
    cmd = FailTask("s2", "", "no stock", workflow_id=wf2, reference_task_name="reserved")
    w.ok(cmd)
    assert waiting(w, wf2).status == "FAILED"
    assert w.state.event_waits == {}


def test_replicas_applying_the_same_log_agree(w: Harness) -> None:
    base = w.state.snapshot_bytes()
    start = len(w.log)
    for i in range(3):
        w.start("waiter", {"order": f"o-{i % 2}"})
        publish(w, "inventory.reserved", f"o-{(i + 1) % 2}", ttl_ms=5_000)
        w.advance(2_000)
    publish(w, "inventory.reserved", "o-0")
    one, outs_one = replay(w.log[start:], State.from_snapshot_bytes(base))
    two, outs_two = replay(w.log[start:], State.from_snapshot_bytes(base))
    assert [outcome_key(o) for o in outs_one] == [outcome_key(o) for o in outs_two]
    assert one.snapshot_bytes() == two.snapshot_bytes() == w.state.snapshot_bytes()
    assert one.event_waits == w.state.event_waits


def test_the_task_definition_timeout_applies(w: Harness) -> None:
    w.register_task_defs(
        {"name": "reserved", "retryCount": 0, "timeoutSeconds": 30, "responseTimeoutSeconds": 30}
    )
    wf = w.start("waiter", {"order": "o-1"})
    w.tick(29_000)
    assert waiting(w, wf).status == "IN_PROGRESS"
    w.tick(1_000)
    assert waiting(w, wf).status == "TIMED_OUT"
    assert w.state.workflows[wf].status == "TIMED_OUT"
    assert w.state.event_waits == {}
    publish(w, "inventory.reserved", "o-1")
    assert w.state.event_log[1]["correlated"] == []


def test_replay_is_byte_identical_across_hash_seeds(tmp_path: Path) -> None:
    from tests.core.test_core_determinism import replay_in_subprocess

    h = Harness()
    h.register_defaults()
    h.register_workflow(WAITER)
    fork = {"name": "f", "taskReferenceName": "f", "type": "FORK_JOIN"}
    fork["forkTasks"] = [[_wait(f"w{i}", f"k{i % 2}")] for i in range(4)]
    join = {
        "name": "j",
        "taskReferenceName": "j",
        "type": "JOIN",
        "joinOn": ["w0", "w1", "w2", "w3"],
    }
    h.register_workflow({"name": "many", "version": 1, "tasks": [fork, join]})
    for i in range(6):
        h.start("waiter" if i % 2 else "many", {"order": f"k{i % 2}"})
        publish(h, "e", f"k{i % 3}", {"i": i}, ttl_ms=3_000)
        publish(h, "inventory.reserved", f"k{i % 2}", ttl_ms=1_000)
        h.advance(700)
    assert sum(len(r["correlated"]) for r in h.state.event_log.values()) >= 6
    assert h.state.messages and h.state.event_waits
    log_path = tmp_path / "log.json"
    log_path.write_text(json.dumps(h.log), encoding="utf-8")
    snap0, outs0, _ = replay_in_subprocess(log_path, "0", tmp_path)
    snap1, outs1, _ = replay_in_subprocess(log_path, "12345", tmp_path)
    assert snap0 == snap1 == h.state.snapshot_bytes()
    assert outs0 == outs1
