"""The core's side of the durable history: what apply hands the history writer (given a
state, when a command, then these history operations and this bookkeeping)."""

from __future__ import annotations

import json

from orchestrator.core import history_ops as H
from orchestrator.core import limits
from orchestrator.core.commands import SetHistoryRetention
from orchestrator.core.errors import Code
from orchestrator.core.state import State
from tests.core_helpers import Harness, check_invariants


def _finish(h: Harness, reason: str = "") -> str:
    wf = h.start("one_step", {"k": 1}, correlation_id="corr")
    tid = h.poll_one("task_c")
    if reason:
        h.fail(tid, reason=reason)
    else:
        h.complete(tid, {"v": 1})
    return wf


def test_an_evicted_workflow_is_archived_with_its_tasks_and_definition(h: Harness) -> None:
    first = _finish(h, reason="disk full")
    _finish(h)
    assert h.effects.history == []
    _finish(h)  # the third ended workflow pushes the first out of memory
    (op,) = h.effects.history
    assert isinstance(op, H.Archive) and op.seq == h.state.seq
    assert op.workflow.workflow_id == first and first not in h.state.workflows
    assert [t.workflow_id for t in op.tasks] == [first]
    assert op.definition is not None and op.definition.definition["name"] == "one_step"
    doc = json.loads(json.dumps(H.archive_doc(op)))
    wf, tasks, definition = H.records_from_doc(doc)
    assert wf.reason_for_incompletion.endswith("disk full") and wf.status == "FAILED"
    assert tasks[0].status == "FAILED" and definition is not None
    assert h.state.history_seq == op.seq, "a replica that missed it must copy the history"
    check_invariants(h.state)


def test_retention_runs_on_a_replicated_timer_armed_by_the_first_archive(h: Harness) -> None:
    for _ in range(3):
        _finish(h)
    due = h.state.timers["hist:retention"]
    assert due == h.clock_ms + limits.HISTORY_EXPIRE_PERIOD_MS
    h.tick_at(due - 1)
    assert h.effects.history == []
    h.tick_at(due)
    (op,) = h.effects.history
    assert op == H.Expire(h.state.seq, max(0, due - limits.DEFAULT_HISTORY_RETENTION_MS), 0)
    assert h.state.timers["hist:retention"] == due + limits.HISTORY_EXPIRE_PERIOD_MS
    assert h.state.history_expire == [op.seq, op.cutoff_ms, 0]
    # An expiry alone does not make a replica that missed it copy the history.
    assert h.state.history_seq < op.seq


def test_setting_the_retention_applies_it_at_once(h: Harness) -> None:
    cmd = SetHistoryRetention(request_id="r1", retention_ms=60_000, max_workflows=10)
    out = h.ok(cmd)
    assert out.result == {"history_retention_ms": 60_000, "history_max_workflows": 10}
    (op,) = h.effects.history
    assert op == H.Expire(h.state.seq, h.clock_ms - 60_000, 10)
    assert h.state.history_seq == h.state.seq
    assert h.state.timers["hist:retention"] == h.clock_ms + limits.HISTORY_EXPIRE_PERIOD_MS
    retry = h.apply_one(cmd)
    assert retry.result.get("deduplicated") and h.effects.history == []


def test_bad_retention_settings_are_rejected_and_change_nothing(h: Harness) -> None:
    before = h.state.settings
    for retention_ms, max_workflows, field in ((0, 0, "retention_ms"), (1, -1, "max_workflows")):
        out = h.apply_one(
            SetHistoryRetention(
                request_id=h.new_id(), retention_ms=retention_ms, max_workflows=max_workflows
            )
        )
        assert out.code is Code.INVALID_ARGUMENT and out.message.startswith(field)
        assert h.effects.history == [] and h.state.settings == before
        assert "hist:retention" not in h.state.timers


def test_settings_and_bookkeeping_survive_a_snapshot_and_old_snapshots_get_defaults(
    h: Harness,
) -> None:
    h.ok(SetHistoryRetention(request_id="r1", retention_ms=5_000, max_workflows=3))
    restored = State.from_snapshot_bytes(h.state.snapshot_bytes())
    assert restored.digest() == h.state.digest()
    assert restored.settings["history_retention_ms"] == 5_000
    old = json.loads(h.state.snapshot_bytes())
    for key in ("settings", "history_seq", "history_expire"):
        del old[key]
    st = State.from_snapshot(old)
    assert st.settings == {
        "history_retention_ms": limits.DEFAULT_HISTORY_RETENTION_MS,
        "history_max_workflows": 0,
    }
    assert (st.history_seq, st.history_expire) == (0, [])
