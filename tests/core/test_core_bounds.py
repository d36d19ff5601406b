"""Values are bounded before they reach the state: each reproduction of issue 13 fails its task
(or workflow) cleanly and deterministically, and the state stays encodable."""

from __future__ import annotations

import json

import pytest

from orchestrator.core import limits
from orchestrator.core.commands import ScriptResult
from orchestrator.core.errors import Code
from orchestrator.core.records import TaskStatus, WorkflowStatus
from orchestrator.core.state import State
from tests.core_helpers import Harness, check_invariants


def wait_from_input(field: str) -> dict[str, object]:
    return {
        "name": f"wait_{field}",
        "version": 1,
        "tasks": [
            {
                "name": "w",
                "taskReferenceName": "w",
                "type": "WAIT",
                "inputParameters": {field: "${workflow.input.v}"},
            }
        ],
    }


SELF_STARTER = {
    "name": "self_starter",
    "version": 1,
    "tasks": [
        {
            "name": "s",
            "taskReferenceName": "s",
            "type": "START_WORKFLOW",
            "inputParameters": {
                "startWorkflow": {
                    "name": "${workflow.input.n}",
                    "input": {"n": "${workflow.input.n}"},
                }
            },
        }
    ],
}

INLINE = {
    "name": "inline_flow",
    "version": 1,
    "tasks": [
        {
            "name": "i",
            "taskReferenceName": "i",
            "type": "INLINE",
            "inputParameters": {"evaluatorType": "javascript", "expression": "1"},
        }
    ],
}


def _wait_fails(h: Harness, field: str, value: str) -> str:
    h.register_workflow(wait_from_input(field))
    wf = h.start(f"wait_{field}", {"v": value})
    task = h.tasks_of(wf)[0]
    assert task.status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert h.wf(wf).status is WorkflowStatus.FAILED
    State.from_snapshot_bytes(h.state.snapshot_bytes())  # the state still encodes and loads
    return task.reason_for_incompletion


def test_a_4300_digit_wait_duration_fails_the_task(led: Harness) -> None:
    reason = _wait_fails(led, "duration", "9" * 4300 + " seconds")
    assert "duration: at most" in reason


def test_a_wait_duration_beyond_the_limit_fails_the_task(led: Harness) -> None:
    days = limits.MAX_WAIT_MS // 86_400_000 + 1
    assert "duration: at most" in _wait_fails(led, "duration", f"{days} days")


def test_a_wait_until_offset_out_of_range_fails_the_task(led: Harness) -> None:
    reason = _wait_fails(led, "until", "2030-01-01 10:00 +99:99")
    assert "until: zone offset" in reason


def test_a_workflow_starting_itself_stops_at_the_chain_limit(led: Harness) -> None:
    h = led
    h.register_workflow(SELF_STARTER)
    first = h.start("self_starter", {"n": "self_starter"})
    wfs = list(h.state.workflows.values())
    chain = [w for w in wfs if w.workflow_name == "self_starter"]
    assert len(chain) == limits.MAX_CHAIN_DEPTH + 1
    assert max(w.chain_depth for w in chain) == limits.MAX_CHAIN_DEPTH
    assert all(len(w.workflow_id) <= limits.MAX_BUILT_ID_LENGTH for w in chain)
    assert all(len(t) <= limits.MAX_BUILT_ID_LENGTH for w in chain for t in w.tasks)
    last = chain[-1]
    task = h.state.tasks[last.tasks[0]]
    assert task.status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert f"more than {limits.MAX_CHAIN_DEPTH} workflows" in task.reason_for_incompletion
    assert last.status is WorkflowStatus.FAILED
    assert h.wf(first).status is WorkflowStatus.COMPLETED
    check_invariants(h.state)


def test_one_command_starts_a_bounded_number_of_workflows(
    led: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_WORKFLOWS_PER_COMMAND", 5)
    led.register_workflow(SELF_STARTER)
    led.start("self_starter", {"n": "self_starter"})
    assert len(led.state.workflows) == 6, "the client's workflow and five started by it"
    reasons = [t.reason_for_incompletion for t in led.state.tasks.values()]
    assert any("more than 5 workflows started by one command" in r for r in reasons)


def _script_result(h: Harness, value: object) -> str:
    h.register_workflow(INLINE)
    wf = h.start("inline_flow")
    task = h.tasks_of(wf)[0]
    assert task.script is not None
    cmd = ScriptResult(
        task_id=task.task_id, fence=task.script.fence, epoch=h.epoch, ok=True, value=value
    )
    h.ok(cmd)
    assert task.status is TaskStatus.FAILED
    json.loads(h.state.snapshot_bytes())  # strict JSON again
    return task.reason_for_incompletion


def test_a_nan_script_result_fails_the_task(led: Harness) -> None:
    assert "NaN and Infinity are not JSON" in _script_result(led, {"x": float("nan")})


def test_a_lone_surrogate_script_result_fails_the_task(led: Harness) -> None:
    assert "lone surrogate" in _script_result(led, ["ok", "\ud800"])


def test_a_long_workflow_id_gives_bounded_task_ids(led: Harness) -> None:
    wf = led.start("one_step", workflow_id="w" * limits.MAX_NAME_LENGTH)
    (task,) = led.tasks_of(wf)
    assert len(task.task_id) <= limits.MAX_BUILT_ID_LENGTH
    assert led.apply_one(led.poll_cmd("task_c")).code is Code.OK


DOUBLING = {
    "name": "doubling",
    "version": 1,
    "tasks": [
        {"name": "gate", "taskReferenceName": "gate"},
        *(
            {
                **SELF_STARTER["tasks"][0],  # type: ignore[index]
                "name": ref,
                "taskReferenceName": ref,
            }
            for ref in ("a", "b")
        ),
    ],
}


def test_a_chain_that_doubles_each_generation_stops_at_the_chain_budget(
    led: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Depth 32 and 64 per command do not bound a chain starting two of itself per generation
    (2**32); the chain's own count does, and is dropped once its last workflow ends."""
    monkeypatch.setattr(limits, "MAX_CHAIN_WORKFLOWS", 20)
    h = led
    h.register_task_defs({"name": "gate", "retryCount": 0})
    h.register_workflow(DOUBLING)
    root = h.start("doubling", {"n": "doubling"})
    completed = 0
    while (ready := h.poll("gate", n=50)) and completed < 200:
        for task_id in ready:
            h.complete(task_id)
            completed += 1
        assert len(h.state.chains) <= 1
        State.from_snapshot_bytes(h.state.snapshot_bytes())  # chains survive a snapshot
    chain = [w for w in h.state.workflows.values() if w.workflow_name == "doubling"]
    assert len(chain) == 20, "the client's workflow and the 19 its chain may start"
    assert completed == 20
    assert all(w.chain_root == root for w in chain if w.workflow_id != root)
    reasons = [t.reason_for_incompletion for t in h.state.tasks.values()]
    assert any("has started 20 workflows, the most one chain may" in r for r in reasons)
    assert all(w.status is not WorkflowStatus.RUNNING for w in chain)
    assert h.state.chains == {}, "the count goes when the chain's last workflow ends"
    check_invariants(h.state)
