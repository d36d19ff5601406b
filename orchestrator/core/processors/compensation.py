"""Sagas: a workflow undoes its completed steps by running their `compensateWith` tasks.

A compensation begins when the workflow would end FAILED or TIMED_OUT (unless its definition
says `compensateOnFailure: false`), when a TERMINATE task with input `compensate: true` runs,
or on the operator's CompensateWorkflow. The workflow is then COMPENSATING: its forward tasks in
progress are cancelled and its children terminated, the status and reason it would have ended
with are kept on it (`saga_status`, reason_for_incompletion), and the steps to undo are fixed
(`saga_steps`: task ids, in reverse completion order). `advance` walks them like the decider
walks a definition: a step's compensation tasks are found by reference (the compensation's
reference plus the step's DO_WHILE suffix), scheduled when missing, one at a time; so every
step is compensated once, whatever replica applies the log, and a snapshot mid-way resumes
where it stood. All done: COMPENSATED. One fails for good (after its own retries): FAILED, and
the steps after it are left alone.
"""

from __future__ import annotations

from typing import Any

from .. import events as E
from ..commands import CompensateWorkflow
from ..context import Ctx
from ..definitions import COMPENSATED_REF, compensations
from ..errors import precondition
from ..expressions import resolve
from ..records import (
    T_COMPLETED,
    T_DONE_OK,
    T_FAILED_STATES,
    T_RETRIABLE,
    WF_COMPENSATED,
    WF_COMPENSATING,
    WF_COMPLETED,
    WF_FAILED,
    WF_LIVE,
    WF_PAUSED,
    WF_RUNNING,
    WF_TERMINATED,
    WF_TIMED_OUT,
    Task,
    Workflow,
    WorkflowStatus,
)
from ..state import State
from . import admission, operations, registry, scheduler, tasks, workflows
from .documents import task_doc, task_view

JSON = Any

# The ends a failure-triggered compensation replaces (trigger 1), and after which the
# definition's failureWorkflow starts.
FAILING = (WF_FAILED, WF_TIMED_OUT)


def steps_of(st: State, wf: Workflow) -> list[str]:
    """The steps to undo, in undo order: the latest attempts that ended COMPLETED and whose
    configuration declares compensateWith, latest completion first (the applied sequence
    number of the command that completed it, then the task's position)."""
    found: list[Task] = []
    for tid in wf.tasks:
        t = st.tasks[tid]
        if t.status is not T_COMPLETED or t.compensates:
            continue
        if wf.ref_index.get(t.reference_task_name) != tid:
            continue
        if compensations(registry.wt_of(st, wf, t)):
            found.append(t)
    found.sort(key=lambda t: (t.end_seq, t.seq), reverse=True)
    return [t.task_id for t in found]


def begin(
    ctx: Ctx,
    wf: Workflow,
    status: WorkflowStatus,
    reason: str,
    failed_task: Task | None = None,
    output: dict[str, JSON] | None = None,
) -> bool:
    """Start compensating a live workflow instead of ending it with `status`; False (and
    nothing changed) when it has no step to undo."""
    steps = steps_of(ctx.st, wf)
    if not steps:
        return False
    children = workflows.cancel_active(ctx, wf, WF_COMPENSATING)
    if output is None:
        output = workflows.output_at_end(ctx.st, wf, status, reason)
    # The failure workflow waits for the compensation's end when a failure started it.
    _started(ctx, wf, status, reason, output, steps, failed_task, status in FAILING)
    workflows.end_children(ctx, wf, children, WF_COMPENSATING)
    advance(ctx, wf)
    return True


def begin_on_failure(
    ctx: Ctx,
    wf: Workflow,
    status: WorkflowStatus,
    reason: str,
    failed_task: Task | None,
    output: dict[str, JSON] | None,
) -> bool:
    """Trigger 1: the workflow would end FAILED or TIMED_OUT; True when it compensates."""
    if status not in FAILING or wf.status not in (WF_RUNNING, WF_PAUSED):
        return False
    if not registry.wf_def(ctx.st, wf).get("compensateOnFailure", True):
        return False
    return begin(ctx, wf, status, reason, failed_task, output)


def _started(
    ctx: Ctx,
    wf: Workflow,
    status: WorkflowStatus,
    reason: str,
    output: dict[str, JSON],
    steps: list[str],
    failed_task: Task | None,
    failure_workflow: bool,
) -> None:
    failed_id = failed_task.task_id if failed_task is not None else ""
    ev = E.CompensationStarted(
        wf.workflow_id, status._value_, reason, output, steps, failure_workflow, failed_id
    )
    ctx.emit(ev)


def compensate_workflow(ctx: Ctx, cmd: CompensateWorkflow) -> dict[str, JSON]:
    """Trigger 3, the operator's: a live workflow stops and compensates (ends TERMINATED when
    it has nothing to undo); a FAILED, TERMINATED or TIMED_OUT one compensates."""
    wf = operations._found(ctx, cmd.workflow_id, cmd.restore)
    done = {"workflow_id": wf.workflow_id}
    status = wf.status
    if status is WF_COMPENSATING:
        return done
    if status is WF_COMPENSATED or status is WF_COMPLETED:
        raise precondition(f"workflow {wf.workflow_id} is {status} and cannot be compensated")
    if status in WF_LIVE:
        reason = cmd.reason or "compensated through the API"
        if not begin(ctx, wf, WF_TERMINATED, reason):
            workflows.end_workflow(ctx, wf, WF_TERMINATED, reason)
        return done
    steps = steps_of(ctx.st, wf)
    if not steps:
        raise precondition(f"workflow {wf.workflow_id} is {status}: nothing to compensate")
    reason, output = wf.reason_for_incompletion, wf.output
    if cmd.reason:
        reason = f"{reason} (compensated through the API: {cmd.reason})"
    # Live again (out of the retention order, running in its chain); its failure workflow, if
    # any, started when it failed. It counts as running for its definition's limits again.
    admission.check_runs_again(ctx, wf)
    ctx.emit(E.WorkflowReopened(wf.workflow_id))
    _started(ctx, wf, status, reason, output, steps, None, False)
    advance(ctx, wf)
    return done


