"""Given a state, when a command is applied, then this outcome and this state: one rule per test.

Pure core only (orchestrator/core): no sockets, no threads, no sleeping; time is the harness clock.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from orchestrator.core import limits
from orchestrator.core.codec import fingerprint
from orchestrator.core.commands import (
    FP_KEY,
    CompleteTask,
    FailTask,
    LeaderEpoch,
    Noop,
    PollTasks,
    RegisterTaskDefs,
    RegisterWorkflowDef,
    StartWorkflow,
    Tick,
)
from orchestrator.core.definitions import TASK_DEF_DEFAULTS
from orchestrator.core.errors import Code
from orchestrator.core.state import State
from tests.core_helpers import (
    DEFAULT_TASK_DEFS,
    START_MS,
    TWO_STEP,
    Harness,
    check_invariants,
    state_without_requests,
    state_without_seq,
)

JSON = Any


def wf_def(name: str, *tasks: dict[str, JSON], **extra: JSON) -> dict[str, JSON]:
    return {"name": name, "version": 1, "tasks": list(tasks), **extra}


def simple(name: str, ref: str, **extra: JSON) -> dict[str, JSON]:
    return {"name": name, "taskReferenceName": ref, **extra}


def register_rejected(h: Harness, definition: JSON, code: Code = Code.INVALID_ARGUMENT) -> str:
    before = state_without_requests(h.state)
    outcome = h.register_workflow(definition, check=False)
    assert outcome.code is code, outcome
    assert state_without_requests(h.state) == before, "a rejected definition changes nothing"
    return outcome.message


# ============================================================ task definitions


def test_register_task_defs_fills_conductor_defaults() -> None:
    h = Harness()
    outcome = h.register_task_defs({"name": "plain"})
    assert outcome.result == {"names": ["plain"]}
    stored = h.state.task_defs["plain"]
    for key, default in TASK_DEF_DEFAULTS.items():
        assert stored[key] == default, key
    assert stored["retryCount"] == 3
    assert stored["retryLogic"] == "FIXED"
    assert stored["retryDelaySeconds"] == 60
    assert stored["responseTimeoutSeconds"] == 3600


def test_register_task_defs_keeps_given_values_and_unknown_fields() -> None:
    h = Harness()
    h.register_task_defs(
        {"name": "custom", "retryCount": 0, "retryLogic": "LINEAR_BACKOFF", "ownerEmail": "a@b"}
    )
    stored = h.state.task_defs["custom"]
    assert stored["retryCount"] == 0
    assert stored["retryLogic"] == "LINEAR_BACKOFF"
    assert stored["ownerEmail"] == "a@b"


def test_register_task_def_without_name_names_the_field() -> None:
    h = Harness()
    outcome = h.register_task_defs({"name": "ok"}, {"retryCount": 1}, check=False)
    assert outcome.code is Code.INVALID_ARGUMENT
    assert "task_def_json[1].name" in outcome.message
    assert h.state.task_defs == {}, "a rejected batch of task defs registers none of them"


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"retryCount": -1}, "retryCount"),
        ({"retryCount": "3"}, "retryCount"),
        ({"retryLogic": "RANDOM"}, "retryLogic"),
        ({"timeoutPolicy": "NEVER"}, "timeoutPolicy"),
        ({"responseTimeoutSeconds": 0}, "responseTimeoutSeconds"),
        ({"responseTimeoutSeconds": 100, "timeoutSeconds": 10}, "responseTimeoutSeconds"),
        ({"backoffScaleFactor": 0}, "backoffScaleFactor"),
    ],
)
def test_register_task_def_invalid_field_is_named(bad: dict[str, JSON], field: str) -> None:
    h = Harness()
    outcome = h.register_task_defs({"name": "t", **bad}, check=False)
    assert outcome.code is Code.INVALID_ARGUMENT
    assert f"task_def_json[0].{field}" in outcome.message, outcome.message


def test_register_task_defs_rejects_an_empty_list() -> None:
    h = Harness()
    outcome = h.apply_one(RegisterTaskDefs(request_id="r", task_defs=[]))
    assert outcome.code is Code.INVALID_ARGUMENT
    assert "task_def_json" in outcome.message


# ============================================================ workflow definitions


def test_register_workflow_def_fills_defaults(h: Harness) -> None:
    outcome = h.register_workflow({"name": "bare", "tasks": [simple("task_a", "a")]})
    assert outcome.result == {"name": "bare", "version": 1}
    stored = h.state.workflow_defs["bare"]["1"]
    assert stored["version"] == 1
    assert stored["schemaVersion"] == 2
    assert stored["inputParameters"] == []
    assert stored["outputParameters"] == {}
    assert stored["inputTemplate"] == {}
    assert stored["variables"] == {}
    assert stored["timeoutSeconds"] == 0
    task = stored["tasks"][0]
    assert task["type"] == "SIMPLE"
    assert task["inputParameters"] == {}
    assert task["optional"] is False


def test_workflow_def_without_name_names_the_field(h: Harness) -> None:
    message = register_rejected(h, {"tasks": [simple("task_a", "a")]})
    assert message.startswith("name:"), message


def test_workflow_def_without_tasks_names_the_field(h: Harness) -> None:
    message = register_rejected(h, {"name": "empty", "tasks": []})
    assert message.startswith("tasks:"), message
    assert "empty" not in h.state.workflow_defs


def test_workflow_def_task_without_reference_names_the_field(h: Harness) -> None:
    message = register_rejected(h, wf_def("noref", simple("task_a", "a"), {"name": "task_b"}))
    assert "tasks[1].taskReferenceName" in message, message


def test_workflow_def_duplicate_reference_is_named(h: Harness) -> None:
    message = register_rejected(
        h, wf_def("dup", simple("task_a", "same"), simple("task_b", "same"))
    )
    assert "tasks[1].taskReferenceName" in message
    assert "'same'" in message
    assert "dup" not in h.state.workflow_defs


def test_workflow_def_unknown_task_type_is_named(h: Harness) -> None:
    message = register_rejected(h, wf_def("u", simple("task_a", "a", type="TELEPORT")))
    assert "tasks[0].type" in message
    assert "unknown task type 'TELEPORT'" in message


@pytest.mark.parametrize(
    "ttype, why",
    [
        ("KAFKA_PUBLISH", "is not supported: use an EVENT task with a broker sink"),
    ],
)
def test_workflow_def_known_but_unsupported_task_type_is_rejected(
    h: Harness, ttype: str, why: str
) -> None:
    message = register_rejected(h, wf_def("u", simple("task_a", "a"), simple("x", "x", type=ttype)))
    assert "tasks[1].type (x)" in message
    assert f"task type {ttype} {why}" in message


def test_workflow_def_expression_naming_unknown_reference_is_rejected(h: Harness) -> None:
    message = register_rejected(
        h,
        wf_def(
            "refs",
            simple("task_a", "a"),
            simple("task_b", "b", inputParameters={"v": {"deep": ["${nope.output.x}"]}}),
        ),
    )
    assert "tasks[1].inputParameters (b)" in message
    assert "'nope'" in message


def test_workflow_def_output_expression_naming_unknown_reference_is_rejected(h: Harness) -> None:
    message = register_rejected(
        h, wf_def("refs", simple("task_a", "a"), outputParameters={"r": "x=${ghost.output.y}"})
    )
    assert "outputParameters" in message
    assert "'ghost'" in message


def test_workflow_def_escaped_expression_is_not_a_reference(h: Harness) -> None:
    h.register_workflow(
        wf_def("escaped", simple("task_a", "a", inputParameters={"lit": "$${nope.output.x}"}))
    )
    wf_id = h.start("escaped")
    assert h.last_task(wf_id).input == {"lit": "${nope.output.x}"}


def test_workflow_def_with_unregistered_task_def_names_it(h: Harness) -> None:
    message = register_rejected(h, wf_def("unreg", simple("task_a", "a"), simple("ghost", "g")))
    assert "tasks[1].name (g)" in message
    assert "'ghost'" in message
    assert "not registered" in message


def test_workflow_def_with_inline_task_definition_needs_no_registration(h: Harness) -> None:
    h.register_workflow(
        wf_def(
            "inline",
            simple("ghost", "g", taskDefinition={"name": "ghost", "responseTimeoutSeconds": 7}),
        )
    )
    wf_id = h.start("inline")
    (tid,) = h.poll("ghost")
    assert h.task(tid).lease_expires_ms == h.clock_ms + 7000
    assert h.wf(wf_id).status == "RUNNING"


def test_workflow_def_inline_task_definition_must_match_the_task_name(h: Harness) -> None:
    message = register_rejected(
        h, wf_def("inline", simple("ghost", "g", taskDefinition={"name": "other"}))
    )
    assert "tasks[0].taskDefinition.name" in message


def test_null_task_definition_counts_as_absent_for_the_registration_check(h: Harness) -> None:
    """Conductor exports carry `"taskDefinition": null`; it must not bypass the check."""
    outcome = h.register_workflow(
        wf_def("nulldef", simple("ghost", "g", taskDefinition=None)), check=False
    )
    assert outcome.code is Code.INVALID_ARGUMENT, outcome
    assert "'ghost'" in outcome.message


def test_null_task_definition_uses_the_registered_task_def(h: Harness) -> None:
    h.register_workflow(wf_def("nulldef", simple("task_a", "a", taskDefinition=None)))
    outcome = h.apply_one(h.start_cmd("nulldef", workflow_id="wf-nulldef"))
    assert outcome.code is Code.OK, outcome
    assert h.wf("wf-nulldef").status == "RUNNING"
    assert h.poll("task_a") == ["wf-nulldef-0"]


def test_same_version_different_content_is_already_exists(h: Harness) -> None:
    h.register_workflow(wf_def("v", simple("task_a", "a")))
    changed = wf_def("v", simple("task_b", "b"))
    outcome = h.register_workflow(changed, check=False)
    assert outcome.code is Code.ALREADY_EXISTS
    assert "'v'" in outcome.message and "version 1" in outcome.message
    assert h.state.workflow_defs["v"]["1"]["tasks"][0]["name"] == "task_a"


def test_same_version_different_content_with_overwrite_replaces(h: Harness) -> None:
    h.register_workflow(wf_def("v", simple("task_a", "a")))
    h.register_workflow(wf_def("v", simple("task_b", "b")), overwrite=True)
    assert h.state.workflow_defs["v"]["1"]["tasks"][0]["name"] == "task_b"


def test_identical_re_register_is_ok(h: Harness) -> None:
    h.register_workflow(wf_def("v", simple("task_a", "a")))
    before = h.state.workflow_defs["v"]["1"]
    outcome = h.register_workflow(wf_def("v", simple("task_a", "a")))
    assert outcome.result == {"name": "v", "version": 1}
    assert h.state.workflow_defs["v"]["1"] == before


def test_identical_after_normalization_is_identical(h: Harness) -> None:
    h.register_workflow(wf_def("v", simple("task_a", "a")))
    # The same definition with its defaults spelled out.
    h.register_workflow(wf_def("v", simple("task_a", "a", type="SIMPLE", optional=False)))


def test_start_version_zero_uses_the_latest_version(h: Harness) -> None:
    h.register_workflow(wf_def("multi", simple("task_a", "a")))
    h.register_workflow({"name": "multi", "version": 3, "tasks": [simple("task_b", "b")]})
    h.register_workflow({"name": "multi", "version": 2, "tasks": [simple("task_c", "c")]})
    latest = h.start("multi")
    assert h.wf(latest).workflow_version == 3
    assert h.last_task(latest).task_type == "task_b"
    pinned = h.start("multi", version=2)
    assert h.wf(pinned).workflow_version == 2
    assert h.last_task(pinned).task_type == "task_c"


def test_start_unknown_name_or_version_is_not_found(h: Harness) -> None:
    outcome = h.apply_one(h.start_cmd("nope"))
    assert outcome.code is Code.NOT_FOUND and "'nope'" in outcome.message
    outcome = h.apply_one(h.start_cmd("two_step", version=9))
    assert outcome.code is Code.NOT_FOUND and "version 9" in outcome.message


def test_running_workflow_keeps_its_definition_after_overwrite_and_new_version(h: Harness) -> None:
    h.register_workflow(wf_def("evolving", simple("task_a", "a"), simple("task_b", "b")))
    old = h.start("evolving")
    h.register_workflow(
        wf_def("evolving", simple("task_a", "a"), simple("task_c", "c")), overwrite=True
    )
    h.register_workflow({"name": "evolving", "version": 2, "tasks": [simple("task_c", "only")]})
    h.complete(h.poll_one("task_a"))
    assert h.last_task(old).task_type == "task_b", "the old run follows its own definition"
    assert h.queued("task_b") == [h.last_task(old).task_id]
    new = h.start("evolving", version=1)
    h.complete(h.poll_one("task_a"))
    assert h.last_task(new).task_type == "task_c"


def test_running_workflow_keeps_the_task_def_it_started_with(h: Harness) -> None:
    wf_id = h.start("one_step")
    h.register_task_defs({"name": "task_c", "retryCount": 0, "responseTimeoutSeconds": 99})
    tid = h.poll_one("task_c")
    assert h.task(tid).lease_expires_ms == h.clock_ms + 10_000
    assert h.wf(wf_id).status == "RUNNING"


# ============================================================ sequencing and wiring


def test_simple_tasks_run_in_sequence(h: Harness) -> None:
    wf_id = h.start("two_step", {"x": 1})
    assert [t.reference_task_name for t in h.tasks_of(wf_id)] == ["a"]
    assert h.queued("task_b") == []
    assert h.poll("task_b") == [], "b is not scheduled before a completes"
    a = h.poll_one("task_a")
    h.complete(a, {"y": 2})
    assert h.task(a).status == "COMPLETED"
    b = h.poll_one("task_b")
    assert h.wf(wf_id).status == "RUNNING"
    h.complete(b, {"z": 3})
    wf = h.wf(wf_id)
    assert wf.status == "COMPLETED"
    assert wf.end_time_ms == h.clock_ms
    assert [t.status for t in h.tasks_of(wf_id)] == ["COMPLETED", "COMPLETED"]
    assert wf_id in h.state.terminal_order
    assert h.effects.ended_workflows == [wf_id]


def test_inputs_wired_from_workflow_input_and_previous_output(h: Harness) -> None:
    h.register_workflow(
        wf_def(
            "wired",
            simple("task_a", "first", inputParameters={"x": "${workflow.input.x}"}),
            simple(
                "task_b",
                "second",
                inputParameters={
                    "fromA": "${first.output.a.b[0]}",
                    "second_elem": "${first.output.a.b[1]}",
                    "whole": "${first.output.a}",
                    "wfid": "${workflow.workflowId}",
                    "x": "${workflow.input.x}",
                },
            ),
        )
    )
    wf_id = h.start("wired", {"x": "hello"})
    a = h.poll_one("task_a")
    assert h.task(a).input == {"x": "hello"}
    h.complete(a, {"a": {"b": [42, {"c": True}]}})
    b = h.last_task(wf_id)
    assert b.input == {
        "fromA": 42,
        "second_elem": {"c": True},
        "whole": {"b": [42, {"c": True}]},
        "wfid": wf_id,
        "x": "hello",
    }


def test_expression_alone_keeps_json_type_and_interpolation_stringifies(h: Harness) -> None:
    params = {
        "num": "${workflow.input.num}",
        "flt": "${workflow.input.flt}",
        "lst": "${workflow.input.lst}",
        "obj": "${workflow.input.obj}",
        "nul": "${workflow.input.nul}",
        "flag": "${workflow.input.flag}",
        "missing": "${workflow.input.nope.deeper}",
        "bad_index": "${workflow.input.lst[9]}",
        "s_num": "n=${workflow.input.num}",
        "s_obj": "o=${workflow.input.obj}",
        "s_null": "x${workflow.input.nul}",
        "s_missing": "m=${workflow.input.nope}",
        "s_two": "${workflow.input.num}-${workflow.input.flag}",
        "nested": {"deep": ["${workflow.input.num}", "lit", 5, None]},
        "constant": 12,
    }
    h.register_workflow(wf_def("types", simple("task_a", "a", inputParameters=params)))
    wf_id = h.start(
        "types",
        {"num": 7, "flt": 1.5, "lst": [1, 2], "obj": {"k": "v", "a": 1}, "nul": None, "flag": True},
    )
    task_input = h.last_task(wf_id).input
    assert task_input["s_obj"].startswith("o=")
    assert json.loads(task_input["s_obj"][2:]) == {"k": "v", "a": 1}, "objects as JSON text"
    assert task_input == {
        "num": 7,
        "flt": 1.5,
        "lst": [1, 2],
        "obj": {"k": "v", "a": 1},
        "nul": None,
        "flag": True,
        "missing": None,
        "bad_index": None,
        "s_num": "n=7",
        "s_obj": task_input["s_obj"],
        "s_null": "xnull",
        "s_missing": "m=null",
        "s_two": "7-true",
        "nested": {"deep": [7, "lit", 5, None]},
        "constant": 12,
    }


def test_expression_to_a_not_yet_run_task_is_null(h: Harness) -> None:
    h.register_workflow(
        wf_def(
            "ahead",
            simple("task_a", "a", inputParameters={"later": "${b.output.v}", "s": "b=${b.output}"}),
            simple("task_b", "b"),
        )
    )
    wf_id = h.start("ahead")
    assert h.last_task(wf_id).input == {"later": None, "s": "b=null"}


def test_workflow_output_parameters_are_resolved_at_completion(h: Harness) -> None:
    h.register_workflow(
        wf_def(
            "outp",
            simple("task_a", "a"),
            simple("task_b", "b"),
            outputParameters={
                "sum": "${b.output.sum}",
                "echo": "${workflow.input.x}",
                "aid": "${a.taskId}",
                "text": "a said ${a.output.msg}",
            },
        )
    )
    wf_id = h.start("outp", {"x": [1]})
    a = h.poll_one("task_a")
    h.complete(a, {"msg": "hi"})
    h.complete(h.poll_one("task_b"), {"sum": 10, "ignored": 1})
    assert h.wf(wf_id).output == {"sum": 10, "echo": [1], "aid": a, "text": "a said hi"}


def test_without_output_parameters_the_output_is_the_last_tasks_output(h: Harness) -> None:
    wf_id = h.start("two_step", {"x": 1})
    h.complete(h.poll_one("task_a"), {"y": 1, "from_a": True})
    h.complete(h.poll_one("task_b"), {"final": [1, 2, 3]})
    assert h.wf(wf_id).output == {"final": [1, 2, 3]}


def test_workflow_input_template_fills_missing_inputs_only(h: Harness) -> None:
    h.register_workflow(
        wf_def(
            "tmpl",
            simple(
                "task_a",
                "a",
                inputParameters={"x": "${workflow.input.x}", "r": "${workflow.input.region}"},
            ),
            inputTemplate={"x": 1, "region": "eu"},
        )
    )
    wf_id = h.start("tmpl", {"x": 2})
    assert h.wf(wf_id).input == {"x": 2, "region": "eu"}
    assert h.last_task(wf_id).input == {"x": 2, "r": "eu"}


def test_task_def_input_template_fills_missing_or_null_task_inputs(h: Harness) -> None:
    h.register_task_defs({"name": "templated", "inputTemplate": {"mode": "fast", "x": "dflt"}})
    h.register_workflow(
        wf_def("tt", simple("templated", "t", inputParameters={"x": "${workflow.input.x}"}))
    )
    missing = h.start("tt", {})
    assert h.last_task(missing).input == {"x": "dflt", "mode": "fast"}
    given = h.start("tt", {"x": "mine"})
    assert h.last_task(given).input == {"x": "mine", "mode": "fast"}


def test_workflow_variables_start_from_the_definition(h: Harness) -> None:
    h.register_workflow(wf_def("vars", simple("task_a", "a"), variables={"count": 0}))
    wf_id = h.start("vars")
    assert h.wf(wf_id).variables == {"count": 0}


# ============================================================ retries


def test_retry_count_is_honoured_with_a_new_task_per_attempt(h: Harness) -> None:
    wf_id = h.start("two_step", {"x": 1})  # task_a: retryCount 2, delay 0
    attempts = []
    for attempt in range(3):
        tid = h.poll_one("task_a")
        task = h.task(tid)
        assert task.retry_count == attempt
        assert task.retried_task_id == (attempts[-1] if attempts else "")
        attempts.append(tid)
        h.fail(tid, f"nope {attempt}")
        assert h.task(tid).status == "FAILED"
        assert h.task(tid).reason_for_incompletion == f"nope {attempt}"
    assert len(set(attempts)) == 3
    wf = h.wf(wf_id)
    assert wf.status == "FAILED"
    assert "task a" in wf.reason_for_incompletion
    assert attempts[-1] in wf.reason_for_incompletion
    assert "nope 2" in wf.reason_for_incompletion
    assert h.poll("task_a") == []
    assert h.poll("task_b") == [], "nothing after a failed workflow"


def test_a_retried_task_gets_the_same_input(h: Harness) -> None:
    wf_id = h.start("two_step", {"x": {"deep": 1}})
    first = h.poll_one("task_a")
    h.fail(first)
    second = h.poll_one("task_a")
    assert h.task(second).input == h.task(first).input == {"x": {"deep": 1}}
    assert h.wf(wf_id).status == "RUNNING"


def conductor_delay(logic: str, delay: int, scale: int, cap: int, retry_count: int) -> int:
    """Conductor's backoff (DeciderService.retry), written out independently of the core."""
    if logic == "FIXED":
        d = delay
    elif logic == "EXPONENTIAL_BACKOFF":
        d = delay * 2**retry_count
    else:
        d = delay * scale * (retry_count + 1)
    return min(d, cap) if cap else d


