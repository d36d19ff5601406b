"""Property: random definitions built from every supported task type reach a terminal state when
workers (and operators, for WAIT/HUMAN) answer, keep the invariants at every step, and a replay
of the log reproduces the state byte for byte.

Scripts (INLINE, JSON_JQ_TRANSFORM, SWITCH/DECISION JavaScript, DO_WHILE loopConditions in full
JavaScript) run in two phases: the core parks the task (`pending_scripts`) and a ScriptResult
brings the value in. Here the runtime's part is played by a fake evaluator whose results
hypothesis chooses (values of any shape, errors, evaluations left pending while time and workers
move on, duplicates, results from a deposed leader's epoch, late results for evaluations that
are gone), not by the sandbox: the core must end and replay identically whatever arrives, and
the fake is fast and explores outcomes real scripts would rarely give.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as hst

from orchestrator.core.commands import CompleteTask, FailTask, ScriptResult
from orchestrator.core.errors import Code
from orchestrator.core.machine import pending_scripts
from orchestrator.core.state import State
from tests.core_helpers import Harness, check_invariants, replay, state_without_seq

JSON = Any
TERMINAL = ("COMPLETED", "FAILED", "TERMINATED", "TIMED_OUT")
TASK_DEFS = [
    {"name": "w_ok", "retryCount": 1, "retryDelaySeconds": 1, "responseTimeoutSeconds": 3},
    {"name": "w_x", "retryCount": 0, "retryDelaySeconds": 0, "responseTimeoutSeconds": 2},
]
CHILD = {"name": "child", "version": 1, "tasks": [{"name": "w_ok", "taskReferenceName": "c"}]}

# What the fake evaluator answers, by task type; a loop condition is falsy from iteration 4 on,
# so loops end (the core's own cap, MAX_LOOP_ITERATIONS, is far away).
INLINE_VALUES: list[JSON] = [0, 1, "a", None, True, 2**63, [1, 2], {"k": "v"}]
JQ_VALUES: list[JSON] = [[], [1], [1, {"k": 2}], None, "x", {"k": [3]}]
CASE_VALUES: list[JSON] = ["a", "b", "c", None, 1, True, ["a"], {"a": 1}]
LOOP_VALUES: list[JSON] = [True, False, 0, 1, "", "x", None, [], {}]
LOOP_MAX_ITERATIONS = 4
SCRIPT_ERRORS = ["time limit exceeded (4 s)", "", "SyntaxError: unexpected token", "x" * 5000]


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
        kinds += ["INLINE", "JQ"]
        if depth < 3:
            kinds += ["SWITCH", "FORK", "DO_WHILE", "DO_WHILE", "SWITCH_X", "SWITCH_JS"]
            kinds += ["DECISION_JS"]
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
        if kind == "INLINE":
            evaluator = ["javascript", "graaljs"][self.int(0, 1)]
            ip = {"evaluatorType": evaluator, "expression": "$.x + 1", "x": "${workflow.input.x}"}
            return [
                self.retries(
                    {"name": r, "taskReferenceName": r, "type": kind, "inputParameters": ip}
                )
            ]
        if kind == "JQ":
            ip = {"queryExpression": "{y: .x}", "x": "${workflow.input.x}"}
            t = {
                "name": r,
                "taskReferenceName": r,
                "type": "JSON_JQ_TRANSFORM",
                "inputParameters": ip,
            }
            return [self.retries(t)]
        if kind in ("SWITCH_JS", "DECISION_JS"):
            cases = {
                "decisionCases": {"a": self.tasks(depth + 1, 0), "b": self.tasks(depth + 1, 0)},
                "defaultCase": self.tasks(depth + 1, 0),
            }
            ip = {"k": "${workflow.input.k}"}
            if kind == "SWITCH_JS":
                js = {"evaluatorType": "javascript", "expression": "$.k"}
                return [
                    {
                        "name": r,
                        "taskReferenceName": r,
                        "type": "SWITCH",
                        "inputParameters": ip,
                        **js,
                        **cases,
                    }
                ]
            return [
                {
                    "name": r,
                    "taskReferenceName": r,
                    "type": "DECISION",
                    "inputParameters": ip,
                    "caseExpression": "$.k",
                    **cases,
                }
            ]
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
        mode = self.int(0, 3)
        if mode == 0:
            loop["loopCondition"] = f"$.{r}['iteration'] < {self.int(1, 3)}"
        elif mode == 1:
            loop["items"] = list(range(self.int(0, 3)))
        else:
            # Not the restricted form (a call): the sandbox is asked once per iteration.
            loop["loopCondition"] = f"Math.min($.{r}['iteration'], 9) < {self.int(1, 3)}"
            if mode == 3:
                loop["items"] = list(range(self.int(0, 3)))
        if self.int(0, 2) == 0:
            loop["inputParameters"] = {"keepLastN": 1}
        return [loop]

    def retries(self, t: JSON) -> JSON:
        """A script task that may be retried (a new evaluation) or be optional."""
        roll = self.int(0, 3)
        if roll == 1:
            t["retryCount"] = 1
        elif roll == 2:
            t["optional"] = True
        return t


def evaluation(h: Harness, data: Any, tid: str, fence: int) -> ScriptResult:
    """The fake evaluator: a result for the pending evaluation (tid, fence), as the leader would
    propose it; hypothesis chooses an error or a value of the task type's kind."""
    task = h.state.tasks[tid]
    if int(data.draw(hst.integers(0, 5))) == 0:
        error = data.draw(hst.sampled_from(SCRIPT_ERRORS))
        return ScriptResult(task_id=tid, fence=fence, epoch=h.state.epoch, ok=False, error=error)
    ttype = task.type
    value: JSON
    if ttype == "DO_WHILE":
        value = data.draw(hst.sampled_from(LOOP_VALUES))
        # No marker: an earlier result this round ended the task (the result will be refused).
        marker = task.script
        if marker is not None and (marker.iteration or 0) >= LOOP_MAX_ITERATIONS:
            value = False
    elif ttype == "INLINE":
        value = data.draw(hst.sampled_from(INLINE_VALUES))
    elif ttype == "JSON_JQ_TRANSFORM":
        value = data.draw(hst.sampled_from(JQ_VALUES))
    else:
        value = data.draw(hst.sampled_from(CASE_VALUES))
    return ScriptResult(task_id=tid, fence=fence, epoch=h.state.epoch, ok=True, value=value)


