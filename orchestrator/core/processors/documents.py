"""The documents `${...}` expressions resolve against, built from a workflow and its tasks."""

from __future__ import annotations

from typing import Any

from ..records import Task, Workflow
from ..state import State

JSON = Any


def task_view(t: Task, wf_id: str) -> dict[str, JSON]:
    """A task as expressions (and a failure workflow's input) see it: Conductor's names."""
    return {
        "input": t.input,
        "output": t.output,
        "status": t.status._value_,
        "taskId": t.task_id,
        "taskType": t.task_type,
        "referenceTaskName": t.reference_task_name,
        "retryCount": t.retry_count,
        "pollCount": t.poll_count,
        "scheduledTime": t.scheduled_time_ms,
        "startTime": t.start_time_ms,
        "endTime": t.end_time_ms,
        "workerId": t.worker_id,
        "reasonForIncompletion": t.reason_for_incompletion,
        "workflowInstanceId": wf_id,
        "iteration": t.iteration,
        "domain": t.domain,
    }


def task_doc(st: State, wf: Workflow, pending: Task | None = None) -> dict[str, JSON]:
    """The document for a workflow: the latest attempt per reference (a task inside a DO_WHILE
    also answers to its reference without the `__N` suffix). `pending`: a task about to be
    scheduled, seen as the workflow's newest task (its own input is resolved against it)."""
    doc: dict[str, JSON] = {
        "workflow": {
            "input": wf.input,
            "output": wf.output,
            "status": wf.status._value_,
            "workflowId": wf.workflow_id,
            "parentWorkflowId": wf.parent_workflow_id,
            "parentWorkflowTaskId": wf.parent_workflow_task_id,
            "workflowType": wf.workflow_name,
            "version": wf.workflow_version,
            "correlationId": wf.correlation_id,
            "variables": wf.variables,
            "reasonForIncompletion": wf.reason_for_incompletion,
            "schemaVersion": 2,
        }
    }
    tasks = st.tasks
    for tid in wf.tasks:
        _add(doc, tasks[tid], wf.workflow_id)
    if pending is not None:
        _add(doc, pending, wf.workflow_id)
    return doc


def _add(doc: dict[str, JSON], t: Task, wf_id: str) -> None:
    view = task_view(t, wf_id)
    doc[t.reference_task_name] = view
    if t.base_ref:
        doc[t.base_ref] = view