@pytest.mark.parametrize(
    "logic, delay, scale, cap, expected",
    [
        ("FIXED", 5, 1, 0, [5, 5, 5, 5]),
        ("EXPONENTIAL_BACKOFF", 5, 1, 0, [5, 10, 20, 40]),
        ("EXPONENTIAL_BACKOFF", 5, 7, 0, [5, 10, 20, 40]),  # the scale factor is linear-only
        ("LINEAR_BACKOFF", 5, 1, 0, [5, 10, 15, 20]),
        ("LINEAR_BACKOFF", 5, 3, 0, [15, 30, 45, 60]),
        ("EXPONENTIAL_BACKOFF", 5, 1, 12, [5, 10, 12, 12]),
        ("LINEAR_BACKOFF", 5, 3, 40, [15, 30, 40, 40]),
        ("FIXED", 5, 1, 3, [3, 3, 3, 3]),
    ],
)
def test_retry_delay_follows_retry_logic(
    logic: str, delay: int, scale: int, cap: int, expected: list[int]
) -> None:
    assert expected == [conductor_delay(logic, delay, scale, cap, n) for n in range(4)]
    h = Harness()
    h.register_task_defs(
        {
            "name": "flaky",
            "retryCount": 4,
            "retryLogic": logic,
            "retryDelaySeconds": delay,
            "backoffScaleFactor": scale,
            "maxRetryDelaySeconds": cap,
            "responseTimeoutSeconds": 100_000,
        }
    )
    h.register_workflow(wf_def("backoff", simple("flaky", "f")))
    wf_id = h.start("backoff")
    tid = h.poll_one("flaky")
    for n, seconds in enumerate(expected):
        h.advance(1234)
        failed_at = h.clock_ms
        h.fail(tid)
        retry = h.last_task(wf_id)
        assert retry.task_id != tid
        assert retry.status == "SCHEDULED"
        assert retry.retry_count == n + 1
        assert retry.retried_task_id == tid
        due = failed_at + seconds * 1000
        assert h.state.timers["ready:" + retry.task_id] == due
        assert h.state.next_due_ms() == due
        assert h.queued("flaky") == []
        assert h.poll("flaky") == [], "not pollable right after the failure"
        assert h.tick_at(due - 1).result == {"fired": 0}
        assert h.poll("flaky") == [], "not pollable a millisecond before it is due"
        assert h.tick_at(due + (n % 2) * 500).result == {"fired": 1}  # at, or after, the due time
        tid = h.poll_one("flaky")
        assert tid == retry.task_id
    h.fail(tid)
    assert h.wf(wf_id).status == "FAILED"


