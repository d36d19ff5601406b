"""Forks and joins: the tasks a FORK_JOIN_DYNAMIC fans out to, what a JOIN waits for, and
when a JOIN or EXCLUSIVE_JOIN completes."""

from __future__ import annotations

from typing import Any

from .. import limits
from ..context import Ctx
from ..definitions import normalize_workflow_def
from ..errors import Rejected, TaskCannotRun
from ..records import (
    T_COMPLETED,
    T_COMPLETED_WITH_ERRORS,
    T_DONE_OK,
    Task,
    TaskType,
    Workflow,
)
from ..state import State
from . import registry, tasks

JSON = Any

DYNAMIC_FORKABLE = (
    "SIMPLE",
    "SUB_WORKFLOW",
    "START_WORKFLOW",
    "WAIT",
    "HUMAN",
    "NOOP",
    "SET_VARIABLE",
)


def _given_tasks(wt: JSON, inp: JSON) -> list[JSON]:
    """The dynamic tasks as given: a list of tasks with a map of inputs, or one task type (or
    sub-workflow) per input of forkTaskInputs."""
    raw: list[JSON] = []
    if wt.get("dynamicForkTasksParam"):
        given = inp.get(wt["dynamicForkTasksParam"])
        inputs = inp.get(wt["dynamicForkTasksInputParamName"])
        if not isinstance(given, list):
            raise TaskCannotRun(
                f"FORK_JOIN_DYNAMIC: input {wt['dynamicForkTasksParam']!r} must be a list of tasks"
            )
        if not isinstance(inputs, dict):
            raise TaskCannotRun(
                f"FORK_JOIN_DYNAMIC: input {wt['dynamicForkTasksInputParamName']!r} must be a "
                "map of reference -> input"
            )
        for each in given:
            if not isinstance(each, dict):
                raise TaskCannotRun("FORK_JOIN_DYNAMIC: every dynamic task must be an object")
            one = dict(each)
            ti = inputs.get(one.get("taskReferenceName"))
            one["inputParameters"] = dict(one.get("inputParameters") or {}, **(ti or {}))
            raw.append(one)
        return raw
    inputs = inp.get("forkTaskInputs")
    if not isinstance(inputs, list):
        raise TaskCannotRun("FORK_JOIN_DYNAMIC: input forkTaskInputs must be a list")
    sub = inp.get("forkTaskWorkflow")
    ftype = inp.get("forkTaskType") or "SIMPLE"
    name = inp.get("forkTaskName") or (ftype if ftype != "SIMPLE" else wt["taskReferenceName"])
    for i, item in enumerate(inputs):
        params = dict(item) if isinstance(item, dict) else {"input": item}
        params["__index"] = i
        ref = f"_{sub or name}_{i}"
        t: JSON
        if sub:
            swp: dict[str, JSON] = {"name": sub}
            ver = inp.get("forkTaskWorkflowVersion")
            if isinstance(ver, str) and ver.isdigit():
                ver = int(ver)
            if isinstance(ver, int) and not isinstance(ver, bool):
                swp["version"] = ver
            t = {
                "name": sub,
                "taskReferenceName": ref,
                "type": "SUB_WORKFLOW",
                "subWorkflowParam": swp,
            }
        else:
            t = {"name": name, "taskReferenceName": ref, "type": ftype}
        t["inputParameters"] = params
        if wt.get("optional"):
            t["optional"] = True
        raw.append(t)
    return raw


