"""Workflow lifecycle: start (with idempotency keys), terminate, end, children (sub-workflows and
their parents), the failure workflow, and the quarantine of a workflow a bug touched."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

from .. import codec, limits
from .. import events as E
from ..commands import StartWorkflow, TerminateWorkflow
from ..context import Ctx
from ..definitions import check_task_to_domain, iter_tasks
from ..errors import Rejected, TaskCannotRun, already_exists, invalid, not_found, precondition
from ..expressions import resolve, stringify
from ..records import (
    STRATEGY_OF,
    T_ACTIVE,
    T_CANCELED,
    T_COMPLETED,
    T_FAILED,
    T_TIMED_OUT,
    WF_COMPENSATED,
    WF_COMPENSATING,
    WF_COMPLETED,
    WF_FAILED,
    WF_LIVE,
    WF_QUEUED,
    WF_RUNNING,
    WF_TERMINATED,
    WF_TIMED_OUT,
    IdempotencyStrategy,
    Task,
    Workflow,
    WorkflowStatus,
    idempotency_index_key,
)
from . import admission, compensation, decider, registry, retention, tasks
from .documents import task_doc, task_view

JSON = Any


def start_workflow(ctx: Ctx, cmd: StartWorkflow) -> dict[str, JSON]:
    st = ctx.st
    versions = st.workflow_defs.get(cmd.name)
    if not versions:
        raise not_found(f"workflow definition {cmd.name!r} is not registered")
    version = cmd.version or registry.latest_version(versions)
    defn = versions.get(str(version))
    if defn is None:
        raise not_found(f"workflow definition {cmd.name!r} has no version {version}")
    if not isinstance(cmd.input, dict):
        raise invalid("input_json: must be a JSON object")
    strategy = STRATEGY_OF.get(cmd.idempotency_strategy)
    if strategy is None:
        raise invalid(f"idempotency_strategy: must be one of {', '.join(STRATEGY_OF)}")
    if not cmd.workflow_id:
        raise invalid("workflow_id: required")
    priority = cmd.priority
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise invalid("priority: must be an integer")
    if not 0 <= priority <= limits.MAX_PRIORITY:
        raise invalid(f"priority: must be between 0 and {limits.MAX_PRIORITY}")
    task_to_domain = check_task_to_domain(cmd.task_to_domain, "task_to_domain")
    idem_key = idempotency_index_key(cmd.name, cmd.idempotency_key)
    if idem_key:
        existing_id = st.idempotency.get(idem_key)
        existing = st.workflows.get(existing_id) if existing_id else None
        if existing is not None:
            if strategy is IdempotencyStrategy.RETURN_EXISTING:
                return {"workflow_id": existing.workflow_id, "created": False}
            if strategy is IdempotencyStrategy.FAIL or existing.status in WF_LIVE:
                raise already_exists(
                    f"a workflow with idempotency_key {cmd.idempotency_key!r} exists: "
                    f"{existing.workflow_id} ({existing.status})"
                )
    if cmd.workflow_id in st.workflows:
        raise already_exists(f"workflow {cmd.workflow_id} already exists")
    wf = create_workflow(
        ctx,
        cmd.workflow_id,
        defn,
        dict(cmd.input),
        correlation_id=cmd.correlation_id,
        priority=cmd.priority,
        idempotency_key=cmd.idempotency_key,
        task_to_domain=task_to_domain,
    )
    if idem_key:
        ctx.emit(E.IdempotencyKeyRecorded(idem_key, cmd.workflow_id))
    if wf.status is WF_QUEUED:  # only then: the results recorded before limits stay the same
        return {"workflow_id": cmd.workflow_id, "created": True, "queued": True}
    return {"workflow_id": cmd.workflow_id, "created": True}


def task_defs_of(ctx: Ctx, defn: JSON) -> dict[str, JSON]:
    """The registered task definitions a definition's worker tasks use (kept with the workflow,
    so a later registration does not change a running workflow)."""
    task_defs: dict[str, JSON] = {}
    for t in iter_tasks(defn["tasks"]):
        if t["type"] == "SIMPLE" and "taskDefinition" not in t and t["name"] not in task_defs:
            td = ctx.st.task_defs.get(t["name"])
            if td is None:
                raise not_found(
                    f"task definition {t['name']!r} (used by {t['taskReferenceName']}) is not "
                    "registered"
                )
            task_defs[t["name"]] = td
    return task_defs


def create_workflow(
    ctx: Ctx,
    workflow_id: str,
    defn: JSON,
    wf_input: dict[str, JSON],
    correlation_id: str,
    priority: int,
    idempotency_key: str,
    parent: Workflow | None = None,
    parent_task: Task | None = None,
    task_to_domain: dict[str, str] | None = None,
    depth: int | None = None,
    triggering_workflow_id: str = "",
    chain_depth: int = 0,
    chain_root: str = "",
) -> Workflow:
    """Create a workflow and decide it, or create it QUEUED when its definition's limits hold
    it back (processors/admission.py); raises Rejected before changing anything."""
    if chain_depth:
        _check_chain(ctx, chain_depth, chain_root)
    runs = admission.admits(ctx, defn, correlation_id)
    for k, v in defn.get("inputTemplate", {}).items():
        wf_input.setdefault(k, v)
    task_defs = task_defs_of(ctx, defn)
    wf = Workflow(
        workflow_id=workflow_id,
        workflow_name=defn["name"],
        workflow_version=defn["version"],
        def_hash=registry.def_hash(defn, task_defs),
        status=WF_RUNNING if runs else WF_QUEUED,
        input=wf_input,
        output={},
        variables=dict(defn.get("variables", {})),
        correlation_id=correlation_id,
        priority=priority,
        idempotency_key=idempotency_key,
        create_time_ms=ctx.now,
        end_time_ms=0,
        reason_for_incompletion="",
        tasks=[],
        ref_index={},
        task_seq=0,
        parent_workflow_id=parent.workflow_id if parent is not None else "",
        parent_workflow_task_id=parent_task.task_id if parent_task is not None else "",
        depth=depth if depth is not None else (parent.depth + 1 if parent is not None else 0),
        task_to_domain=task_to_domain or {},
        triggering_workflow_id=triggering_workflow_id,
        chain_depth=chain_depth,
        chain_root=chain_root,
        start_time_ms=ctx.now if runs else 0,
    )
    ctx.emit(E.WorkflowStarted(wf, defn, task_defs))
    if runs:
        arm_timeout(ctx, workflow_id, defn)
        decider.decide(ctx, wf)
    return wf


def arm_timeout(ctx: Ctx, workflow_id: str, defn: JSON) -> None:
    """The definition's timeoutSeconds (TIME_OUT_WF) counts from now: a start, or (as
    Conductor's lastRetriedTime) a retry, restart, rerun or resume."""
    if defn.get("timeoutSeconds") and defn.get("timeoutPolicy", "TIME_OUT_WF") == "TIME_OUT_WF":
        due = ctx.now + defn["timeoutSeconds"] * 1000
        ctx.emit(E.TimerSet(f"wftmo:{workflow_id}", due))


