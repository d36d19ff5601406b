"""WAIT and HUMAN tasks are completed or failed through the API by workflow id and reference."""

from __future__ import annotations

from orchestrator.core.errors import Code
from tests.core_helpers import Harness

HUMAN_FLOW = {
    "name": "approval",
    "tasks": [
        {"name": "approve", "taskReferenceName": "approve", "type": "HUMAN"},
        {"name": "gate", "taskReferenceName": "gate", "type": "WAIT"},
    ],
    "outputParameters": {"by": "${approve.output.by}", "gate": "${gate.output.ok}"},
}


def _workflow(h: Harness) -> str:
    h.register_workflow(HUMAN_FLOW)
    return h.start("approval")


def test_complete_human_then_wait_by_reference() -> None:
    h = Harness()
    wid = _workflow(h)
    h.complete("", {"by": "alice"}, workflow_id=wid, reference_task_name="approve")
    h.complete("", {"ok": True}, workflow_id=wid, reference_task_name="gate")
    wf = h.state.workflows[wid]
    assert wf.status == "COMPLETED"
    assert wf.output == {"by": "alice", "gate": True}


def test_fail_by_reference_fails_the_workflow() -> None:
    h = Harness()
    wid = _workflow(h)
    h.fail("", "rejected", terminal=True, workflow_id=wid, reference_task_name="approve")
    assert h.state.workflows[wid].status == "FAILED"


def test_unknown_reference_or_workflow_is_not_found_and_a_second_completion_is_refused() -> None:
    h = Harness()
    wid = _workflow(h)
    out = h.complete("", {}, check=False, workflow_id=wid, reference_task_name="nope")
    assert out.code is Code.NOT_FOUND and "'nope'" in out.message
    out = h.complete("", {}, check=False, workflow_id="missing", reference_task_name="approve")
    assert out.code is Code.NOT_FOUND
    h.complete("", {"by": "bob"}, workflow_id=wid, reference_task_name="approve")
    again = h.complete(
        "", {"by": "eve"}, check=False, workflow_id=wid, reference_task_name="approve"
    )
    assert again.code is Code.FAILED_PRECONDITION


def test_neither_task_id_nor_reference_is_invalid() -> None:
    h = Harness()
    _workflow(h)
    out = h.complete("", {}, check=False)
    assert out.code is Code.INVALID_ARGUMENT
