"""The operator's actions in the core (processors/operations.py): given a state, when pause,
resume, restart, retry, rerun, skip or remove, then this state, these events and these history
operations; a refused action changes nothing, a retried request returns its first outcome, and
a log with actions replays to the same state."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core import history_ops as H
from orchestrator.core import limits
from orchestrator.core.commands import (
    Command,
    PauseWorkflow,
    RemoveWorkflow,
    RerunWorkflow,
    RestartWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SkipTask,
)
from orchestrator.core.engine import precheck
from orchestrator.core.errors import Code
from orchestrator.core.machine import Outcome
from orchestrator.core.state import State
from tests.core.test_core_determinism import SMALL_LIMITS, replay_in_subprocess
from tests.core_helpers import (
    Harness,
    check_invariants,
    replay,
    state_without_requests,
    wire,
)

JSON = Any

CHILD_PARENT: dict[str, JSON] = {
    "name": "parent",
    "version": 1,
    "tasks": [
        {
            "name": "one_step",
            "taskReferenceName": "sw",
            "type": "SUB_WORKFLOW",
            "subWorkflowParam": {"name": "one_step", "version": 1},
        },
        {"name": "task_c", "taskReferenceName": "after"},
    ],
}
FORKED: dict[str, JSON] = {
    "name": "forked",
    "version": 1,
    "tasks": [
        {
            "name": "fork",
            "taskReferenceName": "fork",
            "type": "FORK_JOIN",
            "forkTasks": [
                [{"name": "task_c", "taskReferenceName": "left"}],
                [{"name": "task_c", "taskReferenceName": "right"}],
            ],
        },
        {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": ["left", "right"]},
    ],
}
LOOPED: dict[str, JSON] = {
    "name": "looped",
    "version": 1,
    "tasks": [
        {"name": "task_c", "taskReferenceName": "c"},
        {
            "name": "loop",
            "taskReferenceName": "loop",
            "type": "DO_WHILE",
            "loopCondition": "$.loop['iteration'] < 2",
            "loopOver": [{"name": "task_a", "taskReferenceName": "inner"}],
        },
    ],
}
ONE_STEP_WITH_FAILURE: dict[str, JSON] = {
    "name": "fragile",
    "version": 1,
    "failureWorkflow": "cleanup",
    "tasks": [{"name": "task_c", "taskReferenceName": "c"}],
}
TIMED: dict[str, JSON] = {
    "name": "timed",
    "version": 1,
    "timeoutSeconds": 60,
    "tasks": [{"name": "task_c", "taskReferenceName": "c"}],
}


def act(h: Harness, cls: type[Command], workflow_id: str, **kw: Any) -> Outcome:
    return h.apply_one(cls(request_id=h.new_id(cls.NAME), workflow_id=workflow_id, **kw))


def ok(h: Harness, cls: type[Command], workflow_id: str, **kw: Any) -> Outcome:
    out = act(h, cls, workflow_id, **kw)
    assert out.code is Code.OK, (out.code, out.message)
    assert out.result == {"workflow_id": workflow_id}
    check_invariants(h.state)
    return out


def refused(h: Harness, cls: type[Command], workflow_id: str, code: Code, **kw: Any) -> str:
    """The action is refused with `code` and changes nothing but the request's record."""
    before = state_without_requests(h.state)
    out = act(h, cls, workflow_id, **kw)
    assert out.code is code, (out.code, out.message)
    assert state_without_requests(h.state) == before
    assert h.effects.history == []
    return out.message


def status(h: Harness, workflow_id: str) -> str:
    return str(h.state.workflows[workflow_id].status)


def refs(h: Harness, workflow_id: str) -> list[tuple[str, str]]:
    return [(t.reference_task_name, str(t.status)) for t in h.tasks_of(workflow_id)]


def failed_one_step(h: Harness) -> tuple[str, str]:
    wf = h.start("one_step", {"k": 1})
    tid = h.poll_one("task_c")
    h.fail(tid, reason="boom")
    assert status(h, wf) == "FAILED"
    return wf, tid