def send(h: Harness, cmd: ScriptResult) -> None:
    """Apply a ScriptResult: taken exactly when its evaluation is pending and its epoch current;
    otherwise FAILED_PRECONDITION, and nothing but the sequence number changes."""
    expected = (cmd.task_id, cmd.fence) in pending_scripts(h.state) and cmd.epoch >= h.state.epoch
    before = None if expected else state_without_seq(h.state)
    out = h.apply_one(cmd)
    event(f"ScriptResult {out.code.value}")
    if expected:
        assert out.code is Code.OK, out
    else:
        assert out.code is Code.FAILED_PRECONDITION, out
        assert state_without_seq(h.state) == before, "a refused ScriptResult changed the state"


def answer_scripts(h: Harness, data: Any, seen: dict[tuple[str, int], None]) -> bool:
    """Play the leader's runtime for pending scripts; True if it proposed a result."""
    pending = pending_scripts(h.state)
    seen.update(dict.fromkeys(pending))
    moved = False
    if pending and int(data.draw(hst.integers(0, 19))) == 0:
        # A new leader: its predecessor's result (old epoch) is refused; the new one evaluates
        # the same pending scripts again.
        event("a new leader while scripts are pending")
        old = h.state.epoch
        h.leader_epoch(old + 1)
        tid, fence = pending[0]
        send(h, ScriptResult(task_id=tid, fence=fence, epoch=old, ok=True, value=None))
    if pending and int(data.draw(hst.integers(0, 19))) == 0:
        # A replica restarts from a snapshot taken while evaluations are pending and goes on.
        event("restored from a snapshot while scripts are pending")
        h.state = State.from_snapshot_bytes(h.state.snapshot_bytes())
    for tid, fence in data.draw(hst.permutations(pending)):
        roll = int(data.draw(hst.integers(0, 9)))
        if roll == 9:
            event("a script left pending for a round")
            continue  # still evaluating: workers and time move on meanwhile
        cmd = evaluation(h, data, tid, fence)
        if roll == 7:
            # A result for an earlier evaluation of the same task (a loop's previous iteration):
            # refused, whatever the task waits for now.
            send(h, dataclasses.replace(cmd, fence=fence - 1))
        send(h, cmd)  # may be refused: an earlier result in this round ended the workflow
        moved = True
        if roll == 8:
            send(h, cmd)  # the same proposal again (a retried propose): refused
    gone = [key for key in seen if key not in pending_scripts(h.state)]
    if gone and int(data.draw(hst.integers(0, 3))) == 0:
        # A late result for an evaluation that was answered, retried or whose workflow ended.
        event("a late script result")
        tid, fence = data.draw(hst.sampled_from(gone))
        send(h, ScriptResult(task_id=tid, fence=fence, epoch=h.state.epoch, ok=True, value=1))
    return moved