def terminate_workflow(ctx: Ctx, cmd: TerminateWorkflow) -> dict[str, JSON]:
    wf = ctx.st.workflows.get(cmd.workflow_id)
    if wf is None:
        raise not_found(f"workflow {cmd.workflow_id} not found")
    if wf.status is WF_COMPLETED or wf.status is WF_COMPENSATED:  # both ended as meant to
        raise precondition(f"workflow {cmd.workflow_id} is {wf.status} and cannot be terminated")
    if wf.status == WF_TERMINATED:
        return {}
    reason = cmd.reason or "terminated through the API"
    if wf.status in WF_LIVE:
        end_workflow(ctx, wf, WF_TERMINATED, reason)
    else:  # FAILED / TIMED_OUT may be re-marked TERMINATED, as in Conductor
        ctx.emit(E.WorkflowReterminated(wf.workflow_id, reason))
    return {}


def end_workflow(
    ctx: Ctx,
    wf: Workflow,
    status: WorkflowStatus,
    reason: str,
    failed_task: Task | None = None,
    output: dict[str, JSON] | None = None,
    compensate: bool = True,
) -> None:
    """End a workflow: cancel what runs, set its output (`output`, else its outputParameters,
    else its last task's output), end its children, start its failure workflow. A failure
    compensates the completed steps first when they declare how (processors/compensation.py);
    a saga that cannot go on ends FAILED."""
    if wf.status is WF_COMPENSATING and status is not WF_TERMINATED:
        if status is not WF_COMPENSATED:
            status, reason = WF_FAILED, compensation.failed_reason(wf, reason)
    elif compensate and compensation.begin_on_failure(ctx, wf, status, reason, failed_task, output):
        return
    st = ctx.st
    children = cancel_active(ctx, wf, status)
    if output is None:
        output = output_at_end(st, wf, status, reason)
    failure_workflow = compensation.starts_failure_workflow(wf, status)
    ctx.emit(E.WorkflowEnded(wf.workflow_id, status, reason, output))
    end_children(ctx, wf, children, status)
    if failure_workflow:
        _start_failure_workflow(ctx, wf, failed_task)
    mirror_child(ctx, wf)
    retention.retire(ctx, wf.workflow_id)