def b_failed(h: Harness) -> tuple[str, str]:
    """two_step: a COMPLETED, b FAILED_WITH_TERMINAL_ERROR, the workflow FAILED."""
    wf = h.start("two_step", {"x": 1})
    h.complete(h.poll_one("task_a"), {"y": 2})
    b = h.poll_one("task_b")
    h.fail(b, terminal=True)
    assert status(h, wf) == "FAILED"
    return wf, b


# ---------------------------------------------------------------- pause, resume


def test_a_paused_workflow_schedules_nothing_until_resumed(h: Harness) -> None:
    wf = h.start("two_step", {"x": 1})
    a = h.poll_one("task_a")
    ok(h, PauseWorkflow, wf)
    assert status(h, wf) == "PAUSED"
    assert [type(e).__name__ for e in h.effects.events] == ["WorkflowPaused", "RequestRecorded"]

    h.complete(a, {"y": 5})  # a task in progress runs on and its result is recorded
    assert refs(h, wf) == [("a", "COMPLETED")]
    assert h.queued("task_b") == []
    check_invariants(h.state)

    ok(h, ResumeWorkflow, wf)
    assert status(h, wf) == "RUNNING"
    assert refs(h, wf) == [("a", "COMPLETED"), ("b", "SCHEDULED")]
    assert h.last_task(wf).input == {"y": 5}


def test_pausing_twice_is_ok_and_other_statuses_are_refused(h: Harness) -> None:
    wf = h.start("one_step")
    ok(h, PauseWorkflow, wf)
    ok(h, PauseWorkflow, wf)
    assert status(h, wf) == "PAUSED"
    message = refused(h, ResumeWorkflow, "nope", Code.NOT_FOUND)
    assert "nope" in message
    ok(h, ResumeWorkflow, wf)
    message = refused(h, ResumeWorkflow, wf, Code.FAILED_PRECONDITION)
    assert wf in message and "RUNNING" in message
    h.complete(h.poll_one("task_c"))
    message = refused(h, PauseWorkflow, wf, Code.FAILED_PRECONDITION)
    assert wf in message and "COMPLETED" in message


def test_a_task_that_times_out_while_paused_is_retried_on_resume(h: Harness) -> None:
    wf = h.start("two_step", {"x": 1})
    a = h.poll_one("task_a")
    ok(h, PauseWorkflow, wf)
    h.tick(10_000)  # task_a's responseTimeoutSeconds
    assert h.task(a).status == "TIMED_OUT"
    assert refs(h, wf) == [("a", "TIMED_OUT")], "no retry is scheduled while paused"
    ok(h, ResumeWorkflow, wf)
    retry = h.last_task(wf)
    assert (retry.reference_task_name, retry.status) == ("a", "SCHEDULED")
    assert retry.retried_task_id == a and retry.retry_count == 1


def test_the_workflow_timeout_applies_while_paused_and_terminate_works(h: Harness) -> None:
    h.register_workflow(TIMED)
    wf = h.start("timed")
    ok(h, PauseWorkflow, wf)
    h.tick(60_000)
    assert status(h, wf) == "TIMED_OUT"
    check_invariants(h.state)

    other = h.start("timed")
    ok(h, PauseWorkflow, other)
    h.terminate(other, "stop")
    assert status(h, other) == "TERMINATED"
    assert h.queued("task_c") == [], "its task left the queue"
    check_invariants(h.state)


def test_a_child_ending_under_a_paused_parent_is_recorded_there(h: Harness) -> None:
    h.register_workflow(CHILD_PARENT)
    parent = h.start("parent")
    child = h.last_task(parent).sub_workflow_id
    ok(h, PauseWorkflow, parent)
    h.complete(h.poll_one("task_c"), {"v": 1})
    assert status(h, child) == "COMPLETED"
    assert refs(h, parent) == [("sw", "COMPLETED")]
    ok(h, ResumeWorkflow, parent)
    assert refs(h, parent) == [("sw", "COMPLETED"), ("after", "SCHEDULED")]


# ---------------------------------------------------------------- restart