def dynamic_fork_tasks(wf: Workflow, wt: JSON, inp: JSON, task: Task) -> list[JSON]:
    """The task configurations a FORK_JOIN_DYNAMIC fans out to, validated like a definition."""
    raw = _given_tasks(wt, inp)
    if len(raw) > limits.MAX_DYNAMIC_FORK_TASKS:
        raise TaskCannotRun(
            f"FORK_JOIN_DYNAMIC: {len(raw)} tasks exceed MAX_DYNAMIC_FORK_TASKS "
            f"({limits.MAX_DYNAMIC_FORK_TASKS})"
        )
    out: list[JSON] = []
    suffix = task.reference_task_name[len(wt["taskReferenceName"]) :]
    for i, given in enumerate(raw):
        t = {k: v for k, v in given.items() if v is not None}
        params = t.get("inputParameters", {})
        # Inputs were resolved already: keep them literal (a `${` in data is not an expression).
        t["inputParameters"] = {}
        try:
            norm = normalize_workflow_def({"name": "dynamic", "tasks": [t]})["tasks"][0]
        except Rejected as rej:
            raise TaskCannotRun(f"FORK_JOIN_DYNAMIC: dynamic task {i}: {rej.message}") from None
        ref = norm["taskReferenceName"]
        if norm["type"] not in DYNAMIC_FORKABLE:
            raise TaskCannotRun(
                f"FORK_JOIN_DYNAMIC: dynamic task {i} ({ref}): type "
                f"{norm['type']} cannot be forked dynamically (use a SUB_WORKFLOW)"
            )
        norm["inputParameters"] = _escape(params)
        if ref + suffix in wf.ref_index or any(o["taskReferenceName"] == ref for o in out):
            raise TaskCannotRun(f"FORK_JOIN_DYNAMIC: duplicate task reference {ref!r}")
        out.append(norm)
    return out


def _escape(value: JSON) -> JSON:
    """Make resolved data inert for a second resolution: `${` becomes `$${`."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


def join_on(st: State, wf: Workflow, wt: JSON, join_task: Task) -> list[str]:
    """The references a JOIN waits for: its joinOn, or every task of the dynamic fork before it."""
    suffix = join_task.reference_task_name[len(wt["taskReferenceName"]) :]
    path = join_task.path
    if path and isinstance(path[-1], int) and path[-1] > 0:
        cur: JSON = registry.wf_def(st, wf)
        for key in [*path[:-1], path[-1] - 1]:
            cur = cur[key]
        if cur.get("type") == "FORK_JOIN_DYNAMIC":
            fork_id = wf.ref_index.get(cur["taskReferenceName"] + suffix)
            fork = st.tasks.get(fork_id) if fork_id else None
            if fork is not None:
                planned = fork.dynamic_fork_tasks or []
                return [d["taskReferenceName"] + suffix for d in planned]
    return [r + suffix for r in wt.get("joinOn", [])]


def evaluate_join(ctx: Ctx, wf: Workflow, wt: JSON, task: Task) -> None:
    """Complete an IN_PROGRESS JOIN / EXCLUSIVE_JOIN if what it waits for has ended."""
    st = ctx.st
    if task.type is TaskType.JOIN:
        output: dict[str, JSON] = {}
        with_errors = False
        for ref in task.input["joinOn"]:
            tid = wf.ref_index.get(ref)
            joined = st.tasks.get(tid) if tid else None
            if joined is None or (joined.status not in T_DONE_OK and not joined.permissive_failed):
                return
            with_errors = with_errors or joined.status == T_COMPLETED_WITH_ERRORS
            output[ref] = joined.output
        status = T_COMPLETED_WITH_ERRORS if with_errors else T_COMPLETED
        tasks.end_task(ctx, task, status, output)
        return
    # EXCLUSIVE_JOIN: the first joinOn reference that was scheduled (Conductor's ExclusiveJoin),
    # else the first scheduled defaultExclusiveJoinTask; it waits for that one to end.
    suffix = task.reference_task_name[len(wt["taskReferenceName"]) :]
    chosen = None
    for ref in [*wt.get("joinOn", []), *wt.get("defaultExclusiveJoinTask", [])]:
        tid = wf.ref_index.get(ref + suffix)
        if tid is not None:
            chosen = st.tasks[tid]
            break
    if chosen is None:
        tasks.end_task(ctx, task, T_COMPLETED, output={})
    elif chosen.status in T_DONE_OK:
        tasks.end_task(ctx, task, T_COMPLETED, output=chosen.output)
