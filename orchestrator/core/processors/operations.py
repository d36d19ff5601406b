"""The operator's actions on a workflow, with Conductor's meaning (WorkflowExecutor's pause,
resume, restart, retry, rerun, skipTaskFromWorkflow and remove), each one replicated command.

A workflow no longer in memory comes back from the durable history: the API attaches its
archive document (`restore`), apply puts its records back as they ended, tells the history to
drop its row (it is archived again when it ends again), and then acts. A refused action undoes
the restore with everything else (the engine's journal).

A workflow that runs again (retry, restart, rerun) puts its SUB_WORKFLOW task in its parent in
progress again and its parent running, up the chain (Conductor's updateAndPushParents), so the
parent hears of the child's new end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import events as E
from .. import limits
from ..commands import (
    PauseWorkflow,
    RemoveWorkflow,
    RerunWorkflow,
    RestartWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SkipTask,
)
from ..context import Ctx
from ..errors import invalid, not_found, precondition
from ..history_ops import DocError, Remove, records_from_doc
from ..records import (
    T_ACTIVE,
    T_CANCELED,
    T_FAILED_STATES,
    T_SKIPPED,
    WF_LIVE,
    WF_PAUSED,
    WF_QUEUED,
    WF_RUNNING,
    WF_TERMINAL,
    WF_TERMINATED,
    Task,
    TaskType,
    Workflow,
    WorkflowStatus,
    idempotency_index_key,
)
from . import admission, compensation, decider, registry, scheduler, tasks, workflows

JSON = Any

# The statuses a retry starts from (Conductor: any terminal one but COMPLETED).
RETRYABLE = frozenset((WorkflowStatus.FAILED, WorkflowStatus.TIMED_OUT, WF_TERMINATED))
# Canceled by the workflow's end, these go on where they were instead of a new attempt.
_REOPENED_TYPES = (TaskType.JOIN, TaskType.EXCLUSIVE_JOIN, TaskType.DO_WHILE)
# Tasks whose children the walk schedules: skipping one would leave its branches half done.
_CONTAINERS = (
    TaskType.FORK_JOIN,
    TaskType.FORK_JOIN_DYNAMIC,
    TaskType.FORK,
    TaskType.SWITCH,
    TaskType.DECISION,
    TaskType.DO_WHILE,
)


def _done(wf: Workflow) -> dict[str, JSON]:
    return {"workflow_id": wf.workflow_id}


# ---------------------------------------------------------------- pause, resume


def pause_workflow(ctx: Ctx, cmd: PauseWorkflow) -> dict[str, JSON]:
    wf = _found(ctx, cmd.workflow_id)
    if wf.status is WF_RUNNING:
        ctx.emit(E.WorkflowPaused(wf.workflow_id))
    elif wf.status is not WF_PAUSED:
        raise precondition(f"workflow {wf.workflow_id} is {wf.status} and cannot be paused")
    return _done(wf)


def resume_workflow(ctx: Ctx, cmd: ResumeWorkflow) -> dict[str, JSON]:
    wf = _found(ctx, cmd.workflow_id)
    if wf.status is not WF_PAUSED:
        raise precondition(f"workflow {wf.workflow_id} is {wf.status}, not PAUSED")
    ctx.emit(E.WorkflowResumed(wf.workflow_id))
    workflows.arm_timeout(ctx, wf.workflow_id, registry.wf_def(ctx.st, wf))
    decider.decide(ctx, wf)
    return _done(wf)


# ---------------------------------------------------------------- restart, retry, rerun


def restart_workflow(ctx: Ctx, cmd: RestartWorkflow) -> dict[str, JSON]:
    st = ctx.st
    wf = _found(ctx, cmd.workflow_id, cmd.restore)
    _check_ended(wf, "restarted")
    if cmd.use_latest_definition:
        versions = st.workflow_defs.get(wf.workflow_name)
        if not versions:
            raise not_found(f"workflow definition {wf.workflow_name!r} is not registered")
        defn = versions[str(registry.latest_version(versions))]
        task_defs = workflows.task_defs_of(ctx, defn)
        key = registry.def_hash(defn, task_defs)
    else:
        snap = st.def_snapshots[wf.def_hash]
        defn, task_defs, key = snap.definition, snap.task_defs, wf.def_hash
    _start_over(ctx, wf, defn, task_defs, key, dict(wf.input))
    _run_again(ctx, wf)
    return _done(wf)


def retry_workflow(ctx: Ctx, cmd: RetryWorkflow) -> dict[str, JSON]:
    wf = _found(ctx, cmd.workflow_id, cmd.restore)
    if wf.status not in RETRYABLE:
        raise precondition(
            f"workflow {wf.workflow_id} is {wf.status}: only a FAILED, TIMED_OUT or TERMINATED "
            "workflow can be retried"
        )
    compensation.check_not_compensated(wf, "retried")
    if cmd.resume_subworkflow_tasks:
        wf = _failed_descendant(ctx, wf)
    again, reopen = _unsuccessful(ctx, wf, wf.tasks)
    if not again and not reopen and wf.status is not WorkflowStatus.TIMED_OUT:
        raise precondition(
            f"workflow {wf.workflow_id} has no failed, timed out or canceled task to retry "
            "(restart it to run it again from the beginning)"
        )
    _revive(ctx, wf, again, reopen)
    _run_again(ctx, wf)
    return {"workflow_id": cmd.workflow_id}


def rerun_workflow(ctx: Ctx, cmd: RerunWorkflow) -> dict[str, JSON]:
    st = ctx.st
    for name in ("task_input", "workflow_input"):
        value = getattr(cmd, name)
        if value is not None and not isinstance(value, dict):
            raise invalid(f"{name}: must be a JSON object")
    wf = _found(ctx, cmd.workflow_id, cmd.restore)
    _check_ended(wf, "rerun")
    if not cmd.task_id:
        snap = st.def_snapshots[wf.def_hash]
        wf_input = dict(cmd.workflow_input if cmd.workflow_input is not None else wf.input)
        _start_over(ctx, wf, snap.definition, snap.task_defs, wf.def_hash, wf_input)
        _run_again(ctx, wf)
        return _done(wf)
    task = st.tasks.get(cmd.task_id)
    if task is None or task.workflow_id != wf.workflow_id:
        raise not_found(f"workflow {wf.workflow_id} has no task {cmd.task_id}")
    compensation.check_not_compensated(wf, "rerun from a task")
    if task.base_ref:
        raise precondition(
            f"task {task.task_id} of workflow {wf.workflow_id} runs inside a DO_WHILE: rerun "
            "from the DO_WHILE task"
        )
    wt = _config_of(ctx, wf, task)
    at = wf.tasks.index(task.task_id)
    kept = wf.tasks[:at]
    again, reopen = _unsuccessful(ctx, wf, kept)
    if at + len(again) + 1 > limits.MAX_TASKS_PER_WORKFLOW:
        raise precondition(_too_many(wf))
    ref_index = {st.tasks[tid].reference_task_name: tid for tid in kept}
    ctx.emit(E.TasksDropped(wf.workflow_id, wf.tasks[at:], ref_index))
    if cmd.workflow_input is not None:
        ctx.emit(E.WorkflowInputSet(wf.workflow_id, dict(cmd.workflow_input)))
    _revive(ctx, wf, again, reopen)
    suffix = task.reference_task_name[len(wt["taskReferenceName"]) :]
    scheduler.schedule(ctx, wf, wt, task.path, suffix, given_input=cmd.task_input)
    _run_again(ctx, wf)
    return _done(wf)


def _check_ended(wf: Workflow, verb: str) -> None:
    if wf.status not in WF_TERMINAL:
        raise precondition(
            f"workflow {wf.workflow_id} is {wf.status}: only a workflow that ended can be {verb}"
        )


def _start_over(
    ctx: Ctx,
    wf: Workflow,
    defn: JSON,
    task_defs: dict[str, JSON],
    key: str,
    wf_input: dict[str, JSON],
) -> None:
    """From the beginning: no tasks, the definition's variables, running from now. The task
    sequence goes on, so new tasks (and the children they start) get new ids."""
    for k, v in defn.get("inputTemplate", {}).items():
        wf_input.setdefault(k, v)
    ctx.emit(E.TasksDropped(wf.workflow_id, list(wf.tasks), {}))
    variables = dict(defn.get("variables", {}))
    ctx.emit(E.WorkflowReset(wf.workflow_id, key, defn, task_defs, wf_input, variables))
    _revive(ctx, wf, [], [])


def _unsuccessful(ctx: Ctx, wf: Workflow, task_ids: list[str]) -> tuple[list[Task], list[Task]]:
    """Among the latest attempts in task_ids, in order: those that get a new attempt (failed,
    timed out, canceled) and those that go on (a JOIN or DO_WHILE the end canceled)."""
    st = ctx.st
    again: list[Task] = []
    reopen: list[Task] = []
    for tid in task_ids:
        t = st.tasks[tid]
        if wf.ref_index.get(t.reference_task_name) != tid or t.status not in T_FAILED_STATES:
            continue
        if t.status is T_CANCELED and t.type in _REOPENED_TYPES:
            reopen.append(t)
        else:
            again.append(t)
    return again, reopen


def _revive(ctx: Ctx, wf: Workflow, again: list[Task], reopen: list[Task]) -> None:
    """The workflow runs again: `reopen` in progress again, a new attempt of each of `again`."""
    if len(wf.tasks) + len(again) > limits.MAX_TASKS_PER_WORKFLOW:
        raise precondition(_too_many(wf))
    if wf.status in WF_TERMINAL:
        admission.check_runs_again(ctx, wf)
        ctx.emit(E.WorkflowReopened(wf.workflow_id))
        workflows.arm_timeout(ctx, wf.workflow_id, registry.wf_def(ctx.st, wf))
    forget = [t.task_id for t in (*again, *reopen) if t.permissive_failed]
    if forget:
        ctx.emit(E.PermissiveFailuresForgotten(wf.workflow_id, forget))
    for t in reopen:
        ctx.emit(E.TaskReopened(t.task_id))
    for t in again:
        tasks.new_attempt(ctx, wf, t)


def _too_many(wf: Workflow) -> str:
    return (
        f"workflow {wf.workflow_id} would create more than {limits.MAX_TASKS_PER_WORKFLOW} tasks "
        "(MAX_TASKS_PER_WORKFLOW)"
    )


def _failed_descendant(ctx: Ctx, wf: Workflow) -> Workflow:
    """retry with resume_subworkflow_tasks: the deepest child (still in memory) of the first
    unsuccessful SUB_WORKFLOW task, down the chain, or `wf` itself."""
    st = ctx.st
    while True:
        first = next(
            (
                t
                for tid in wf.tasks
                if (t := st.tasks[tid]).status in T_FAILED_STATES and not t.retried
            ),
            None,
        )
        if first is None or first.type is not TaskType.SUB_WORKFLOW:
            return wf
        child = st.workflows.get(first.sub_workflow_id)
        if child is None or child.status not in RETRYABLE:
            return wf
        again, reopen = _unsuccessful(ctx, child, child.tasks)
        if not again and not reopen:
            return wf
        wf = child


def _run_again(ctx: Ctx, wf: Workflow) -> None:
    """Decide the workflow that runs again, then its parents (pushed first, up the chain)."""
    parents = _push_parents(ctx, wf)
    decider.decide(ctx, wf)
    for parent in parents:
        decider.decide(ctx, parent)


def _push_parents(ctx: Ctx, wf: Workflow) -> list[Workflow]:
    """A child runs again through its SUB_WORKFLOW task, which goes back in progress (its
    parent running again): the parent hears of the child's next end. A parent that has moved
    on from the child (a newer attempt of the task) refuses. A parent no longer in memory
    cannot hear of it (it may come back from the history later and run again without this
    child), so the child runs on its own from then on."""
    st = ctx.st
    pushed: list[Workflow] = []
    while wf.parent_workflow_id:
        parent = st.workflows.get(wf.parent_workflow_id)
        if parent is None:
            ctx.emit(E.WorkflowDetached(wf.workflow_id))
            break
        task = st.tasks.get(wf.parent_workflow_task_id)
        if (
            task is None
            or task.sub_workflow_id != wf.workflow_id
            or parent.ref_index.get(task.reference_task_name) != task.task_id
        ):
            raise precondition(
                f"workflow {wf.workflow_id} is a child of workflow {parent.workflow_id}, which "
                "has moved on from it: act on the parent"
            )
        if task.status in T_ACTIVE:
            break
        compensation.check_not_compensated(parent, "run again through its child")
        if parent.status in WF_LIVE:
            _revive(ctx, parent, [], [task])
        else:
            again, reopen = _unsuccessful(ctx, parent, parent.tasks)
            again = [t for t in again if t is not task]
            _revive(ctx, parent, again, [*reopen, task])  # a JOIN/DO_WHILE is never the task
        pushed.append(parent)
        wf = parent
    return pushed


# ---------------------------------------------------------------- skip, remove


def skip_task(ctx: Ctx, cmd: SkipTask) -> dict[str, JSON]:
    if not isinstance(cmd.output, dict):
        raise invalid("output_json: must be a JSON object")
    wf = _found(ctx, cmd.workflow_id)
    ref = cmd.task_reference_name
    # QUEUED: nothing has run, and nothing may until its definition's limits admit it.
    if wf.status not in WF_LIVE or wf.status is WF_QUEUED:
        raise precondition(
            f"workflow {wf.workflow_id} is {wf.status}: its task {ref!r} cannot be skipped"
        )
    st = ctx.st
    tid = wf.ref_index.get(ref)
    if tid is not None:
        task = st.tasks[tid]
        if task.status not in T_ACTIVE:
            raise precondition(
                f"task {ref!r} of workflow {wf.workflow_id} is {task.status} and cannot be skipped"
            )
        _check_skippable(wf, ref, task.type)
    else:
        found = _unscheduled(ctx, wf, ref)
        if len(wf.tasks) >= limits.MAX_TASKS_PER_WORKFLOW:
            raise precondition(_too_many(wf))
        task = scheduler._new_task(ctx, wf, found[0], found[1], "", None)
        ctx.emit(E.TaskScheduled(task))
    tasks.end_task(ctx, task, T_SKIPPED, output=dict(cmd.output))
    child = st.workflows.get(task.sub_workflow_id) if task.sub_workflow_id else None
    if child is not None and child.status in WF_LIVE:
        reason = f"its task {ref} in parent workflow {wf.workflow_id} was skipped"
        workflows.end_workflow(ctx, child, WF_TERMINATED, reason)
    decider.decide(ctx, wf)
    return _done(wf)


def _check_skippable(wf: Workflow, ref: str, ttype: str) -> None:
    if ttype in _CONTAINERS:
        raise precondition(
            f"task {ref!r} of workflow {wf.workflow_id} is a {ttype}: skip the tasks in it"
        )


def _unscheduled(ctx: Ctx, wf: Workflow, ref: str) -> tuple[JSON, list[str | int]]:
    """The configuration and path of a reference not scheduled yet, to mark it SKIPPED now:
    the walk finds it done when it gets there (Conductor's skip of a future task)."""
    defn = registry.wf_def(ctx.st, wf)
    for wt, path, in_loop in _configs(defn["tasks"], ["tasks"], False):
        if wt["taskReferenceName"] != ref:
            continue
        if in_loop:
            raise precondition(
                f"task {ref!r} of workflow {wf.workflow_id} runs inside a DO_WHILE: skip it "
                "once an iteration schedules it"
            )
        _check_skippable(wf, ref, wt["type"])
        return wt, path
    raise not_found(f"workflow {wf.workflow_id} has no task with reference {ref!r}")


def _configs(
    wts: list[JSON], path: list[str | int], in_loop: bool
) -> Iterator[tuple[JSON, list[str | int], bool]]:
    """Every task configuration with the path the decider gives it (definition order)."""
    for j, wt in enumerate(wts):
        here: list[str | int] = [*path, j]
        yield wt, here, in_loop
        ttype = wt["type"]
        if ttype == "FORK_JOIN":
            for b, branch in enumerate(wt["forkTasks"]):
                yield from _configs(branch, [*here, "forkTasks", b], in_loop)
        elif ttype in ("SWITCH", "DECISION"):
            for case, branch in wt["decisionCases"].items():
                yield from _configs(branch, [*here, "decisionCases", case], in_loop)
            yield from _configs(wt["defaultCase"], [*here, "defaultCase"], in_loop)
        elif ttype == "DO_WHILE":
            yield from _configs(wt["loopOver"], [*here, "loopOver"], True)


def _config_of(ctx: Ctx, wf: Workflow, task: Task) -> JSON:
    """The configuration a rerun schedules: the definition's (a DYNAMIC task names its task
    again), or a dynamically forked task's own."""
    if task.path is None:
        return task.dynamic_task
    cur: JSON = registry.wf_def(ctx.st, wf)
    for key in task.path:
        cur = cur[key]
    return cur


def remove_workflow(ctx: Ctx, cmd: RemoveWorkflow) -> dict[str, JSON]:
    """A terminal workflow leaves memory, and the history its row (there or not: the API has
    looked there)."""
    wf = ctx.st.workflows.get(cmd.workflow_id)
    if wf is not None:
        if wf.status in WF_LIVE:
            raise precondition(f"workflow {wf.workflow_id} is {wf.status}: terminate it first")
        ctx.emit(E.WorkflowRemoved(wf.workflow_id))
    ctx.fx.history.append(Remove(ctx.st.seq, cmd.workflow_id))
    return {"workflow_id": cmd.workflow_id}


# ---------------------------------------------------------------- finding, restoring


def _found(ctx: Ctx, workflow_id: str, restore: JSON = None) -> Workflow:
    wf = ctx.st.workflows.get(workflow_id)
    if wf is not None:
        return wf
    if restore is None:
        raise not_found(f"workflow {workflow_id} not found")
    return _restore(ctx, workflow_id, restore)


def _restore(ctx: Ctx, workflow_id: str, doc: JSON) -> Workflow:
    """Put an archived workflow back in memory as it ended (its history row goes)."""
    st = ctx.st
    try:
        wf, task_list, definition = records_from_doc(doc)
    except DocError as exc:
        raise invalid(f"restore: {exc}") from None
    if wf.workflow_id != workflow_id:
        raise invalid(f"restore: the document is of workflow {wf.workflow_id}, not {workflow_id}")
    if wf.status not in WF_TERMINAL:
        raise invalid(f"restore: workflow {workflow_id} is {wf.status} in the document")
    ids = [t.task_id for t in task_list]
    if ids != wf.tasks or any(tid in st.tasks for tid in ids):
        raise invalid(f"restore: the tasks of workflow {workflow_id} do not match its record")
    snap = st.def_snapshots.get(wf.def_hash)
    if definition is not None:
        if registry.def_hash(*definition) != wf.def_hash:
            raise invalid(
                f"restore: the definition of workflow {workflow_id} is not the one it ran"
            )
        defn, task_defs = definition
    elif snap is not None:
        defn, task_defs = snap.definition, snap.task_defs
    else:
        raise precondition(f"workflow {workflow_id}: the definition it ran with is not known")
    key = idempotency_index_key(wf.workflow_name, wf.idempotency_key)
    if key in st.idempotency:
        key = ""
    ctx.emit(E.WorkflowRestored(wf, task_list, defn, task_defs, key))
    ctx.fx.history.append(Remove(st.seq, workflow_id))
    return wf