def test_zero_retry_delay_retries_immediately(h: Harness) -> None:
    h.start("two_step", {"x": 1})
    first = h.poll_one("task_a")
    h.fail(first)
    assert h.state.timers == {}
    assert h.poll_one("task_a") != first


def test_failed_with_terminal_error_is_not_retried(h: Harness) -> None:
    wf_id = h.start("two_step", {"x": 1})  # task_a has retries left
    tid = h.poll_one("task_a")
    h.fail(tid, "fatal", terminal=True)
    assert h.task(tid).status == "FAILED_WITH_TERMINAL_ERROR"
    assert len(h.tasks_of(wf_id)) == 1
    wf = h.wf(wf_id)
    assert wf.status == "FAILED"
    assert "FAILED_WITH_TERMINAL_ERROR" in wf.reason_for_incompletion
    assert "fatal" in wf.reason_for_incompletion


def test_optional_task_failure_completes_with_errors_and_the_workflow_continues(
    h: Harness,
) -> None:
    h.register_workflow(
        wf_def(
            "opt",
            simple("task_c", "c", optional=True),
            simple("task_b", "b", inputParameters={"st": "${c.status}"}),
        )
    )
    wf_id = h.start("opt")
    c = h.poll_one("task_c")  # retryCount 0
    h.fail(c, "meh")
    assert h.task(c).status == "COMPLETED_WITH_ERRORS"
    assert h.task(c).reason_for_incompletion == "meh"
    assert h.wf(wf_id).status == "RUNNING"
    b = h.poll_one("task_b")
    assert h.task(b).input == {"st": "COMPLETED_WITH_ERRORS"}
    h.complete(b)
    assert h.wf(wf_id).status == "COMPLETED"


