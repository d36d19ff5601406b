"""Events: processors decide and emit them, appliers apply them, and Effects.events tells what a
batch made happen. Given a state, when a command, then these events."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core import events as E
from orchestrator.core.appliers import APPLIERS
from orchestrator.core.errors import Code
from orchestrator.core.records import TaskStatus, WorkflowStatus
from tests.core_helpers import Harness

CORE = Path(__file__).resolve().parents[2] / "orchestrator" / "core"


@pytest.fixture
def h(led: Harness) -> Harness:
    return led


def names(h: Harness) -> list[str]:
    return [type(e).__name__ for e in h.effects.events]


def test_a_workflow_of_one_task_is_told_as_events(h: Harness) -> None:
    wf_id = h.start("one_step")
    assert names(h) == ["WorkflowStarted", "TaskScheduled", "TaskQueued", "RequestRecorded"]
    started = h.effects.events[0]
    assert isinstance(started, E.WorkflowStarted) and started.workflow.workflow_id == wf_id
    queued = h.effects.events[2]
    assert isinstance(queued, E.TaskQueued) and queued.queue == "task_c"

    tid = h.poll_one("task_c")
    assert names(h) == ["PollNoted", "TaskLeased", "RequestRecorded"]
    assert h.effects.events[1] == E.TaskLeased(tid, "task_c", "w")

    h.complete(tid, {"v": 1})
    assert names(h) == ["TaskEnded", "WorkflowEnded", "WorkflowEndRecorded", "RequestRecorded"]
    ended = h.effects.events[0]
    assert isinstance(ended, E.TaskEnded) and ended.status is TaskStatus.COMPLETED
    wf_ended = h.effects.events[1]
    assert isinstance(wf_ended, E.WorkflowEnded)
    assert wf_ended.status is WorkflowStatus.COMPLETED and wf_ended.output == {"v": 1}


def test_a_rejected_command_emits_only_its_record(h: Harness) -> None:
    out = h.complete("no-such-task", check=False)
    assert out.code is Code.NOT_FOUND
    assert names(h) == ["RequestRecorded"]
    retry = h.apply_one(h.log[-1][1][0])
    assert retry.result.get("deduplicated") is True
    assert names(h) == [], "a retry answered from the dedup table changes nothing"


def test_a_stale_epoch_tick_emits_nothing(h: Harness) -> None:
    h.leader_epoch(2)
    assert h.tick(epoch=1).code is Code.FAILED_PRECONDITION
    assert names(h) == []


def test_a_failure_with_retries_left_is_told_as_a_retry(h: Harness) -> None:
    h.start("two_step", {"x": 1})
    tid = h.poll_one("task_a")
    h.fail(tid, reason="flaky")
    assert names(h) == [
        "TaskEnded",
        "TaskRetried",
        "TaskScheduled",
        "TaskQueued",
        "RequestRecorded",
    ]
    retry = h.effects.events[2]
    assert isinstance(retry, E.TaskScheduled)
    assert retry.task.retried_task_id == tid and retry.task.retry_count == 1


def _event_classes() -> set[type[E.Event]]:
    # From the module, not Event.__subclasses__(): a slotted dataclass replaces its class, and
    # the replaced one lingers among the subclasses until it is collected.
    return {
        v
        for v in vars(E).values()
        if isinstance(v, type) and issubclass(v, E.Event) and v is not E.Event
    }


def test_every_event_has_exactly_one_applier() -> None:
    assert _event_classes() == set(APPLIERS)


# Methods that change a container or the State in place.
_MUTATORS = {
    "append",
    "clear",
    "clear_timer",
    "extend",
    "insert",
    "pop",
    "popitem",
    "remove",
    "set_timer",
    "setdefault",
    "update",
}


def _rooted_at_state(node: Any) -> bool:
    """Whether an expression is `st...` or `ctx.st...` (the state, or a part of it)."""
    chain: list[str] = []
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        if isinstance(node, ast.Attribute):
            chain.append(node.attr)
        node = node.func if isinstance(node, ast.Call) else node.value
    if not isinstance(node, ast.Name):
        return False
    chain.append(node.id)
    chain.reverse()
    return chain[0] == "st" or chain[:2] == ["ctx", "st"] or chain[:2] == ["self", "st"]


def _writes_to_state(tree: ast.AST) -> list[int]:
    lines: list[int] = []
    for node in ast.walk(tree):
        targets: list[Any] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        for t in targets:
            if isinstance(t, (ast.Attribute, ast.Subscript)) and _rooted_at_state(t):
                lines.append(node.lineno)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _MUTATORS
            and _rooted_at_state(node.func.value)
        ):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize(
    "path",
    [*sorted((CORE / "processors").glob("*.py")), CORE / "engine.py", CORE / "queries.py"],
    ids=lambda p: p.name,
)
def test_processors_and_queries_never_write_the_state(path: Path) -> None:
    # Only appliers.py changes the state; a processor that wrote it directly would change it
    # without an event saying so.
    assert _writes_to_state(ast.parse(path.read_text())) == [], path


def test_the_write_check_sees_a_write() -> None:
    tree = ast.parse("st.tasks[t].status = 1\nctx.st.queues.pop(q)\nx = st.tasks.get(t)\n")
    assert _writes_to_state(tree) == [1, 2]
