"""apply(state, batch) -> outcomes and effects. Pure and deterministic; nothing escapes it.

The replication layer hands every committed batch to `apply_batch` on every replica, in log
order. For each command the engine decodes it, answers a retried request from the dedup table,
refuses a leader-originated command of an older leader epoch, and routes it to its processor
(processors/), which decides and emits events that the appliers apply. A command that cannot be
applied is rejected with a code and a message, identically everywhere. A command is atomic:
its writes are journaled (journal.py) and undone when it raises, so a rejection or an unexpected
bug leaves the state exactly as before the command; a bug then quarantines the workflow it
touched as FAILED instead of wedging Raft.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import appliers
from .codec import fingerprint
from .commands import (
    FP_KEY,
    AckEvents,
    AdvanceSink,
    CancelPoll,
    Command,
    CommandDecodeError,
    CompensateWorkflow,
    CompleteTask,
    FailTask,
    HeartbeatTask,
    HttpResult,
    IngestEvent,
    LeaderEpoch,
    Noop,
    PauseWorkflow,
    PollActivity,
    PollTasks,
    PublishEvent,
    RegisterEventHandler,
    RegisterTaskDefs,
    RegisterWorkflowDef,
    RemoveEventHandler,
    RemoveMember,
    RemoveWorkflow,
    RerunWorkflow,
    RestartWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    ScriptResult,
    SetHistoryRetention,
    SetMember,
    SkipTask,
    StartWorkflow,
    TerminateWorkflow,
    Tick,
    command_from_dict,
)
from .context import Ctx, Effects, Outcome
from .errors import Code, Rejected, precondition
from .processors import (
    bridges,
    cluster,
    compensation,
    event_handlers,
    eventlog,
    http,
    operations,
    polls,
    registry,
    requests,
    retention,
    scripts,
    subscriptions,
    tasks,
    timers,
    workflows,
)
from .state import State

JSON = Any

# Every command, to the processor that decides it (returns the outcome's result).
PROCESSORS: dict[type[Command], Callable[[Ctx, Any], dict[str, JSON]]] = {
    LeaderEpoch: cluster.leader_epoch,
    Noop: cluster.noop,
    SetMember: cluster.set_member,
    RemoveMember: cluster.remove_member,
    SetHistoryRetention: cluster.set_history_retention,
    RegisterTaskDefs: registry.register_task_defs,
    RegisterWorkflowDef: registry.register_workflow_def,
    StartWorkflow: workflows.start_workflow,
    TerminateWorkflow: workflows.terminate_workflow,
    PollTasks: polls.poll_tasks,
    PollActivity: polls.poll_activity,
    CancelPoll: polls.cancel_poll,
    CompleteTask: tasks.complete_task,
    FailTask: tasks.fail_task,
    HeartbeatTask: tasks.heartbeat_task,
    Tick: timers.tick,
    ScriptResult: scripts.script_result,
    HttpResult: http.http_result,
    PauseWorkflow: operations.pause_workflow,
    ResumeWorkflow: operations.resume_workflow,
    RestartWorkflow: operations.restart_workflow,
    RetryWorkflow: operations.retry_workflow,
    RerunWorkflow: operations.rerun_workflow,
    SkipTask: operations.skip_task,
    RemoveWorkflow: operations.remove_workflow,
    CompensateWorkflow: compensation.compensate_workflow,
    PublishEvent: eventlog.publish_event,
    RegisterEventHandler: event_handlers.register_event_handler,
    RemoveEventHandler: event_handlers.remove_event_handler,
    AckEvents: subscriptions.ack_events,
    IngestEvent: bridges.ingest_event,
    AdvanceSink: bridges.advance_sink,
}

OPERATOR_COMMANDS = (
    PauseWorkflow,
    ResumeWorkflow,
    RestartWorkflow,
    RetryWorkflow,
    RerunWorkflow,
    SkipTask,
    CompensateWorkflow,
)

# Commands the leader's runtime originates, stamped with its epoch: a deposed leader's are
# refused (the new leader has taken over its polls, timers and scripts).
LEADER_COMMANDS = (PollTasks, PollActivity, CancelPoll, Tick, ScriptResult, HttpResult)


def apply_batch(state: State, now_ms: int, commands: list[JSON]) -> tuple[list[Outcome], Effects]:
    """Apply a committed batch stamped with the leader's cluster time `now_ms`."""
    if isinstance(now_ms, int) and not isinstance(now_ms, bool):
        appliers.advance_clock(state, now_ms)
    fx = Effects()
    ctx = Ctx(state, fx)
    outcomes = [_apply_one(ctx, raw) for raw in commands]
    if ctx.fill_types:
        # Once per entry, not per command: a parked poll then takes every task the entry's
        # commands made ready, up to its count (under load an entry carries many completions).
        polls.fill_parked(ctx)
    return outcomes, fx


def _apply_one(ctx: Ctx, raw: JSON) -> Outcome:
    seq = appliers.next_seq(ctx.st)
    outcome = _apply_checked(ctx, raw)
    outcome.seq = seq
    return outcome