def test_optional_task_is_retried_before_it_completes_with_errors(h: Harness) -> None:
    h.register_workflow(wf_def("opt", simple("task_a", "a", optional=True), simple("task_b", "b")))
    wf_id = h.start("opt")
    h.fail(h.poll_one("task_a"))
    second = h.poll_one("task_a")
    assert h.task(second).retry_count == 1
    h.fail(second, "fatal", terminal=True)
    assert h.task(second).status == "COMPLETED_WITH_ERRORS"
    assert h.poll("task_b") and h.wf(wf_id).status == "RUNNING"


@pytest.mark.parametrize("override, attempts", [(0, 1), (1, 2), (4, 5)])
def test_per_task_retry_count_override(h: Harness, override: int, attempts: int) -> None:
    h.register_workflow(wf_def("ovr", simple("task_a", "a", retryCount=override)))
    wf_id = h.start("ovr")  # task_a's own definition says retryCount 2
    for _ in range(attempts):
        assert h.wf(wf_id).status == "RUNNING"
        h.fail(h.poll_one("task_a"))
    assert h.wf(wf_id).status == "FAILED"
    assert len(h.tasks_of(wf_id)) == attempts


def test_null_retry_count_override_falls_back_to_the_task_def(h: Harness) -> None:
    """`"retryCount": null` in a workflow task (as in Conductor exports) means "not overridden"."""
    h.register_workflow(wf_def("nullretry", simple("task_a", "a", retryCount=None)))
    wf_id = h.start("nullretry")
    first = h.poll_one("task_a")
    outcome = h.fail(first, check=False)
    assert outcome.code is Code.OK, outcome
    assert h.wf(wf_id).status == "RUNNING"
    assert h.task(h.poll_one("task_a")).retried_task_id == first


