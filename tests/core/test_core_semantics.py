"""Conductor's semantics where the engine once differed (issue 14, item 4), on the pure core:
what a SWITCH/DECISION reports, the FORK task a fork creates, and what a TERMINATE with status
FAILED leaves in the workflow and hands to its failure workflow. Each test is given/when/then;
the conformance suite (tests/conformance/cases.py) runs the same behaviours end to end."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.core.commands import ScriptResult
from orchestrator.core.processors.scheduler import java_text
from orchestrator.core.records import TaskType
from orchestrator.core.state import State
from tests.conformance.cases import S, T, W
from tests.core_helpers import Harness, check_invariants, replay

JSON = Any
S_ = 1000


def work(ref: str) -> dict[str, JSON]:
    return S("work", ref)


def harness(*workflows: JSON) -> Harness:
    h = Harness()
    h.leader_epoch(1)
    h.register_task_defs(
        {"name": "work", "retryCount": 0, "retryDelaySeconds": 0, "responseTimeoutSeconds": 60}
    )
    for w in workflows:
        h.register_workflow(w)
    return h


def by_ref(h: Harness, wf_id: str, ref: str) -> Any:
    (task,) = [t for t in h.tasks_of(wf_id) if t.reference_task_name == ref]
    return task


def refs(h: Harness, wf_id: str) -> list[str]:
    return [t.reference_task_name for t in h.tasks_of(wf_id)]


# ------------------------------------------------------------------ SWITCH / DECISION


def value_switch(**cases: JSON) -> JSON:
    return W(
        "sw",
        T(
            "SWITCH",
            "sw",
            evaluatorType="value-param",
            expression="v",
            inputParameters={"v": "${workflow.input.v}"},
            decisionCases=cases,
            defaultCase=[work("other")],
        ),
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), (False, "false"), (1, "1"), (1.5, "1.5"), ("ups", "ups"), (None, "null")],
)
def test_a_value_param_switch_reports_the_value_as_text_and_matches_it(
    value: JSON, text: str
) -> None:
    # given a SWITCH with a case named by the value's text
    h = harness(value_switch(**{text: [work("chosen")]}))
    # when it evaluates the value (None: the input is missing)
    wf_id = h.start("sw", {} if value is None else {"v": value})
    # then the case runs and the output carries the text, as Conductor's SwitchTaskMapper
    assert by_ref(h, wf_id, "sw").output == {"evaluationResult": [text], "selectedCase": text}
    assert refs(h, wf_id) == ["sw", "chosen"]


def test_the_default_case_reports_the_evaluated_value_not_default() -> None:
    # given a SWITCH whose value matches no case
    h = harness(value_switch(ups=[work("chosen")]))
    # when it runs
    wf_id = h.start("sw", {"v": 2.0})
    # then the default case runs and selectedCase is still the value (as Java prints 2.0)
    assert by_ref(h, wf_id, "sw").output == {"evaluationResult": ["2.0"], "selectedCase": "2.0"}
    assert refs(h, wf_id) == ["sw", "other"]


def test_a_matching_case_without_tasks_runs_the_default_case() -> None:
    # given a SWITCH whose matching case is empty (Conductor then takes defaultCase)
    h = harness(value_switch(ups=[]))
    # when the value matches it
    wf_id = h.start("sw", {"v": "ups"})
    # then the default case runs; the output reports the value
    assert refs(h, wf_id) == ["sw", "other"]
    assert by_ref(h, wf_id, "sw").output["selectedCase"] == "ups"


def test_a_javascript_switch_reports_its_result_as_text() -> None:
    # given a JavaScript SWITCH with a case "true"
    h = harness(
        W(
            "swjs",
            T(
                "SWITCH",
                "sw",
                evaluatorType="graaljs",
                expression="$.n > 1",
                inputParameters={"n": 5},
                decisionCases={"true": [work("big")]},
                defaultCase=[work("small")],
            ),
        )
    )
    wf_id = h.start("swjs")
    sw = by_ref(h, wf_id, "sw")
    # when the script's boolean result is committed
    h.ok(ScriptResult(sw.task_id, sw.script.fence, h.epoch, True, True, ""))
    # then the output holds "true", not true, and case "true" runs
    assert h.task(sw.task_id).output == {"evaluationResult": ["true"], "selectedCase": "true"}
    assert refs(h, wf_id) == ["sw", "big"]


def test_a_decision_reports_case_output() -> None:
    # given a legacy DECISION on a number
    h = harness(
        W(
            "dec",
            T(
                "DECISION",
                "d",
                caseValueParam="c",
                inputParameters={"c": "${workflow.input.c}"},
                decisionCases={"7": [work("seven")]},
            ),
        )
    )
    # when it runs
    wf_id = h.start("dec", {"c": 7})
    # then, as Conductor's DecisionTaskMapper, its output is caseOutput with the text
    assert by_ref(h, wf_id, "d").output == {"caseOutput": ["7"]}
    assert refs(h, wf_id) == ["d", "seven"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (100.0, "100.0"),
        (0.001, "0.001"),
        (0.0001, "1.0E-4"),
        (12345678.0, "1.2345678E7"),
        (1e21, "1.0E21"),
        (-2.5e-7, "-2.5E-7"),
        (-0.0, "-0.0"),
        (2**63, "9223372036854775808"),
        ([1, "a", None, True], "[1, a, null, true]"),
        ({"a": 1, "b": {"c": [2.5]}}, "{a=1, b={c=[2.5]}}"),
    ],
)
def test_values_become_text_as_java_prints_them(value: JSON, text: str) -> None:
    assert java_text(value) == text


# ------------------------------------------------------------------ FORK

STATIC_FORK = W(
    "fork",
    T("FORK_JOIN", "fk", forkTasks=[[work("a")], [work("b")]]),
    T("JOIN", "jn", joinOn=["a", "b"]),
    work("after"),
)
DYNAMIC_FORK = W(
    "dynfork",
    T(
        "FORK_JOIN_DYNAMIC",
        "df",
        inputParameters={"forkTaskName": "work", "forkTaskInputs": [{"n": 1}, {"n": 2}]},
    ),
    T("JOIN", "dj"),
    work("after"),
)


@pytest.mark.parametrize("defn", [STATIC_FORK, DYNAMIC_FORK], ids=["static", "dynamic"])
def test_a_fork_creates_a_task_of_type_fork(defn: JSON) -> None:
    # given a FORK_JOIN / FORK_JOIN_DYNAMIC definition
    h = harness(defn)
    # when the workflow starts
    wf_id = h.start(defn["name"])
    # then its first task is a completed FORK (Conductor's TaskType.FORK), the branches run
    fork = h.tasks_of(wf_id)[0]
    assert (fork.type, fork.task_type, fork.status) == (TaskType.FORK, "FORK", "COMPLETED")
    assert len(h.queued("work")) == 2


@pytest.mark.parametrize(
    ("defn", "old_type"),
    [(STATIC_FORK, TaskType.FORK_JOIN), (DYNAMIC_FORK, TaskType.FORK_JOIN_DYNAMIC)],
    ids=["static", "dynamic"],
)
def test_a_fork_task_written_before_as_fork_join_still_runs(defn: JSON, old_type: TaskType) -> None:
    # given a running fork whose task an older core wrote with the definition's type
    h = harness(defn)
    wf_id = h.start(defn["name"])
    fork = h.tasks_of(wf_id)[0]
    fork.type, fork.task_type = old_type, old_type.value
    # when a replica loads it from a snapshot and the branches finish
    h.state = State.from_snapshot_bytes(h.state.snapshot_bytes())
    assert h.tasks_of(wf_id)[0].type is old_type
    for tid in h.poll("work", 2):
        h.complete(tid, {"done": tid})
    h.complete(h.poll_one("work"), {})
    # then the join and what follows ran, and the old record keeps its type
    wf = h.wf(wf_id)
    assert wf.status == "COMPLETED", wf.reason_for_incompletion
    assert h.tasks_of(wf_id)[0].task_type == old_type.value
    assert refs(h, wf_id)[-1] == "after"
    check_invariants(h.state)


# ------------------------------------------------------------------ TERMINATE with FAILED

CHECK = W("check", T("HUMAN", "look"))


def terminating(workflow_output: JSON, **kw: JSON) -> JSON:
    params: dict[str, JSON] = {"terminationStatus": "FAILED", "terminationReason": "no stock"}
    if workflow_output is not None:
        params["workflowOutput"] = workflow_output
    return W(
        "order",
        work("a"),
        T("TERMINATE", "stop", inputParameters=params),
        work("never"),
        failureWorkflow="check",
        **kw,
    )


def test_terminate_failed_keeps_the_note_and_hands_over_its_task_and_final_output() -> None:
    # given a workflow with a failure workflow that a TERMINATE fails with a workflowOutput
    h = harness(CHECK, terminating({"r": "${a.output.v}", "fixed": 1}))
    wf_id = h.start("order", {"orderId": 7})
    # when its first task completes and the TERMINATE runs
    h.complete(h.poll_one("work"), {"v": 42})
    wf = h.wf(wf_id)
    stop = by_ref(h, wf_id, "stop")
    failure_id = f"{wf_id}-failure"
    # then the TERMINATE task's own output is workflowOutput's keys
    assert stop.output == {"r": 42, "fixed": 1}
    # and the workflow's output is that, with conductor.failure_workflow kept in it
    assert wf.status == "FAILED" and wf.reason_for_incompletion == "no stock"
    assert wf.output == {"r": 42, "fixed": 1, "conductor.failure_workflow": failure_id}
    # and the failure workflow gets the TERMINATE task's id and the failed workflow's final
    # output (before the note was added)
    inp = h.wf(failure_id).input
    assert inp["failureTaskId"] == stop.task_id
    assert inp["failureStatus"] == "FAILED" and inp["reason"] == "no stock"
    assert inp["failedWorkflow"]["output"] == {"r": 42, "fixed": 1}
    assert inp["orderId"] == 7
    check_invariants(h.state)


def test_a_non_map_workflow_output_is_wrapped_as_output() -> None:
    # given a TERMINATE whose workflowOutput is a list
    h = harness(CHECK, terminating(["x", 1]))
    wf_id = h.start("order")
    # when it runs
    h.complete(h.poll_one("work"), {})
    # then its output, and the workflow's, wrap it under "output" (Conductor's Terminate)
    assert by_ref(h, wf_id, "stop").output == {"output": ["x", 1]}
    wf = h.wf(wf_id)
    assert wf.output == {"output": ["x", 1], "conductor.failure_workflow": f"{wf_id}-failure"}


def test_a_terminate_without_workflow_output_leaves_an_empty_output() -> None:
    # given outputParameters and a TERMINATE with status COMPLETED and no workflowOutput
    defn = W(
        "early",
        work("a"),
        T("TERMINATE", "stop", inputParameters={"terminationStatus": "COMPLETED"}),
        outputParameters={"v": "${a.output.v}"},
    )
    h = harness(defn)
    wf_id = h.start("early")
    # when it runs
    h.complete(h.poll_one("work"), {"v": 1})
    # then, as Conductor's updateWorkflowOutput, the TERMINATE's (empty) output is the output
    wf = h.wf(wf_id)
    assert (wf.status, wf.output) == ("COMPLETED", {})
    assert by_ref(h, wf_id, "stop").output == {}


def test_the_failure_workflow_gets_no_failure_task_id_when_no_task_failed() -> None:
    # given a workflow that times out while its task still runs
    defn = W("slow", T("HUMAN", "wait_here"), timeoutSeconds=60, failureWorkflow="check")
    h = harness(CHECK, defn)
    wf_id = h.start("slow")
    # when its timeout fires
    h.tick(61 * S_)
    # then the failure workflow starts without a failureTaskId key (the HUMAN was CANCELED)
    assert h.wf(wf_id).status == "TIMED_OUT"
    inp = h.wf(f"{wf_id}-failure").input
    assert "failureTaskId" not in inp
    assert inp["failureStatus"] == "TIMED_OUT"


def test_a_failed_task_is_the_failure_task_even_after_an_earlier_failed_attempt() -> None:
    # given a task that failed once, was retried, and whose retry fails too
    h = harness(CHECK)
    h.register_task_defs({"name": "flaky", "retryCount": 1, "retryDelaySeconds": 0})
    h.register_workflow(W("flaky", S("flaky", "a"), failureWorkflow="check"))
    wf_id = h.start("flaky")
    first = h.poll_one("flaky")
    h.fail(first)
    second = h.poll_one("flaky")
    # when the retry fails
    h.fail(second)
    # then failureTaskId names the attempt that ended the workflow
    assert h.wf(f"{wf_id}-failure").input["failureTaskId"] == second


def test_terminate_failed_replays_and_restores_alike() -> None:
    h = harness(CHECK, terminating({"r": 1}))
    h.start("order")
    h.complete(h.poll_one("work"), {})
    replayed, _ = replay(h.log)
    assert replayed.snapshot_bytes() == h.state.snapshot_bytes()
    restored = State.from_snapshot_bytes(h.state.snapshot_bytes())
    assert restored.snapshot_bytes() == h.state.snapshot_bytes()