# ---------------------------------------------------------------- the walk


def advance(ctx: Ctx, wf: Workflow) -> None:
    """Schedule the next compensation, handle one that ended, or end the saga."""
    if wf.status is not WF_COMPENSATING:
        return
    # Scheduling may fail a task (fail_now records it for a decide walk): not ours to see.
    saved = (ctx.failed, ctx.terminations)
    ctx.failed, ctx.terminations = [], []
    try:
        _walk(ctx, wf)
    finally:
        ctx.failed, ctx.terminations = saved


def _walk(ctx: Ctx, wf: Workflow) -> None:
    st = ctx.st
    for step_id in wf.saga_steps:
        step = st.tasks.get(step_id)
        if step is None:  # forgotten since (a DO_WHILE's keepLastN)
            continue
        wt = registry.wt_of(st, wf, step)
        suffix = step.reference_task_name[len(wt["taskReferenceName"]) :]
        for j, cwt in enumerate(compensations(wt)):
            tid = wf.ref_index.get(cwt["taskReferenceName"] + suffix)
            task = st.tasks.get(tid) if tid is not None else None
            # A compensation that failed before this compensation began (an operator's new
            # compensation of a workflow whose saga failed) gets a new attempt.
            if task is None or (task.status in T_FAILED_STATES and task.end_seq < wf.saga_seq):
                task = _schedule(ctx, wf, step, cwt, j, suffix, task)
                if task is None or wf.status is not WF_COMPENSATING:
                    return
            if task.status in T_DONE_OK:
                continue
            if task.status in T_FAILED_STATES:
                _failed(ctx, wf, step, cwt, j, suffix, task)
            return
    _finish(ctx, wf)


def _schedule(
    ctx: Ctx,
    wf: Workflow,
    step: Task,
    cwt: JSON,
    j: int,
    suffix: str,
    retry_of: Task | None,
    delay_s: int = 0,
) -> Task | None:
    """Schedule compensation j of a step. Its input sees the workflow's document plus the step
    as `compensated`."""
    doc = task_doc(ctx.st, wf)
    doc[COMPENSATED_REF] = task_view(step, wf.workflow_id)
    task_input = resolve(cwt["inputParameters"], doc)
    # A dynamically configured step has no path: its compensation keeps its configuration.
    path = None if step.path is None or step.dynamic_task is not None else step.path
    task = scheduler.schedule(
        ctx,
        wf,
        cwt,
        None if path is None else [*path, "compensateWith", j],
        suffix,
        retry_of=retry_of,
        delay_s=delay_s,
        given_input=task_input if isinstance(task_input, dict) else {},
    )
    if task is not None:
        ctx.emit(E.CompensationScheduled(task.task_id, step.task_id))
    return task


def _failed(ctx: Ctx, wf: Workflow, step: Task, cwt: JSON, j: int, suffix: str, task: Task) -> None:
    """A compensation ended unsuccessfully: retried by its own retry policy, else the saga
    fails (FAILED, naming it)."""
    if task.status in T_RETRIABLE and task.retry_count < task.retry_limit and not task.retried:
        ctx.emit(E.TaskRetried(task.task_id))
        delay = tasks.retry_delay_seconds(task)
        if _schedule(ctx, wf, step, cwt, j, suffix, task, delay) is not None:
            _walk(ctx, wf)
        return
    reason = (
        f"task {task.reference_task_name} ({task.task_id}) {task.status}: "
        f"{task.reason_for_incompletion}"
    )
    workflows.end_workflow(ctx, wf, WF_FAILED, reason, failed_task=task)


def _finish(ctx: Ctx, wf: Workflow) -> None:
    failed = ctx.st.tasks.get(wf.saga_failed_task) if wf.saga_failed_task else None
    workflows.end_workflow(
        ctx, wf, WF_COMPENSATED, wf.reason_for_incompletion, failed_task=failed, output=wf.output
    )


# ---------------------------------------------------------------- the end


def failed_reason(wf: Workflow, reason: str) -> str:
    """The reason of a saga that failed: what failed, and what it was compensating."""
    return (
        f"compensation failed: {reason} (compensating {wf.saga_status}: "
        f"{wf.reason_for_incompletion})"
    )


def starts_failure_workflow(wf: Workflow, status: WorkflowStatus) -> bool:
    """Whether ending `wf` with `status` starts its definition's failureWorkflow: a failure
    (FAILED, TIMED_OUT) does; a saga defers it to its end, and starts it when the failure
    started the saga or the compensation itself failed."""
    if wf.status is WF_COMPENSATING:
        return status is WF_FAILED or (status is WF_COMPENSATED and wf.saga_failure_workflow)
    return status in FAILING


def check_not_compensated(wf: Workflow, verb: str) -> None:
    """Retry and rerun from a task go on from the forward run's tasks, which a compensation
    has undone: refused once one ran (restart starts over)."""
    if wf.saga_status:
        raise precondition(
            f"workflow {wf.workflow_id} was compensated and cannot be {verb}: restart it, or "
            "compensate it again"
        )