def test_a_bad_timer_does_not_strand_other_workflows_leases(h: Harness) -> None:
    """A Tick fires many timers; one that cannot be handled must not lose the others."""
    h.register_workflow(wf_def("nullretry", simple("task_a", "a", retryCount=None)))
    h.start("nullretry", workflow_id="wf-0-bad")
    good = h.start("two_step", {"x": 1}, workflow_id="wf-1-good")
    leased = h.poll("task_a", 2)
    assert sorted(leased) == ["wf-0-bad-0", "wf-1-good-0"]
    h.tick(10_000)
    assert h.task("wf-1-good-0").status == "TIMED_OUT"
    assert h.last_task(good).retried_task_id == "wf-1-good-0"
    check_invariants(h.state)


# ============================================================ leases


def test_poll_leases_the_task(h: Harness) -> None:
    wf_id = h.start("two_step", {"x": 1})
    h.advance(500)
    tid = h.poll_one("task_a", worker="worker-7")
    task = h.task(tid)
    assert task.status == "IN_PROGRESS"
    assert task.worker_id == "worker-7"
    assert task.poll_count == 1
    assert task.start_time_ms == h.clock_ms
    assert task.lease_expires_ms == h.clock_ms + 10 * 1000
    assert h.state.timers == {"lease:" + tid: h.clock_ms + 10_000}
    assert h.queued("task_a") == []
    assert h.poll("task_a") == [], "a leased task is not handed out twice"
    assert h.wf(wf_id).status == "RUNNING"


def test_poll_hands_out_tasks_in_fifo_order_up_to_count(h: Harness) -> None:
    ids = [h.start("one_step") for _ in range(5)]
    assert h.poll("task_c", 3) == [f"{w}-0" for w in ids[:3]]
    assert h.poll("task_c", 10) == [f"{w}-0" for w in ids[3:]]
    assert "task_c" not in h.state.queues


def test_tick_before_lease_expiry_does_nothing(h: Harness) -> None:
    h.start("two_step", {"x": 1})
    tid = h.poll_one("task_a")
    before = state_without_seq(h.state)
    outcome = h.tick(9_999)
    assert outcome.result == {"fired": 0}
    assert h.task(tid).status == "IN_PROGRESS"
    snap = json.loads(h.state.snapshot_bytes())
    old = json.loads(before)
    assert snap["tasks"] == old["tasks"] and snap["timers"] == old["timers"]


def test_tick_after_lease_expiry_times_out_and_redelivers(h: Harness) -> None:
    wf_id = h.start("two_step", {"x": 1})
    tid = h.poll_one("task_a")
    outcome = h.tick(10_000)
    assert outcome.result == {"fired": 1}
    old = h.task(tid)
    assert old.status == "TIMED_OUT"
    assert "responseTimeoutSeconds" in old.reason_for_incompletion
    retry = h.last_task(wf_id)
    assert retry.task_id != tid
    assert retry.retried_task_id == tid
    assert retry.retry_count == 1
    assert h.poll_one("task_a", worker="other") == retry.task_id
    assert h.wf(wf_id).status == "RUNNING"


def test_heartbeat_extends_the_lease(h: Harness) -> None:
    h.start("two_step", {"x": 1})
    tid = h.poll_one("task_a")
    h.advance(8_000)
    outcome = h.heartbeat(tid)
    assert outcome.result == {"lease_expires_ms": h.clock_ms + 10_000}
    assert h.task(tid).lease_expires_ms == h.clock_ms + 10_000
    new_expiry = h.clock_ms + 10_000
    assert h.tick(2_000).result == {"fired": 0}, "the old expiry no longer fires"
    assert h.task(tid).status == "IN_PROGRESS"
    assert h.state.next_due_ms() == new_expiry
    assert h.tick_at(new_expiry - 1).result == {"fired": 0}
    assert h.tick_at(new_expiry).result == {"fired": 1}
    assert h.task(tid).status == "TIMED_OUT"


def test_heartbeat_of_a_task_not_leased_is_failed_precondition(h: Harness) -> None:
    wf_id = h.start("two_step", {"x": 1})
    scheduled = h.last_task(wf_id).task_id
    assert h.heartbeat(scheduled, check=False).code is Code.FAILED_PRECONDITION
    assert h.heartbeat("no-such-task", check=False).code is Code.NOT_FOUND


def test_late_completion_of_a_timed_out_attempt_is_failed_precondition(h: Harness) -> None:
    wf_id = h.start("two_step", {"x": 1})
    old = h.poll_one("task_a")
    h.tick(10_000)
    new = h.poll_one("task_a")
    before = state_without_requests(h.state)
    outcome = h.complete(old, {"y": "late"}, check=False)
    assert outcome.code is Code.FAILED_PRECONDITION
    assert old in outcome.message and "TIMED_OUT" in outcome.message
    assert state_without_requests(h.state) == before
    h.complete(new, {"y": "on time"})
    assert h.last_task(wf_id).input == {"y": "on time"}


def test_duplicate_completion_with_a_new_request_id_is_failed_precondition(h: Harness) -> None:
    wf_id = h.start("one_step")
    tid = h.poll_one("task_c")
    h.complete(tid, {"v": 1})
    before = state_without_requests(h.state)
    again = h.complete(tid, {"v": 2}, check=False)
    assert again.code is Code.FAILED_PRECONDITION
    failed = h.fail(tid, check=False)
    assert failed.code is Code.FAILED_PRECONDITION
    assert state_without_requests(h.state) == before
    assert h.wf(wf_id).output == {"v": 1}


def test_completing_an_unknown_task_is_not_found(h: Harness) -> None:
    assert h.complete("nope-0", check=False).code is Code.NOT_FOUND
    assert h.fail("nope-0", check=False).code is Code.NOT_FOUND


def test_exhausted_timeouts_time_the_workflow_out(h: Harness) -> None:
    wf_id = h.start("two_step", {"x": 1})  # task_a: retryCount 2
    for _ in range(3):
        assert h.wf(wf_id).status == "RUNNING"
        h.poll_one("task_a")
        h.tick(10_000)
    wf = h.wf(wf_id)
    assert wf.status == "TIMED_OUT"
    assert "task a" in wf.reason_for_incompletion
    assert [t.status for t in h.tasks_of(wf_id)] == ["TIMED_OUT"] * 3
    assert h.state.timers == {} and h.state.queues == {}


def test_scheduled_tasks_never_time_out(h: Harness) -> None:
    """responseTimeoutSeconds runs from the poll; a task waiting in its queue keeps waiting."""
    wf_id = h.start("two_step", {"x": 1})
    h.tick(3_600_000)
    assert h.last_task(wf_id).status == "SCHEDULED"
    assert h.queued("task_a") == [h.last_task(wf_id).task_id]


# ============================================================ request_id deduplication


def test_retried_start_returns_the_first_outcome_and_changes_nothing(h: Harness) -> None:
    first = h.ok(h.start_cmd("two_step", {"x": 1}, request_id="start-1", workflow_id="wf-A"))
    before = state_without_seq(h.state)
    # The proposer generates a fresh workflow id for the retry.
    again = h.apply_one(h.start_cmd("two_step", {"x": 1}, request_id="start-1", workflow_id="wf-B"))
    assert again.code is Code.OK
    assert again.result["workflow_id"] == first.result["workflow_id"] == "wf-A"
    assert again.result.get("deduplicated") is True
    assert "wf-B" not in h.state.workflows
    assert state_without_seq(h.state) == before


