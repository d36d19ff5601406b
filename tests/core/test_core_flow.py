"""Control-flow rules of the core that the conformance suite does not show: validation at
registration (field and reference named), cycles, API rules for system tasks, determinism of
child ids, limits."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.core import limits
from orchestrator.core.conditions import (
    ConditionError,
    condition_true,
    parse_condition,
    parse_duration_ms,
    parse_until_ms,
)
from orchestrator.core.errors import Code
from tests.core_helpers import Harness, check_invariants, state_without_requests

JSON = Any


def S(ref: str, name: str = "task_a", **kw: JSON) -> dict[str, JSON]:
    return {"name": name, "taskReferenceName": ref, **kw}


def T(ttype: str, ref: str, **kw: JSON) -> dict[str, JSON]:
    return {"name": ref, "taskReferenceName": ref, "type": ttype, **kw}


def W(name: str, *tasks: JSON, **kw: JSON) -> dict[str, JSON]:
    return {"name": name, "version": 1, "tasks": list(tasks), **kw}


def rejected(h: Harness, definition: JSON) -> str:
    before = state_without_requests(h.state)
    outcome = h.register_workflow(definition, check=False)
    assert outcome.code is Code.INVALID_ARGUMENT, outcome
    assert state_without_requests(h.state) == before
    return outcome.message


FORK = T("FORK_JOIN", "fork", forkTasks=[[S("a")], [S("b")]])


@pytest.mark.parametrize(
    "definition, expected",
    [
        (
            W("d", FORK, T("JOIN", "j", joinOn=["a", "b"]), S("a")),
            ["tasks[2].taskReferenceName", "duplicate reference 'a'", "tasks[0].forkTasks[0][0]"],
        ),
        (
            W("d", T("SWITCH", "sw", expression="x", decisionCases={"1": [S("x")], "2": [S("x")]})),
            ["tasks[0].decisionCases.2[0].taskReferenceName", "duplicate reference 'x'"],
        ),
        (W("d", FORK, S("after")), ["tasks[0] (fork)", "must be followed by a JOIN"]),
        (W("d", FORK), ["tasks[0] (fork)", "must be followed by a JOIN"]),
        (
            W("d", FORK, T("JOIN", "j", joinOn=["a", "nope"])),
            ["tasks[1].joinOn (j)", "unknown task reference 'nope'"],
        ),
        (
            W(
                "d",
                T(
                    "DO_WHILE",
                    "l",
                    loopCondition="true",
                    loopOver=[S("x", inputParameters={"v": "${ghost.output.v}"})],
                ),
            ),
            ["tasks[0].loopOver[0].inputParameters (x)", "unknown task reference 'ghost'"],
        ),
        (
            W("d", T("SWITCH", "sw", evaluatorType="python", expression="$.x")),
            ["tasks[0].evaluatorType (sw)", "python is not supported"],
        ),
        (
            W("d", T("SWITCH", "sw", evaluatorType="javascript", expression="  ")),
            ["tasks[0].expression (sw)", "non-empty script"],
        ),
        (
            W("d", T("DECISION", "d", caseExpression="", decisionCases={})),
            ["tasks[0].caseExpression (d)", "non-empty script"],
        ),
        (
            W("d", T("DO_WHILE", "l", loopCondition="", loopOver=[S("x")])),
            ["tasks[0].loopCondition (l)", "non-empty script"],
        ),
        (
            W(
                "d",
                T("INLINE", "i", inputParameters={"evaluatorType": "python", "expression": "1"}),
            ),
            ["tasks[0].inputParameters.evaluatorType (i)", "python is not supported"],
        ),
        (
            W("d", T("INLINE", "i", inputParameters={"evaluatorType": "javascript"})),
            ["tasks[0].inputParameters.expression (i)", "non-empty script"],
        ),
        (
            W("d", T("JSON_JQ_TRANSFORM", "j", inputParameters={"x": 1})),
            ["tasks[0].inputParameters.queryExpression (j)", "non-empty script"],
        ),
        (W("d", T("DO_WHILE", "l", loopOver=[S("x")])), ["tasks[0].loopCondition (l)"]),
        (W("d", T("DO_WHILE", "l", loopCondition="true", loopOver=[])), ["tasks[0].loopOver"]),
        (
            W("d", T("WAIT", "w", inputParameters={"duration": "soon"})),
            ["tasks[0].inputParameters.duration (w)", "'soon'"],
        ),
        (
            W("d", T("WAIT", "w", inputParameters={"until": "tomorrow"})),
            ["tasks[0].inputParameters.until (w)"],
        ),
        (
            W("d", T("WAIT", "w", inputParameters={"until": "2030-01-01 10:00", "duration": "1s"})),
            ["tasks[0].inputParameters (w)", "not both"],
        ),
        (
            W("d", T("TERMINATE", "t", inputParameters={"terminationStatus": "DONE"})),
            ["tasks[0].inputParameters.terminationStatus (t)"],
        ),
        (W("d", T("SUB_WORKFLOW", "s")), ["tasks[0].subWorkflowParam (s)"]),
        (W("d", T("DYNAMIC", "dy")), ["tasks[0].dynamicTaskNameParam (dy)"]),
        (W("d", T("FORK_JOIN_DYNAMIC", "df"), T("JOIN", "j")), ["tasks[0] (df)"]),
        (W("d", T("START_WORKFLOW", "sw")), ["tasks[0].inputParameters.startWorkflow (sw)"]),
        (W("d", T("HTTP", "h")), ["tasks[0].inputParameters.http_request (h)", "required"]),
        (W("d", T("EVENT", "e")), ["tasks[0].inputParameters.sink (e)", "required"]),
        (W("d", S("a__1")), ["tasks[0].taskReferenceName", "'__'"]),
        (
            W(
                "d",
                T(
                    "SUB_WORKFLOW",
                    "s",
                    subWorkflowParam={
                        "name": "x",
                        "workflowDefinition": W("x", S("y", name="unregistered")),
                    },
                ),
            ),
            ["unregistered"],
        ),
    ],
)
def test_registration_rejects_naming_field_and_reference(
    h: Harness, definition: JSON, expected: list[str]
) -> None:
    message = rejected(h, definition)
    for part in expected:
        assert part in message, message


def test_nesting_depth_is_limited(h: Harness) -> None:
    inner: JSON = [S("leaf")]
    for i in range(limits.MAX_NESTING_DEPTH):
        inner = [T("DO_WHILE", f"l{i}", loopCondition="false", loopOver=inner)]
    message = rejected(h, W("deep", *inner))
    assert "nest deeper" in message


def test_fan_out_is_limited(h: Harness) -> None:
    forks = [[S(f"b{i}")] for i in range(limits.MAX_FORK_BRANCHES + 1)]
    message = rejected(h, W("wide", T("FORK_JOIN", "f", forkTasks=forks), T("JOIN", "j")))
    assert "tasks[0].forkTasks (f)" in message and "branches" in message


def test_tasks_per_definition_count_nested_tasks(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_TASKS_PER_DEFINITION", 3)
    message = rejected(
        h, W("many", T("DO_WHILE", "l", loopCondition="false", loopOver=[S("a"), S("b"), S("c")]))
    )
    assert "at most 3 tasks" in message


def test_sub_workflow_cycles_are_rejected_directly_and_through_others(h: Harness) -> None:
    message = rejected(h, W("self", T("SUB_WORKFLOW", "s", subWorkflowParam={"name": "self"})))
    assert "cycle: self -> self" in message
    h.register_workflow(W("a", T("SUB_WORKFLOW", "s", subWorkflowParam={"name": "b"})))
    h.register_workflow(W("c", S("x")))
    h.register_workflow(W("b", T("SUB_WORKFLOW", "s", subWorkflowParam={"name": "c"})))
    message = rejected(
        h,
        W(
            "c",
            T("START_WORKFLOW", "st", inputParameters={"startWorkflow": {"name": "a"}}),
            version=2,
        ),
    )
    assert "cycle: c -> a -> b -> c" in message


def test_normalization_is_idempotent_for_every_conformance_definition() -> None:
    from orchestrator.core.definitions import normalize_workflow_def
    from tests.conformance.cases import CASES

    for case in CASES:
        for d in [*case.get("register", []), case["workflow"]]:
            once = normalize_workflow_def(d)
            assert normalize_workflow_def(once) == once, case["name"]


def test_operator_tasks_cannot_be_completed_or_heartbeated_through_the_api(h: Harness) -> None:
    h.register_workflow(W("j", FORK, T("JOIN", "j", joinOn=["a", "b"]), S("w_after")))
    wf_id = h.start("j")
    join = next(t for t in h.tasks_of(wf_id) if t.reference_task_name == "j")
    assert join.status == "IN_PROGRESS"
    out = h.complete(join.task_id, check=False)
    assert out.code is Code.FAILED_PRECONDITION and "JOIN" in out.message
    h.register_workflow(W("w", T("WAIT", "w")))
    wid = h.start("w")
    wait = h.last_task(wid)
    assert h.heartbeat(wait.task_id, check=False).code is Code.FAILED_PRECONDITION
    assert h.poll("WAIT") == [], "WAIT tasks are never pollable"
    h.complete(wait.task_id, {"ok": 1})
    assert h.wf(wid).status == "COMPLETED"
    check_invariants(h.state)


def test_child_id_is_derived_from_the_parent_task_and_never_doubles(h: Harness) -> None:
    h.register_workflow(W("child", S("c")))
    h.register_workflow(W("parent", T("SUB_WORKFLOW", "s", subWorkflowParam={"name": "child"})))
    wf_id = h.start("parent")
    sub = h.last_task(wf_id)
    assert sub.sub_workflow_id == f"{sub.task_id}-sub"
    child = h.wf(sub.sub_workflow_id)
    assert child.parent_workflow_id == wf_id and child.parent_workflow_task_id == sub.task_id
    assert sum(1 for w in h.state.workflows if w.startswith(wf_id)) == 2
    h.terminate(wf_id)
    assert h.wf(sub.sub_workflow_id).status == "TERMINATED"
    assert sub.status == "CANCELED"
    check_invariants(h.state)


def test_terminating_a_child_cancels_the_parent_task(h: Harness) -> None:
    h.register_workflow(W("child", S("c")))
    h.register_workflow(W("parent", T("SUB_WORKFLOW", "s", subWorkflowParam={"name": "child"})))
    wf_id = h.start("parent")
    sub = h.last_task(wf_id)
    h.terminate(sub.sub_workflow_id, "operator")
    assert sub.status == "CANCELED"
    assert h.wf(wf_id).status == "TERMINATED"
    check_invariants(h.state)


def test_a_sub_workflow_of_a_since_removed_definition_fails_the_task(h: Harness) -> None:
    h.register_workflow(W("parent", T("SUB_WORKFLOW", "s", subWorkflowParam={"name": "later"})))
    wf_id = h.start("parent")
    assert h.wf(wf_id).status == "FAILED"
    assert "'later' is not registered" in h.wf(wf_id).reason_for_incompletion
    check_invariants(h.state)


def test_a_runaway_loop_of_system_tasks_stops_at_the_iteration_limit(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_LOOP_ITERATIONS", 20)
    h.register_workflow(
        W("spin", T("DO_WHILE", "l", loopCondition="true", loopOver=[T("NOOP", "n")]))
    )
    wf_id = h.start("spin")
    assert h.wf(wf_id).status == "FAILED"
    assert "MAX_LOOP_ITERATIONS" in h.wf(wf_id).reason_for_incompletion
    check_invariants(h.state)


def test_a_task_input_built_ever_deeper_fails_the_task_not_the_apply(h: Harness) -> None:
    # Each iteration wraps the variable in one more object. Without a bound the loop ran its
    # 1 000 iterations and left a variable 1 000 levels deep: the state could no longer be
    # encoded (RecursionError in the snapshot, so no log compaction, ever), nor the workflow read.
    wrap = T("SET_VARIABLE", "sv", inputParameters={"v": {"n": "${workflow.variables.v}"}})
    h.register_workflow(W("grow", T("DO_WHILE", "l", loopCondition="true", loopOver=[wrap])))
    wf_id = h.start("grow")
    wf = h.wf(wf_id)
    assert wf.status == "FAILED"
    assert "nested more than 300 levels deep" in wf.reason_for_incompletion
    assert h.state.snapshot_bytes()
    check_invariants(h.state)


def test_a_workflow_quarantined_after_a_bug_leaves_nothing_behind(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug in a handler, and ending the workflow fails too: the last-resort quarantine still
    # fails the workflow and cancels its tasks cleanly (queues, timers), like a normal end.
    from orchestrator.core import engine
    from orchestrator.core.commands import CompleteTask
    from orchestrator.core.processors import workflows

    h.register_workflow(W("q", FORK, T("JOIN", "j", joinOn=["a", "b"])))
    wf_id = h.start("q")
    a = h.poll_one("task_a")

    def bug(*_: Any) -> Any:
        raise KeyError("bug")

    monkeypatch.setitem(engine.PROCESSORS, CompleteTask, bug)
    monkeypatch.setattr(workflows, "end_workflow", bug)
    outcome = h.complete(a, check=False)
    assert outcome.code is Code.INTERNAL
    wf = h.wf(wf_id)
    assert wf.status == "FAILED" and "internal error" in wf.reason_for_incompletion
    statuses = {h.state.tasks[t].reference_task_name: h.state.tasks[t].status for t in wf.tasks}
    assert statuses["b"] == "CANCELED" and statuses["a"] == "CANCELED"
    check_invariants(h.state)


def test_a_join_on_an_unscheduled_branch_fails_instead_of_hanging(h: Harness) -> None:
    h.register_workflow(
        W(
            "hang",
            T("SWITCH", "sw", expression="k", decisionCases={"a": [S("a")]}),
            T("JOIN", "j", joinOn=["a"]),
        )
    )
    wf_id = h.start("hang", {"k": "other"})
    assert h.wf(wf_id).status == "FAILED"
    assert "no progress" in h.wf(wf_id).reason_for_incompletion


@pytest.mark.parametrize(
    "cond, doc, want",
    [
        (
            "if ($.loop['iteration'] < $.value) { true; } else { false; }",
            {"loop": {"iteration": 1}, "value": 3},
            True,
        ),
        (
            "if ($.loop['iteration'] < $.value) { true; } else { false; }",
            {"loop": {"iteration": 3}, "value": 3},
            False,
        ),
        (
            "(function () { if ($.l['iteration'] < 5) { return true; } return false; })();",
            {"l": {"iteration": 4}},
            True,
        ),
        ("$.l.iteration <= 2 && $.t['status'] != 'done'", {"l": {"iteration": 2}, "t": {}}, True),
        ("$.t.items.length > 1 ? true : false", {"t": {"items": [1, 2]}}, True),
        ("!($.x === 1) || false", {"x": 1}, False),
        ("$.missing < 3", {}, False),
        ("$.n == '3'", {"n": 3}, True),
    ],
)
def test_restricted_loop_condition(cond: str, doc: JSON, want: bool) -> None:
    assert condition_true(cond, doc) is want


@pytest.mark.parametrize(
    "bad",
    ["", "while(true){}", "$.x + 1 > 2", "eval('1')", "$.x.constructor('x')()", "a = 1"],
)
def test_restricted_loop_condition_rejects_anything_else(bad: str) -> None:
    with pytest.raises(ConditionError):
        parse_condition(bad)


def test_durations_and_dates() -> None:
    assert parse_duration_ms("2 minutes 10 seconds") == 130_000
    assert parse_duration_ms("1d 2h 3m 4s") == ((24 + 2) * 60 + 3) * 60_000 + 4000
    assert parse_duration_ms("5 secs") == 5000
    assert parse_until_ms("1970-01-01 00:30 UTC") == 1_800_000
    assert parse_until_ms("1970-01-01 01:30 +01:00") == 1_800_000
    for bad in ["", "soon", "2 fortnights", "-1 s"]:
        with pytest.raises(ConditionError):
            parse_duration_ms(bad)
    with pytest.raises(ConditionError):
        parse_until_ms("2024-13-01 10:00")
    with pytest.raises(ConditionError):
        parse_until_ms("2024-01-01 10:00 PST")
