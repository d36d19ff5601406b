"""Appliers: one small function per event, and the only code that changes the state.

Each applies what its event says happened; none decides anything (the processors did). They
also note the effects the shell acts on after the batch (queues with work, timers changed, ...).
Every write first records its inverse in the command's undo journal (`ctx.undo`, journal.py):
`u.append((J.restore, record, NAMES, (old values)))` before attributes change, J.set_key /
J.pop_key / J.update for dicts, `(list.pop, lst)` for an append.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import admission_appliers as A
from . import eventlog_appliers as EL
from . import events as E
from . import history_ops as H
from . import journal as J
from . import limits
from . import message_appliers as M
from . import operator_appliers as O
from . import queue_appliers as Q
from . import subscription_appliers as S
from .records import (
    HISTORY_TIMER,
    LEASE_TIMER,
    POLL_TIMEOUT_TIMER,
    POLL_TIMER,
    T_CANCELED,
    T_COMPLETED_WITH_ERRORS,
    T_IN_PROGRESS,
    T_SCHEDULED,
    TASK_TIMERS,
    TIMEOUT_TIMER,
    WAIT_TIMER,
    WF_FAILED,
    WF_LIVE,
    WF_TERMINATED,
    WORKFLOW_TIMEOUT_TIMER,
    Member,
    Task,
    TaskStatus,
    TaskType,
    Workflow,
    idempotency_index_key,
    queue_key,
)
from .state import State

if TYPE_CHECKING:
    from .context import Ctx

JSON = Any
_SIMPLE = TaskType.SIMPLE


# ---------------------------------------------------------------- bookkeeping of the engine


def advance_clock(st: State, now_ms: int) -> None:
    """Cluster time never goes back, whatever the leader stamped."""
    if now_ms > st.clock_ms:
        st.clock_ms = now_ms


def next_seq(st: State) -> int:
    st.seq += 1
    return st.seq


# ---------------------------------------------------------------- cluster


def _epoch_raised(ctx: Ctx, ev: E.EpochRaised) -> None:
    st = ctx.st
    ctx.undo.append((J.restore, st, ("epoch",), (st.epoch,)))
    st.epoch = ev.term


def _member_set(ctx: Ctx, ev: E.MemberSet) -> None:
    J.set_key(ctx.undo, ctx.st.members, ev.node_id, Member(ev.raft, ev.grpc, False))


def _member_removed(ctx: Ctx, ev: E.MemberRemoved) -> None:
    m = ctx.st.members.get(ev.node_id)
    if m is None:  # a configured replica: not in the table until removed
        J.set_key(ctx.undo, ctx.st.members, ev.node_id, Member("", "", True))
    else:
        ctx.undo.append((J.restore, m, ("removed",), (m.removed,)))
        m.removed = True


def _request_recorded(ctx: Ctx, ev: E.RequestRecorded) -> None:
    J.set_key(ctx.undo, ctx.st.requests, ev.request_id, ev.record)


def _requests_expired(ctx: Ctx, ev: E.RequestsExpired) -> None:
    reqs, u = ctx.st.requests, ctx.undo
    for _ in range(ev.count):
        key, record = reqs.popitem(last=False)
        u.append((J.insert_at, reqs, key, record, 0))


# ---------------------------------------------------------------- definitions


def _task_defs_registered(ctx: Ctx, ev: E.TaskDefsRegistered) -> None:
    for d in ev.task_defs:
        J.set_key(ctx.undo, ctx.st.task_defs, d["name"], d)


def _workflow_def_registered(ctx: Ctx, ev: E.WorkflowDefRegistered) -> None:
    d, defs = ev.definition, ctx.st.workflow_defs
    versions = defs.get(d["name"])
    if versions is None:
        versions = {}
        J.set_key(ctx.undo, defs, d["name"], versions)
    J.set_key(ctx.undo, versions, str(d["version"]), d)


# ---------------------------------------------------------------- workflows


def _workflow_started(ctx: Ctx, ev: E.WorkflowStarted) -> None:
    st, wf, u = ctx.st, ev.workflow, ctx.undo
    O.ref_definition(ctx, wf.def_hash, ev.definition, ev.task_defs)
    J.set_key(u, st.workflows, wf.workflow_id, wf)
    if wf.chain_root:
        O.chain_member_running(ctx, wf.chain_root, 1)
    A.status_changed(ctx, wf, None)


def _chain_member_ended(ctx: Ctx, wf: Workflow) -> None:
    key = wf.chain_root or wf.workflow_id
    entry = ctx.st.chains.get(key)
    if entry is None:
        return
    if entry[1] <= 1:
        J.pop_key(ctx.undo, ctx.st.chains, key)
    else:
        J.set_key(ctx.undo, ctx.st.chains, key, (entry[0], entry[1] - 1))


def _idempotency_key_recorded(ctx: Ctx, ev: E.IdempotencyKeyRecorded) -> None:
    J.set_key(ctx.undo, ctx.st.idempotency, ev.key, ev.workflow_id)


_WF_END = ("status", "end_time_ms", "reason_for_incompletion", "output")


def _workflow_ended(ctx: Ctx, ev: E.WorkflowEnded) -> None:
    st = ctx.st
    clear_timer(ctx, WORKFLOW_TIMEOUT_TIMER + ev.workflow_id)
    wf = st.workflows[ev.workflow_id]
    old = (wf.status, wf.end_time_ms, wf.reason_for_incompletion, wf.output)
    ctx.undo.append((J.restore, wf, _WF_END, old))
    if wf.status in WF_LIVE:
        _chain_member_ended(ctx, wf)
    wf.status = ev.status
    wf.end_time_ms = st.clock_ms
    wf.reason_for_incompletion = ev.reason
    wf.output = ev.output
    A.status_changed(ctx, wf, old[0])
    ctx.fx.ended_workflows.append(ev.workflow_id)


def _workflow_output_set(ctx: Ctx, ev: E.WorkflowOutputSet) -> None:
    wf = ctx.st.workflows[ev.workflow_id]
    ctx.undo.append((J.restore, wf, ("output",), (wf.output,)))
    wf.output = ev.output


def _workflow_end_recorded(ctx: Ctx, ev: E.WorkflowEndRecorded) -> None:
    J.set_key(ctx.undo, ctx.st.terminal_order, ev.workflow_id, None)


def _workflow_reterminated(ctx: Ctx, ev: E.WorkflowReterminated) -> None:
    wf = ctx.st.workflows[ev.workflow_id]
    old = (wf.status, wf.reason_for_incompletion)
    ctx.undo.append((J.restore, wf, ("status", "reason_for_incompletion"), old))
    wf.status = WF_TERMINATED
    wf.reason_for_incompletion = ev.reason
    S.workflow_changed(ctx, wf)  # terminal to terminal: no count changes, but watchers see it


def _workflow_quarantined(ctx: Ctx, ev: E.WorkflowQuarantined) -> None:
    st = ctx.st
    wf = st.workflows[ev.workflow_id]
    old = (wf.status, wf.reason_for_incompletion, wf.end_time_ms)
    ctx.undo.append((J.restore, wf, ("status", "reason_for_incompletion", "end_time_ms"), old))
    if wf.status in WF_LIVE:
        _chain_member_ended(ctx, wf)
    wf.status = WF_FAILED
    wf.reason_for_incompletion = ev.reason
    wf.end_time_ms = st.clock_ms
    A.status_changed(ctx, wf, old[0])
    for tid in wf.tasks:
        t = st.tasks.get(tid)
        if t is not None and t.status in (T_SCHEDULED, T_IN_PROGRESS):
            try:  # as any end does: out of its queue, its timers cleared
                _end_task(ctx, t, T_CANCELED, None, ev.reason)
            except Exception:
                ctx.undo.append((J.restore, t, ("status",), (t.status,)))
                t.status = T_CANCELED
    # Retention evicts it like any ended workflow; waiters hear of its end.
    J.set_key(ctx.undo, st.terminal_order, ev.workflow_id, None)
    ctx.fx.ended_workflows.append(ev.workflow_id)


def _variables_set(ctx: Ctx, ev: E.VariablesSet) -> None:
    J.update(ctx.undo, ctx.st.workflows[ev.workflow_id].variables, ev.values)


def _workflow_evicted(ctx: Ctx, ev: E.WorkflowEvicted) -> None:
    # Not journaled: eviction runs between commands, never inside one (processors/retention.py).
    st = ctx.st
    st.terminal_order.pop(ev.workflow_id, None)
    wf = st.workflows.pop(ev.workflow_id, None)
    if wf is None:
        return
    tasks = [t for tid in wf.tasks if (t := st.tasks.pop(tid, None)) is not None]
    entry = st.def_snapshots.get(wf.def_hash)
    # Into the durable history, with the definition it ran (read before its refs drop).
    ctx.fx.history.append(H.Archive(st.seq, wf, tuple(tasks), entry))
    if entry is not None:
        entry.refs -= 1
        if entry.refs <= 0:
            del st.def_snapshots[wf.def_hash]
    key = idempotency_index_key(wf.workflow_name, wf.idempotency_key)
    if key and st.idempotency.get(key) == ev.workflow_id:
        del st.idempotency[key]


# ---------------------------------------------------------------- tasks


def _task_scheduled(ctx: Ctx, ev: E.TaskScheduled) -> None:
    task, u = ev.task, ctx.undo
    wf = ctx.st.workflows[task.workflow_id]
    J.set_key(u, ctx.st.tasks, task.task_id, task)
    u.append((list.pop, wf.tasks))
    wf.tasks.append(task.task_id)
    J.set_key(u, wf.ref_index, task.reference_task_name, task.task_id)
    u.append((J.restore, wf, ("task_seq",), (wf.task_seq,)))
    wf.task_seq += 1


def _queue_entry_dropped(ctx: Ctx, ev: E.QueueEntryDropped) -> None:
    Q.unqueue(ctx, ev.queue, ev.task_id)


def set_timer(ctx: Ctx, key: str, due_ms: int) -> None:
    st = ctx.st
    ctx.undo.append((J.put_back, st.timers, key, st.timers.get(key, J.MISSING)))
    st.set_timer(key, due_ms)


def clear_timer(ctx: Ctx, key: str) -> None:
    # Put back at the end on rollback: timer order means nothing (module doc of journal.py).
    timers = ctx.st.timers
    if key in timers:
        ctx.undo.append((J.put_back, timers, key, timers.pop(key)))


def _set_lease(ctx: Ctx, task: Task) -> None:
    ctx.undo.append((J.restore, task, ("lease_expires_ms",), (task.lease_expires_ms,)))
    task.lease_expires_ms = ctx.st.clock_ms + task.response_timeout_seconds * 1000
    set_timer(ctx, LEASE_TIMER + task.task_id, task.lease_expires_ms)
    ctx.fx.timers_changed = True


_LEASED = ("status", "worker_id", "lease_owner", "poll_count", "start_time_ms")


def _task_leased(ctx: Ctx, ev: E.TaskLeased) -> None:
    st = ctx.st
    Q.unqueue(ctx, ev.queue, ev.task_id)
    J.set_key(ctx.undo, st.leased, ev.queue, st.leased.get(ev.queue, 0) + 1)
    if ev.window_ms or ev.queue in st.lease_times:
        Q.note_lease_time(ctx, ev.queue, ev.window_ms)
    task = st.tasks[ev.task_id]
    old = (task.status, task.worker_id, task.lease_owner, task.poll_count, task.start_time_ms)
    ctx.undo.append((J.restore, task, _LEASED, old))
    task.status = T_IN_PROGRESS
    task.worker_id = ev.worker_id
    task.lease_owner = ev.owner
    task.poll_count += 1
    if not task.start_time_ms:
        task.start_time_ms = st.clock_ms
        if task.timeout_seconds:  # timeoutSeconds counts from the first poll
            set_timer(ctx, TIMEOUT_TIMER + ev.task_id, st.clock_ms + task.timeout_seconds * 1000)
    clear_timer(ctx, POLL_TIMEOUT_TIMER + ev.task_id)
    _set_lease(ctx, task)


def _lease_extended(ctx: Ctx, ev: E.LeaseExtended) -> None:
    _set_lease(ctx, ctx.st.tasks[ev.task_id])


def _task_started(ctx: Ctx, ev: E.TaskStarted) -> None:
    task = ctx.st.tasks[ev.task_id]
    ctx.undo.append(
        (J.restore, task, ("start_time_ms", "status"), (task.start_time_ms, task.status))
    )
    task.start_time_ms = ctx.st.clock_ms
    if ev.running:
        task.status = T_IN_PROGRESS


def _task_input_set(ctx: Ctx, ev: E.TaskInputSet) -> None:
    _set(ctx, ctx.st.tasks[ev.task_id], "input", ev.input)


def _set(ctx: Ctx, record: Any, name: str, value: Any) -> None:
    """One attribute of a record, journaled (for the appliers that set only one)."""
    ctx.undo.append((J.restore, record, (name,), (getattr(record, name),)))
    setattr(record, name, value)


_ENDED = (
    "script",
    "status",
    "end_time_ms",
    "lease_expires_ms",
    "output",
    "reason_for_incompletion",
    "worker_id",
    "end_seq",
)


def _end_task(ctx: Ctx, task: Task, status: TaskStatus, output: JSON, reason: str) -> None:
    st, tid = ctx.st, task.task_id
    if task.status == T_SCHEDULED:
        Q.unqueue(ctx, queue_key(task.task_type, task.domain), tid)
    elif task.status == T_IN_PROGRESS and task.type is _SIMPLE:  # leased: its slot frees
        Q.lease_ended(ctx, queue_key(task.task_type, task.domain))
    for prefix in TASK_TIMERS:
        clear_timer(ctx, prefix + tid)
    if task.type is TaskType.WAIT_FOR_EVENT:
        M.unindex_wait(ctx, task)
    old = (
        task.script,
        task.status,
        task.end_time_ms,
        task.lease_expires_ms,
        task.output,
        task.reason_for_incompletion,
        task.worker_id,
        task.end_seq,
    )
    ctx.undo.append((J.restore, task, _ENDED, old))
    task.script = None
    task.status = status
    task.end_time_ms = st.clock_ms
    task.end_seq = st.seq
    task.lease_expires_ms = 0
    if output is not None:
        task.output = output
    if reason:
        task.reason_for_incompletion = reason[: limits.MAX_REASON_LENGTH]


def _task_ended(ctx: Ctx, ev: E.TaskEnded) -> None:
    task = ctx.st.tasks[ev.task_id]
    _end_task(ctx, task, ev.status, ev.output, ev.reason)
    if ev.worker_id:
        task.worker_id = ev.worker_id  # journaled by _end_task


def _task_retried(ctx: Ctx, ev: E.TaskRetried) -> None:
    _set(ctx, ctx.st.tasks[ev.task_id], "retried", True)


def _task_retries_stopped(ctx: Ctx, ev: E.TaskRetriesStopped) -> None:
    task = ctx.st.tasks[ev.task_id]
    _set(ctx, task, "retry_limit", task.retry_count)


def _failure_tolerated(ctx: Ctx, ev: E.FailureTolerated) -> None:
    _set(ctx, ctx.st.tasks[ev.task_id], "status", T_COMPLETED_WITH_ERRORS)


def _permissive_failure_recorded(ctx: Ctx, ev: E.PermissiveFailureRecorded) -> None:
    _set(ctx, ctx.st.tasks[ev.task_id], "permissive_failed", True)
    failures = ctx.st.workflows[ev.workflow_id].permissive_failures
    ctx.undo.append((list.pop, failures))
    failures.append(ev.task_id)


def _task_timeout_alerted(ctx: Ctx, ev: E.TaskTimeoutAlerted) -> None:
    task = ctx.st.tasks[ev.task_id]
    _set(ctx, task, "timeout_alerts", task.timeout_alerts + 1)


def _case_selected(ctx: Ctx, ev: E.CaseSelected) -> None:
    _set(ctx, ctx.st.tasks[ev.task_id], "selected_case", ev.case)


def _dynamic_fork_planned(ctx: Ctx, ev: E.DynamicForkPlanned) -> None:
    task = ctx.st.tasks[ev.task_id]
    _set(ctx, task, "dynamic_fork_tasks", ev.tasks)
    _set(ctx, task, "input", {"forkedTasks": [d["taskReferenceName"] for d in ev.tasks]})


def _sub_workflow_linked(ctx: Ctx, ev: E.SubWorkflowLinked) -> None:
    task = ctx.st.tasks[ev.task_id]
    _set(ctx, task, "status", T_IN_PROGRESS)
    _set(ctx, task, "sub_workflow_id", ev.child_id)
    _set(ctx, task, "output", {"subWorkflowId": ev.child_id})


def _wait_scheduled(ctx: Ctx, ev: E.WaitScheduled) -> None:
    _set(ctx, ctx.st.tasks[ev.task_id], "wait_until_ms", ev.until_ms)
    set_timer(ctx, WAIT_TIMER + ev.task_id, ev.due_ms)
    ctx.fx.timers_changed = True


def _script_requested(ctx: Ctx, ev: E.ScriptRequested) -> None:
    task = ctx.st.tasks[ev.task_id]
    _set(ctx, task, "status", T_IN_PROGRESS)
    _set(ctx, task, "script", ev.marker)
    ctx.fx.scripts_ready.append(ev.task_id)


def _loop_condition_evaluated(ctx: Ctx, ev: E.LoopConditionEvaluated) -> None:
    marker = ctx.st.tasks[ev.task_id].script
    assert marker is not None
    _set(ctx, marker, "outcome", ev.outcome)


def _loop_condition_read(ctx: Ctx, ev: E.LoopConditionRead) -> None:
    _set(ctx, ctx.st.tasks[ev.task_id], "script", None)


def _loop_started(ctx: Ctx, ev: E.LoopStarted) -> None:
    _set(ctx, ctx.st.tasks[ev.task_id], "output", {"iteration": 1})


def _loop_items_set(ctx: Ctx, ev: E.LoopItemsSet) -> None:
    _set(ctx, ctx.st.tasks[ev.task_id], "items", ev.items)


def _loop_iteration_ended(ctx: Ctx, ev: E.LoopIterationEnded) -> None:
    output = ctx.st.tasks[ev.task_id].output
    J.update(ctx.undo, output, {str(ev.iteration): ev.outputs, "iteration": ev.iteration})


def _loop_iteration_started(ctx: Ctx, ev: E.LoopIterationStarted) -> None:
    task = ctx.st.tasks[ev.task_id]
    _set(ctx, task, "loop_iteration", ev.iteration)
    J.set_key(ctx.undo, task.output, "iteration", ev.iteration)
    if task.items is not None:
        index = ev.iteration - 1
        J.update(ctx.undo, task.output, {"loopItem": task.items[index], "loopIndex": index})


def _loop_iterations_pruned(ctx: Ctx, ev: E.LoopIterationsPruned) -> None:
    st, u = ctx.st, ctx.undo
    wf = st.workflows[ev.workflow_id]
    output = st.tasks[ev.task_id].output
    for n in ev.iterations:
        J.pop_key(u, output, str(n))
    for ref in ev.refs:
        J.pop_key(u, wf.ref_index, ref)
    if ev.task_ids:
        drop = dict.fromkeys(ev.task_ids)
        _set(ctx, wf, "tasks", [t for t in wf.tasks if t not in drop])
        for tid in ev.task_ids:
            J.pop_key(u, st.tasks, tid)


# ---------------------------------------------------------------- polls and timers


def _poll_noted(ctx: Ctx, ev: E.PollNoted) -> None:
    last, u = ctx.st.last_poll, ctx.undo
    J.pop_key(u, last, ev.queue)
    J.set_key(u, last, ev.queue, ctx.st.clock_ms)
    while len(last) > limits.MAX_POLLED_QUEUES:  # bounded: the least recently polled go
        key, seen = last.popitem(last=False)
        u.append((J.insert_at, last, key, seen, 0))


def _poll_parked(ctx: Ctx, ev: E.PollParked) -> None:
    J.set_key(ctx.undo, ctx.st.parked, ev.request_id, ev.poll)
    set_timer(ctx, POLL_TIMER + ev.request_id, ev.poll.expires_ms)
    ctx.fx.timers_changed = True


def _poll_settled(ctx: Ctx, ev: E.PollSettled) -> None:
    J.pop_key(ctx.undo, ctx.st.parked, ev.request_id)
    clear_timer(ctx, POLL_TIMER + ev.request_id)
    ctx.fx.polls_settled.append(ev.request_id)
    ctx.fx.timers_changed = True


def _timer_set(ctx: Ctx, ev: E.TimerSet) -> None:
    set_timer(ctx, ev.key, ev.due_ms)
    ctx.fx.timers_changed = True


def _timers_fired(ctx: Ctx, ev: E.TimersFired) -> None:
    for key in ev.keys:
        clear_timer(ctx, key)


# ---------------------------------------------------------------- durable history


def _history_settings_set(ctx: Ctx, ev: E.HistorySettingsSet) -> None:
    st = ctx.st
    ctx.undo.append((J.restore, st, ("settings", "history_seq"), (st.settings, st.history_seq)))
    st.settings = {
        **st.settings,
        "history_retention_ms": ev.retention_ms,
        "history_max_workflows": ev.max_workflows,
    }
    # A history that missed a change of retention cannot redo the expiries after it alone.
    st.history_seq = st.seq


def _history_expiry_due(ctx: Ctx, ev: E.HistoryExpiryDue) -> None:
    ctx.fx.history.append(H.Expire(ctx.st.seq, ev.cutoff_ms, ev.max_rows))
    set_timer(ctx, HISTORY_TIMER, ev.next_due_ms)
    ctx.fx.timers_changed = True


def _history_noted(ctx: Ctx, ev: E.HistoryNoted) -> None:
    # Not journaled: noted between commands, like eviction (processors/retention.py).
    st = ctx.st
    if ev.seq:
        st.history_seq = ev.seq
    if ev.expire:
        st.history_expire = ev.expire


APPLIERS: dict[type[E.Event], Callable[[Any, Any], None]] = {
    E.EpochRaised: _epoch_raised,
    E.MemberSet: _member_set,
    E.MemberRemoved: _member_removed,
    E.RequestRecorded: _request_recorded,
    E.RequestsExpired: _requests_expired,
    E.TaskDefsRegistered: _task_defs_registered,
    E.WorkflowDefRegistered: _workflow_def_registered,
    E.WorkflowStarted: _workflow_started,
    E.WorkflowAdmitted: A.workflow_admitted,
    E.IdempotencyKeyRecorded: _idempotency_key_recorded,
    E.WorkflowEnded: _workflow_ended,
    E.WorkflowOutputSet: _workflow_output_set,
    E.WorkflowEndRecorded: _workflow_end_recorded,
    E.WorkflowReterminated: _workflow_reterminated,
    E.WorkflowQuarantined: _workflow_quarantined,
    E.VariablesSet: _variables_set,
    E.WorkflowEvicted: _workflow_evicted,
    E.WorkflowPaused: O.workflow_paused,
    E.WorkflowResumed: O.workflow_resumed,
    E.WorkflowRestored: O.workflow_restored,
    E.WorkflowReopened: O.workflow_reopened,
    E.WorkflowReset: O.workflow_reset,
    E.WorkflowInputSet: O.workflow_input_set,
    E.TasksDropped: O.tasks_dropped,
    E.TaskReopened: O.task_reopened,
    E.PermissiveFailuresForgotten: O.permissive_failures_forgotten,
    E.WorkflowDetached: O.workflow_detached,
    E.WorkflowRemoved: O.workflow_removed,
    E.CompensationStarted: O.compensation_started,
    E.CompensationScheduled: O.compensation_scheduled,
    E.TaskScheduled: _task_scheduled,
    E.TaskQueued: Q.task_queued,
    E.CapacityReturned: Q.capacity_returned,
    E.QueueEntryDropped: _queue_entry_dropped,
    E.TaskLeased: _task_leased,
    E.LeaseExtended: _lease_extended,
    E.TaskStarted: _task_started,
    E.TaskInputSet: _task_input_set,
    E.TaskEnded: _task_ended,
    E.TaskRetried: _task_retried,
    E.TaskRetriesStopped: _task_retries_stopped,
    E.FailureTolerated: _failure_tolerated,
    E.PermissiveFailureRecorded: _permissive_failure_recorded,
    E.TaskTimeoutAlerted: _task_timeout_alerted,
    E.CaseSelected: _case_selected,
    E.DynamicForkPlanned: _dynamic_fork_planned,
    E.SubWorkflowLinked: _sub_workflow_linked,
    E.WaitScheduled: _wait_scheduled,
    E.ScriptRequested: _script_requested,
    E.LoopConditionEvaluated: _loop_condition_evaluated,
    E.LoopConditionRead: _loop_condition_read,
    E.LoopStarted: _loop_started,
    E.LoopItemsSet: _loop_items_set,
    E.LoopIterationEnded: _loop_iteration_ended,
    E.LoopIterationStarted: _loop_iteration_started,
    E.LoopIterationsPruned: _loop_iterations_pruned,
    E.PollNoted: _poll_noted,
    E.PollParked: _poll_parked,
    E.PollSettled: _poll_settled,
    E.TimerSet: _timer_set,
    E.TimersFired: _timers_fired,
    E.HistorySettingsSet: _history_settings_set,
    E.HistoryExpiryDue: _history_expiry_due,
    E.HistoryNoted: _history_noted,
    E.EventAppended: EL.event_appended,
    E.OldestEventDropped: EL.oldest_event_dropped,
    E.EventHandlerSet: EL.event_handler_set,
    E.EventHandlerRemoved: EL.event_handler_removed,
    E.ConsumerCommitted: S.consumer_committed,
    E.BridgeMarkSet: EL.bridge_mark_set,
    E.EventRecordSet: M.event_record_set,
    E.EventWaitStarted: M.event_wait_started,
    E.MessageBuffered: M.message_buffered,
    E.MessageRemoved: M.message_removed,
    E.AsyncOutputSet: M.async_output_set,
}