def test_same_request_id_for_a_different_request_is_invalid_argument(h: Harness) -> None:
    h.ok(h.start_cmd("two_step", {"x": 1}, request_id="start-1", workflow_id="wf-A"))
    before = state_without_seq(h.state)
    outcome = h.apply_one(h.start_cmd("two_step", {"x": 2}, request_id="start-1"))
    assert outcome.code is Code.INVALID_ARGUMENT
    assert "'start-1'" in outcome.message
    # ... and the same id on a different kind of command.
    outcome = h.complete("wf-A-0", request_id="start-1", check=False)
    assert outcome.code is Code.INVALID_ARGUMENT
    assert state_without_seq(h.state) == before


def test_the_proposers_fingerprint_and_applys_own_agree(h: Harness) -> None:
    # Replicas propose commands with their fingerprint (to_log_dict); older journals and the
    # harness carry none, and apply computes it. Either way a retry is recognised as the same
    # request, and a different request under the same id is refused.
    first = h.start_cmd("two_step", {"x": 1}, request_id="start-1", workflow_id="wf-A")
    logged = first.to_log_dict()
    assert logged[FP_KEY] == fingerprint(first.fingerprint_body())
    assert h.apply_one(logged).code is Code.OK
    plain = h.start_cmd("two_step", {"x": 1}, request_id="start-1", workflow_id="wf-B").to_dict()
    again = h.apply_one(plain)
    assert again.code is Code.OK and again.result.get("deduplicated") is True
    assert again.result["workflow_id"] == "wf-A"
    other = h.start_cmd("two_step", {"x": 2}, request_id="start-1").to_log_dict()
    assert h.apply_one(other).code is Code.INVALID_ARGUMENT
    # What replicas put in the log (one canonical encoding, the rest appended) decodes to it.
    for cmd in (
        first,
        h.start_cmd("two_step", {"z": [3, {"b": 1, "a": 2}]}, request_id="s-x"),
        PollTasks(request_id="p", task_type="t", worker_id="w", count=2, epoch=3, park_until_ms=9),
        LeaderEpoch(term=4),
    ):
        assert json.loads(cmd.log_json()) == cmd.to_log_dict()
    # Apply records the fingerprint a command carries rather than computing its own.
    marked = dict(h.start_cmd("two_step", {"x": 3}, request_id="start-2").to_log_dict())
    marked[FP_KEY] = "f" * 32
    assert h.apply_one(marked).code is Code.OK
    assert h.state.requests["start-2"].fp == "f" * 32


def test_retried_completion_returns_ok_not_failed_precondition(h: Harness) -> None:
    wf_id = h.start("one_step")
    tid = h.poll_one("task_c")
    h.complete(tid, {"v": 1}, request_id="done-1")
    before = state_without_seq(h.state)
    again = h.complete(tid, {"v": 1}, request_id="done-1", check=False)
    assert again.code is Code.OK and again.result.get("deduplicated") is True
    assert state_without_seq(h.state) == before
    assert h.wf(wf_id).status == "COMPLETED"


def test_retried_rejection_returns_the_same_rejection(h: Harness) -> None:
    first = h.apply_one(h.start_cmd("not-yet", request_id="s"))
    assert first.code is Code.NOT_FOUND
    h.register_workflow(wf_def("not-yet", simple("task_a", "a")))
    again = h.apply_one(h.start_cmd("not-yet", request_id="s"))
    assert (again.code, again.message) == (first.code, first.message)


def test_retried_poll_returns_the_same_task_ids(h: Harness) -> None:
    for _ in range(3):
        h.start("one_step")
    first = h.ok(h.poll_cmd("task_c", 2, request_id="poll-1"))
    leased = first.result["task_ids"]
    assert len(leased) == 2
    before = state_without_seq(h.state)
    again = h.ok(h.poll_cmd("task_c", 2, request_id="poll-1"))
    assert again.result["task_ids"] == leased
    assert state_without_seq(h.state) == before
    assert len(h.queued("task_c")) == 1


def test_an_empty_poll_is_not_recorded(h: Harness) -> None:
    empty = h.ok(h.poll_cmd("task_c", 1, request_id="poll-early"))
    assert empty.result == {"task_ids": []}
    assert "poll-early" not in h.state.requests
    wf_id = h.start("one_step")
    later = h.ok(h.poll_cmd("task_c", 1, request_id="poll-early"))
    assert later.result == {"task_ids": [f"{wf_id}-0"]}
    assert "deduplicated" not in later.result


def test_a_stale_epoch_poll_retry_still_returns_what_it_leased(h: Harness) -> None:
    h.start("one_step")
    first = h.ok(h.poll_cmd("task_c", 1, request_id="poll-1"))
    h.leader_epoch(5)
    again = h.apply_one(h.poll_cmd("task_c", 1, request_id="poll-1", epoch=0))
    assert again.ok and again.result["task_ids"] == first.result["task_ids"]


# ============================================================ idempotent start


def test_idempotency_fail_rejects_a_second_start_even_after_the_first_ended(h: Harness) -> None:
    first = h.start("one_step", idempotency_key="order-1", idempotency_strategy="FAIL")
    again = h.apply_one(h.start_cmd("one_step", idempotency_key="order-1"))
    assert again.code is Code.ALREADY_EXISTS and first in again.message
    h.complete(h.poll_one("task_c"))
    after_end = h.apply_one(h.start_cmd("one_step", idempotency_key="order-1"))
    assert after_end.code is Code.ALREADY_EXISTS
    assert list(h.state.workflows) == [first]


def test_idempotency_return_existing_returns_the_first_run(h: Harness) -> None:
    first = h.start("one_step", idempotency_key="k", idempotency_strategy="RETURN_EXISTING")
    outcome = h.ok(
        h.start_cmd(
            "one_step",
            idempotency_key="k",
            idempotency_strategy="RETURN_EXISTING",
            workflow_id="wf-other",
        )
    )
    assert outcome.result == {"workflow_id": first, "created": False}
    assert "wf-other" not in h.state.workflows
    h.complete(h.poll_one("task_c"))
    outcome = h.ok(
        h.start_cmd("one_step", idempotency_key="k", idempotency_strategy="RETURN_EXISTING")
    )
    assert outcome.result["workflow_id"] == first


def test_idempotency_fail_on_running_allows_a_new_run_after_the_first_ended(h: Harness) -> None:
    first = h.start("one_step", idempotency_key="k", idempotency_strategy="FAIL_ON_RUNNING")
    busy = h.apply_one(
        h.start_cmd("one_step", idempotency_key="k", idempotency_strategy="FAIL_ON_RUNNING")
    )
    assert busy.code is Code.ALREADY_EXISTS and "RUNNING" in busy.message
    h.fail(h.poll_one("task_c"))
    assert h.wf(first).status == "FAILED"
    second = h.start("one_step", idempotency_key="k", idempotency_strategy="FAIL_ON_RUNNING")
    assert second != first
    assert h.wf(second).status == "RUNNING"
    busy = h.apply_one(
        h.start_cmd("one_step", idempotency_key="k", idempotency_strategy="FAIL_ON_RUNNING")
    )
    assert busy.code is Code.ALREADY_EXISTS and second in busy.message


