"""What core.queries returns -> protobuf messages (mapped under the replica's lock)."""

from __future__ import annotations

import json
from typing import Any

from orchestrator_client.v1 import workflows_pb2 as wpb

from ..core.records import Task, Workflow


def _j(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def task_pb(t: Task) -> wpb.Task:
    return wpb.Task(
        task_id=t.task_id,
        task_type=t.task_type,
        reference_task_name=t.reference_task_name,
        workflow_id=t.workflow_id,
        workflow_type=t.workflow_type,
        status=wpb.TaskStatus.Value("TASK_STATUS_" + t.status.value),
        input_json=_j(t.input),
        output_json=_j(t.output),
        retry_count=t.retry_count,
        poll_count=t.poll_count,
        scheduled_time_ms=t.scheduled_time_ms,
        start_time_ms=t.start_time_ms,
        end_time_ms=t.end_time_ms,
        reason_for_incompletion=t.reason_for_incompletion,
        worker_id=t.worker_id,
        response_timeout_seconds=t.response_timeout_seconds,
        lease_expires_ms=t.lease_expires_ms,
        seq=t.seq,
        retried_task_id=t.retried_task_id,
        correlation_id=t.correlation_id,
        domain=t.domain,
    )


def workflow_pb(wf: Workflow, tasks: list[Task] | None) -> wpb.Workflow:
    msg = wpb.Workflow(
        workflow_id=wf.workflow_id,
        workflow_name=wf.workflow_name,
        workflow_version=wf.workflow_version,
        status=wpb.WorkflowStatus.Value("WORKFLOW_STATUS_" + wf.status.value),
        input_json=_j(wf.input),
        output_json=_j(wf.output),
        reason_for_incompletion=wf.reason_for_incompletion,
        correlation_id=wf.correlation_id,
        create_time_ms=wf.create_time_ms,
        end_time_ms=wf.end_time_ms,
        variables_json=_j(wf.variables),
        idempotency_key=wf.idempotency_key,
        priority=wf.priority,
        task_to_domain=wf.task_to_domain,
        triggering_workflow_id=wf.triggering_workflow_id,
    )
    if tasks is not None:
        msg.tasks.extend(task_pb(t) for t in tasks)
    return msg
