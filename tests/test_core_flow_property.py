"""Property: random definitions built from every supported task type reach a terminal state when
workers (and operators, for WAIT/HUMAN) answer, keep the invariants at every step, and a replay
of the log reproduces the state byte for byte."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as hst

from orchestrator.core.commands import CompleteTask, FailTask
from orchestrator.core.state import State

try:
    from core_helpers import Harness, check_invariants, replay
except ImportError:  # tests/ is a package
    from tests.core_helpers import Harness, check_invariants, replay  # type: ignore[no-redef]

JSON = Any
TERMINAL = ("COMPLETED", "FAILED", "TERMINATED", "TIMED_OUT")
TASK_DEFS = [
    {"name": "w_ok", "retryCount": 1, "retryDelaySeconds": 1, "responseTimeoutSeconds": 3},
    {"name": "w_x", "retryCount": 0, "retryDelaySeconds": 0, "responseTimeoutSeconds": 2},
]
CHILD = {"name": "child", "version": 1, "tasks": [{"name": "w_ok", "taskReferenceName": "c"}]}


class Gen:
    """Draws a random task list; references are unique by construction."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.n = 0

    def int(self, lo: int, hi: int) -> int:
        return int(self.data.draw(hst.integers(lo, hi)))

    def ref(self, kind: str) -> str:
        self.n += 1
        return f"{kind.lower()}{self.n}"

    def tasks(self, depth: int, lo: int = 1) -> list[JSON]:
        out: list[JSON] = []
        for _ in range(self.int(lo, 3 if depth < 2 else 2)):
            out.extend(self.task(depth))
        return out

    def task(self, depth: int) -> list[JSON]:
        kinds = [
            "SIMPLE",
            "SIMPLE",
            "NOOP",
            "SET_VARIABLE",
            "WAIT",
            "HUMAN",
            "DYNAMIC",
            "START_WORKFLOW",
            "SUB_WORKFLOW",
            "TERMINATE",
            "DYNFORK",
        ]
        if depth < 3:
            kinds += ["SWITCH", "FORK", "DO_WHILE", "SWITCH_X"]
        kind = kinds[self.int(0, len(kinds) - 1)]
        r = self.ref(kind)
        if kind == "SIMPLE":
            t = {
                "name": "w_ok" if self.int(0, 3) else "w_x",
                "taskReferenceName": r,
                "inputParameters": {"x": "${workflow.input.x}"},
            }
            if self.int(0, 4) == 0:
                t["optional"] = True
            return [t]
        if kind in ("NOOP", "HUMAN"):
            return [{"name": r, "taskReferenceName": r, "type": kind}]
        if kind == "SET_VARIABLE":
            return [
                {
                    "name": r,
                    "taskReferenceName": r,
                    "type": kind,
                    "inputParameters": {"v": self.int(0, 9)},
                }
            ]
        if kind == "WAIT":
            ip = [{}, {"duration": "2 seconds"}, {"until": "1970-01-01 00:20 UTC"}][self.int(0, 2)]
            return [{"name": r, "taskReferenceName": r, "type": kind, "inputParameters": ip}]
        if kind == "DYNAMIC":
            return [
                {
                    "name": r,
                    "taskReferenceName": r,
                    "type": kind,
                    "dynamicTaskNameParam": "n",
                    "inputParameters": {"n": "w_ok"},
                }
            ]
        if kind == "START_WORKFLOW":
            return [
                {
                    "name": r,
                    "taskReferenceName": r,
                    "type": kind,
                    "inputParameters": {"startWorkflow": {"name": "child"}},
                }
            ]
        if kind == "SUB_WORKFLOW":
            return [
                {
                    "name": r,
                    "taskReferenceName": r,
                    "type": kind,
                    "subWorkflowParam": {"name": "child"},
                    "retryCount": self.int(0, 1),
                }
            ]
        if kind == "TERMINATE":
            if self.int(0, 3):
                return [{"name": r, "taskReferenceName": r, "type": "NOOP"}]
            status = ["COMPLETED", "FAILED", "TERMINATED"][self.int(0, 2)]
            return [
                {
                    "name": r,
                    "taskReferenceName": r,
                    "type": kind,
                    "inputParameters": {"terminationStatus": status},
                }
            ]
        if kind == "DYNFORK":
            inputs = [{"i": i} for i in range(self.int(0, 3))]
            return [
                {
                    "name": r,
                    "taskReferenceName": r,
                    "type": "FORK_JOIN_DYNAMIC",
                    "inputParameters": {"forkTaskName": "w_ok", "forkTaskInputs": inputs},
                },
                {"name": r + "j", "taskReferenceName": r + "j", "type": "JOIN"},
            ]
        if kind in ("SWITCH", "SWITCH_X"):
            sw = {
                "name": r,
                "taskReferenceName": r,
                "type": "SWITCH",
                "expression": "k",
                "inputParameters": {"k": "${workflow.input.k}"},
                "decisionCases": {"a": self.tasks(depth + 1, 0), "b": self.tasks(depth + 1, 0)},
                "defaultCase": self.tasks(depth + 1, 0),
            }
            if kind == "SWITCH":
                return [sw]
            heads = [c[0]["taskReferenceName"] for c in sw["decisionCases"].values() if c]
            return [
                sw,
                {
                    "name": r + "x",
                    "taskReferenceName": r + "x",
                    "type": "EXCLUSIVE_JOIN",
                    "joinOn": heads,
                },
            ]
        if kind == "FORK":
            branches = [self.tasks(depth + 1) for _ in range(self.int(1, 3))]
            join_on = [b[-1]["taskReferenceName"] for b in branches if self.int(0, 3)]
            return [
                {"name": r, "taskReferenceName": r, "type": "FORK_JOIN", "forkTasks": branches},
                {"name": r + "j", "taskReferenceName": r + "j", "type": "JOIN", "joinOn": join_on},
            ]
        loop: JSON = {
            "name": r,
            "taskReferenceName": r,
            "type": "DO_WHILE",
            "loopOver": self.tasks(depth + 1),
        }
        if self.int(0, 1):
            loop["loopCondition"] = f"$.{r}['iteration'] < {self.int(1, 3)}"
        else:
            loop["items"] = list(range(self.int(0, 3)))
        if self.int(0, 2) == 0:
            loop["inputParameters"] = {"keepLastN": 1}
        return [loop]