def test_idempotency_keys_are_per_workflow_name(h: Harness) -> None:
    a = h.start("one_step", idempotency_key="k")
    b = h.start("two_step", {"x": 1}, idempotency_key="k")
    assert a != b


def test_unknown_idempotency_strategy_is_invalid_argument(h: Harness) -> None:
    outcome = h.apply_one(
        h.start_cmd("one_step", idempotency_key="k", idempotency_strategy="MAYBE")
    )
    assert outcome.code is Code.INVALID_ARGUMENT and "idempotency_strategy" in outcome.message


def test_workflow_ids_are_unique(h: Harness) -> None:
    h.start("one_step", workflow_id="dup")
    outcome = h.apply_one(h.start_cmd("one_step", workflow_id="dup"))
    assert outcome.code is Code.ALREADY_EXISTS


# ============================================================ terminate


def test_terminate_running_workflow_cancels_active_tasks(h: Harness) -> None:
    leased_wf = h.start("two_step", {"x": 1})
    queued_wf = h.start("two_step", {"x": 2})
    leased = h.poll_one("task_a")
    assert leased == f"{leased_wf}-0"
    queued = f"{queued_wf}-0"
    assert h.queued("task_a") == [queued]
    h.advance(77)
    h.terminate(leased_wf, "operator says no")
    h.terminate(queued_wf)
    for wf_id, tid in ((leased_wf, leased), (queued_wf, queued)):
        wf = h.wf(wf_id)
        assert wf.status == "TERMINATED"
        assert wf.end_time_ms == h.clock_ms
        assert h.task(tid).status == "CANCELED"
    assert h.wf(leased_wf).reason_for_incompletion == "operator says no"
    assert h.wf(queued_wf).reason_for_incompletion
    assert h.queued("task_a") == [] and h.poll("task_a") == []
    assert h.state.timers == {}
    assert h.complete(leased, check=False).code is Code.FAILED_PRECONDITION
    assert h.heartbeat(leased, check=False).code is Code.FAILED_PRECONDITION


def test_terminate_cancels_a_retry_waiting_for_its_delay() -> None:
    h = Harness()
    h.register_task_defs({"name": "slow", "retryCount": 1, "retryDelaySeconds": 30})
    h.register_workflow(wf_def("w", simple("slow", "s")))
    wf_id = h.start("w")
    h.fail(h.poll_one("slow"))
    waiting = h.last_task(wf_id).task_id
    assert "ready:" + waiting in h.state.timers
    h.terminate(wf_id)
    assert h.task(waiting).status == "CANCELED"
    assert h.state.timers == {}
    h.tick(30_000)
    assert h.poll("slow") == []


def test_completed_workflow_cannot_be_terminated(h: Harness) -> None:
    wf_id = h.start("one_step")
    h.complete(h.poll_one("task_c"))
    outcome = h.terminate(wf_id, check=False)
    assert outcome.code is Code.FAILED_PRECONDITION
    assert h.wf(wf_id).status == "COMPLETED"


def test_terminate_unknown_workflow_is_not_found(h: Harness) -> None:
    assert h.terminate("nope", check=False).code is Code.NOT_FOUND


def test_terminating_twice_is_ok_and_failed_may_be_marked_terminated(h: Harness) -> None:
    wf_id = h.start("one_step")
    h.terminate(wf_id)
    h.terminate(wf_id)
    failed = h.start("one_step")
    h.fail(h.poll_one("task_c"))
    h.terminate(failed, "cleanup")
    assert h.wf(failed).status == "TERMINATED"
    assert list(h.state.terminal_order) == [wf_id, failed]


# ============================================================ leader epochs


def test_leader_epoch_raises_and_never_lowers_the_epoch(h: Harness) -> None:
    assert h.leader_epoch(3).result == {"epoch": 3}
    assert h.state.epoch == 3
    assert h.leader_epoch(2).result == {"epoch": 3}
    assert h.state.epoch == 3


def test_tick_with_an_older_epoch_is_rejected_and_changes_nothing(h: Harness) -> None:
    h.start("two_step", {"x": 1})
    tid = h.poll_one("task_a")
    h.leader_epoch(2)
    h.advance(60_000)
    h.apply(Noop())  # clock now past the lease expiry
    before = state_without_seq(h.state)
    outcome = h.tick(epoch=1)
    assert outcome.code is Code.FAILED_PRECONDITION and "epoch" in outcome.message
    assert state_without_seq(h.state) == before
    assert h.task(tid).status == "IN_PROGRESS"
    assert h.tick(epoch=2).result == {"fired": 1}
    assert h.task(tid).status == "TIMED_OUT"


def test_poll_with_an_older_epoch_is_rejected_and_changes_nothing(h: Harness) -> None:
    wf_id = h.start("one_step")
    h.leader_epoch(4)
    before = state_without_seq(h.state)
    outcome = h.apply_one(h.poll_cmd("task_c", 1, epoch=3))
    assert outcome.code is Code.FAILED_PRECONDITION
    assert state_without_seq(h.state) == before
    assert h.queued("task_c") == [f"{wf_id}-0"]
    assert h.poll("task_c", 1) == [f"{wf_id}-0"]  # at the current epoch


# ============================================================ cluster time


def test_cluster_time_never_goes_backwards(h: Harness) -> None:
    h.apply(Noop(), now_ms=START_MS + 5_000)
    assert h.state.clock_ms == START_MS + 5_000
    h.apply(Noop(), now_ms=START_MS)
    assert h.state.clock_ms == START_MS + 5_000
    h.apply(Noop(), now_ms=0)
    assert h.state.clock_ms == START_MS + 5_000


def test_a_batch_stamped_in_the_past_uses_cluster_time(h: Harness) -> None:
    h.start("one_step")
    h.apply(Noop(), now_ms=START_MS + 5_000)
    (outcome,) = h.apply(h.poll_cmd("task_c", 1), now_ms=START_MS)
    (tid,) = outcome.result["task_ids"]
    assert h.task(tid).start_time_ms == START_MS + 5_000
    assert h.task(tid).lease_expires_ms == START_MS + 5_000 + 10_000
    # Timers fire by cluster time, not by the (older) stamp of the batch carrying the Tick.
    h.apply(Noop(), now_ms=START_MS + 15_000)
    (tick,) = h.apply(Tick(epoch=0), now_ms=START_MS)
    assert tick.result == {"fired": 1}
    assert h.task(tid).status == "TIMED_OUT"


