"""The history checker on hand-made histories: it accepts a consistent one and names each
broken promise (the fault tests rely on it to fail when a promise breaks)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.tools.verify import History, check_history

WF = "flow"


class FakeCluster:
    """Answers get_workflow and list_workflows from a dict of workflow id -> tasks."""

    def __init__(self, workflows: dict[str, list[Any]], extra: tuple[str, ...] = ()) -> None:
        self.workflows = workflows
        self.extra = extra  # listed workflows nobody acknowledged starting

    def get_workflow(self, wid: str, **_: Any) -> Any:
        return SimpleNamespace(workflow_id=wid, is_terminal=True, tasks=self.workflows[wid])

    def list_workflows(self, name: str, limit: int) -> list[Any]:
        return [SimpleNamespace(workflow_id=w) for w in (*self.workflows, *self.extra)]


def _task(task_id: str, output: dict[str, Any], worker_id: str = "w1") -> Any:
    return SimpleNamespace(task_id=task_id, status="COMPLETED", output=output, worker_id=worker_id)


def _started(*wids: str) -> History:
    h = History()
    for i, wid in enumerate(wids):
        h("invoke", "StartWorkflow", f"s{i}", SimpleNamespace())
        h("ok", "StartWorkflow", f"s{i}", SimpleNamespace(workflow_id=wid))
    return h


def _completed(*results: tuple[str, str]) -> History:
    """CompleteTask calls acknowledged OK, each (task id, output JSON)."""
    h = History()
    for i, (task_id, output_json) in enumerate(results):
        req = SimpleNamespace(task_id=task_id, output_json=output_json)
        h("invoke", "CompleteTask", f"c{i}", req)
        h("ok", "CompleteTask", f"c{i}", SimpleNamespace())
    return h


def test_a_consistent_history_passes_with_its_counts() -> None:
    cluster = FakeCluster({"wf1": [_task("t1", {"m": 1})], "wf2": [_task("t2", {"m": 2})]})
    starts = _started("wf1", "wf2")
    starts("invoke", "StartWorkflow", "s9", SimpleNamespace())
    starts("unknown", "StartWorkflow", "s9", RuntimeError("deadline"))
    workers = _completed(("t1", '{"m": 1}'), ("t2", '{"m": 2}'))
    counts = check_history(cluster, starts, workers, WF, polled={"t1": "w1"})
    assert counts == {"workflows": 2, "completions": 2, "unknown_starts": 1}


def test_a_task_completed_twice_fails() -> None:
    cluster = FakeCluster({"wf1": [_task("t1", {"m": 1})]})
    workers = _completed(("t1", '{"m": 1}'), ("t1", '{"m": 1}'))
    with pytest.raises(AssertionError, match="completed twice"):
        check_history(cluster, _started("wf1"), workers, WF)


def test_an_acknowledged_result_the_state_lacks_fails() -> None:
    cluster = FakeCluster({"wf1": [_task("t1", {"m": 1})]})
    with pytest.raises(AssertionError, match="result of t7 lost"):
        check_history(cluster, _started("wf1"), _completed(("t7", "{}")), WF)
    with pytest.raises(AssertionError, match="t1"):
        check_history(cluster, _started("wf1"), _completed(("t1", '{"m": 2}')), WF)


def test_a_second_workflow_for_one_start_fails() -> None:
    cluster = FakeCluster({"wf1": []}, extra=("wf-doubled",))
    with pytest.raises(AssertionError, match="second workflow"):
        check_history(cluster, _started("wf1"), History(), WF)


def test_a_task_handed_out_without_its_lease_fails() -> None:
    cluster = FakeCluster({"wf1": [_task("t1", {}, worker_id="w2")]})
    with pytest.raises(AssertionError, match="without a committed lease"):
        check_history(cluster, _started("wf1"), History(), WF, polled={"t1": "w1"})