def test_restart_runs_a_failed_workflow_again_from_the_beginning(h: Harness) -> None:
    wf, old = failed_one_step(h)
    ok(h, RestartWorkflow, wf)
    record = h.wf(wf)
    assert record.status == "RUNNING" and record.end_time_ms == 0
    assert record.reason_for_incompletion == "" and record.input == {"k": 1}
    assert old not in h.state.tasks and wf not in h.state.terminal_order
    (task,) = h.tasks_of(wf)
    assert task.task_id != old and task.status == "SCHEDULED" and task.retry_count == 0
    assert h.queued("task_c") == [task.task_id]
    h.complete(h.poll_one("task_c"))
    assert status(h, wf) == "COMPLETED"


def test_restart_with_the_latest_definition_runs_that_version(h: Harness) -> None:
    wf = h.start("one_step")
    h.complete(h.poll_one("task_c"))
    old_hash = h.wf(wf).def_hash
    v2 = {"name": "one_step", "version": 2, "tasks": [{"name": "task_a", "taskReferenceName": "z"}]}
    h.register_workflow(v2)
    ok(h, RestartWorkflow, wf, use_latest_definition=True)
    assert h.wf(wf).workflow_version == 2 and h.wf(wf).def_hash != old_hash
    assert refs(h, wf) == [("z", "SCHEDULED")]
    assert old_hash not in h.state.def_snapshots, "the old definition lost its last workflow"

    h.complete(h.poll_one("task_a"))
    ok(h, RestartWorkflow, wf)  # the same (now version 2) definition
    assert refs(h, wf) == [("z", "SCHEDULED")]


def test_restart_of_a_running_workflow_is_refused(h: Harness) -> None:
    wf = h.start("one_step")
    message = refused(h, RestartWorkflow, wf, Code.FAILED_PRECONDITION)
    assert wf in message and "RUNNING" in message


# ---------------------------------------------------------------- retry


def test_retry_keeps_completed_work_and_retries_the_failed_task(h: Harness) -> None:
    wf, b = b_failed(h)
    ok(h, RetryWorkflow, wf)
    assert status(h, wf) == "RUNNING"
    assert refs(h, wf) == [
        ("a", "COMPLETED"),
        ("b", "FAILED_WITH_TERMINAL_ERROR"),
        ("b", "SCHEDULED"),
    ]
    retry = h.last_task(wf)
    assert retry.retried_task_id == b and retry.retry_count == 1 and h.task(b).retried
    assert retry.input == {"y": 2}
    h.complete(h.poll_one("task_b"))
    assert status(h, wf) == "COMPLETED"


def test_retry_retries_the_canceled_branch_and_reopens_the_join(h: Harness) -> None:
    h.register_workflow(FORKED)
    wf = h.start("forked")
    left, right = h.poll("task_c", 2)
    h.fail(left)
    assert status(h, wf) == "FAILED"
    assert h.task(right).status == "CANCELED"
    ok(h, RetryWorkflow, wf)
    join = next(t for t in h.tasks_of(wf) if t.reference_task_name == "join")
    assert join.status == "IN_PROGRESS"
    assert sorted(h.poll("task_c", 5)) == sorted(t.task_id for t in h.tasks_of(wf)[-2:]), (
        "both branches run again"
    )
    for tid in h.state.workflows[wf].tasks[-2:]:
        h.complete(tid)
    assert status(h, wf) == "COMPLETED"


def test_retry_is_refused_without_something_to_retry(h: Harness) -> None:
    wf = h.start("one_step")
    h.complete(h.poll_one("task_c"))
    message = refused(h, RetryWorkflow, wf, Code.FAILED_PRECONDITION)
    assert wf in message and "COMPLETED" in message
    running = h.start("one_step")
    refused(h, RetryWorkflow, running, Code.FAILED_PRECONDITION)
    refused(h, RetryWorkflow, "nope", Code.NOT_FOUND)