def test_a_forward_jump_fires_only_what_is_due(h: Harness) -> None:
    h.start("two_step", {"x": 1})
    h.start("one_step")
    t0 = h.clock_ms
    a = h.poll_one("task_a")
    h.advance(5_000)
    c = h.poll_one("task_c")
    # Only the timers that are due fire; a later big jump then fires the rest, once each.
    h.tick_at(t0 + 10_000)  # a's lease (due at t0+10s) is due, c's (due at t0+15s) is not
    assert h.task(a).status == "TIMED_OUT"
    assert h.task(c).status == "IN_PROGRESS"
    retry_a = h.poll_one("task_a")
    h.tick(300_000)
    assert h.task(c).status == "TIMED_OUT"
    assert h.task(retry_a).status == "TIMED_OUT"
    assert h.state.timers == {}


# ============================================================ malformed commands


MALFORMED: list[JSON] = [
    "not an object",
    None,
    42,
    [],
    {},
    {"t": "Bogus"},
    {"t": 5},
    {"t": "Noop", "extra": 1},
    {"t": "Tick"},
    {"t": "Tick", "epoch": "1"},
    {"t": "Tick", "epoch": True},
    {"t": "Tick", "epoch": 1.0},
    {"t": "Tick", "epoch": None},
    {"t": "LeaderEpoch", "term": "2"},
    {"t": "PollTasks", "request_id": 7, "task_type": "task_c", "worker_id": "w", "count": 1},
    {"t": "PollTasks", "request_id": "p", "task_type": "task_c", "worker_id": "w", "count": "1"},
    {"t": "PollTasks", "request_id": "p", "task_type": "task_c", "worker_id": "w", "count": False},
    {"t": "PollTasks", "request_id": "p", "task_type": ["x"], "worker_id": "w", "count": 1},
    {"t": "RegisterWorkflowDef", "request_id": "r", "definition": {}, "overwrite": "yes"},
    {"t": "StartWorkflow", "request_id": "s", "workflow_id": "w", "name": None},
    {"t": "StartWorkflow", "request_id": "s", "workflow_id": "w"},
    {"t": "CompleteTask", "request_id": "c", "task_id": "x", "outputs": {}},
    {"t": "FailTask", "request_id": "f", "task_id": "x", "terminal": "true"},
]


@pytest.mark.parametrize("bad", MALFORMED, ids=[json.dumps(m)[:60] for m in MALFORMED])
def test_malformed_command_is_rejected_and_the_sequence_advances(h: Harness, bad: JSON) -> None:
    before = state_without_seq(h.state)
    seq = h.state.seq
    outcomes = h.apply(bad, Noop(), bad)
    assert [o.code for o in outcomes] == [Code.INVALID_ARGUMENT, Code.OK, Code.INVALID_ARGUMENT]
    assert "malformed command" in outcomes[0].message
    assert [o.seq for o in outcomes] == [seq + 1, seq + 2, seq + 3]
    assert h.state.seq == seq + 3
    assert state_without_seq(h.state) == before


@pytest.mark.parametrize(
    "cmd, field",
    [
        (StartWorkflow(request_id="s", workflow_id="w", name="one_step", input=[1]), "input_json"),
        (StartWorkflow(request_id="s", workflow_id="", name="one_step"), "workflow_id"),
        (CompleteTask(request_id="c", task_id="x", output="done"), "output_json"),
        (FailTask(request_id="f", task_id="x", output=[]), "output_json"),
        (PollTasks(request_id="p", task_type="task_c", worker_id="w", count=0), "count"),
        (PollTasks(request_id="p", task_type="task_c", worker_id="w", count=101), "count"),
        (RegisterWorkflowDef(request_id="r", definition="nope"), "definition"),
        (RegisterTaskDefs(request_id="r", task_defs={"name": "x"}), "task_def_json"),
    ],
)
def test_invalid_payload_is_invalid_argument_naming_the_field(
    h: Harness, cmd: JSON, field: str
) -> None:
    before = state_without_requests(h.state)
    outcome = h.apply_one(cmd)
    assert outcome.code is Code.INVALID_ARGUMENT
    assert field in outcome.message, outcome.message
    assert state_without_requests(h.state) == before


def test_every_command_in_a_batch_gets_one_outcome_in_order(h: Harness) -> None:
    seq = h.state.seq
    outcomes = h.apply(
        h.start_cmd("one_step", workflow_id="b1"),
        "junk",
        h.poll_cmd("task_c", 1),
        LeaderEpoch(term=1),
        Tick(epoch=0),
    )
    assert [o.code for o in outcomes] == [
        Code.OK,
        Code.INVALID_ARGUMENT,
        Code.OK,
        Code.OK,
        Code.FAILED_PRECONDITION,
    ]
    assert outcomes[2].result == {"task_ids": ["b1-0"]}
    assert [o.seq for o in outcomes] == list(range(seq + 1, seq + 6))


# ============================================================ retention


def test_oldest_terminal_workflows_are_evicted_in_completion_order(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_TERMINAL_WORKFLOWS", 2)
    ids = [h.start("one_step", idempotency_key=f"k{i}") for i in range(5)]
    tasks = {wf: h.poll_one("task_c") for wf in ids}
    order = [ids[3], ids[0], ids[4], ids[1]]  # completion order differs from start order
    for wf in order[:2]:
        h.complete(tasks[wf])
    assert set(h.state.workflows) == set(ids)
    h.terminate(order[2])  # terminated counts as terminal too
    assert order[0] not in h.state.workflows
    assert tasks[order[0]] not in h.state.tasks
    h.fail(tasks[order[3]])
    assert order[1] not in h.state.workflows
    assert tasks[order[1]] not in h.state.tasks
    assert list(h.state.terminal_order) == [order[2], order[3]]
    assert ids[2] in h.state.workflows, "running workflows are never evicted"
    assert h.wf(ids[2]).status == "RUNNING"
    # The idempotency entry went with the evicted run: the key may be used again.
    assert f"one_step\x00k{3}" not in h.state.idempotency
    again = h.start("one_step", idempotency_key="k3")
    assert again not in ids
    check_invariants(h.state)


def test_eviction_keeps_a_newer_runs_idempotency_entry(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_TERMINAL_WORKFLOWS", 1)
    first = h.start("one_step", idempotency_key="k", idempotency_strategy="FAIL_ON_RUNNING")
    h.fail(h.poll_one("task_c"))
    second = h.start("one_step", idempotency_key="k", idempotency_strategy="FAIL_ON_RUNNING")
    h.terminate(second)  # evicts `first`
    assert first not in h.state.workflows
    assert h.state.idempotency["one_step\x00k"] == second


# ============================================================ harness sanity


def test_harness_log_replays_to_the_same_state(h: Harness) -> None:
    wf_id = h.start("two_step", {"x": 1})
    h.complete(h.poll_one("task_a"), {"y": 2})
    h.tick(10_000)
    h.fail(h.poll_one("task_b"))
    h.terminate(wf_id)
    from tests.core_helpers import replay

    st, _ = replay(copy.deepcopy(h.log))
    assert st.snapshot_bytes() == h.state.snapshot_bytes()
    assert isinstance(st, State)


def test_default_task_defs_are_what_the_tests_assume() -> None:
    assert {d["name"] for d in DEFAULT_TASK_DEFS} == {"task_a", "task_b", "task_c"}
    assert TWO_STEP["tasks"][0]["name"] == "task_a"
