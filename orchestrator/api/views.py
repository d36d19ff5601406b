"""What core.queries returns -> protobuf messages (mapped under the replica's lock)."""

from __future__ import annotations

import json
from typing import Any

from orchestrator_client.v1 import workflows_pb2 as wpb


def _j(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def task_pb(t: dict[str, Any]) -> wpb.Task:
    return wpb.Task(
        task_id=t["taskId"],
        task_type=t["taskType"],
        reference_task_name=t["referenceTaskName"],
        workflow_id=t["workflowId"],
        workflow_type=t["workflowType"],
        status=wpb.TaskStatus.Value("TASK_STATUS_" + t["status"]),
        input_json=_j(t["input"]),
        output_json=_j(t["output"]),
        retry_count=t["retryCount"],
        poll_count=t["pollCount"],
        scheduled_time_ms=t["scheduledTime"],
        start_time_ms=t["startTime"],
        end_time_ms=t["endTime"],
        reason_for_incompletion=t["reasonForIncompletion"],
        worker_id=t["workerId"],
        response_timeout_seconds=t["responseTimeoutSeconds"],
        lease_expires_ms=t["leaseExpiresTime"],
        seq=t["seq"],
        retried_task_id=t["retriedTaskId"],
        correlation_id=t["correlationId"],
        domain=t.get("domain", ""),
    )


def workflow_pb(wf: dict[str, Any], tasks: list[dict[str, Any]] | None) -> wpb.Workflow:
    msg = wpb.Workflow(
        workflow_id=wf["workflowId"],
        workflow_name=wf["workflowName"],
        workflow_version=wf["workflowVersion"],
        status=wpb.WorkflowStatus.Value("WORKFLOW_STATUS_" + wf["status"]),
        input_json=_j(wf["input"]),
        output_json=_j(wf["output"]),
        reason_for_incompletion=wf["reasonForIncompletion"],
        correlation_id=wf["correlationId"],
        create_time_ms=wf["createTime"],
        end_time_ms=wf["endTime"],
        variables_json=_j(wf["variables"]),
        idempotency_key=wf["idempotencyKey"],
        priority=wf["priority"],
        task_to_domain=wf.get("taskToDomain") or {},
        triggering_workflow_id=wf.get("triggeringWorkflowId", ""),
    )
    if tasks is not None:
        msg.tasks.extend(task_pb(t) for t in tasks)
    return msg
