"""Tasks and their queues: leasing, results from workers and the API (complete, fail,
heartbeat), and what a failure leads to (a retry, a tolerated failure, or the workflow's end)."""

from __future__ import annotations

from typing import Any, assert_never

from .. import events as E
from .. import limits
from ..commands import CompleteTask, FailTask, HeartbeatTask
from ..context import Ctx
from ..errors import denied, invalid, not_found, precondition
from ..records import (
    T_ACTIVE,
    T_CANCELED,
    T_COMPLETED,
    T_FAILED,
    T_FAILED_WITH_TERMINAL_ERROR,
    T_IN_PROGRESS,
    T_RETRIABLE,
    T_SCHEDULED,
    T_TIMED_OUT,
    WF_COMPENSATING,
    WF_FAILED,
    WF_LIVE,
    WF_RUNNING,
    WF_TERMINATED,
    WF_TIMED_OUT,
    RetryLogic,
    Task,
    TaskStatus,
    TaskType,
    Workflow,
    queue_key,
)
from . import compensation, decider, event_task, flow, registry, scheduler, workflows

JSON = Any

# Tasks a worker or the API may end (a signal): worker tasks, WAIT/HUMAN/WAIT_FOR_EVENT gates,
# and EVENT/HTTP tasks with asyncComplete once their work is done (event_task.async_complete).
EXTERNAL_TYPES = (TaskType.SIMPLE, TaskType.WAIT, TaskType.HUMAN, TaskType.WAIT_FOR_EVENT)


def end_task(
    ctx: Ctx,
    task: Task,
    status: TaskStatus,
    output: JSON = None,
    reason: str = "",
    worker_id: str = "",
) -> None:
    ctx.emit(E.TaskEnded(task.task_id, status, output, reason, worker_id))


def fail_now(ctx: Ctx, task: Task, reason: str) -> None:
    """The task cannot run: it fails terminally and the walk handles the failure."""
    end_task(ctx, task, T_FAILED_WITH_TERMINAL_ERROR, reason=reason)
    if task.task_id not in ctx.failed:
        ctx.failed.append(task.task_id)


def enqueue(ctx: Ctx, task: Task) -> None:
    wf = ctx.st.workflows.get(task.workflow_id)
    priority = wf.priority if wf is not None else 0
    ctx.emit(E.TaskQueued(task.task_id, queue_key(task.task_type, task.domain), priority))


def lease(ctx: Ctx, queue_name: str, worker_id: str, count: int, owner: str = "") -> list[str]:
    """Lease up to `count` ready tasks of a queue to a worker (owned by the polling principal),
    by effective priority, as many as the queue's limits allow (processors/flow.py)."""
    st = ctx.st
    queue = st.queues.get(queue_name)
    if not queue:
        return []
    lim = flow.limits_of(st, queue_name)
    if lim is not flow.NO_LIMITS:
        count = flow.room(st, queue_name, count, lim)
    window_ms = lim[2] if lim[1] else 0
    leased: list[str] = []
    now = ctx.now
    while queue and len(leased) < count:
        task_id = flow.head(queue, now)
        task = st.tasks.get(task_id)
        if task is None or task.status != T_SCHEDULED:
            ctx.emit(E.QueueEntryDropped(queue_name, task_id))
            continue
        ctx.emit(E.TaskLeased(task_id, queue_name, worker_id, owner, window_ms))
        leased.append(task_id)
    if window_ms:
        flow.arm_rate_timer(ctx, queue_name, lim)
    return leased


# ---------------------------------------------------------------- results


def _resolve_task_id(ctx: Ctx, cmd: CompleteTask | FailTask) -> str:
    """The task a result names: by id, or by workflow id and reference (the latest attempt)."""
    if cmd.task_id:
        return cmd.task_id
    if not (cmd.workflow_id and cmd.reference_task_name):
        raise invalid("task_id, or workflow_id and reference_task_name: required")
    wf = ctx.st.workflows.get(cmd.workflow_id)
    if wf is None:
        raise not_found(f"workflow {cmd.workflow_id} not found")
    task_id = wf.ref_index.get(cmd.reference_task_name)
    if task_id is None:
        raise not_found(
            f"workflow {cmd.workflow_id} has no task with reference {cmd.reference_task_name!r}"
        )
    return str(task_id)


def _active_task(ctx: Ctx, task_id: str, verb: str) -> tuple[Task, Workflow]:
    task = ctx.st.tasks.get(task_id)
    if task is None:
        raise not_found(f"task {task_id} not found")
    if task.status not in T_ACTIVE:
        raise precondition(
            f"task {task_id} is {task.status}: a late or duplicate {verb} is not applied"
        )
    wf = ctx.st.workflows[task.workflow_id]
    if wf.status not in WF_LIVE:  # a PAUSED workflow's tasks in progress run on
        raise precondition(f"workflow {wf.workflow_id} is {wf.status}")
    return task, wf


