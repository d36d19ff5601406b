"""Timers: a Tick fires every timer due at the cluster time it carries (leases, delayed starts,
WAIT, task and workflow timeouts, parked polls), and a task timeout applies its policy."""

from __future__ import annotations

from typing import Any, assert_never

from .. import events as E
from ..commands import Tick
from ..context import Ctx
from ..records import (
    T_ACTIVE,
    T_COMPLETED,
    T_IN_PROGRESS,
    T_SCHEDULED,
    T_TIMED_OUT,
    TIMER_KIND_OF,
    WF_LIVE,
    WF_TIMED_OUT,
    Task,
    TaskType,
    TimeoutPolicy,
    TimerKind,
    Workflow,
)
from . import decider, flow, registry, retention, tasks, workflows

JSON = Any


def tick(ctx: Ctx, cmd: Tick) -> dict[str, JSON]:
    st = ctx.st
    keys = st.take_due(ctx.now)
    if keys:
        ctx.emit(E.TimersFired(keys))
    for key in keys:
        kind_name, _, ident = key.partition(":")
        kind = TIMER_KIND_OF.get(kind_name)
        if kind is TimerKind.POLL:  # a parked poll's wait ended with nothing for it
            if ident in st.parked:
                ctx.emit(E.PollSettled(ident))
        elif kind is TimerKind.HISTORY:  # the durable history's retention
            retention.expire(ctx)
        elif kind is TimerKind.RATE:  # a queue's rate window moved on
            flow.recheck(ctx, ident)
        elif kind is TimerKind.WORKFLOW_TIMEOUT:  # the workflow's timeoutSeconds (TIME_OUT_WF)
            wf = st.workflows.get(ident)
            if wf is not None and wf.status in WF_LIVE:
                _guarded(ctx, key, wf, None, kind)
        elif kind is not None:
            task = st.tasks.get(ident)
            wf = st.workflows.get(task.workflow_id) if task is not None else None
            if wf is not None and wf.status in WF_LIVE:
                _guarded(ctx, key, wf, task, kind)
    ctx.fx.timers_changed = True
    return {"fired": len(keys)}


def _guarded(ctx: Ctx, key: str, wf: Workflow, task: Task | None, kind: TimerKind) -> None:
    """Fire one timer; a bug in it quarantines its workflow instead of losing the others (what
    the timer had changed is undone first)."""
    mark = ctx.mark()
    try:
        if task is None:
            secs = registry.wf_def(ctx.st, wf).get("timeoutSeconds", 0)
            reason = f"workflow timeoutSeconds ({secs}s) elapsed"
            workflows.end_workflow(ctx, wf, WF_TIMED_OUT, reason)
        else:
            _fire(ctx, kind, wf, task)
        workflows.drain(ctx)
    except Exception as exc:
        ctx.rollback(mark)
        workflows.quarantine_workflow(
            ctx, wf, f"internal error firing timer {key}: {type(exc).__name__}: {exc}"
        )


def _fire(ctx: Ctx, kind: TimerKind, wf: Workflow, task: Task) -> None:
    status = task.status
    match kind:
        case TimerKind.LEASE:
            if status == T_IN_PROGRESS:
                reason = (
                    f"responseTimeoutSeconds ({task.response_timeout_seconds}s) elapsed "
                    "without a result or heartbeat"
                )
                tasks.end_task(ctx, task, T_TIMED_OUT, reason=reason)
                tasks.handle_failure(ctx, wf, task)
        case TimerKind.READY:
            if status == T_SCHEDULED:
                tasks.enqueue(ctx, task)
        case TimerKind.WAIT:
            if status == T_IN_PROGRESS and task.type is TaskType.WAIT:
                tasks.end_task(ctx, task, T_COMPLETED, output=task.output)
                decider.decide(ctx, wf)
        case TimerKind.TIMEOUT:
            if status in T_ACTIVE:
                reason = f"timeoutSeconds ({task.timeout_seconds}s) elapsed"
                timeout_task(ctx, wf, task, reason)
        case TimerKind.POLL_TIMEOUT:
            if status == T_SCHEDULED:
                reason = f"pollTimeoutSeconds ({task.poll_timeout_seconds}s) elapsed without a poll"
                timeout_task(ctx, wf, task, reason)
        case TimerKind.TOTAL_TIMEOUT:
            if status in T_ACTIVE:
                reason = f"totalTimeoutSeconds ({task.total_timeout_seconds}s) elapsed"
                timeout_task(ctx, wf, task, reason, stop_retries=True)
        case TimerKind.POLL | TimerKind.WORKFLOW_TIMEOUT | TimerKind.HISTORY | TimerKind.RATE:
            pass  # not a task's timer (fired in tick)
        case _ as unreachable:
            assert_never(unreachable)


def timeout_task(
    ctx: Ctx, wf: Workflow, task: Task, reason: str, stop_retries: bool = False
) -> None:
    """A task timeout fired: apply the task's timeoutPolicy, as Conductor's decider does.

    RETRY: the attempt is TIMED_OUT and retried while retries remain (a total timeout stops
    retries). TIME_OUT_WF: the attempt is TIMED_OUT and the workflow ends TIMED_OUT.
    ALERT_ONLY: the task goes on; the timeout is only recorded on it (`timeout_alerts`).
    """
    policy = task.timeout_policy
    match policy:
        case TimeoutPolicy.ALERT_ONLY:
            ctx.emit(E.TaskTimeoutAlerted(task.task_id))
        case TimeoutPolicy.TIME_OUT_WF:
            tasks.end_task(ctx, task, T_TIMED_OUT, reason=reason)
            workflows.end_workflow(
                ctx,
                wf,
                WF_TIMED_OUT,
                f"task {task.reference_task_name} ({task.task_id}) TIMED_OUT: {reason}",
                failed_task=task,
            )
        case TimeoutPolicy.RETRY:
            tasks.end_task(ctx, task, T_TIMED_OUT, reason=reason)
            if stop_retries:
                ctx.emit(E.TaskRetriesStopped(task.task_id))
            tasks.handle_failure(ctx, wf, task)
        case _ as unreachable:
            assert_never(unreachable)