def cancel_active(ctx: Ctx, wf: Workflow, status: WorkflowStatus) -> list[str]:
    """Cancel the workflow's active tasks; returns the children their SUB_WORKFLOW tasks ran."""
    st = ctx.st
    children: list[str] = []
    for tid in wf.tasks:
        t = st.tasks[tid]
        if t.status in T_ACTIVE:
            tasks.end_task(ctx, t, T_CANCELED, reason=f"workflow {status}")
            if t.sub_workflow_id:
                children.append(t.sub_workflow_id)
    return children


def end_children(ctx: Ctx, wf: Workflow, children: list[str], status: WorkflowStatus) -> None:
    """Ending a parent ends its running children (Conductor cancels a SUB_WORKFLOW by
    terminating the child); a child's end wakes its parent."""
    st = ctx.st
    for child_id in children:
        child = st.workflows.get(child_id)
        if child is not None and child.status in WF_LIVE:
            end_workflow(
                ctx,
                child,
                WF_TERMINATED,
                f"parent workflow {wf.workflow_id} {status}",
            )


def output_at_end(st: Any, wf: Workflow, status: WorkflowStatus, reason: str) -> dict[str, JSON]:
    out_params = registry.wf_def(st, wf).get("outputParameters") or {}
    output: JSON
    if out_params:
        # Resolved as the workflow ends: the document shows its final status and reason.
        doc = task_doc(st, wf)
        doc["workflow"].update(status=status._value_, reasonForIncompletion=reason)
        output = resolve(out_params, doc)
    elif wf.tasks:
        output = st.tasks[wf.tasks[-1]].output
    else:
        output = {}
    return output if isinstance(output, dict) else {"result": output}


def terminate_from_task(ctx: Ctx, wf: Workflow, task: Task) -> None:
    """A TERMINATE task ran: the workflow ends with its status and reason, and its output is
    the task's (Conductor's DeciderService.updateWorkflowOutput: outputParameters do not apply),
    set before a failure workflow starts, so that one sees it and its note stays in it. The
    TERMINATE task is the failure's task (Conductor's failedTaskId)."""
    status = WorkflowStatus(task.input.get("terminationStatus", WF_COMPLETED))
    # Conductor's Terminate task: without a reason, one naming the status and the task.
    reason = (
        task.input.get("terminationReason")
        or f"Workflow is {status._value_} by TERMINATE task: {task.task_id}"
    )
    output = dict(task.output)
    # Trigger 2 of a saga: `compensate: true` undoes the completed steps first.
    if task.input.get("compensate") is True and compensation.begin(
        ctx, wf, status, str(reason), failed_task=task, output=output
    ):
        return
    end_workflow(ctx, wf, status, str(reason), failed_task=task, output=output)


def _failed_view(st: Any, wf: Workflow) -> dict[str, JSON]:
    """The failed workflow as its failure workflow's input names it (`failedWorkflow`)."""
    view: dict[str, JSON] = {
        "workflowId": wf.workflow_id,
        "workflowName": wf.workflow_name,
        "workflowVersion": wf.workflow_version,
        "status": wf.status._value_,
        "input": wf.input,
        "output": wf.output,
        "reasonForIncompletion": wf.reason_for_incompletion,
        "correlationId": wf.correlation_id,
        "createTime": wf.create_time_ms,
        "endTime": wf.end_time_ms,
        "variables": wf.variables,
        "tasks": [task_view(st.tasks[t], wf.workflow_id) for t in wf.tasks],
    }
    if len(json.dumps(view, separators=(",", ":"))) > limits.MAX_JSON_BYTES:
        view["tasks"] = []
        view["tasksOmitted"] = "the failed workflow's tasks exceed MAX_JSON_BYTES"
    # Its own copy: in memory nothing may be shared between workflows (a snapshot would split
    # what a later in-place change relies on).
    return copy.deepcopy(view)