def drive(h: Harness, data: Any, max_steps: int = 400) -> None:
    """Workers answer (mostly complete, sometimes fail or stay silent), operators complete or
    fail WAIT/HUMAN, and time moves to the next timer when nothing else can."""
    for _ in range(max_steps):
        check_invariants(h.state)
        if all(w["status"] in TERMINAL for w in h.state.workflows.values()):
            return
        moved = False
        for task_type in list(h.state.queues):
            for tid in h.poll(task_type, 50):
                moved = True
                roll = int(data.draw(hst.integers(0, 9)))
                # A task of a workflow that ended meanwhile (a sibling failed) refuses the answer.
                alive = h.state.tasks[tid]["status"] == "IN_PROGRESS"
                if roll < 7:
                    out = h.complete(tid, {"r": roll}, check=False)
                elif roll < 9:
                    out = h.fail(tid, reason="nope", terminal=roll == 8, check=False)
                else:
                    continue
                assert out.code.value == ("OK" if alive else "FAILED_PRECONDITION"), out
                # else: never answer; the lease times out
        if moved:
            continue
        gates = [
            t
            for t in h.state.tasks.values()
            if t["status"] == "IN_PROGRESS"
            and t["type"] in ("WAIT", "HUMAN")
            and "wait:" + t["taskId"] not in h.state.timers
        ]
        if gates:
            t = gates[0]
            rid = h.new_id("op")
            if int(data.draw(hst.integers(0, 4))):
                h.ok(CompleteTask(request_id=rid, task_id=t["taskId"], output={"op": 1}))
            else:
                h.ok(FailTask(request_id=rid, task_id=t["taskId"], reason="operator"))
            continue
        due = h.state.next_due_ms()
        assert due is not None, "nothing can move a RUNNING workflow"
        h.tick_at(max(due, h.clock_ms))
    raise AssertionError("workflows did not end within the step budget")


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=hst.data())
def test_random_definitions_always_end_and_replay_identically(data: Any) -> None:
    h = Harness()
    h.leader_epoch(1)
    h.register_task_defs(*TASK_DEFS)
    h.register_workflow(CHILD)
    gen = Gen(data)
    definition = {
        "name": "random",
        "version": 1,
        "tasks": gen.tasks(0),
        "outputParameters": {"vars": "${workflow.variables}"},
    }
    h.register_workflow(definition)
    for i in range(int(data.draw(hst.integers(1, 2)))):
        h.start("random", {"x": i, "k": ["a", "b", "c"][int(data.draw(hst.integers(0, 2)))]})
    drive(h, data)
    check_invariants(h.state)
    for wf in h.state.workflows.values():
        assert wf["status"] in TERMINAL
    assert not h.state.queues and not h.state.timers
    for t in h.state.tasks.values():
        event(f"{t['type']} {t['status']}")
    for wf in h.state.workflows.values():
        event(f"workflow {wf['status']}")
    snap = h.state.snapshot_bytes()
    replayed, outcomes = replay(h.log)
    assert replayed.snapshot_bytes() == snap
    assert all(o.code.value != "INTERNAL" for o in outcomes), [o.message for o in outcomes]
    assert State.from_snapshot_bytes(snap).snapshot_bytes() == snap