def _apply_checked(ctx: Ctx, raw: JSON) -> Outcome:
    given_fp = None
    if isinstance(raw, dict) and FP_KEY in raw:
        raw = dict(raw)
        given_fp = raw.pop(FP_KEY)
    try:
        cmd = command_from_dict(raw)
    except CommandDecodeError as exc:
        return Outcome(Code.INVALID_ARGUMENT, f"malformed command: {exc}")
    rid = getattr(cmd, "request_id", None)
    fp = ""
    if rid is not None:
        # The proposer's fingerprint (Command.to_log_dict) when the command carries one.
        fp = given_fp if isinstance(given_fp, str) and given_fp else _fingerprint(cmd)
        earlier = requests.recorded_outcome(ctx.st, rid, fp)
        if earlier is not None:
            return earlier
    ctx.fp = fp
    ctx.created = 0
    history_from = len(ctx.fx.history)
    mark = ctx.mark()
    try:
        # The one stale-epoch guard: a deposed leader's runtime commands change nothing.
        if isinstance(cmd, LEADER_COMMANDS) and cmd.epoch < ctx.st.epoch:
            raise precondition(f"stale leader epoch {cmd.epoch} < {ctx.st.epoch}")
        outcome = Outcome(result=PROCESSORS[type(cmd)](ctx, cmd))
        workflows.drain(ctx)
    except Rejected as rej:
        ctx.rollback(mark)
        outcome = Outcome(rej.code, rej.message)
    except Exception as exc:  # a bug: undone, rejected everywhere alike, its workflow quarantined
        ctx.rollback(mark)
        ctx.failed, ctx.terminations = [], []
        outcome = Outcome(
            Code.INTERNAL, f"internal error applying {cmd.NAME}: {type(exc).__name__}: {exc}"
        )
        _quarantine(ctx, cmd, outcome.message)
    retention.evict(ctx)  # once the command is whole, outside its journal
    retention.note(ctx, history_from)
    if rid is not None and _should_record(cmd, outcome):
        requests.record(ctx, rid, outcome)
    ctx.undo.clear()
    return outcome


def _fingerprint(cmd: Command) -> str:
    return fingerprint(cmd.fingerprint_body())


def _should_record(cmd: Command, outcome: Outcome) -> bool:
    if outcome.code in (Code.INTERNAL, Code.RESOURCE_EXHAUSTED):
        return False
    if isinstance(cmd, PollTasks):
        # An empty poll leased nothing: the dispatcher may retry the same id when work arrives.
        # A parked poll is recorded when it is filled (see polls.fill_parked).
        return outcome.ok and bool(outcome.result.get("task_ids"))
    return True


def _quarantine(ctx: Ctx, cmd: Command, reason: str) -> None:
    mark = ctx.mark()
    try:
        # A task's commands carry workflow_id "" when they name the task by id.
        wf_id = getattr(cmd, "workflow_id", None) or None
        task_id = getattr(cmd, "task_id", None)
        if wf_id is None and task_id:
            task = ctx.st.tasks.get(task_id)
            wf_id = task.workflow_id if task else None
        wf = ctx.st.workflows.get(wf_id) if wf_id else None
        if wf is not None:
            workflows.quarantine_workflow(ctx, wf, reason)
    except Exception:  # the quarantine itself must never raise, nor leave half of itself
        ctx.rollback(mark)
        return
    mark = ctx.mark()
    try:
        # What the end set in motion, as after any command: its parent woken, the QUEUED
        # workflows its slot lets run (else they would wait for the next end of the name).
        workflows.drain(ctx)
    except Exception:  # the workflow stays quarantined; what drain began is undone
        ctx.rollback(mark)


def precheck(state: State, raw: JSON) -> Outcome | None:
    """A read-only answer the leader can give without proposing, or None to propose.

    Safe because it reads the leader's applied state, a prefix of the log that includes every
    write the caller has observed: a retried request returns its recorded outcome (by the same
    rule as apply), a reused request id with a different request and a start of an unknown
    definition are rejected.
    """
    try:
        cmd = command_from_dict(raw)
    except CommandDecodeError as exc:
        return Outcome(Code.INVALID_ARGUMENT, f"malformed command: {exc}")
    rid = getattr(cmd, "request_id", None)
    if rid is not None:
        earlier = requests.recorded_outcome(state, rid, _fingerprint(cmd))
        if earlier is not None:
            if "deduplicated" in earlier.result:  # not for a rejected reuse of the id
                earlier.seq = state.seq
            return earlier
    if isinstance(cmd, StartWorkflow) and cmd.name not in state.workflow_defs:
        return _precheck_miss(state, f"workflow definition {cmd.name!r} is not registered")
    if (
        isinstance(cmd, (CompleteTask, FailTask, HeartbeatTask))
        and cmd.task_id
        and cmd.task_id not in state.tasks
    ):
        return _precheck_miss(state, f"task {cmd.task_id} not found")
    if isinstance(cmd, TerminateWorkflow) and cmd.workflow_id not in state.workflows:
        return _precheck_miss(state, f"workflow {cmd.workflow_id} not found")
    # The operator's actions, but remove (its history row may remain); a restore document
    # brings the workflow back from the history.
    if (
        isinstance(cmd, OPERATOR_COMMANDS)
        and cmd.workflow_id not in state.workflows
        and getattr(cmd, "restore", None) is None
    ):
        return _precheck_miss(state, f"workflow {cmd.workflow_id} not found")
    return None


def _precheck_miss(state: State, message: str) -> Outcome:
    return Outcome(Code.NOT_FOUND, message, seq=state.seq)