def _failure_note(ctx: Ctx, wf: Workflow, note: str) -> None:
    """Name the failure workflow (or why it did not start) in the failed workflow's output."""
    # The output may be the last task's output object: never mark that one.
    ctx.emit(
        E.WorkflowOutputSet(wf.workflow_id, dict(wf.output, **{"conductor.failure_workflow": note}))
    )


def _start_failure_workflow(ctx: Ctx, wf: Workflow, failed_task: Task | None) -> None:
    """Conductor's failureWorkflow: started when a workflow ends FAILED or TIMED_OUT through
    the decider (never by the terminate API, which ends it TERMINATED). Its id is derived from
    the failed workflow's, so re-applying never starts two; its input is the failed workflow's
    input plus workflowId, reason, failureStatus, failureTaskId (the task that failed, timed
    out or terminated it; absent when none did) and failedWorkflow (with its final output)."""
    st = ctx.st
    defn = registry.wf_def(st, wf)
    name = defn.get("failureWorkflow")
    if not name:
        return
    if name.startswith("$"):
        resolved = wf.input.get(name[len("${workflow.input.") : -1])
        if not isinstance(resolved, str) or not resolved:
            note = f"error: failureWorkflow {name} resolved to {stringify(resolved)}"
            return _failure_note(ctx, wf, note)
        name = resolved
    child_id = codec.built_id(f"{wf.workflow_id}-failure", limits.MAX_BUILT_ID_LENGTH)
    if child_id in st.workflows:  # an earlier run's (an operator ran it again): this run's own
        child_id = codec.built_id(f"{child_id}-{wf.task_seq}", limits.MAX_BUILT_ID_LENGTH)
    if wf.depth + 1 > limits.MAX_SUBWORKFLOW_DEPTH:
        note = (
            "error: not started, failure workflows nested deeper than "
            f"{limits.MAX_SUBWORKFLOW_DEPTH} levels"
        )
        return _failure_note(ctx, wf, note)
    child_input = copy.deepcopy(wf.input)
    child_input.update(
        workflowId=wf.workflow_id,
        reason=wf.reason_for_incompletion,
        failureStatus=wf.status._value_,
    )
    if wf.saga_status:  # after a saga: the failure that started it, and how it ended
        if wf.saga_status in (WF_FAILED, WF_TIMED_OUT):
            child_input["failureStatus"] = wf.saga_status
        child_input["compensationStatus"] = wf.status._value_
    if failed_task is not None:  # as Conductor: no key when no task failed (a timeout)
        child_input["failureTaskId"] = failed_task.task_id
    child_input["failedWorkflow"] = _failed_view(st, wf)
    try:
        fdef = registry.lookup_def(st, name, defn.get("failureWorkflowVersion") or 0)
        if child_id not in st.workflows:
            create_workflow(
                ctx,
                child_id,
                fdef,
                child_input,
                correlation_id=wf.correlation_id,
                priority=wf.priority,
                idempotency_key="",
                task_to_domain=wf.task_to_domain,
                depth=wf.depth + 1,
                triggering_workflow_id=wf.workflow_id,
                chain_depth=wf.chain_depth + 1,
                chain_root=wf.chain_root or wf.workflow_id,
            )
        _failure_note(ctx, wf, child_id)
    except (Rejected, TaskCannotRun) as exc:
        msg = exc.message if isinstance(exc, Rejected) else exc.reason
        _failure_note(ctx, wf, f"error: {msg}")


# ---------------------------------------------------------------- children


