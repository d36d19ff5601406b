"""Sagas in the core (processors/compensation.py): given a workflow whose steps declare
`compensateWith`, when it fails (or a TERMINATE task or the operator asks), then the completed
steps are undone one at a time in reverse completion order, and the workflow ends COMPENSATED,
or FAILED naming the compensation that failed for good."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.commands import (
    CompensateWorkflow,
    PauseWorkflow,
    RetryWorkflow,
)
from orchestrator.core.errors import Code
from orchestrator.core.state import State
from tests.core.test_core_determinism import replay_in_subprocess
from tests.core_helpers import Harness, check_invariants, replay

JSON = Any

UNDO_DEF = {"name": "undo", "retryCount": 1, "retryDelaySeconds": 0, "responseTimeoutSeconds": 10}


def _undo(ref: str, **extra: JSON) -> dict[str, JSON]:
    return {
        "name": "undo",
        "taskReferenceName": ref,
        "inputParameters": {
            "step": "${compensated.referenceTaskName}",
            "id": "${compensated.output.id}",
            "was": "${compensated.input.x}",
        },
        **extra,
    }


SAGA: dict[str, JSON] = {
    "name": "saga",
    "version": 1,
    "tasks": [
        {
            "name": "task_c",
            "taskReferenceName": "reserve",
            "inputParameters": {"x": "${workflow.input.x}"},
            "compensateWith": _undo("unreserve"),
        },
        {"name": "task_c", "taskReferenceName": "notify"},  # nothing to undo
        {
            "name": "task_c",
            "taskReferenceName": "charge",
            "compensateWith": [_undo("refund"), _undo("apologize")],
        },
        {"name": "task_c", "taskReferenceName": "ship"},
    ],
}

FORK_SAGA: dict[str, JSON] = {
    "name": "fork_saga",
    "version": 1,
    "tasks": [
        {
            "name": "fork",
            "taskReferenceName": "fork",
            "type": "FORK_JOIN",
            "forkTasks": [
                [
                    {"name": "task_c", "taskReferenceName": "l1", "compensateWith": _undo("u_l1")},
                    {"name": "task_c", "taskReferenceName": "l2", "compensateWith": _undo("u_l2")},
                ],
                [
                    {"name": "task_c", "taskReferenceName": "r1", "compensateWith": _undo("u_r1")},
                    {"name": "task_c", "taskReferenceName": "r2"},
                ],
            ],
        },
        {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": ["l2", "r2"]},
    ],
}


@pytest.fixture
def s(h: Harness) -> Harness:
    h.register_task_defs(UNDO_DEF)
    h.register_workflow(SAGA)
    h.register_workflow(FORK_SAGA)
    return h


def _run_forward(h: Harness, upto: int) -> str:
    """Start `saga` and complete its first `upto` steps (output id = its position)."""
    wf = h.start("saga", {"x": 5})
    for i in range(upto):
        h.complete(h.poll_one("task_c"), {"id": i})
    return wf


def _undo_all(h: Harness, wf: str) -> list[tuple[str, JSON]]:
    """Complete every compensation as it comes; returns (reference, input) in order."""
    seen = []
    while h.wf(wf).status == "COMPENSATING":
        (tid,) = h.poll("undo")
        t = h.task(tid)
        seen.append((t.reference_task_name, t.input))
        h.complete(tid)
    return seen


def test_sequential_saga_undoes_completed_steps_in_reverse(s: Harness) -> None:
    wf = _run_forward(s, 3)
    s.fail(s.poll_one("task_c"), "out of stock")
    w = s.wf(wf)
    assert w.status == "COMPENSATING"
    assert w.saga_status == "FAILED"
    assert w.reason_for_incompletion.startswith("task ship")
    # One at a time: only the first compensation is scheduled.
    assert len(s.queued("undo")) == 1
    seen = _undo_all(s, wf)
    assert [r for r, _ in seen] == ["refund", "apologize", "unreserve"]
    assert seen[0][1] == {"step": "charge", "id": 2, "was": None}
    assert seen[2][1] == {"step": "reserve", "id": 0, "was": 5}
    w = s.wf(wf)
    assert w.status == "COMPENSATED"
    assert w.reason_for_incompletion.startswith("task ship")
    assert w.end_time_ms > 0
    undo_tasks = [t for t in s.tasks_of(wf) if t.compensates]
    assert [s.task(t.compensates).reference_task_name for t in undo_tasks] == [
        "charge",
        "charge",
        "reserve",
    ]
    check_invariants(s.state)
    # The log replays to the same state.
    assert replay(s.log)[0].digest() == s.digest()


def test_fork_saga_undoes_each_branch_in_reverse(s: Harness) -> None:
    wf = s.start("fork_saga")
    by_ref = {s.task(t).reference_task_name: t for t in s.poll("task_c", 2)}
    s.complete(by_ref["r1"])
    s.complete(by_ref["l1"])
    (l2,) = [t for t in s.poll("task_c", 2) if s.task(t).reference_task_name == "l2"]
    s.complete(l2)
    r2 = s.state.workflows[wf].ref_index["r2"]
    s.fail(r2, "broken")
    seen = [r for r, _ in _undo_all(s, wf)]
    # Reverse completion order: l2 then l1 (left branch reversed), r1 completed first: last.
    assert seen == ["u_l2", "u_l1", "u_r1"]
    assert s.wf(wf).status == "COMPENSATED"


def test_compensation_failing_for_good_fails_the_workflow(s: Harness) -> None:
    wf = _run_forward(s, 3)
    s.fail(s.poll_one("task_c"), "out of stock")
    (refund,) = s.poll("undo")
    s.fail(refund, "bank down")
    (retry,) = s.poll("undo")  # its own retry policy: retryCount 1
    assert s.task(retry).reference_task_name == "refund"
    assert s.task(retry).retry_count == 1
    s.fail(retry, "bank still down")
    w = s.wf(wf)
    assert w.status == "FAILED"
    assert "refund" in w.reason_for_incompletion
    assert "bank still down" in w.reason_for_incompletion
    assert "out of stock" in w.reason_for_incompletion
    # Later steps did not run.
    assert not s.queued("undo")
    refs = [t.reference_task_name for t in s.tasks_of(wf)]
    assert "apologize" not in refs and "unreserve" not in refs
    check_invariants(s.state)


def test_no_compensation_declared_ends_as_before(s: Harness) -> None:
    wf = s.start("two_step")
    s.complete(s.poll_one("task_a"))
    s.fail(s.poll_one("task_b"), "x", terminal=True)
    assert s.wf(wf).status == "FAILED"
    # Nothing completed yet that declares a compensation: plain FAILED too.
    wf2 = s.start("saga")
    s.fail(s.poll_one("task_c"), "x")
    assert s.wf(wf2).status == "FAILED"
    assert s.wf(wf2).saga_status == ""


def test_compensate_on_failure_false_keeps_the_failure(s: Harness) -> None:
    s.register_workflow(dict(SAGA, name="nosaga", compensateOnFailure=False))
    wf = s.start("nosaga")
    s.complete(s.poll_one("task_c"))
    s.fail(s.poll_one("task_c"), "x")
    assert s.wf(wf).status == "FAILED"


def test_terminate_task_with_compensate(s: Harness) -> None:
    s.register_workflow(
        {
            "name": "term_saga",
            "version": 1,
            "tasks": [
                {"name": "task_c", "taskReferenceName": "a", "compensateWith": _undo("u_a")},
                {
                    "name": "term",
                    "taskReferenceName": "term",
                    "type": "TERMINATE",
                    "inputParameters": {
                        "terminationStatus": "TERMINATED",
                        "terminationReason": "customer cancelled",
                        "compensate": True,
                    },
                },
            ],
        }
    )
    wf = s.start("term_saga")
    s.complete(s.poll_one("task_c"), {"id": 1})
    assert s.wf(wf).status == "COMPENSATING"
    assert [r for r, _ in _undo_all(s, wf)] == ["u_a"]
    w = s.wf(wf)
    assert (w.status, w.reason_for_incompletion) == ("COMPENSATED", "customer cancelled")


def _compensate(h: Harness, wf: str, reason: str = "") -> Any:
    return h.apply_one(CompensateWorkflow(h.new_id("comp"), wf, reason))


def test_operator_compensates_a_running_workflow(s: Harness) -> None:
    wf = _run_forward(s, 1)
    running = s.poll_one("task_c")  # notify, in progress: cancelled first
    assert _compensate(s, wf, "fraud").code is Code.OK
    assert s.task(running).status == "CANCELED"
    w = s.wf(wf)
    assert (w.status, w.saga_status, w.reason_for_incompletion) == (
        "COMPENSATING",
        "TERMINATED",
        "fraud",
    )
    # Compensating again is a no-op; pause is refused.
    assert _compensate(s, wf).code is Code.OK
    assert s.apply_one(PauseWorkflow(s.new_id(), wf)).code is Code.FAILED_PRECONDITION
    assert [r for r, _ in _undo_all(s, wf)] == ["unreserve"]
    assert s.wf(wf).status == "COMPENSATED"
    out = _compensate(s, wf)
    assert out.code is Code.FAILED_PRECONDITION and "COMPENSATED" in out.message
    out = s.terminate(wf, check=False)  # not re-marked TERMINATED, as a COMPLETED one
    assert out.code is Code.FAILED_PRECONDITION and "COMPENSATED" in out.message


def test_operator_compensates_a_failed_workflow(s: Harness) -> None:
    s.register_workflow(dict(SAGA, name="later", compensateOnFailure=False))
    wf = s.start("later")
    s.complete(s.poll_one("task_c"), {"id": 0})
    s.fail(s.poll_one("task_c"), "x")
    assert s.wf(wf).status == "FAILED"
    assert _compensate(s, wf).code is Code.OK
    assert s.wf(wf).status == "COMPENSATING"
    assert wf not in s.state.terminal_order
    assert [r for r, _ in _undo_all(s, wf)] == ["unreserve"]
    w = s.wf(wf)
    assert w.status == "COMPENSATED"
    assert w.reason_for_incompletion.startswith("task notify")
    # Retry would go on from tasks the compensation undid.
    out = s.apply_one(RetryWorkflow(s.new_id(), wf))
    assert out.code is Code.FAILED_PRECONDITION


def test_operator_on_a_terminal_workflow_with_nothing_to_compensate(s: Harness) -> None:
    wf = s.start("one_step")
    s.fail(s.poll_one("task_c"), "x")
    out = _compensate(s, wf)
    assert out.code is Code.FAILED_PRECONDITION and "nothing to compensate" in out.message
    wf2 = s.start("one_step")
    s.complete(s.poll_one("task_c"))
    assert _compensate(s, wf2).code is Code.FAILED_PRECONDITION  # COMPLETED
    wf3 = s.start("one_step")
    assert _compensate(s, wf3).code is Code.OK  # running, nothing to undo: stopped
    assert s.wf(wf3).status == "TERMINATED"


def test_terminate_while_compensating(s: Harness) -> None:
    wf = _run_forward(s, 1)
    _compensate(s, wf)
    (undo,) = s.queued("undo")
    s.terminate(wf, "enough")
    assert s.wf(wf).status == "TERMINATED"
    assert s.task(undo).status == "CANCELED"
    check_invariants(s.state)


def test_failure_workflow_starts_after_the_compensation(s: Harness) -> None:
    s.register_workflow(
        {"name": "on_fail", "version": 1, "tasks": [{"name": "task_a", "taskReferenceName": "n"}]}
    )
    s.register_workflow(dict(SAGA, name="saga_fw", failureWorkflow="on_fail"))
    wf = s.start("saga_fw")
    s.complete(s.poll_one("task_c"), {"id": 0})
    s.fail(s.poll_one("task_c"), "x")
    assert f"{wf}-failure" not in s.state.workflows  # not yet: compensating
    _undo_all(s, wf)
    child = s.state.workflows[f"{wf}-failure"]
    assert child.input["compensationStatus"] == "COMPENSATED"
    assert child.input["failureStatus"] == "FAILED"
    assert s.wf(wf).output["conductor.failure_workflow"] == child.workflow_id


def test_compensation_timeout_of_the_workflow_does_not_fire(s: Harness) -> None:
    s.register_workflow(dict(SAGA, name="timed", timeoutSeconds=5))
    wf = s.start("timed")
    s.complete(s.poll_one("task_c"), {"id": 0})
    s.fail(s.poll_one("task_c"), "x")
    assert s.wf(wf).status == "COMPENSATING"
    s.tick(60_000)
    assert s.wf(wf).status == "COMPENSATING"
    check_invariants(s.state)


def test_snapshot_mid_compensation_round_trips(s: Harness) -> None:
    wf = _run_forward(s, 3)
    s.fail(s.poll_one("task_c"), "x")
    s.complete(s.poll_one("undo"))
    mid = s.state.snapshot_bytes()
    loaded = State.from_snapshot_bytes(mid)
    assert loaded.digest() == s.digest()
    # Both go on identically from there.
    other = Harness(loaded, clock_ms=s.clock_ms)
    other._counter = s._counter
    a = _undo_all(s, wf)
    b = _undo_all(other, wf)
    assert a == b
    assert other.digest() == s.digest()


@pytest.mark.parametrize(
    ("compensate_with", "message"),
    [
        ([], "non-empty list"),
        ({"name": "x", "taskReferenceName": "u", "type": "FORK_JOIN"}, "compensation task may"),
        (
            {"name": "undo", "taskReferenceName": "u", "compensateWith": _undo("uu")},
            "cannot declare its own compensateWith",
        ),
        (
            {"name": "undo", "taskReferenceName": "b"},
            "duplicate reference",
        ),
    ],
)
def test_compensate_with_is_validated(s: Harness, compensate_with: JSON, message: str) -> None:
    bad = {
        "name": "bad",
        "version": 1,
        "tasks": [
            {"name": "task_c", "taskReferenceName": "a", "compensateWith": compensate_with},
            {"name": "task_c", "taskReferenceName": "b"},
        ],
    }
    out = s.register_workflow(bad, check=False)
    assert out.code is Code.INVALID_ARGUMENT
    assert "compensateWith" in out.message or message in out.message
    assert message in out.message


def test_compensated_is_reserved_and_only_for_compensations(s: Harness) -> None:
    reserved = {
        "name": "r",
        "version": 1,
        "tasks": [{"name": "t", "taskReferenceName": "compensated"}],
    }
    assert "reserved" in s.register_workflow(reserved, check=False).message
    misuse = {
        "name": "m",
        "version": 1,
        "tasks": [
            {
                "name": "task_c",
                "taskReferenceName": "a",
                "inputParameters": {"x": "${compensated.output}"},
            }
        ],
    }
    assert s.register_workflow(misuse, check=False).code is Code.INVALID_ARGUMENT
    flag = {"name": "f", "version": 1, "compensateOnFailure": "yes", "tasks": SAGA["tasks"]}
    assert "compensateOnFailure" in s.register_workflow(flag, check=False).message


def test_each_loop_iteration_is_its_own_step(s: Harness) -> None:
    s.register_workflow(
        {
            "name": "loop_saga",
            "version": 1,
            "tasks": [
                {
                    "name": "loop",
                    "taskReferenceName": "loop",
                    "type": "DO_WHILE",
                    "inputParameters": {"n": 3},
                    "loopCondition": "$.loop['iteration'] < $.n",
                    "loopOver": [
                        {
                            "name": "task_c",
                            "taskReferenceName": "book",
                            "compensateWith": _undo("ub"),
                        }
                    ],
                },
                {"name": "task_c", "taskReferenceName": "last"},
            ],
        }
    )
    wf = s.start("loop_saga")
    for i in range(3):
        s.complete(s.poll_one("task_c"), {"id": i})
    s.fail(s.poll_one("task_c"), "x")
    seen = _undo_all(s, wf)
    assert [(r, inp["step"], inp["id"]) for r, inp in seen] == [
        ("ub__3", "book__3", 2),
        ("ub__2", "book__2", 1),
        ("ub__1", "book__1", 0),
    ]
    assert s.wf(wf).status == "COMPENSATED"
    check_invariants(s.state)


def test_a_sub_workflow_and_a_human_task_compensate(s: Harness) -> None:
    s.register_workflow(
        {
            "name": "kinds",
            "version": 1,
            "tasks": [
                {
                    "name": "task_c",
                    "taskReferenceName": "a",
                    "compensateWith": [
                        {
                            "name": "one_step",
                            "taskReferenceName": "child",
                            "type": "SUB_WORKFLOW",
                            "subWorkflowParam": {"name": "one_step", "version": 1},
                        },
                        {"name": "ok", "taskReferenceName": "ok", "type": "HUMAN"},
                    ],
                },
                {"name": "task_c", "taskReferenceName": "b"},
            ],
        }
    )
    wf = s.start("kinds")
    s.complete(s.poll_one("task_c"))
    s.fail(s.poll_one("task_c"), "x")
    child = s.state.tasks[s.wf(wf).ref_index["child"]]
    assert child.status == "IN_PROGRESS" and s.state.workflows[child.sub_workflow_id]
    s.complete(s.poll_one("task_c"))  # the child's task: the child completes
    human = s.wf(wf).ref_index["ok"]
    assert s.task(human).status == "IN_PROGRESS" and s.wf(wf).status == "COMPENSATING"
    s.complete(human)
    assert s.wf(wf).status == "COMPENSATED"
    check_invariants(s.state)


def test_a_workflow_timeout_compensates(s: Harness) -> None:
    s.register_workflow(dict(SAGA, name="slow", timeoutSeconds=5))
    wf = s.start("slow")
    s.complete(s.poll_one("task_c"), {"id": 0})
    s.tick(6_000)
    w = s.wf(wf)
    assert (w.status, w.saga_status) == ("COMPENSATING", "TIMED_OUT")
    assert [r for r, _ in _undo_all(s, wf)] == ["unreserve"]
    assert s.wf(wf).status == "COMPENSATED"


def test_a_compensation_timing_out_the_workflow_fails_it(s: Harness) -> None:
    slow = dict(UNDO_DEF, name="slow_undo", timeoutSeconds=5, responseTimeoutSeconds=5)
    s.register_task_defs(dict(slow, retryCount=0))
    s.register_workflow(
        {
            "name": "slow_undo_saga",
            "version": 1,
            "tasks": [
                {
                    "name": "task_c",
                    "taskReferenceName": "a",
                    "compensateWith": {"name": "slow_undo", "taskReferenceName": "u"},
                },
                {"name": "task_c", "taskReferenceName": "b"},
            ],
        }
    )
    wf = s.start("slow_undo_saga")
    s.complete(s.poll_one("task_c"))
    s.fail(s.poll_one("task_c"), "boom")
    s.poll_one("slow_undo")
    s.tick(6_000)  # timeoutSeconds with TIME_OUT_WF: the compensation failed for good
    w = s.wf(wf)
    assert w.status == "FAILED"
    assert w.reason_for_incompletion.startswith("compensation failed: task u")
    check_invariants(s.state)


def test_a_paused_workflow_is_compensated_and_a_running_compensation_skipped(
    s: Harness,
) -> None:
    from orchestrator.core.commands import SkipTask

    wf = _run_forward(s, 3)
    assert s.apply_one(PauseWorkflow(s.new_id(), wf)).code is Code.OK
    assert _compensate(s, wf).code is Code.OK
    assert s.wf(wf).status == "COMPENSATING"
    s.ok(SkipTask(s.new_id(), wf, "refund", {"skipped": True}))
    assert [r for r, _ in _undo_all(s, wf)] == ["apologize", "unreserve"]
    assert s.wf(wf).status == "COMPENSATED"


def test_an_archived_failed_workflow_comes_back_to_be_compensated(s: Harness) -> None:
    from orchestrator.core import history_ops as H
    from orchestrator.core.commands import RemoveWorkflow

    s.register_workflow(dict(SAGA, name="archived", compensateOnFailure=False))
    wf = s.start("archived")
    s.complete(s.poll_one("task_c"), {"id": 0})
    s.fail(s.poll_one("task_c"), "x")
    st = s.state
    record = st.workflows[wf]
    tasks = tuple(st.tasks[t] for t in record.tasks)
    op = H.Archive(st.seq, record, tasks, st.def_snapshots[record.def_hash])
    doc = json.loads(json.dumps(H.archive_doc(op)))
    s.ok(RemoveWorkflow(s.new_id(), wf))
    assert _compensate(s, wf).code is Code.NOT_FOUND
    s.ok(CompensateWorkflow(s.new_id(), wf, "", restore=doc))
    assert s.wf(wf).status == "COMPENSATING"
    assert [r for r, _ in _undo_all(s, wf)] == ["unreserve"]
    assert s.wf(wf).status == "COMPENSATED" and wf in s.state.terminal_order


def test_compensating_again_after_a_failed_compensation_undoes_only_what_is_left(
    s: Harness,
) -> None:
    wf = _run_forward(s, 3)
    s.fail(s.poll_one("task_c"), "x")
    s.fail(s.poll_one("undo"), "no")  # refund, then its one retry
    s.fail(s.poll_one("undo"), "no")
    assert s.wf(wf).status == "FAILED"
    assert _compensate(s, wf).code is Code.OK
    refund = s.task(s.poll_one("undo"))
    assert refund.reference_task_name == "refund" and refund.compensates
    s.complete(refund.task_id)
    assert [r for r, _ in _undo_all(s, wf)] == ["apologize", "unreserve"]
    assert s.wf(wf).status == "COMPENSATED"
    refs = [t.reference_task_name for t in s.tasks_of(wf) if t.compensates]
    assert refs == ["refund", "refund", "refund", "apologize", "unreserve"]


def test_restart_after_a_compensation_runs_afresh(s: Harness) -> None:
    from orchestrator.core.commands import RestartWorkflow

    wf = _run_forward(s, 1)
    _compensate(s, wf)
    _undo_all(s, wf)
    s.ok(RestartWorkflow(s.new_id(), wf))
    w = s.wf(wf)
    assert (w.status, w.saga_status, w.saga_steps) == ("RUNNING", "", [])
    check_invariants(s.state)


def test_the_log_replays_byte_identical_under_other_hash_seeds(s: Harness, tmp_path: Path) -> None:
    wf = _run_forward(s, 3)
    s.fail(s.poll_one("task_c"), "x")
    _undo_all(s, wf)
    _compensate(s, _run_forward(s, 2))  # left mid-compensation
    log_path = tmp_path / "log.json"
    log_path.write_text(json.dumps(s.log), encoding="utf-8")
    snap0, _, probe0 = replay_in_subprocess(log_path, "0", tmp_path)
    snap1, _, probe1 = replay_in_subprocess(log_path, "4242", tmp_path)
    assert probe0 != probe1, "the two subprocesses really ran with different hash seeds"
    assert snap0 == snap1 == s.state.snapshot_bytes()


def test_a_child_of_a_compensated_parent_cannot_push_it_back_to_running(s: Harness) -> None:
    s.register_workflow(
        {
            "name": "parent_saga",
            "version": 1,
            "tasks": [
                {"name": "task_c", "taskReferenceName": "a", "compensateWith": _undo("ua")},
                {
                    "name": "one_step",
                    "taskReferenceName": "sw",
                    "type": "SUB_WORKFLOW",
                    "subWorkflowParam": {"name": "one_step", "version": 1},
                },
            ],
        }
    )
    wf = s.start("parent_saga")
    s.complete(s.poll_one("task_c"))
    s.fail(s.poll_one("task_c"), "child fails")  # the child's task: the child FAILED
    child = s.state.tasks[s.wf(wf).ref_index["sw"]].sub_workflow_id
    assert (s.wf(child).status, s.wf(wf).status) == ("FAILED", "COMPENSATING")
    out = s.apply_one(RetryWorkflow(s.new_id(), child))
    assert out.code is Code.FAILED_PRECONDITION and "compensated" in out.message
    _undo_all(s, wf)
    assert s.wf(wf).status == "COMPENSATED"
    check_invariants(s.state)