def drive(h: Harness, data: Any, max_steps: int = 600) -> None:
    """Workers answer (mostly complete, sometimes fail or stay silent), operators complete or
    fail WAIT/HUMAN, the fake evaluator answers scripts (or not yet), and time moves to the next
    timer when nothing else can."""
    seen: dict[tuple[str, int], None] = {}
    for _ in range(max_steps):
        check_invariants(h.state)
        if all(w.status in TERMINAL for w in h.state.workflows.values()):
            return
        moved = answer_scripts(h, data, seen)
        for task_type in list(h.state.queues):
            for tid in h.poll(task_type, 50):
                moved = True
                roll = int(data.draw(hst.integers(0, 9)))
                # A task of a workflow that ended meanwhile (a sibling failed) refuses the answer.
                alive = h.state.tasks[tid].status == "IN_PROGRESS"
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
            if t.status == "IN_PROGRESS"
            and t.type in ("WAIT", "HUMAN")
            and "wait:" + t.task_id not in h.state.timers
        ]
        if gates:
            t = gates[0]
            rid = h.new_id("op")
            if int(data.draw(hst.integers(0, 4))):
                h.ok(CompleteTask(request_id=rid, task_id=t.task_id, output={"op": 1}))
            else:
                h.ok(FailTask(request_id=rid, task_id=t.task_id, reason="operator"))
            continue
        due = h.state.next_due_ms()
        if due is None:
            # Only evaluations left pending can move it: they are answered in a later round.
            assert pending_scripts(h.state), "nothing can move a RUNNING workflow"
            continue
        h.tick_at(max(due, h.clock_ms))
    raise AssertionError("workflows did not end within the step budget")


@settings(
    max_examples=400,
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
        assert wf.status in TERMINAL
    assert not h.state.queues and not h.state.timers
    assert not pending_scripts(h.state)
    assert not [t.task_id for t in h.state.tasks.values() if t.script is not None]
    for t in h.state.tasks.values():
        event(f"{t.type} {t.status}")
    for wf in h.state.workflows.values():
        event(f"workflow {wf.status}")
    snap = h.state.snapshot_bytes()
    replayed, outcomes = replay(h.log)
    assert replayed.snapshot_bytes() == snap
    assert all(o.code.value != "INTERNAL" for o in outcomes), [o.message for o in outcomes]
    assert State.from_snapshot_bytes(snap).snapshot_bytes() == snap
