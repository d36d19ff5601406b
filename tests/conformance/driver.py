"""Runs a conformance case against the pure core with scripted workers.

A case is a dict:

- ``name``, ``follows``: what it checks and which Conductor documentation/behaviour it follows.
- ``workflow``: a Conductor workflow definition (JSON); ``register``: other definitions first.
- ``taskDefs``: task definitions; every other SIMPLE task name gets a default one (no retries,
  no retry delay, a 5 s lease). ``extraTaskNames``: names to register for dynamic tasks.
- ``input``: the workflow input.
- ``workers``: behaviour per task reference (without DO_WHILE ``__N`` suffixes), else per task
  name; unlisted worker tasks complete with ``{}``. A behaviour is one of
  ``{"complete": output}``, ``{"outputs": [o1, o2, ...]}`` (one per call, the last repeats),
  ``{"fail": n, "then": output}`` (fail n times, then complete), ``{"fail": "always"}``,
  ``{"fail": "terminal"}``, ``{"never": True}`` (never answer: the lease times out), or
  ``{"echo": True}`` (complete with the task's input). ``unpolled``: task types no worker polls.
- Scripts (INLINE, JSON_JQ_TRANSFORM, SWITCH/DECISION JavaScript, JavaScript loopConditions) are
  evaluated as the leader's runtime does: in the sandbox, then committed with ScriptResult.
- ``api``: per WAIT/HUMAN reference, ``{"complete": output}`` or ``{"fail": reason}``, applied
  once nothing else can move (as an operator through CompleteTask/FailTask by task id).
- ``expect``: ``status``, optionally ``output`` (exact) or ``outputIncludes``, ``outputHasKeys``
  (keys whose values differ per run), ``tasks`` (the root workflow's [reference, status] in
  scheduling order), ``reasonIncludes``, ``variables``, ``children`` (statuses of child
  workflows, in creation order), ``elapsedMsAtLeast``.
"""

from __future__ import annotations

from typing import Any

from orchestrator.core.commands import CompleteTask, FailTask, ScriptResult
from orchestrator.core.definitions import iter_tasks
from orchestrator.core.machine import pending_scripts
from orchestrator.runtime.sandbox import Sandbox
from tests.core_helpers import Harness, check_invariants

JSON = Any
DEFAULT_TASK_DEF = {"retryCount": 0, "retryDelaySeconds": 0, "responseTimeoutSeconds": 5}
TERMINAL = ("COMPLETED", "FAILED", "TERMINATED", "TIMED_OUT", "COMPENSATED")
_SANDBOX: Sandbox | None = None


def sandbox() -> Sandbox:
    """One sandbox for the whole suite (short time limit: cases never need long scripts)."""
    global _SANDBOX
    if _SANDBOX is None:
        _SANDBOX = Sandbox(workers=1, time_limit_s=1.0)
    return _SANDBOX


def resolve_scripts(h: Harness) -> bool:
    """Evaluate every pending script in the sandbox and commit its ScriptResult, as the leader's
    runtime (orchestrator/runtime/scripts.py) does. False when none was pending."""
    pending = pending_scripts(h.state)
    for tid, fence in pending:
        task = h.state.tasks[tid]
        marker = task.script
        inp = task.input if marker.input is None else marker.input
        res = sandbox().evaluate(marker.lang, marker.source, inp)
        h.ok(
            ScriptResult(
                task_id=tid,
                fence=fence,
                epoch=h.state.epoch,
                ok=res.ok,
                value=res.value,
                error=res.error,
            )
        )
    return bool(pending)


def _simple_names(defn: JSON) -> list[str]:
    names: list[str] = []
    for t in iter_tasks(defn.get("tasks", [])):
        ttype = t.get("type", "SIMPLE")
        if ttype == "SIMPLE" and "taskDefinition" not in t:
            names.append(t["name"])
        if ttype == "SUB_WORKFLOW" and isinstance(
            (t.get("subWorkflowParam") or {}).get("workflowDefinition"), dict
        ):
            names.extend(_simple_names(t["subWorkflowParam"]["workflowDefinition"]))
    return names


