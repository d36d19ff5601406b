"""Conductor features around the control flow, on the pure core: task and workflow timeouts
(timeoutSeconds with each timeoutPolicy, pollTimeoutSeconds, totalTimeoutSeconds), the
failureWorkflow, permissive tasks and task domains (taskToDomain)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.core.errors import Code
from tests.core_helpers import Harness, check_invariants, replay

JSON = Any
S_ = 1000  # one second of cluster time


def S(ref: str, name: str = "work", **kw: JSON) -> dict[str, JSON]:
    return {"name": name, "taskReferenceName": ref, **kw}


def T(ttype: str, ref: str, **kw: JSON) -> dict[str, JSON]:
    return {"name": ref, "taskReferenceName": ref, "type": ttype, **kw}


def W(name: str, *tasks: JSON, **kw: JSON) -> dict[str, JSON]:
    return {"name": name, "version": 1, "tasks": list(tasks), **kw}


def harness(*task_defs: dict[str, JSON], workflows: tuple[JSON, ...] = ()) -> Harness:
    h = Harness()
    h.leader_epoch(1)
    h.register_task_defs(
        {"name": "work", "retryCount": 0, "retryDelaySeconds": 0, "responseTimeoutSeconds": 60},
        *task_defs,
    )
    for w in workflows:
        h.register_workflow(w)
    return h


def status_of(h: Harness, wf_id: str, ref: str) -> str:
    return str(h.task(h.wf(wf_id).ref_index[ref]).status)


def finish(h: Harness) -> None:
    check_invariants(h.state)
    st, _ = replay(h.log)
    assert st.snapshot_bytes() == h.state.snapshot_bytes(), "replay reproduces the state"


# ------------------------------------------------------------------ task timeoutSeconds


def _timeout_def(policy: str, **kw: JSON) -> dict[str, JSON]:
    return {
        "name": "slow",
        "retryCount": kw.pop("retryCount", 0),
        "retryDelaySeconds": 0,
        "responseTimeoutSeconds": 4,
        "timeoutSeconds": 10,
        "timeoutPolicy": policy,
        **kw,
    }


def test_task_timeout_seconds_counts_from_the_first_poll_and_heartbeats_do_not_extend_it() -> None:
    h = harness(_timeout_def("TIME_OUT_WF"), workflows=(W("wf", S("s", "slow")),))
    wf_id = h.start("wf")
    h.tick(5 * S_)  # scheduled but not polled yet: the clock has not started
    tid = h.poll_one("slow")
    for _ in range(3):  # heartbeats keep the 4 s lease alive ...
        h.tick(3 * S_)
        h.heartbeat(tid)
    h.tick(999)  # 9.999 s after the poll: not yet
    assert h.task(tid).status == "IN_PROGRESS"
    h.tick(1)  # ... but not past timeoutSeconds
    task = h.task(tid)
    assert task.status == "TIMED_OUT"
    assert "timeoutSeconds (10s)" in task.reason_for_incompletion
    wf = h.wf(wf_id)
    assert wf.status == "TIMED_OUT", "TIME_OUT_WF ends the workflow TIMED_OUT"
    assert "TIMED_OUT" in wf.reason_for_incompletion
    finish(h)


def test_task_timeout_with_retry_policy_retries_the_task() -> None:
    h = harness(_timeout_def("RETRY", retryCount=1), workflows=(W("wf", S("s", "slow")),))
    wf_id = h.start("wf")
    first = h.poll_one("slow")
    for _ in range(3):
        h.tick(3 * S_)
        h.heartbeat(first)
    h.tick(S_)
    assert h.task(first).status == "TIMED_OUT"
    assert h.wf(wf_id).status == "RUNNING"
    second = h.poll_one("slow")
    assert h.task(second).retried_task_id == first
    h.complete(second, {"ok": 1})
    assert h.wf(wf_id).status == "COMPLETED"
    finish(h)


def test_task_timeout_alert_only_lets_the_task_run_on() -> None:
    h = harness(_timeout_def("ALERT_ONLY"), workflows=(W("wf", S("s", "slow")),))
    wf_id = h.start("wf")
    tid = h.poll_one("slow")
    for _ in range(4):
        h.tick(3 * S_)
        h.heartbeat(tid)
    task = h.task(tid)
    assert task.status == "IN_PROGRESS"
    assert task.timeout_alerts == 1
    h.complete(tid, {"late": True})
    assert h.wf(wf_id).status == "COMPLETED"
    finish(h)


def test_poll_timeout_times_out_a_task_nobody_polls() -> None:
    h = harness(
        {
            "name": "lonely",
            "retryCount": 0,
            "pollTimeoutSeconds": 30,
            "timeoutPolicy": "TIME_OUT_WF",
        },
        workflows=(W("wf", S("l", "lonely")), W("wf2", S("l", "lonely"))),
    )
    wf_id = h.start("wf")
    h.tick(29_999)
    assert status_of(h, wf_id, "l") == "SCHEDULED"
    h.tick(1)
    assert status_of(h, wf_id, "l") == "TIMED_OUT"
    assert h.wf(wf_id).status == "TIMED_OUT"
    # Polled in time: the poll timeout no longer applies.
    other = h.start("wf2")
    h.tick(10 * S_)
    tid = h.poll_one("lonely")
    h.tick(60 * S_)
    h.heartbeat(tid, check=False)  # the lease (3600 s default) is still held
    assert h.task(tid).status == "IN_PROGRESS"
    assert h.wf(other).status == "RUNNING"
    finish(h)


def test_total_timeout_stops_retries() -> None:
    h = harness(
        {
            "name": "flaky",
            "retryCount": 10,
            "retryDelaySeconds": 1,
            "totalTimeoutSeconds": 5,
            "timeoutPolicy": "RETRY",
        },
        workflows=(W("wf", S("f", "flaky")),),
    )
    wf_id = h.start("wf")
    attempts = 0
    while h.wf(wf_id).status == "RUNNING" and attempts < 20:
        ids = h.poll("flaky")
        if ids:
            attempts += 1
            h.fail(ids[0])
        h.tick(S_)
    wf = h.wf(wf_id)
    assert wf.status == "TIMED_OUT", wf.reason_for_incompletion
    assert "totalTimeoutSeconds (5s)" in wf.reason_for_incompletion
    assert 2 <= attempts <= 5, "retried until the total budget ran out, not retryCount times"
    finish(h)


def test_task_definition_timeout_fields_are_validated() -> None:
    h = Harness()
    out = h.register_task_defs(
        {"name": "x", "timeoutSeconds": 10, "totalTimeoutSeconds": 5}, check=False
    )
    assert out.code is Code.INVALID_ARGUMENT, out.message
    assert "timeoutSeconds: must not exceed totalTimeoutSeconds" in out.message
    out = h.register_task_defs({"name": "x", "pollTimeoutSeconds": -1}, check=False)
    assert out.code is Code.INVALID_ARGUMENT and "pollTimeoutSeconds" in out.message


# ------------------------------------------------------------------ workflow timeoutSeconds


def test_workflow_timeout_ends_it_timed_out_and_cancels_its_tasks() -> None:
    h = harness(workflows=(W("wf", T("HUMAN", "approve"), timeoutSeconds=30),))
    wf_id = h.start("wf")
    h.tick(29_999)
    assert h.wf(wf_id).status == "RUNNING"
    h.tick(1)
    wf = h.wf(wf_id)
    assert wf.status == "TIMED_OUT"
    assert "timeoutSeconds (30s)" in wf.reason_for_incompletion
    assert status_of(h, wf_id, "approve") == "CANCELED"
    finish(h)


def test_workflow_timeout_alert_only_and_timer_cleared_on_completion() -> None:
    h = harness(
        workflows=(
            W("alert", T("HUMAN", "approve"), timeoutSeconds=30, timeoutPolicy="ALERT_ONLY"),
            W("quick", S("a"), timeoutSeconds=30),
        )
    )
    alert = h.start("alert")
    quick = h.start("quick")
    h.complete(h.poll_one("work"))
    assert h.wf(quick).status == "COMPLETED"
    assert "wftmo:" + quick not in h.state.timers, "a finished workflow leaves no timer behind"
    h.tick(60 * S_)
    assert h.wf(alert).status == "RUNNING"
    finish(h)


def test_workflow_timeout_policy_is_validated() -> None:
    h = Harness()
    out = h.register_workflow(W("wf", S("a"), timeoutPolicy="RETRY"), check=False)
    assert out.code is Code.INVALID_ARGUMENT and "timeoutPolicy" in out.message


# ------------------------------------------------------------------ failureWorkflow

COMPENSATE = W("compensate", T("HUMAN", "undo"))


def test_failure_workflow_starts_with_the_failed_workflow_in_its_input() -> None:
    main = W("order", S("charge"), S("ship"), failureWorkflow="compensate")
    h = harness(workflows=(COMPENSATE, main))
    wf_id = h.start("order", {"orderId": 7}, correlation_id="c-7")
    h.complete(h.poll_one("work"), {"charged": True})
    ship = h.poll_one("work")
    h.fail(ship, reason="no courier")
    wf = h.wf(wf_id)
    assert wf.status == "FAILED"
    child_id = wf.output["conductor.failure_workflow"]
    assert child_id == f"{wf_id}-failure"
    child = h.wf(child_id)
    assert child.workflow_name == "compensate" and child.status == "RUNNING"
    assert child.correlation_id == "c-7"
    assert child.triggering_workflow_id == wf_id
    inp = child.input
    assert inp["orderId"] == 7, "the failed workflow's input is passed on"
    assert inp["workflowId"] == wf_id
    assert inp["failureStatus"] == "FAILED"
    assert inp["failureTaskId"] == ship
    assert "no courier" in inp["reason"]
    refs = [(t["referenceTaskName"], t["status"]) for t in inp["failedWorkflow"]["tasks"]]
    assert refs == [("charge", "COMPLETED"), ("ship", "FAILED")]
    assert inp["failedWorkflow"]["tasks"][0]["output"] == {"charged": True}
    finish(h)


def test_failure_workflow_not_started_by_terminate_but_by_a_terminate_task() -> None:
    main = W("order", T("HUMAN", "wait"), failureWorkflow="compensate")
    by_task = W(
        "order2",
        T("TERMINATE", "stop", inputParameters={"terminationStatus": "FAILED"}),
        failureWorkflow="compensate",
    )
    h = harness(workflows=(COMPENSATE, main, by_task))
    wf_id = h.start("order")
    h.terminate(wf_id, "operator")
    assert h.wf(wf_id).status == "TERMINATED"
    assert f"{wf_id}-failure" not in h.state.workflows
    other = h.start("order2")
    assert h.wf(other).status == "FAILED"
    assert h.wf(f"{other}-failure").status == "RUNNING"
    finish(h)


def test_failure_workflow_named_by_the_input_or_missing() -> None:
    main = W("order", S("a"), failureWorkflow="${workflow.input.onFailure}")
    h = harness(workflows=(COMPENSATE, main))
    named = h.start("order", {"onFailure": "compensate"})
    h.fail(h.poll_one("work"))
    assert h.wf(named).output["conductor.failure_workflow"] == f"{named}-failure"
    missing = h.start("order", {"onFailure": "nope"})
    h.fail(h.poll_one("work"))
    wf = h.wf(missing)
    assert wf.status == "FAILED"
    assert wf.output["conductor.failure_workflow"].startswith("error: ")
    assert "'nope'" in wf.output["conductor.failure_workflow"]
    finish(h)


def test_failure_workflow_field_is_validated() -> None:
    h = Harness()
    out = h.register_workflow(W("wf", S("a"), failureWorkflow="${a.output.x}"), check=False)
    assert out.code is Code.INVALID_ARGUMENT and "failureWorkflow" in out.message


def test_a_failure_workflow_that_fails_stops_at_the_nesting_limit() -> None:
    # A failure workflow whose own failure workflow is itself: bounded, not a runaway chain.
    loop = W("loop", S("a"), failureWorkflow="loop")
    h = harness(workflows=(loop,))
    first = h.start("loop")
    for _ in range(20):
        ids = h.poll("work")
        if not ids:
            break
        h.fail(ids[0])
    chain = [w for w in h.state.workflows if w.startswith(first)]
    assert 2 <= len(chain) <= 10
    last = max(chain, key=len)
    assert "nested deeper" in h.wf(last).output["conductor.failure_workflow"]
    finish(h)


# ------------------------------------------------------------------ permissive


def test_permissive_failure_lets_later_tasks_run_then_fails_the_workflow() -> None:
    h = harness(workflows=(W("wf", S("a", permissive=True), S("b")),))
    wf_id = h.start("wf")
    h.fail(h.poll_one("work"), reason="a broke")
    assert h.wf(wf_id).status == "RUNNING", "a permissive failure does not stop the workflow"
    h.complete(h.poll_one("work"))
    wf = h.wf(wf_id)
    assert [t.status for t in h.tasks_of(wf_id)] == ["FAILED", "COMPLETED"]
    assert wf.status == "FAILED"
    assert (
        "permissive task a" in wf.reason_for_incompletion
        and "a broke" in wf.reason_for_incompletion
    )
    finish(h)


def test_permissive_failure_in_a_fork_does_not_block_the_join() -> None:
    fork = T("FORK_JOIN", "fork", forkTasks=[[S("x", permissive=True)], [S("y")]])
    join = T("JOIN", "join", joinOn=["x", "y"])
    h = harness(workflows=(W("wf", fork, join, S("after")),))
    wf_id = h.start("wf")
    x, y = h.poll("work", 2)
    h.fail(x)
    h.complete(y, {"y": 1})
    assert status_of(h, wf_id, "join") == "COMPLETED"
    h.complete(h.poll_one("work"))
    assert h.wf(wf_id).status == "FAILED"
    finish(h)


def test_join_mode_is_accepted_and_validated() -> None:
    fork = T("FORK_JOIN", "fork", forkTasks=[[S("x")]])
    h = harness()
    h.register_workflow(W("ok", fork, T("JOIN", "j", joinOn=["x"], joinMode="ASYNC")))
    out = h.register_workflow(
        W("bad", fork, T("JOIN", "j", joinOn=["x"], joinMode="LATER")), check=False
    )
    assert out.code is Code.INVALID_ARGUMENT and "joinMode (j)" in out.message


# ------------------------------------------------------------------ task domains


def test_task_to_domain_routes_a_task_to_its_domain_queue() -> None:
    h = harness(workflows=(W("wf", S("a")),))
    wf_id = h.start("wf", task_to_domain={"work": "blue"})
    tid = h.wf(wf_id).ref_index["a"]
    assert h.task(tid).domain == "blue"
    assert h.poll("work") == [], "the default queue does not hand out a domain's task"
    assert h.poll("work", domain="green") == []
    assert h.poll("work", domain="blue") == [tid]
    h.complete(tid)
    assert h.wf(wf_id).status == "COMPLETED"
    assert h.wf(wf_id).task_to_domain == {"work": "blue"}
    finish(h)


def test_domain_fallback_list_picks_the_first_domain_with_an_active_worker() -> None:
    h = harness(workflows=(W("wf", S("a")),))
    # Nobody polled any of them: the last listed wins.
    first = h.start("wf", task_to_domain={"*": "green,blue"})
    assert h.task(h.wf(first).ref_index["a"]).domain == "blue"
    # A worker polls green: green is active for ACTIVE_WORKER_MS.
    h.poll("work", domain="green")
    second = h.start("wf", task_to_domain={"*": "green,blue"})
    assert h.task(h.wf(second).ref_index["a"]).domain == "green"
    h.tick(11 * S_)  # green's worker went quiet
    third = h.start("wf", task_to_domain={"*": "green,NO_DOMAIN"})
    assert h.task(h.wf(third).ref_index["a"]).domain == "", "NO_DOMAIN = default queue"
    assert h.poll("work") == [h.wf(third).ref_index["a"]]
    finish(h)


def test_sub_workflow_inherits_and_extends_the_parents_domains() -> None:
    child = W("child", S("c"), S("d", "other"))
    parent = W(
        "parent",
        T(
            "SUB_WORKFLOW",
            "sub",
            subWorkflowParam={"name": "child", "taskToDomain": {"other": "red"}},
        ),
    )
    h = harness({"name": "other", "retryCount": 0}, workflows=(child, parent))
    wf_id = h.start("parent", task_to_domain={"work": "blue"})
    child_id = h.task(h.wf(wf_id).ref_index["sub"]).sub_workflow_id
    assert h.wf(child_id).task_to_domain == {"work": "blue", "other": "red"}
    h.complete(h.poll("work", domain="blue")[0])
    assert h.poll("other", domain="red")
    finish(h)


@pytest.mark.parametrize(
    "mapping, fragment",
    [
        ({"work": 3}, "task_to_domain.work"),
        ({"work": "a,,b"}, "'' is not a valid domain"),
        ({"work": "a b"}, "'a b' is not a valid domain"),
        ({"bad name": "a"}, "'bad name' is not a task name"),
        (["work"], "must be an object"),
    ],
)
def test_bad_task_to_domain_is_rejected_naming_the_entry(mapping: JSON, fragment: str) -> None:
    h = harness(workflows=(W("wf", S("a")),))
    out = h.apply_one(h.start_cmd("wf", task_to_domain=mapping))
    assert out.code is Code.INVALID_ARGUMENT and fragment in out.message, out.message
    assert not h.state.workflows, "nothing was started"


def test_poll_activity_marks_domains_active_and_is_validated() -> None:
    from orchestrator.core.commands import PollActivity

    h = harness(workflows=(W("wf", S("a")),))
    h.ok(PollActivity(epoch=h.state.epoch, queues=["work@green"]))
    wf_id = h.start("wf", task_to_domain={"work": "green,NO_DOMAIN"})
    assert h.task(h.wf(wf_id).ref_index["a"]).domain == "green"
    stale = h.apply_one(PollActivity(epoch=h.state.epoch - 1, queues=["work@green"]))
    assert stale.code is Code.FAILED_PRECONDITION
    bad = h.apply_one(PollActivity(epoch=h.state.epoch, queues=[7]))
    assert bad.code is Code.INVALID_ARGUMENT and "queues" in bad.message
    finish(h)