def test_retry_stays_within_the_task_limit(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    wf, _ = b_failed(h)
    monkeypatch.setattr(limits, "MAX_TASKS_PER_WORKFLOW", 2)
    message = refused(h, RetryWorkflow, wf, Code.FAILED_PRECONDITION)
    assert "MAX_TASKS_PER_WORKFLOW" in message


def test_retry_inside_a_loop_goes_on_with_the_loop(h: Harness) -> None:
    h.register_workflow(LOOPED)
    wf = h.start("looped")
    h.complete(h.poll_one("task_c"))
    h.fail(h.poll_one("task_a"), terminal=True)
    assert status(h, wf) == "FAILED"
    assert refs(h, wf) == [
        ("c", "COMPLETED"),
        ("loop", "CANCELED"),
        ("inner__1", "FAILED_WITH_TERMINAL_ERROR"),
    ]
    ok(h, RetryWorkflow, wf)
    assert refs(h, wf)[1:] == [
        ("loop", "IN_PROGRESS"),
        ("inner__1", "FAILED_WITH_TERMINAL_ERROR"),
        ("inner__1", "SCHEDULED"),
    ]
    h.complete(h.poll_one("task_a"))
    h.complete(h.poll_one("task_a"))
    assert refs(h, wf)[-1] == ("inner__2", "COMPLETED")
    assert status(h, wf) == "COMPLETED"


def _failed_parent(h: Harness) -> tuple[str, str]:
    h.register_workflow(CHILD_PARENT)
    parent = h.start("parent")
    child = h.last_task(parent).sub_workflow_id
    h.fail(h.poll_one("task_c"))
    assert (status(h, parent), status(h, child)) == ("FAILED", "FAILED")
    return parent, child


def test_retrying_a_failed_child_runs_its_parent_again(h: Harness) -> None:
    parent, child = _failed_parent(h)
    ok(h, RetryWorkflow, child)
    assert (status(h, parent), status(h, child)) == ("RUNNING", "RUNNING")
    assert refs(h, parent) == [("sw", "IN_PROGRESS")]
    h.complete(h.poll_one("task_c"))
    assert status(h, child) == "COMPLETED"
    assert refs(h, parent) == [("sw", "COMPLETED"), ("after", "SCHEDULED")]


def test_retry_with_resume_subworkflow_tasks_retries_the_child(h: Harness) -> None:
    parent, child = _failed_parent(h)
    ok(h, RetryWorkflow, parent, resume_subworkflow_tasks=True)
    assert refs(h, parent) == [("sw", "IN_PROGRESS")], "the same child, no new attempt"
    assert refs(h, child) == [("c", "FAILED"), ("c", "SCHEDULED")]
    check_invariants(h.state)


def test_retry_by_default_starts_a_new_child(h: Harness) -> None:
    parent, child = _failed_parent(h)
    ok(h, RetryWorkflow, parent)
    sw = h.last_task(parent)
    assert sw.reference_task_name == "sw" and sw.sub_workflow_id not in ("", child)
    assert status(h, sw.sub_workflow_id) == "RUNNING" and status(h, child) == "FAILED"


def test_a_child_whose_parent_left_memory_runs_again_on_its_own(h: Harness) -> None:
    parent, child = _failed_parent(h)
    ok(h, RemoveWorkflow, parent)  # as if archived: the parent is no longer in memory
    ok(h, RetryWorkflow, child)
    record = h.wf(child)
    assert record.status == "RUNNING" and record.parent_workflow_id == ""
    assert record.parent_workflow_task_id == ""
    h.complete(h.poll_one("task_c"))
    assert status(h, child) == "COMPLETED"


def test_a_child_its_parent_moved_on_from_is_refused(h: Harness) -> None:
    parent, child = _failed_parent(h)
    ok(h, RetryWorkflow, parent)  # a new SUB_WORKFLOW attempt, a new child
    h.terminate(parent)
    message = refused(h, RetryWorkflow, child, Code.FAILED_PRECONDITION)
    assert parent in message and "moved on" in message


# ---------------------------------------------------------------- rerun


def test_rerun_from_a_task_with_new_input_drops_what_came_after(h: Harness) -> None:
    wf = h.start("two_step", {"x": 1})
    a = h.poll_one("task_a")
    h.complete(a, {"y": 2})
    b = h.poll_one("task_b")
    h.complete(b, {"z": 3})
    assert status(h, wf) == "COMPLETED"
    ok(h, RerunWorkflow, wf, task_id=a, task_input={"x": 9}, workflow_input={"x": 8})
    assert a not in h.state.tasks and b not in h.state.tasks
    (again,) = h.tasks_of(wf)
    assert (again.reference_task_name, again.status, again.input) == ("a", "SCHEDULED", {"x": 9})
    assert h.wf(wf).input == {"x": 8}
    h.complete(h.poll_one("task_a"), {"y": 4})
    assert h.last_task(wf).input == {"y": 4}


def test_rerun_from_the_beginning_takes_the_new_input(h: Harness) -> None:
    wf, _ = b_failed(h)
    ok(h, RerunWorkflow, wf, workflow_input={"x": 7})
    assert refs(h, wf) == [("a", "SCHEDULED")]
    assert h.last_task(wf).input == {"x": 7}


def test_rerun_is_refused_for_a_foreign_task_or_bad_input(h: Harness) -> None:
    wf, _ = b_failed(h)
    _, foreign = failed_one_step(h)
    assert foreign in refused(h, RerunWorkflow, wf, Code.NOT_FOUND, task_id=foreign)
    message = refused(h, RerunWorkflow, wf, Code.INVALID_ARGUMENT, task_input=[1])
    assert "task_input" in message


# ---------------------------------------------------------------- skip


def test_skipping_a_running_task_proceeds_with_its_output(h: Harness) -> None:
    wf = h.start("two_step", {"x": 1})
    a = h.poll_one("task_a")
    ok(h, SkipTask, wf, task_reference_name="a", output={"y": 42})
    assert h.task(a).status == "SKIPPED" and h.task(a).output == {"y": 42}
    assert refs(h, wf)[-1] == ("b", "SCHEDULED")
    assert h.last_task(wf).input == {"y": 42}
    late = h.complete(a, check=False)
    assert late.code is Code.FAILED_PRECONDITION, "the worker's late result is not applied"


def test_a_future_task_is_skipped_when_the_walk_reaches_it(h: Harness) -> None:
    wf = h.start("two_step", {"x": 1})
    ok(h, SkipTask, wf, task_reference_name="b", output={"done": True})
    assert refs(h, wf) == [("a", "SCHEDULED"), ("b", "SKIPPED")]
    h.complete(h.poll_one("task_a"))
    assert status(h, wf) == "COMPLETED" and h.wf(wf).output == {"done": True}


def test_skip_is_refused_for_ended_unknown_or_container_tasks(h: Harness) -> None:
    wf = h.start("two_step", {"x": 1})
    h.complete(h.poll_one("task_a"))
    assert "COMPLETED" in refused(
        h, SkipTask, wf, Code.FAILED_PRECONDITION, task_reference_name="a"
    )
    assert "zz" in refused(h, SkipTask, wf, Code.NOT_FOUND, task_reference_name="zz")
    h.register_workflow(LOOPED)
    looped = h.start("looped")
    message = refused(h, SkipTask, looped, Code.FAILED_PRECONDITION, task_reference_name="loop")
    assert "DO_WHILE" in message and looped in message
    message = refused(h, SkipTask, looped, Code.FAILED_PRECONDITION, task_reference_name="inner")
    assert "inside a DO_WHILE" in message
    refused(h, SkipTask, wf, Code.INVALID_ARGUMENT, task_reference_name="b", output=[1])


# ---------------------------------------------------------------- remove


def test_remove_deletes_a_terminal_workflow_from_memory_and_history(h: Harness) -> None:
    wf, tid = failed_one_step(h)
    ok(h, RemoveWorkflow, wf)
    assert wf not in h.state.workflows and tid not in h.state.tasks
    assert wf not in h.state.terminal_order and not h.state.def_snapshots
    assert h.effects.history == [H.Remove(h.state.seq, wf)]
    ok(h, RemoveWorkflow, "only-in-history")
    assert h.effects.history == [H.Remove(h.state.seq, "only-in-history")]


def test_remove_of_a_running_or_paused_workflow_is_refused(h: Harness) -> None:
    wf = h.start("one_step")
    assert "terminate it first" in refused(h, RemoveWorkflow, wf, Code.FAILED_PRECONDITION)
    ok(h, PauseWorkflow, wf)
    refused(h, RemoveWorkflow, wf, Code.FAILED_PRECONDITION)


# ---------------------------------------------------------------- restore from history


def _archived(h: Harness) -> tuple[str, JSON]:
    """A failed workflow's archive document, the workflow then gone from memory."""
    wf, _ = b_failed(h)
    st = h.state
    record = st.workflows[wf]
    op = H.Archive(
        st.seq, record, tuple(st.tasks[t] for t in record.tasks), st.def_snapshots[record.def_hash]
    )
    doc = json.loads(json.dumps(H.archive_doc(op)))
    ok(h, RemoveWorkflow, wf)
    return wf, doc


def test_retry_restores_an_archived_workflow_and_drops_its_row(h: Harness) -> None:
    wf, doc = _archived(h)
    assert precheck(h.state, wire([RetryWorkflow("r", wf)])[0]).code is Code.NOT_FOUND
    assert precheck(h.state, wire([RetryWorkflow("r", wf, restore=doc)])[0]) is None
    ok(h, RetryWorkflow, wf, restore=doc)
    assert h.effects.history == [H.Remove(h.state.seq, wf)]
    assert refs(h, wf) == [
        ("a", "COMPLETED"),
        ("b", "FAILED_WITH_TERMINAL_ERROR"),
        ("b", "SCHEDULED"),
    ]
    h.complete(h.poll_one("task_b"))
    assert status(h, wf) == "COMPLETED" and wf in h.state.terminal_order


def test_a_bad_restore_document_is_invalid_and_changes_nothing(h: Harness) -> None:
    wf, doc = _archived(h)
    assert "restore" in refused(h, RestartWorkflow, wf, Code.INVALID_ARGUMENT, restore={"x": 1})
    other = dict(doc, workflow=dict(doc["workflow"], workflow_id="someone-else"))
    refused(h, RestartWorkflow, wf, Code.INVALID_ARGUMENT, restore=other)
    forged = dict(doc, definition={"definition": {"name": "x"}, "task_defs": {}})
    refused(h, RestartWorkflow, wf, Code.INVALID_ARGUMENT, restore=forged)


def test_a_refused_action_after_a_restore_undoes_the_restore(h: Harness) -> None:
    wf, doc = _archived(h)
    skip_doc = dict(doc, workflow=dict(doc["workflow"], status="COMPLETED"))
    message = refused(h, RetryWorkflow, wf, Code.FAILED_PRECONDITION, restore=skip_doc)
    assert "COMPLETED" in message and wf not in h.state.workflows


# ---------------------------------------------------------------- requests and replay


def test_a_retried_request_returns_its_first_outcome_and_changes_nothing(h: Harness) -> None:
    wf, _ = b_failed(h)
    cmd = RetryWorkflow(request_id="op-1", workflow_id=wf)
    first = h.ok(cmd)
    before = state_without_requests(h.state)
    again = h.apply_one(cmd)
    assert again.code is Code.OK and again.result.get("deduplicated") is True
    assert state_without_requests(h.state) == before
    assert first.result["workflow_id"] == wf
    assert precheck(h.state, wire([cmd])[0]) is not None, "answered without proposing"


def test_a_log_of_actions_replays_and_snapshots_to_the_same_state(h: Harness) -> None:
    _register_mix(h)
    _mixed_actions(h, random.Random(7), 80)
    replayed, _ = replay(h.log)
    assert replayed.digest() == h.digest()
    loaded = State.from_snapshot_bytes(h.state.snapshot_bytes())
    assert loaded.digest() == h.digest()


# ---------------------------------------------------------------- a random mix


HUMAN_SWITCH: dict[str, JSON] = {
    "name": "gated",
    "version": 1,
    "tasks": [
        {"name": "gate", "taskReferenceName": "gate", "type": "HUMAN"},
        {
            "name": "route",
            "taskReferenceName": "route",
            "type": "SWITCH",
            "evaluatorType": "value-param",
            "expression": "v",
            "inputParameters": {"v": "${workflow.input.x}"},
            "decisionCases": {"1": [{"name": "task_b", "taskReferenceName": "b"}]},
            "defaultCase": [{"name": "task_c", "taskReferenceName": "c"}],
        },
    ],
}
MIX_DEFINITIONS = [CHILD_PARENT, FORKED, LOOPED, HUMAN_SWITCH]


def _register_mix(h: Harness) -> None:
    for definition in MIX_DEFINITIONS:
        h.register_workflow(definition)


_ACTIONS: list[tuple[type[Command], dict[str, JSON]]] = [
    (PauseWorkflow, {}),
    (ResumeWorkflow, {}),
    (RestartWorkflow, {}),
    (RestartWorkflow, {"use_latest_definition": True}),
    (RetryWorkflow, {}),
    (RetryWorkflow, {"resume_subworkflow_tasks": True}),
    (RerunWorkflow, {"workflow_input": {"x": 3}}),
    (SkipTask, {"task_reference_name": "b", "output": {"s": 1}}),
    (SkipTask, {"task_reference_name": "c"}),
    (SkipTask, {"task_reference_name": "gate", "output": {"ok": 1}}),
    (SkipTask, {"task_reference_name": "inner__1"}),
    (RemoveWorkflow, {}),
]


def _complete_a_gate(h: Harness) -> None:
    gates = [
        t.task_id for t in h.state.tasks.values() if t.type == "HUMAN" and t.status == "IN_PROGRESS"
    ]
    if gates:
        h.complete(gates[0], {"ok": True})


class ArchivingHarness(Harness):
    """A harness that keeps what the history would hold: the archive document of every
    evicted workflow, by id, until a Remove."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, JSON] = {}

    def apply(self, *cmds: Command | dict[str, JSON], now_ms: int | None = None) -> list[Outcome]:
        outcomes = super().apply(*cmds, now_ms=now_ms)
        for op in self.effects.history:
            if isinstance(op, H.Archive):
                self.rows[op.workflow.workflow_id] = json.loads(json.dumps(H.archive_doc(op)))
            elif isinstance(op, H.Remove):
                self.rows.pop(op.workflow_id, None)
        return outcomes


def _mixed_actions(h: Harness, rng: random.Random, steps: int) -> Counter[str]:
    """Starts, worker results, ticks and every action at random; the invariants hold after
    each step, and a refused action changes nothing. Returns the actions applied. With an
    ArchivingHarness, actions also name archived workflows (with their document, as the API
    attaches it)."""
    names = ["one_step", "two_step", *(d["name"] for d in MIX_DEFINITIONS)]
    applied: Counter[str] = Counter()
    rows: dict[str, JSON] = getattr(h, "rows", {})
    for _ in range(steps):
        roll = rng.random()
        ids = [*h.state.workflows, *(r for r in rows if r not in h.state.workflows)]
        if roll < 0.2 or not ids:
            h.start(rng.choice(names), {"x": rng.randint(0, 3)})
        elif roll < 0.5:
            for task_type in ("task_a", "task_b", "task_c"):
                if task_type == "task_a" and rng.random() < 0.2:
                    _complete_a_gate(h)
                for tid in h.poll(task_type, 2):
                    # An earlier result in this loop may have ended the task's workflow.
                    if rng.random() < 0.5:
                        h.complete(tid, {"y": 1}, check=False)
                    else:
                        h.fail(tid, terminal=rng.random() < 0.5, check=False)
        elif roll < 0.55:
            h.tick(rng.choice([1_000, 10_000]))
        else:
            wf = rng.choice(ids)
            cls, kw = rng.choice(_ACTIONS)
            record = h.state.workflows.get(wf)
            if cls is RerunWorkflow and record is not None and record.tasks and rng.random() < 0.5:
                kw = {"task_id": rng.choice(record.tasks)}
            if record is None and "restore" in cls.__dataclass_fields__:
                kw = {**kw, "restore": rows[wf]}
            before = state_without_requests(h.state)
            out = act(h, cls, wf, **kw)
            assert out.code is not Code.INTERNAL, out.message
            if out.ok:
                applied[cls.NAME] += 1
                applied["restored"] += "restore" in kw
            else:
                assert state_without_requests(h.state) == before, (cls.NAME, out.message)
        check_invariants(h.state)
    return applied


@pytest.mark.parametrize("seed", range(6))
def test_random_actions_keep_every_invariant(h: Harness, seed: int) -> None:
    _register_mix(h)
    applied = _mixed_actions(h, random.Random(seed), 150)
    assert sum(applied.values()) >= 10, applied
    replayed, _ = replay(h.log)
    assert replayed.digest() == h.digest()


@pytest.mark.parametrize("seed", range(4))
def test_random_actions_on_archived_workflows_restore_them(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_TERMINAL_WORKFLOWS", 3)
    h = ArchivingHarness()
    h.leader_epoch(1)
    h.register_defaults()
    _register_mix(h)
    applied = _mixed_actions(h, random.Random(seed), 300)
    assert h.rows, "workflows were archived"
    assert applied["restored"] >= 3, applied
    replayed, _ = replay(h.log)
    assert replayed.digest() == h.digest()


def test_an_evicted_workflow_restarts_from_its_archive_on_every_replica_alike(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_TERMINAL_WORKFLOWS", 1)
    wf, _ = failed_one_step(h)
    h.start("one_step")
    h.complete(h.poll_one("task_c"))  # the second end pushes the first out of memory
    (archived,) = [op for op in h.effects.history if isinstance(op, H.Archive)]
    assert archived.workflow.workflow_id == wf and wf not in h.state.workflows
    doc = json.loads(json.dumps(H.archive_doc(archived)))

    ok(h, RestartWorkflow, wf, restore=doc)
    assert h.effects.history == [H.Remove(h.state.seq, wf)]
    assert h.state.history_seq == h.state.seq, "a replica that missed it must copy the history"
    assert refs(h, wf) == [("c", "SCHEDULED")] and h.wf(wf).input == {"k": 1}
    h.complete(h.poll_one("task_c"))
    assert status(h, wf) == "COMPLETED"
    replayed, _ = replay(h.log)
    assert replayed.digest() == h.digest()


def test_a_retried_workflow_that_fails_again_starts_its_own_failure_workflow(h: Harness) -> None:
    h.register_workflow(
        {"name": "cleanup", "version": 1, "tasks": [{"name": "task_a", "taskReferenceName": "x"}]}
    )
    h.register_workflow(ONE_STEP_WITH_FAILURE)
    wf = h.start("fragile")
    h.fail(h.poll_one("task_c"))
    first = h.wf(wf).output["conductor.failure_workflow"]
    assert status(h, first) == "RUNNING"
    ok(h, RetryWorkflow, wf)
    h.fail(h.poll_one("task_c"))
    second = h.wf(wf).output["conductor.failure_workflow"]
    assert second != first and status(h, second) == "RUNNING"
    assert h.wf(second).input["failureTaskId"] == h.last_task(wf).task_id


def test_actions_replay_byte_identical_across_hash_seeds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in SMALL_LIMITS.items():
        monkeypatch.setattr(limits, key, value)
    h = ArchivingHarness()
    h.leader_epoch(1)
    h.register_defaults()
    _register_mix(h)
    applied = _mixed_actions(h, random.Random(11), 400)
    assert applied["restored"] and applied["RetryWorkflow"] and applied["PauseWorkflow"], applied
    log_path = tmp_path / "log.json"
    log_path.write_text(json.dumps(h.log, ensure_ascii=False), encoding="utf-8")
    snap0, _, probe0 = replay_in_subprocess(log_path, "0", tmp_path)
    snap1, _, probe1 = replay_in_subprocess(log_path, "4242", tmp_path)
    assert probe0 != probe1, "the two subprocesses really ran with different hash seeds"
    assert snap0 == snap1 == h.state.snapshot_bytes()