def _check_owner(task: Task, principal: str, verb: str) -> None:
    """A leased task answers only to the principal that leased it. An unauthenticated caller
    ("") is not checked: without authentication every caller may do everything."""
    owner = task.lease_owner
    if owner and principal and principal != owner:
        raise denied(
            f"task {task.task_id} is leased to another principal; {principal} may not {verb} it"
        )


def _check_external(ctx: Ctx, wf: Workflow, task: Task, verb: str) -> None:
    if task.type in EXTERNAL_TYPES:
        return
    waiting = task.status == T_IN_PROGRESS and task.script is None
    if not (waiting and event_task.async_complete(ctx.st, wf, task)):
        raise precondition(
            f"task {task.task_id} is a {task.type} task run by the orchestrator and cannot "
            f"be {verb} through the API"
        )


def complete_task(ctx: Ctx, cmd: CompleteTask) -> dict[str, JSON]:
    if not isinstance(cmd.output, dict):
        raise invalid("output_json: must be a JSON object")
    task, wf = _active_task(ctx, _resolve_task_id(ctx, cmd), "completion")
    _check_external(ctx, wf, task, "completed")
    _check_owner(task, cmd.principal, "complete")
    end_task(ctx, task, T_COMPLETED, output=cmd.output, worker_id=cmd.worker_id)
    decider.decide(ctx, wf)
    return {}


def fail_task(ctx: Ctx, cmd: FailTask) -> dict[str, JSON]:
    if not isinstance(cmd.output, dict):
        raise invalid("output_json: must be a JSON object")
    task, wf = _active_task(ctx, _resolve_task_id(ctx, cmd), "failure")
    _check_external(ctx, wf, task, "failed")
    _check_owner(task, cmd.principal, "fail")
    status = T_FAILED_WITH_TERMINAL_ERROR if cmd.terminal else T_FAILED
    reason = cmd.reason[: limits.MAX_REASON_LENGTH]
    end_task(ctx, task, status, output=cmd.output, reason=reason)
    handle_failure(ctx, wf, task)
    return {}


def heartbeat_task(ctx: Ctx, cmd: HeartbeatTask) -> dict[str, JSON]:
    task, _ = _active_task(ctx, cmd.task_id, "heartbeat")
    if task.status != T_IN_PROGRESS or task.type is not TaskType.SIMPLE:
        raise precondition(f"task {cmd.task_id} is {task.status}, not leased to a worker")
    _check_owner(task, cmd.principal, "heartbeat")
    ctx.emit(E.LeaseExtended(task.task_id))
    return {"lease_expires_ms": task.lease_expires_ms}


# ---------------------------------------------------------------- failures


def retry_delay_seconds(task: Task) -> int:
    """Conductor's backoff, from the failed attempt's retryCount."""
    base = task.retry_delay_seconds
    n = task.retry_count
    delay: float
    match task.retry_logic:
        case RetryLogic.EXPONENTIAL_BACKOFF:
            delay = base * (2 ** min(n, 30))
        case RetryLogic.LINEAR_BACKOFF:
            delay = base * task.backoff_scale_factor * (n + 1)
        case RetryLogic.FIXED:
            delay = base
        case _ as unreachable:
            assert_never(unreachable)
    cap = task.max_retry_delay_seconds or limits.MAX_DELAY_SECONDS
    return int(min(delay, cap))


_WF_END_OF = {
    T_TIMED_OUT: WF_TIMED_OUT,
    T_CANCELED: WF_TERMINATED,
}


def new_attempt(ctx: Ctx, wf: Workflow, task: Task, delay_s: int = 0) -> None:
    """A new attempt replaces an ended one (a retry; an operator's retry)."""
    ctx.emit(E.TaskRetried(task.task_id))
    wt = registry.wt_of(ctx.st, wf, task)
    suffix = task.reference_task_name[len(wt["taskReferenceName"]) :]
    scheduler.schedule(ctx, wf, wt, task.path, suffix, retry_of=task, delay_s=delay_s)


def handle_failure(ctx: Ctx, wf: Workflow, task: Task) -> None:
    """A task ended unsuccessfully: retry it while retries remain, tolerate it (optional,
    permissive), or end the workflow."""
    if wf.status != WF_RUNNING:
        if wf.status is WF_COMPENSATING:  # a compensation's own retries (compensation.py)
            compensation.advance(ctx, wf)
        return
    if task.status in T_RETRIABLE and task.retry_count < task.retry_limit:
        new_attempt(ctx, wf, task, retry_delay_seconds(task))
        decider.decide(ctx, wf)
        return
    if task.optional:
        ctx.emit(E.FailureTolerated(task.task_id))
        decider.decide(ctx, wf)
        return
    if task.permissive:
        # Conductor's permissive task: its failure stops neither its siblings nor the tasks
        # after it; the workflow fails when it would otherwise complete.
        ctx.emit(E.PermissiveFailureRecorded(wf.workflow_id, task.task_id))
        decider.decide(ctx, wf)
        return
    workflows.end_workflow(
        ctx,
        wf,
        _WF_END_OF.get(task.status, WF_FAILED),
        f"task {task.reference_task_name} ({task.task_id}) {task.status}: "
        f"{task.reason_for_incompletion}",
        failed_task=task,
    )
