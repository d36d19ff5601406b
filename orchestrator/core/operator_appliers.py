"""Appliers of the operator's actions (events of processors/operations.py), and the bookkeeping
they share with a workflow's start: the definitions workflows run (shared by content, counted)
and the running workflows of a chain. Like appliers.py (which maps these events here), every
write first journals its inverse."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import admission_appliers as A
from . import events as E
from . import journal as J
from .records import (
    T_IN_PROGRESS,
    WF_COMPENSATING,
    WF_LIVE,
    WF_PAUSED,
    WF_RUNNING,
    WORKFLOW_TIMEOUT_TIMER,
    DefSnapshot,
    idempotency_index_key,
)

if TYPE_CHECKING:
    from .context import Ctx

JSON = Any


def _set(ctx: Ctx, record: Any, name: str, value: Any) -> None:
    ctx.undo.append((J.restore, record, (name,), (getattr(record, name),)))
    setattr(record, name, value)


def ref_definition(ctx: Ctx, key: str, definition: JSON, task_defs: dict[str, JSON]) -> None:
    """One more workflow runs the definition shared under `key` (kept from the first)."""
    st, u = ctx.st, ctx.undo
    entry = st.def_snapshots.get(key)
    if entry is None:
        entry = DefSnapshot(definition, task_defs, 0)
        J.set_key(u, st.def_snapshots, key, entry)
    u.append((J.restore, entry, ("refs",), (entry.refs,)))
    entry.refs += 1


def unref_definition(ctx: Ctx, key: str) -> None:
    entry = ctx.st.def_snapshots.get(key)
    if entry is None:
        return
    if entry.refs <= 1:
        J.pop_key(ctx.undo, ctx.st.def_snapshots, key)
    else:
        _set(ctx, entry, "refs", entry.refs - 1)


def chain_member_running(ctx: Ctx, chain_root: str, started: int) -> None:
    """A workflow of the chain under `chain_root` runs (started: newly started, 1, or 0 when
    it runs again)."""
    st = ctx.st
    root = st.workflows.get(chain_root)
    # A chain's first child counts its root (and the root as running if it still is).
    had, running = st.chains.get(chain_root, (1, int(root is not None and root.status in WF_LIVE)))
    J.set_key(ctx.undo, st.chains, chain_root, (had + started, running + 1))


def workflow_paused(ctx: Ctx, ev: E.WorkflowPaused) -> None:
    _set(ctx, ctx.st.workflows[ev.workflow_id], "status", WF_PAUSED)


def workflow_resumed(ctx: Ctx, ev: E.WorkflowResumed) -> None:
    _set(ctx, ctx.st.workflows[ev.workflow_id], "status", WF_RUNNING)


def workflow_restored(ctx: Ctx, ev: E.WorkflowRestored) -> None:
    st, wf, u = ctx.st, ev.workflow, ctx.undo
    ref_definition(ctx, wf.def_hash, ev.definition, ev.task_defs)
    J.set_key(u, st.workflows, wf.workflow_id, wf)
    for t in ev.tasks:
        J.set_key(u, st.tasks, t.task_id, t)
    J.set_key(u, st.terminal_order, wf.workflow_id, None)
    if ev.idempotency_key:
        J.set_key(u, st.idempotency, ev.idempotency_key, wf.workflow_id)


_REOPENED_WF = ("status", "end_time_ms", "reason_for_incompletion", "output", "start_time_ms")


def workflow_reopened(ctx: Ctx, ev: E.WorkflowReopened) -> None:
    st = ctx.st
    wf = st.workflows[ev.workflow_id]
    J.pop_key(ctx.undo, st.terminal_order, ev.workflow_id)
    old = (wf.status, wf.end_time_ms, wf.reason_for_incompletion, wf.output, wf.start_time_ms)
    ctx.undo.append((J.restore, wf, _REOPENED_WF, old))
    wf.status = WF_RUNNING
    wf.end_time_ms = 0
    wf.reason_for_incompletion = ""
    wf.output = {}
    wf.start_time_ms = st.clock_ms
    A.status_changed(ctx, wf, old[0])
    if wf.chain_root:
        chain_member_running(ctx, wf.chain_root, 0)
    else:  # a chain root is counted only while its chain has an entry
        entry = st.chains.get(wf.workflow_id)
        if entry is not None:
            J.set_key(ctx.undo, st.chains, wf.workflow_id, (entry[0], entry[1] + 1))


_WF_RESET = ("def_hash", "workflow_version", "input", "variables", "create_time_ms")


def workflow_reset(ctx: Ctx, ev: E.WorkflowReset) -> None:
    wf = ctx.st.workflows[ev.workflow_id]
    if ev.def_hash != wf.def_hash:
        ref_definition(ctx, ev.def_hash, ev.definition, ev.task_defs)
        unref_definition(ctx, wf.def_hash)
    old = (wf.def_hash, wf.workflow_version, wf.input, wf.variables, wf.create_time_ms)
    ctx.undo.append((J.restore, wf, _WF_RESET, old))
    wf.def_hash = ev.def_hash
    wf.workflow_version = ev.definition["version"]
    wf.input = ev.input
    wf.variables = ev.variables
    wf.create_time_ms = ctx.st.clock_ms
    if wf.saga_status:  # a fresh run has no compensation behind it
        _set_saga(ctx, wf, "", [], 0, False, "")


def workflow_input_set(ctx: Ctx, ev: E.WorkflowInputSet) -> None:
    _set(ctx, ctx.st.workflows[ev.workflow_id], "input", ev.input)


def tasks_dropped(ctx: Ctx, ev: E.TasksDropped) -> None:
    st, u = ctx.st, ctx.undo
    wf = st.workflows[ev.workflow_id]
    # Tasks of an ended workflow: ended themselves, so out of every queue, their timers gone.
    for tid in ev.task_ids:
        J.pop_key(u, st.tasks, tid)
    drop = dict.fromkeys(ev.task_ids)
    _set(ctx, wf, "tasks", [t for t in wf.tasks if t not in drop])
    _set(ctx, wf, "ref_index", dict(ev.ref_index))
    # The dropped attempts may have been permissive failures.
    _set(ctx, wf, "permissive_failures", [t for t in wf.permissive_failures if t not in drop])


_REOPENED = ("status", "end_time_ms", "reason_for_incompletion")


def task_reopened(ctx: Ctx, ev: E.TaskReopened) -> None:
    task = ctx.st.tasks[ev.task_id]
    old = (task.status, task.end_time_ms, task.reason_for_incompletion)
    ctx.undo.append((J.restore, task, _REOPENED, old))
    task.status = T_IN_PROGRESS
    task.end_time_ms = 0
    task.reason_for_incompletion = ""


def permissive_failures_forgotten(ctx: Ctx, ev: E.PermissiveFailuresForgotten) -> None:
    st = ctx.st
    wf = st.workflows[ev.workflow_id]
    gone = dict.fromkeys(ev.task_ids)
    _set(ctx, wf, "permissive_failures", [t for t in wf.permissive_failures if t not in gone])
    for tid in ev.task_ids:
        _set(ctx, st.tasks[tid], "permissive_failed", False)


def workflow_detached(ctx: Ctx, ev: E.WorkflowDetached) -> None:
    wf = ctx.st.workflows[ev.workflow_id]
    names = ("parent_workflow_id", "parent_workflow_task_id")
    ctx.undo.append((J.restore, wf, names, (wf.parent_workflow_id, wf.parent_workflow_task_id)))
    wf.parent_workflow_id = ""
    wf.parent_workflow_task_id = ""


def workflow_removed(ctx: Ctx, ev: E.WorkflowRemoved) -> None:
    st, u = ctx.st, ctx.undo
    J.pop_key(u, st.terminal_order, ev.workflow_id)
    wf = J.pop_key(u, st.workflows, ev.workflow_id)
    if wf is None:
        return
    for tid in wf.tasks:
        J.pop_key(u, st.tasks, tid)
    unref_definition(ctx, wf.def_hash)
    key = idempotency_index_key(wf.workflow_name, wf.idempotency_key)
    if key and st.idempotency.get(key) == ev.workflow_id:
        J.pop_key(u, st.idempotency, key)


# ---------------------------------------------------------------- sagas (processors/compensation.py)

_SAGA = ("saga_status", "saga_steps", "saga_seq", "saga_failure_workflow", "saga_failed_task")


def _set_saga(
    ctx: Ctx, wf: Any, status: str, steps: list[str], seq: int, failure_wf: bool, failed: str
) -> None:
    old = (
        wf.saga_status,
        wf.saga_steps,
        wf.saga_seq,
        wf.saga_failure_workflow,
        wf.saga_failed_task,
    )
    ctx.undo.append((J.restore, wf, _SAGA, old))
    wf.saga_status = status
    wf.saga_steps = steps
    wf.saga_seq = seq
    wf.saga_failure_workflow = failure_wf
    wf.saga_failed_task = failed


def compensation_started(ctx: Ctx, ev: E.CompensationStarted) -> None:
    from .appliers import clear_timer  # appliers imports this module

    wf = ctx.st.workflows[ev.workflow_id]
    # The workflow timeout does not fire while compensating.
    clear_timer(ctx, WORKFLOW_TIMEOUT_TIMER + ev.workflow_id)
    old = (wf.status, wf.reason_for_incompletion, wf.output)
    ctx.undo.append((J.restore, wf, ("status", "reason_for_incompletion", "output"), old))
    wf.status = WF_COMPENSATING
    wf.reason_for_incompletion = ev.reason
    wf.output = ev.output
    A.status_changed(ctx, wf, old[0])  # a terminal workflow compensating runs again
    steps = list(ev.steps)
    _set_saga(ctx, wf, ev.from_status, steps, ctx.st.seq, ev.failure_workflow, ev.failed_task_id)
    ctx.fx.timers_changed = True


def compensation_scheduled(ctx: Ctx, ev: E.CompensationScheduled) -> None:
    _set(ctx, ctx.st.tasks[ev.task_id], "compensates", ev.step_id)
