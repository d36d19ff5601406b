"""Scripts in two phases: a task that needs one (INLINE, JSON_JQ_TRANSFORM, a JavaScript
SWITCH/DECISION, a DO_WHILE loopCondition in full JavaScript) waits IN_PROGRESS with a marker;
the leader's runtime evaluates it outside apply and proposes ScriptResult, committed here."""

from __future__ import annotations

from typing import Any

from .. import codec, limits
from .. import events as E
from ..commands import ScriptResult
from ..context import Ctx
from ..errors import precondition
from ..records import (
    T_ACTIVE,
    T_COMPLETED,
    T_FAILED,
    T_FAILED_WITH_TERMINAL_ERROR,
    WF_LIVE,
    LoopOutcome,
    ScriptMarker,
    Task,
    TaskType,
    Workflow,
)
from ..state import State
from . import decider, registry, scheduler, tasks

JSON = Any


def await_script(
    ctx: Ctx,
    task: Task,
    lang: str,
    source: str,
    input: JSON = None,
    iteration: int | None = None,
) -> None:
    """Phase one: mark the task as waiting for an evaluation outside apply.

    The fence is this command's sequence number: unique per evaluation of a task (a loop asks
    again only in a later command), so a result for an older request is told apart.
    """
    marker = ScriptMarker(ctx.st.seq, lang, source, input, iteration)
    ctx.emit(E.ScriptRequested(task.task_id, marker))


def script_result(ctx: Ctx, cmd: ScriptResult) -> dict[str, JSON]:
    """Phase two: commit a script's outcome; the task then goes on as if a worker answered."""
    st = ctx.st
    task, wf = pending_evaluation(st, cmd.task_id, cmd.fence)
    error = (cmd.error if isinstance(cmd.error, str) else "") or "the script failed"
    error = error[: limits.MAX_REASON_LENGTH - 100]
    ok = cmd.ok
    problem = codec.json_problem(cmd.value) if ok else ""
    if problem:  # stored, it would be served back as something no client can read
        ok, error = False, f"the script's result is not valid JSON: {problem}"
    ttype = task.type
    if ttype is TaskType.DO_WHILE:
        # The loop's decide walk reads the outcome (it knows the iteration it asked for).
        outcome = LoopOutcome(ok, js_truthy(cmd.value) if ok else False, error)
        ctx.emit(E.LoopConditionEvaluated(task.task_id, outcome))
        decider.decide(ctx, wf)
        return {}
    if not ok:
        failed = (TaskType.SWITCH, TaskType.DECISION)
        status = T_FAILED_WITH_TERMINAL_ERROR if ttype in failed else T_FAILED
        reason = f"{ttype} script failed: {error}"
        tasks.end_task(ctx, task, status, output={"error": error}, reason=reason)
        tasks.handle_failure(ctx, wf, task)
        return {}
    out: JSON
    if ttype is TaskType.INLINE:
        out = {"result": cmd.value}
    elif ttype is TaskType.JSON_JQ_TRANSFORM:
        results = cmd.value if isinstance(cmd.value, list) else [cmd.value]
        out = {"result": results[0] if results else None, "resultList": results}
    else:  # SWITCH / DECISION
        out = scheduler.select_case(ctx, task, registry.wt_of(st, wf, task), cmd.value)
    tasks.end_task(ctx, task, T_COMPLETED, output=out)
    decider.decide(ctx, wf)
    return {}


def pending_evaluation(
    st: State, task_id: str, fence: int, http: bool = False
) -> tuple[Task, Workflow]:
    """The task and workflow a result with this fence is for; refused when that evaluation (a
    script, or an HTTP request when `http`) is not pending any more."""
    task = st.tasks.get(task_id)
    marker = task.script if task is not None else None
    if (
        task is None
        or marker is None
        or task.status not in T_ACTIVE
        or marker.fence != fence
        or marker.outcome is not None
        or (marker.lang == "http") != http
    ):
        what = "HTTP request" if http else "script evaluation"
        raise precondition(
            f"task {task_id} has no pending {what} with fence {fence}: a late or duplicate "
            "result is not applied"
        )
    wf = st.workflows.get(task.workflow_id)
    if wf is None or wf.status not in WF_LIVE:  # a PAUSED workflow's scripts run on
        raise precondition(f"workflow {task.workflow_id} is not RUNNING")
    return task, wf


def js_truthy(value: JSON) -> bool:
    """JavaScript truthiness of a JSON value (an empty list or object is true)."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, str):
        return value != ""
    return True


def pending_scripts(st: State, http: bool = False) -> list[tuple[str, int]]:
    """(task id, fence) of every script evaluation waiting for a ScriptResult (or with `http`,
    every HTTP request waiting for an HttpResult), in workflow and task order. The leader's
    runtime scans this when it takes over."""
    out: list[tuple[str, int]] = []
    for wf in st.workflows.values():
        if wf.status not in WF_LIVE:
            continue
        for tid in wf.tasks:
            t = st.tasks[tid]
            marker = t.script
            if (
                marker is not None
                and t.status in T_ACTIVE
                and marker.outcome is None
                and (marker.lang == "http") == http
            ):
                out.append((tid, marker.fence))
    return out
