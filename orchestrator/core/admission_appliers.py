"""The counts behind workflow-level limits (processors/admission.py), kept by the appliers.

State.running, State.running_by_correlation and State.queued are derived from the workflows'
statuses (State.rebuild_admission builds them on load): every applier that changes a workflow's
status calls `status_changed` afterwards, journaled like any write. The two count tables are
only looked up, never iterated, so a key deleted and put back by a rollback may change place
(no scan for its position on the hot path); a name's QUEUED workflows keep their start order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import events as E
from . import journal as J
from . import subscription_appliers as S
from .records import WF_QUEUED, WF_RUNNING, WF_RUNS, Workflow, WorkflowStatus, admission_key

if TYPE_CHECKING:
    from .context import Ctx


def status_changed(ctx: Ctx, wf: Workflow, old: WorkflowStatus | None) -> None:
    """wf.status was just set (from `old`; None: the workflow is new)."""
    new = wf.status
    if old is new:
        return
    S.workflow_changed(ctx, wf)
    runs = new in WF_RUNS
    if (old in WF_RUNS) != runs:
        _count(ctx, wf, 1 if runs else -1)
    if old is WF_QUEUED:
        _unqueue(ctx, wf)
    elif new is WF_QUEUED:
        queue = ctx.st.queued.get(wf.workflow_name)
        if queue is None:
            queue = {}
            J.set_key(ctx.undo, ctx.st.queued, wf.workflow_name, queue)
        J.set_key(ctx.undo, queue, wf.workflow_id, (wf.def_hash, wf.correlation_id))


def _add(u: J.Undo, counts: dict[str, int], key: str, delta: int) -> None:
    old = counts.get(key, J.MISSING)
    u.append((J.put_back, counts, key, old))
    n = (0 if old is J.MISSING else old) + delta
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)


def _count(ctx: Ctx, wf: Workflow, delta: int) -> None:
    st, u, name = ctx.st, ctx.undo, wf.workflow_name
    _add(u, st.running, name, delta)
    key = admission_key(name, wf.correlation_id)
    if key:
        _add(u, st.running_by_correlation, key, delta)
    # A slot freed: the command's drain starts the QUEUED ones that fit (as _task_queued
    # notes the queues parked polls wait on).
    if delta < 0 and name in st.queued and name not in ctx.freed:
        ctx.freed.append(name)


def _unqueue(ctx: Ctx, wf: Workflow) -> None:
    st = ctx.st
    queue = st.queued.get(wf.workflow_name)
    if queue is None:
        return
    J.pop_key(ctx.undo, queue, wf.workflow_id)
    if not queue:
        ctx.undo.append((J.put_back, st.queued, wf.workflow_name, queue))
        del st.queued[wf.workflow_name]


_ADMITTED = ("status", "start_time_ms")


def workflow_admitted(ctx: Ctx, ev: E.WorkflowAdmitted) -> None:
    wf = ctx.st.workflows[ev.workflow_id]
    ctx.undo.append((J.restore, wf, _ADMITTED, (wf.status, wf.start_time_ms)))
    old = wf.status
    wf.status = WF_RUNNING
    wf.start_time_ms = ctx.st.clock_ms
    status_changed(ctx, wf, old)
