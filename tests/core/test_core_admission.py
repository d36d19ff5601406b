"""Workflow-level limits in the core (processors/admission.py): a definition's `limits` decide at
start whether a workflow runs, waits QUEUED or is refused; a running one's end starts the oldest
QUEUED ones that fit, in the same command; the counts survive a snapshot and replay alike."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from orchestrator.core.commands import (
    CompensateWorkflow,
    PauseWorkflow,
    RemoveWorkflow,
    RerunWorkflow,
    RestartWorkflow,
    RetryWorkflow,
    SkipTask,
)
from orchestrator.core.errors import Code
from orchestrator.core.state import State
from tests.core_helpers import Harness, check_invariants, replay, state_without_requests

JSON = Any
RUNS = ("RUNNING", "PAUSED", "COMPENSATING")


def limited(name: str = "lim", version: int = 1, **lim: JSON) -> dict[str, JSON]:
    """One worker task (task_c, no retries) under the given limits."""
    return {
        "name": name,
        "version": version,
        "limits": lim,
        "tasks": [{"name": "task_c", "taskReferenceName": "c"}],
    }


def statuses(h: Harness, *ids: str) -> list[str]:
    return [h.wf(i).status.value for i in ids]


def finish(h: Harness, wf_id: str, ok: bool = True) -> None:
    """Complete (or fail) the one task_c the workflow waits on."""
    (task,) = [t for t in h.tasks_of(wf_id) if t.status.value in ("SCHEDULED", "IN_PROGRESS")]
    if task.status.value == "SCHEDULED":  # lease every ready one: this one among them
        assert task.task_id in h.poll("task_c", 100)
    if ok:
        h.complete(task.task_id)
    else:
        h.fail(task.task_id, terminal=True)


# ---------------------------------------------------------------- definitions


@pytest.mark.parametrize(
    ("lim", "message"),
    [
        ([], "limits: must be a JSON object"),
        ({"maxRunning": -1}, "limits.maxRunning: must be between 0"),
        ({"maxRunning": "2"}, "limits.maxRunning: must be an integer"),
        ({"maxRunningPerCorrelationId": True}, "limits.maxRunningPerCorrelationId: must be an"),
        ({"whenLimited": "DROP"}, "limits.whenLimited: must be one of QUEUE, REJECT"),
        ({"maxRuning": 1}, "limits.maxRuning: unknown"),
    ],
)
def test_a_bad_limits_object_is_refused_naming_the_field(
    h: Harness, lim: JSON, message: str
) -> None:
    defn = limited()
    defn["limits"] = lim
    out = h.register_workflow(defn, check=False)
    assert out.code is Code.INVALID_ARGUMENT
    assert message in out.message


def test_limits_are_normalized_with_their_defaults(h: Harness) -> None:
    h.register_workflow(limited(maxRunning=3))
    stored = h.state.workflow_defs["lim"]["1"]["limits"]
    assert stored == {"maxRunning": 3, "maxRunningPerCorrelationId": 0, "whenLimited": "QUEUE"}


# ---------------------------------------------------------------- queue, reject


def test_starts_beyond_max_running_queue_and_start_in_order_as_slots_free(h: Harness) -> None:
    h.register_workflow(limited(maxRunning=2))
    outs = [h.ok(h.start_cmd("lim")) for _ in range(5)]
    ids = [str(o.result["workflow_id"]) for o in outs]
    assert [o.result.get("queued", False) for o in outs] == [False, False, True, True, True]
    assert statuses(h, *ids) == ["RUNNING", "RUNNING", "QUEUED", "QUEUED", "QUEUED"]
    assert all(not h.wf(i).tasks and h.wf(i).start_time_ms == 0 for i in ids[2:])
    assert list(h.state.queued["lim"]) == ids[2:]
    h.advance(500)
    finish(h, ids[1])  # the second ends first: the oldest QUEUED one takes its slot
    assert statuses(h, *ids) == ["RUNNING", "COMPLETED", "RUNNING", "QUEUED", "QUEUED"]
    assert h.wf(ids[2]).start_time_ms == h.clock_ms
    assert h.wf(ids[2]).create_time_ms < h.clock_ms
    assert [t.reference_task_name for t in h.tasks_of(ids[2])] == ["c"]
    finish(h, ids[0], ok=False)  # a FAILED end frees a slot too
    assert statuses(h, *ids[3:]) == ["RUNNING", "QUEUED"]
    for wf_id in ids[2:4]:
        finish(h, wf_id)
    assert statuses(h, *ids) == ["FAILED", "COMPLETED", "COMPLETED", "COMPLETED", "RUNNING"]
    assert h.state.running == {"lim": 1} and "lim" not in h.state.queued
    check_invariants(h.state)


def test_reject_refuses_the_start_naming_the_definition_and_the_limit(h: Harness) -> None:
    h.register_workflow(limited(maxRunning=1, whenLimited="REJECT"))
    h.start("lim")
    before = h.state.snapshot_bytes()
    out = h.apply_one(h.start_cmd("lim"))
    assert out.code is Code.FAILED_PRECONDITION
    assert "'lim'" in out.message and "maxRunning is 1" in out.message
    assert state_without_requests(State.from_snapshot_bytes(before)) == state_without_requests(
        h.state
    )


def test_one_running_per_correlation_id_lets_other_correlation_ids_run(h: Harness) -> None:
    h.register_workflow(limited(maxRunningPerCorrelationId=1))
    a1 = h.start("lim", correlation_id="alice")
    a2 = h.start("lim", correlation_id="alice")
    b1 = h.start("lim", correlation_id="bob")
    anon = [h.start("lim"), h.start("lim")]  # no correlation id: not limited by it
    a3 = h.start("lim", correlation_id="alice")
    assert statuses(h, a1, a2, b1, a3) == ["RUNNING", "QUEUED", "RUNNING", "QUEUED"]
    assert statuses(h, *anon) == ["RUNNING", "RUNNING"]
    finish(h, b1)  # bob's end frees no slot of alice's
    assert statuses(h, a2, a3) == ["QUEUED", "QUEUED"]
    b2 = h.start("lim", correlation_id="bob")
    assert h.wf(b2).status.value == "RUNNING"
    finish(h, a1)  # alice's next, in start order, and only one
    assert statuses(h, a2, a3) == ["RUNNING", "QUEUED"]
    check_invariants(h.state)


def test_both_limits_hold_together(h: Harness) -> None:
    h.register_workflow(limited(maxRunning=2, maxRunningPerCorrelationId=1))
    a1 = h.start("lim", correlation_id="a")
    a2 = h.start("lim", correlation_id="a")  # held back by its correlation id
    b1 = h.start("lim", correlation_id="b")
    c1 = h.start("lim", correlation_id="c")  # held back by maxRunning
    assert statuses(h, a1, a2, b1, c1) == ["RUNNING", "QUEUED", "RUNNING", "QUEUED"]
    finish(h, b1)  # a2 still cannot run (a1 runs): c1 passes it
    assert statuses(h, a2, c1) == ["QUEUED", "RUNNING"]
    finish(h, a1)
    assert statuses(h, a2) == ["RUNNING"]
    check_invariants(h.state)


def test_limits_count_every_version_of_the_name_and_apply_the_started_versions(
    h: Harness,
) -> None:
    unlimited = limited(version=1)
    del unlimited["limits"]
    h.register_workflow(unlimited)
    h.register_workflow(limited(version=2, maxRunning=2))
    old = [h.start("lim", version=1) for _ in range(3)]  # version 1 has no limit
    assert statuses(h, *old) == ["RUNNING"] * 3
    new = h.start("lim", version=2)
    assert statuses(h, new) == ["QUEUED"]
    finish(h, old[0])
    assert statuses(h, new) == ["QUEUED"]  # still 2 running
    finish(h, old[1])
    assert statuses(h, new) == ["RUNNING"]


# ---------------------------------------------------------------- every kind of end


def test_a_paused_workflow_holds_its_slot_and_its_terminate_frees_it(h: Harness) -> None:
    h.register_workflow(limited(maxRunning=1))
    first, second = h.start("lim"), h.start("lim")
    h.ok(PauseWorkflow(request_id=h.new_id(), workflow_id=first))
    assert statuses(h, first, second) == ["PAUSED", "QUEUED"]
    h.terminate(first)
    assert statuses(h, first, second) == ["TERMINATED", "RUNNING"]


def test_a_workflow_timeout_frees_a_slot_and_counts_from_when_it_runs(h: Harness) -> None:
    defn = limited(maxRunning=1)
    defn["timeoutSeconds"] = 10
    h.register_workflow(defn)
    first, second = h.start("lim"), h.start("lim")
    assert "wftmo:" + second not in h.state.timers  # nothing runs: no timeout yet
    h.tick(5_000)
    h.tick(5_000)  # the first times out, the second starts running now
    assert statuses(h, first, second) == ["TIMED_OUT", "RUNNING"]
    assert h.state.timers["wftmo:" + second] == h.clock_ms + 10_000
    assert h.wf(second).start_time_ms == h.clock_ms


def test_a_queued_workflow_terminates_without_a_slot_and_cannot_be_paused(h: Harness) -> None:
    h.register_workflow(limited(maxRunning=1))
    first, second, third = h.start("lim"), h.start("lim"), h.start("lim")
    out = h.apply_one(PauseWorkflow(request_id=h.new_id(), workflow_id=second))
    assert out.code is Code.FAILED_PRECONDITION and "QUEUED" in out.message
    h.terminate(second, reason="not needed")
    assert statuses(h, first, second, third) == ["RUNNING", "TERMINATED", "QUEUED"]
    assert h.wf(second).reason_for_incompletion == "not needed"
    finish(h, first)
    assert statuses(h, third) == ["RUNNING"]
    check_invariants(h.state)


def test_no_task_of_a_queued_workflow_can_be_skipped(h: Harness) -> None:
    h.register_workflow(limited(maxRunning=1))
    h.start("lim")
    queued = h.start("lim")
    out = h.apply_one(SkipTask(request_id=h.new_id(), workflow_id=queued, task_reference_name="c"))
    assert out.code is Code.FAILED_PRECONDITION and "QUEUED" in out.message
    assert not h.wf(queued).tasks


def test_removing_an_ended_workflow_changes_no_count(h: Harness) -> None:
    h.register_workflow(limited(maxRunning=1))
    first, second = h.start("lim"), h.start("lim")
    h.terminate(first)
    h.ok(RemoveWorkflow(request_id=h.new_id(), workflow_id=first))
    out = h.apply_one(RemoveWorkflow(request_id=h.new_id(), workflow_id=second))
    assert out.code is Code.FAILED_PRECONDITION  # running: terminate it first
    assert h.state.running == {"lim": 1} and "lim" not in h.state.queued
    check_invariants(h.state)


def test_a_promoted_workflow_that_ends_at_once_makes_room_for_the_next_in_one_command(
    h: Harness,
) -> None:
    """A chain of QUEUED workflows that end as they start is started iteratively (drain)."""
    h.register_workflow(
        {
            "name": "instant",
            "version": 1,
            "limits": {"maxRunning": 1},
            "tasks": [{"name": "n", "taskReferenceName": "n", "type": "NOOP"}],
        }
    )
    blocker = limited(name="instant", version=2, maxRunning=1)
    h.register_workflow(blocker)
    first = h.start("instant", version=2)
    queued = [h.start("instant", version=1) for _ in range(300)]
    assert {h.wf(i).status.value for i in queued} == {"QUEUED"}
    finish(h, first)
    assert {h.wf(i).status.value for i in queued} == {"COMPLETED"}
    check_invariants(h.state)


# ---------------------------------------------------------------- operators, idempotency


def test_restart_retry_and_rerun_beyond_a_limit_are_refused(h: Harness) -> None:
    h.register_workflow(limited(maxRunning=1))
    ended = h.start("lim")
    finish(h, ended, ok=False)
    running = h.start("lim")
    for cmd in (
        RestartWorkflow(request_id=h.new_id(), workflow_id=ended),
        RetryWorkflow(request_id=h.new_id(), workflow_id=ended),
        RerunWorkflow(request_id=h.new_id(), workflow_id=ended),
    ):
        out = h.apply_one(cmd)
        assert out.code is Code.FAILED_PRECONDITION, cmd
        assert "maxRunning is 1" in out.message and ended in out.message
    h.terminate(running)
    h.ok(RetryWorkflow(request_id=h.new_id(), workflow_id=ended))
    assert h.wf(ended).status.value == "RUNNING" and h.wf(ended).start_time_ms == h.clock_ms
    check_invariants(h.state)


def test_an_idempotency_key_treats_a_queued_workflow_as_running(h: Harness) -> None:
    h.register_workflow(limited(maxRunning=1))
    h.start("lim")
    queued = h.start("lim", idempotency_key="k", idempotency_strategy="FAIL_ON_RUNNING")
    out = h.apply_one(
        h.start_cmd("lim", idempotency_key="k", idempotency_strategy="FAIL_ON_RUNNING")
    )
    assert out.code is Code.ALREADY_EXISTS and queued in out.message


# ---------------------------------------------------------------- sagas


SAGA: dict[str, JSON] = {
    "name": "lim_saga",
    "version": 1,
    "limits": {"maxRunning": 1},
    "tasks": [
        {
            "name": "task_b",
            "taskReferenceName": "b",
            "compensateWith": {"name": "task_a", "taskReferenceName": "undo_b"},
        },
        {"name": "task_c", "taskReferenceName": "c"},
    ],
}


def _saga_fails(h: Harness, wf_id: str) -> None:
    """Its step b completes, then c fails: the saga compensates b."""
    h.complete(h.poll_one("task_b"))
    h.fail(h.poll_one("task_c"), terminal=True)
    assert h.wf(wf_id).status.value == "COMPENSATING"


def test_a_compensating_saga_holds_its_slot_until_its_compensation_ends(h: Harness) -> None:
    h.register_workflow(SAGA)
    first, second = h.start("lim_saga"), h.start("lim_saga")
    _saga_fails(h, first)
    assert statuses(h, second) == ["QUEUED"]
    h.complete(h.poll_one("task_a"))  # the compensation of b
    assert statuses(h, first, second) == ["COMPENSATED", "RUNNING"]
    check_invariants(h.state)


def test_an_operator_compensation_of_an_ended_saga_beyond_its_limit_is_refused(
    h: Harness,
) -> None:
    h.register_workflow(dict(SAGA, compensateOnFailure=False))
    first = h.start("lim_saga")
    h.complete(h.poll_one("task_b"))
    h.fail(h.poll_one("task_c"), terminal=True)
    second = h.start("lim_saga")
    assert statuses(h, first, second) == ["FAILED", "RUNNING"]
    out = h.apply_one(CompensateWorkflow(h.new_id(), first, ""))
    assert out.code is Code.FAILED_PRECONDITION and "maxRunning is 1" in out.message
    h.terminate(second)
    h.ok(CompensateWorkflow(h.new_id(), first, ""))
    assert statuses(h, first) == ["COMPENSATING"] and h.state.running == {"lim_saga": 1}
    check_invariants(h.state)


# ---------------------------------------------------------------- children


CHILD_PARENT: dict[str, JSON] = {
    "name": "parent",
    "version": 1,
    "tasks": [
        {
            "name": "lim",
            "taskReferenceName": "sw",
            "type": "SUB_WORKFLOW",
            "subWorkflowParam": {"name": "lim"},
        },
        {"name": "task_a", "taskReferenceName": "after"},
    ],
}


def test_a_queued_child_keeps_its_parent_waiting_until_it_runs_and_ends(h: Harness) -> None:
    h.register_workflow(limited(maxRunning=1))
    h.register_workflow(CHILD_PARENT)
    other = h.start("lim")
    parent = h.start("parent")
    (sw,) = h.tasks_of(parent)
    child = sw.sub_workflow_id
    assert sw.status.value == "IN_PROGRESS" and h.wf(child).status.value == "QUEUED"
    finish(h, other)
    assert h.wf(child).status.value == "RUNNING"
    finish(h, child)
    assert [t.reference_task_name for t in h.tasks_of(parent)] == ["sw", "after"]
    assert h.tasks_of(parent)[0].status.value == "COMPLETED"
    check_invariants(h.state)


def test_a_parent_that_ends_terminates_its_queued_child(h: Harness) -> None:
    h.register_workflow(limited(maxRunning=1))
    h.register_workflow(CHILD_PARENT)
    h.start("lim")
    parent = h.start("parent")
    child = h.tasks_of(parent)[0].sub_workflow_id
    h.terminate(parent)
    assert h.wf(child).status.value == "TERMINATED"
    assert "lim" not in h.state.queued
    check_invariants(h.state)


def test_a_rejected_child_fails_its_sub_workflow_task(h: Harness) -> None:
    h.register_workflow(limited(maxRunning=1, whenLimited="REJECT"))
    h.register_workflow(CHILD_PARENT)
    h.start("lim")
    parent = h.start("parent")
    (sw,) = h.tasks_of(parent)
    assert sw.status.value.startswith("FAILED")
    assert "maxRunning is 1" in sw.reason_for_incompletion
    assert h.wf(parent).status.value == "FAILED"
    assert h.state.running == {"lim": 1}
    check_invariants(h.state)


def test_a_rejected_start_workflow_task_fails(h: Harness) -> None:
    h.register_workflow(limited(maxRunning=1, whenLimited="REJECT"))
    h.register_workflow(
        {
            "name": "starter",
            "version": 1,
            "tasks": [
                {
                    "name": "sw",
                    "taskReferenceName": "sw",
                    "type": "START_WORKFLOW",
                    "inputParameters": {"startWorkflow": {"name": "lim"}},
                }
            ],
        }
    )
    h.start("lim")
    starter = h.start("starter")
    (sw,) = h.tasks_of(starter)
    assert sw.status.value.startswith("FAILED") and "maxRunning is 1" in sw.reason_for_incompletion
    assert h.state.running == {"lim": 1}  # the starter ended: counted no more


@pytest.mark.parametrize("when", ["QUEUE", "REJECT"])
def test_a_failure_workflow_obeys_its_definitions_limits(h: Harness, when: str) -> None:
    h.register_workflow(limited(maxRunning=1, whenLimited=when))
    failing = limited(name="failing")
    del failing["limits"]
    failing["failureWorkflow"] = "lim"
    h.register_workflow(failing)
    h.start("lim")
    wf_id = h.start("failing")
    finish(h, wf_id, ok=False)
    note = h.wf(wf_id).output["conductor.failure_workflow"]
    if when == "QUEUE":
        assert h.wf(note).status.value == "QUEUED"
    else:
        assert note.startswith("error: ") and "maxRunning is 1" in note
    check_invariants(h.state)


# ---------------------------------------------------------------- snapshots, replay


def test_a_snapshot_with_queued_workflows_loads_to_the_same_state_and_goes_on_alike(
    h: Harness,
) -> None:
    h.register_workflow(limited(maxRunning=1, maxRunningPerCorrelationId=1))
    ids = [h.start("lim", correlation_id=c) for c in ("a", "a", "b", "c")]
    loaded = State.from_snapshot_bytes(h.state.snapshot_bytes())
    assert loaded.digest() == h.digest()
    assert loaded.running == h.state.running
    assert loaded.running_by_correlation == h.state.running_by_correlation
    assert {k: list(v) for k, v in loaded.queued.items()} == {"lim": ids[1:]}
    again = Harness(loaded, clock_ms=h.clock_ms)
    again._counter = h._counter
    for harness in (h, again):
        finish(harness, ids[0])
    assert again.digest() == h.digest()
    assert statuses(h, *ids) == ["COMPLETED", "RUNNING", "QUEUED", "QUEUED"]
    replayed, _ = replay(h.log)
    assert replayed.digest() == h.digest()
    check_invariants(again.state)


# ---------------------------------------------------------------- property


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    max_running=hst.integers(0, 2),
    per_corr=hst.integers(0, 2),
    steps=hst.lists(
        hst.tuples(
            hst.sampled_from(
                ["start", "start", "start", "complete", "complete", "fail", "terminate", "pause"]
            ),
            hst.integers(0, 50),
            hst.sampled_from(["", "a", "b"]),
        ),
        min_size=8,
        max_size=50,
    ),
)
def test_random_starts_and_ends_never_exceed_a_limit_nor_leave_a_free_slot_unused(
    max_running: int, per_corr: int, steps: list[tuple[str, int, str]]
) -> None:
    h = Harness()
    h.register_defaults()
    h.register_workflow(limited(maxRunning=max_running, maxRunningPerCorrelationId=per_corr))
    started: list[str] = []
    for op, pick, corr in steps:
        if op == "start":
            started.append(h.start("lim", correlation_id=corr))
            continue
        live = [i for i in started if h.wf(i).status.value in (*RUNS, "QUEUED")]
        if not live:
            continue
        target = live[pick % len(live)]
        if op == "terminate":
            h.terminate(target)
        elif op == "pause":
            h.apply_one(PauseWorkflow(request_id=h.new_id(), workflow_id=target))
        elif h.wf(target).status.value == "RUNNING":
            finish(h, target, ok=op == "complete")
        _check_limits(h, started, max_running, per_corr)
    _check_limits(h, started, max_running, per_corr)
    check_invariants(h.state)
    assert State.from_snapshot_bytes(h.state.snapshot_bytes()).digest() == h.digest()


def _check_limits(h: Harness, ids: list[str], max_running: int, per_corr: int) -> None:
    running = [h.wf(i) for i in ids if h.wf(i).status.value in RUNS]
    by_corr: dict[str, int] = {}
    for wf in running:
        if wf.correlation_id:
            by_corr[wf.correlation_id] = by_corr.get(wf.correlation_id, 0) + 1
    if max_running:
        assert len(running) <= max_running
    if per_corr:
        assert all(n <= per_corr for n in by_corr.values()), by_corr
    for wf_id in ids:
        wf = h.wf(wf_id)
        if wf.status.value != "QUEUED":
            continue
        name_full = bool(max_running) and len(running) >= max_running
        corr_full = (
            bool(per_corr)
            and bool(wf.correlation_id)
            and by_corr.get(wf.correlation_id, 0) >= per_corr
        )
        assert name_full or corr_full, f"{wf_id} QUEUED while a slot is free"