class Run:
    def __init__(self, case: JSON) -> None:
        self.case = case
        self.h = Harness()
        self.calls: dict[str, int] = {}
        self.seq_calls: dict[str, int] = {}
        self.api_done: set[str] = set()
        h = self.h
        h.leader_epoch(1)
        given = {d["name"]: d for d in case.get("taskDefs", [])}
        names: list[str] = list(case.get("extraTaskNames", []))
        for d in [*case.get("register", []), case["workflow"]]:
            names.extend(_simple_names(d))
        defs = list(given.values())
        for n in dict.fromkeys(names):
            if n not in given:
                defs.append({"name": n, **DEFAULT_TASK_DEF})
        if defs:
            h.register_task_defs(*defs)
        for d in case.get("register", []):
            h.register_workflow(d)
        h.register_workflow(case["workflow"])
        self.wf_id = h.start(case["workflow"]["name"], case.get("input", {}))

    def behaviour(self, task: JSON) -> JSON:
        workers = self.case.get("workers", {})
        for key in (task.reference_task_name, task.base_ref, task.task_type):
            if key in workers:
                return workers[key]
        return {"complete": {}}

    def answer(self, tid: str) -> None:
        h = self.h
        task = h.task(tid)
        b = self.behaviour(task)
        key = task.reference_task_name
        n = self.calls.get(key, 0)
        self.calls[key] = n + 1
        if b.get("never"):
            return
        fail = b.get("fail")
        if fail == "always" or (isinstance(fail, int) and n < fail):
            h.fail(tid, reason=b.get("reason", "worker failed"))
        elif fail == "terminal":
            h.fail(tid, reason=b.get("reason", "worker failed terminally"), terminal=True)
        elif "outputs" in b:
            outs = b["outputs"]
            base = task.base_ref or key
            i = self.seq_calls.get(base, 0)
            self.seq_calls[base] = i + 1
            h.complete(tid, outs[min(i, len(outs) - 1)])
        elif b.get("echo"):
            h.complete(tid, dict(task.input))
        else:
            h.complete(tid, b.get("then", b.get("complete", {})))

    def step(self) -> bool:
        """One round: workers poll everything ready; then the API; then time. False if stuck."""
        h = self.h
        if resolve_scripts(h):
            return True
        moved = False
        unpolled = self.case.get("unpolled", ())
        for task_type in list(h.state.queues):
            if task_type in unpolled:
                continue
            for tid in h.poll(task_type, 100):
                self.answer(tid)
                moved = True
        if moved:
            return True
        api = self.case.get("api", {})
        for wf in list(h.state.workflows.values()):
            if wf.status not in ("RUNNING", "COMPENSATING"):
                continue
            for tid in list(wf.tasks):
                t = h.state.tasks.get(tid)
                if t is None or t.status != "IN_PROGRESS" or t.type not in ("WAIT", "HUMAN"):
                    continue
                ref = t.base_ref or t.reference_task_name
                if ref in api and tid not in self.api_done:
                    self.api_done.add(tid)
                    action = api[ref]
                    rid = h.new_id("api")
                    if "fail" in action:
                        h.ok(FailTask(request_id=rid, task_id=tid, reason=action["fail"]))
                    else:
                        h.ok(CompleteTask(request_id=rid, task_id=tid, output=action["complete"]))
                    return True
        due = h.state.next_due_ms()
        if due is not None:
            h.tick_at(max(due, h.clock_ms))
            return True
        return False

    def run(self, max_steps: int = 500) -> JSON:
        start = self.h.clock_ms
        for _ in range(max_steps):
            check_invariants(self.h.state)
            ended = self.h.wf(self.wf_id).status in TERMINAL
            # A failure workflow may still run a script once the root has ended.
            if ended and not self.h.state.queues and not pending_scripts(self.h.state):
                break
            if not self.step():
                break
        check_invariants(self.h.state)
        self.elapsed_ms = self.h.clock_ms - start
        return self.h.wf(self.wf_id)

    def sequence(self, wf_id: str | None = None) -> list[list[str]]:
        return [[t.reference_task_name, t.status] for t in self.h.tasks_of(wf_id or self.wf_id)]

    def children(self) -> list[JSON]:
        return [
            w
            for w in self.h.state.workflows.values()
            if w.workflow_id != self.wf_id and w.workflow_id.startswith(self.wf_id)
        ]