def _check_chain(ctx: Ctx, chain_depth: int, chain_root: str) -> None:
    """Workflows started by workflows: bounded along the chain, over the chain's life and per
    command (a workflow that starts itself from its input would otherwise recurse inside apply,
    or double each time)."""
    if chain_depth > limits.MAX_CHAIN_DEPTH:
        raise precondition(
            f"more than {limits.MAX_CHAIN_DEPTH} workflows started one by another in a chain"
        )
    started, _ = ctx.st.chains.get(chain_root, (1, 0))
    if started >= limits.MAX_CHAIN_WORKFLOWS:
        raise precondition(
            f"chain of {chain_root[:100]} has started {limits.MAX_CHAIN_WORKFLOWS} workflows, "
            "the most one chain may"
        )
    ctx.created += 1
    if ctx.created > limits.MAX_WORKFLOWS_PER_COMMAND:
        raise precondition(
            f"more than {limits.MAX_WORKFLOWS_PER_COMMAND} workflows started by one command"
        )


def launch(
    ctx: Ctx,
    parent: Workflow,
    child_id: str,
    defn: JSON,
    child_input: JSON,
    correlation_id: str,
    parent_task: Task | None,
    task_to_domain: dict[str, str] | None = None,
) -> None:
    """Start a child workflow of a task (SUB_WORKFLOW, or START_WORKFLOW without a parent link);
    a child that cannot start fails the task."""
    if child_id in ctx.st.workflows:
        return
    mark = ctx.mark()
    try:
        create_workflow(
            ctx,
            child_id,
            defn,
            child_input,
            correlation_id=correlation_id,
            priority=parent.priority,
            idempotency_key="",
            parent=parent if parent_task is not None else None,
            parent_task=parent_task,
            task_to_domain=task_to_domain,
            chain_depth=parent.chain_depth + 1,
            chain_root=parent.chain_root or parent.workflow_id,
        )
    except Rejected as rej:
        ctx.rollback(mark)  # a child that started half way is not left behind
        raise TaskCannotRun(f"{defn['name']}: {rej.message}") from None


def mirror_child(ctx: Ctx, child: Workflow) -> None:
    """A child workflow ended: its SUB_WORKFLOW task in the parent mirrors the end (later, in
    `drain`, so a parent is never decided from inside its own decide)."""
    if child.parent_workflow_id:
        ctx.wakes.append(
            (child.parent_workflow_id, child.parent_workflow_task_id, child.workflow_id)
        )


_CHILD_END = {
    WF_TIMED_OUT: T_TIMED_OUT,
    WF_TERMINATED: T_CANCELED,
}


def drain(ctx: Ctx) -> None:
    """Mirror every child that ended into its parent's SUB_WORKFLOW task, and start the QUEUED
    workflows that a running one's end made room for (in turn: whatever those lead to is
    drained too, iteratively, however long the chain)."""
    while True:
        _mirror(ctx)
        if not ctx.freed:
            return
        admission.promote(ctx, ctx.freed.pop(0))


def _mirror(ctx: Ctx) -> None:
    st = ctx.st
    while ctx.wakes:
        parent_id, task_id, child_id = ctx.wakes.pop(0)
        parent = st.workflows.get(parent_id)
        task = st.tasks.get(task_id)
        child = st.workflows.get(child_id)
        if parent is None or task is None or child is None:
            continue
        if parent.status not in WF_LIVE:  # a PAUSED parent records it and decides on resume
            continue
        if task.status not in T_ACTIVE or task.sub_workflow_id != child_id:
            continue
        status = child.status
        if status == WF_COMPLETED:
            output = dict(child.output, subWorkflowId=child_id)
            tasks.end_task(ctx, task, T_COMPLETED, output)
            decider.decide(ctx, parent)
            continue
        tasks.end_task(
            ctx,
            task,
            _CHILD_END.get(status, T_FAILED),
            output={"subWorkflowId": child_id},
            reason=f"sub-workflow {child_id} {status}: {child.reason_for_incompletion}",
        )
        tasks.handle_failure(ctx, parent, task)


# ---------------------------------------------------------------- quarantine


def quarantine_workflow(ctx: Ctx, wf: Workflow, reason: str) -> None:
    """Mark a running workflow FAILED with the reason, identically on every replica."""
    mark = ctx.mark()
    try:
        if wf.status in WF_LIVE:
            end_workflow(ctx, wf, WF_FAILED, reason, compensate=False)
    except Exception:  # even ending it failed: force the status so nothing waits on it
        ctx.rollback(mark)
        ctx.emit(E.WorkflowQuarantined(wf.workflow_id, reason))
        with contextlib.suppress(Exception):
            mirror_child(ctx, wf)
