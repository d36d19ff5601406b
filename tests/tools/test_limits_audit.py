"""The limit audits of `orchestrator chaos` on hand-made records: each accepts records that
keep a limit (reporting the peak reached) and names the records that break one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from orchestrator.tools.limits_audit import (
    TaskLimit,
    WorkflowLimit,
    audit_compensations,
    audit_task_limits,
    audit_workflow_limits,
    peak_overlap,
    peak_window,
    violations_of,
)

T0 = 1_000_000  # cluster time of the hand-made records' 0; a time 0 means "never"


def _at(ms: int | None) -> int:
    return 0 if ms is None else T0 + ms


def _task(
    tid: str, start: int | None, end: int | None, task_type: str = "t", domain: str = ""
) -> Any:
    return SimpleNamespace(
        task_id=tid,
        task_type=task_type,
        domain=domain,
        start_time_ms=_at(start),
        end_time_ms=_at(end),
    )


def _wf(wid: str, start: int | None, end: int | None, name: str = "w", corr: str = "") -> Any:
    return SimpleNamespace(
        workflow_id=wid,
        workflow_name=name,
        start_time_ms=_at(start),
        end_time_ms=_at(end),
        correlation_id=corr,
    )


def test_overlap_is_half_open_and_counts_open_ends() -> None:
    # One ends at 100 as the next is leased at 100 (a completion's answer): never two at once.
    assert peak_overlap([(0, 100, "a"), (100, 200, "b")], limit=1) == (1, [])
    # Still in progress (end 0) overlaps everything after it.
    peak, over = peak_overlap([(0, 0, "a"), (500, 600, "b")], limit=1)
    assert peak == 2 and over == [{"at_ms": 500, "open": 2, "ids": ["a", "b"]}]
    # A record that ended in the millisecond it began was in progress at no instant.
    assert peak_overlap([(5, 5, "a"), (0, 10, "b")], limit=1) == (1, [])


def test_window_is_sliding_and_excludes_its_left_edge() -> None:
    # Leases at 0, 999, 1000 within 1 s windows (t - 1000, t]: the one at 0 leaves at 1000.
    assert peak_window([(0, "a"), (999, "b"), (1000, "c")], 1000, limit=2) == (2, [])
    peak, over = peak_window([(0, "a"), (400, "b"), (999, "c")], 1000, limit=2)
    assert peak == 3 and over[0]["ids"] == ["a", "b", "c"] and over[0]["at_ms"] == 999


def test_task_limits_held_report_their_peaks() -> None:
    tasks = [
        _task("a", 0, 100),
        _task("b", 50, 150),
        _task("c", 100, 300),  # a ended as c was leased
        _task("u", 10, 20, task_type="free"),  # not limited: not audited
        _task("s", None, None),  # never leased (SCHEDULED, start 0): not audited
    ]
    out = audit_task_limits(tasks, {"t": TaskLimit(concurrent=2, rate=3, per_seconds=1)})
    assert list(out) == ["t"]
    assert out["t"]["peak_in_progress"] == 2 and out["t"]["peak_leases_in_window"] == 3
    assert out["t"]["leases"] == 3 and violations_of(out) == []


def test_a_third_task_in_progress_is_named() -> None:
    tasks = [_task("a", 0, 100), _task("b", 50, 150), _task("c", 99, 300)]
    out = audit_task_limits(tasks, {"t": TaskLimit(concurrent=2)})
    (v,) = out["t"]["violations"]
    assert v == {"kind": "concurrency", "at_ms": T0 + 99, "open": 3, "ids": ["a", "b", "c"]}
    assert violations_of(out) and violations_of(out)[0].startswith("t: ")


def test_a_rate_window_over_its_limit_is_named_and_domains_are_separate_queues() -> None:
    tasks = [_task(f"x{i}", 300 * i, 300 * i + 1) for i in range(4)]  # 4 leases in 0.9 s
    tasks += [_task(f"d{i}", 300 * i, 300 * i + 1, domain="eu") for i in range(3)]
    out = audit_task_limits(tasks, {"t": TaskLimit(rate=3, per_seconds=1)})
    assert out["t@eu"]["violations"] == [] and out["t@eu"]["peak_leases_in_window"] == 3
    (v,) = out["t"]["violations"]
    assert v["kind"] == "rate" and v["leases"] == 4 and v["at_ms"] == T0 + 900
    # The same leases spread over 2-second windows of 4: held.
    held = audit_task_limits(tasks, {"t": TaskLimit(rate=4, per_seconds=2)})
    assert violations_of(held) == []


def test_workflow_limits_count_all_versions_and_correlation_ids_apart() -> None:
    wfs = [
        _wf("1", 0, 100, corr="c1"),
        _wf("2", 10, None, corr="c2"),  # still running
        _wf("3", 100, 200, corr="c1"),  # started as 1 ended
        _wf("q", None, 50),  # never ran (terminated while QUEUED)
        _wf("o", 5, 6, name="other"),
    ]
    out = audit_workflow_limits(wfs, {"w": WorkflowLimit(max_running=2, per_correlation_id=1)})
    assert list(out) == ["w"] and violations_of(out) == []
    assert out["w"]["peak_running"] == 2 and out["w"]["peak_running_per_correlation_id"] == 1
    wfs.append(_wf("4", 150, 160, corr="c1"))  # beside 3 (same customer) and 2
    over = audit_workflow_limits(wfs, {"w": WorkflowLimit(max_running=2, per_correlation_id=1)})
    kinds = [v["kind"] for v in over["w"]["violations"]]
    assert kinds == ["maxRunning", "maxRunningPerCorrelationId"]
    assert over["w"]["violations"][1]["correlation_id"] == "c1"


def _saga(wid: str, status: str, undo_steps: list[tuple[str, str]]) -> Any:
    tasks = [
        SimpleNamespace(task_id=tid, task_type="undo", status=st, input={"step": step})
        for tid, (step, st) in enumerate(undo_steps)
    ]
    tasks.append(SimpleNamespace(task_id="f", task_type="fwd", status="COMPLETED", input={}))
    return SimpleNamespace(workflow_id=wid, status=status, tasks=tasks)


def test_each_step_compensated_at_most_once() -> None:
    ok = [
        _saga("w1", "COMPENSATED", [("s1", "FAILED"), ("s1", "COMPLETED"), ("s2", "COMPLETED")]),
        _saga("w2", "FAILED", [("s1", "COMPLETED")]),  # same step id in another workflow
    ]
    out = audit_compensations(ok, ["undo"])
    assert out == {"compensated_workflows": 1, "steps_compensated": 3, "violations": []}
    assert violations_of(out) == []
    twice = [_saga("w3", "COMPENSATED", [("s1", "COMPLETED"), ("s1", "COMPLETED")])]
    bad = audit_compensations(twice, ["undo"])
    assert bad["violations"] == [{"workflow_id": "w3", "step": "s1", "tasks": [0, 1]}]
    assert violations_of(bad)[0].startswith("compensations: ")


def test_the_chaos_mix_registers_each_feature_and_audits_its_records() -> None:
    from orchestrator.tools import limits_mix as mx

    off = mx.Mix({"task_limits": False, "workflow_limits": False, "sagas": False})
    assert off.names == [] and off.audit([])["violations"] == []
    on = mx.Mix({"task_limits": True, "workflow_limits": True, "sagas": True})
    assert on.names == [mx.FORKED, mx.CAPPED, mx.CUSTOMER, mx.SAGA]
    conc = next(t for t in on.task_defs if t["name"] == mx.CONC)
    assert conc["concurrentExecLimit"] == 2
    saga = next(w for w in on.workflow_defs if w["name"] == mx.SAGA)
    assert saga["tasks"][0]["compensateWith"]["inputParameters"] == {
        "step": "${compensated.taskId}"
    }
    # A cycle's burst exceeds each limit, so the limits bind rather than idle.
    burst = on._burst(0)
    assert burst.count((mx.CAPPED, "")) > 2 and burst.count((mx.CUSTOMER, "c0")) > 1
    # Three chaos_conc tasks in progress at once in one workflow's records: named.
    over = SimpleNamespace(
        workflow_id="f",
        workflow_name=mx.FORKED,
        status="COMPLETED",
        start_time_ms=0,
        end_time_ms=0,
        correlation_id="",
        tasks=[_task(f"c{i}", i, 100, task_type=mx.CONC) for i in range(3)],
    )
    result = on.audit([over])
    assert result["violations"] and result["violations"][0].startswith(f"{mx.CONC}: ")
    assert result["task_limits"][mx.CONC]["peak_in_progress"] == 3
    # A Workflow view without start times cannot show maxRunning held: said, not passed.
    del over.start_time_ms
    assert on.audit([over])["workflow_limits"] == {
        "not_audited": "the Workflow view has no start_time_ms"
    }
