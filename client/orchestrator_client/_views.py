"""Typed views of the server's objects: Task and Workflow, each mapped from its message once.

JSON documents are decoded and statuses are plain strings ("RUNNING"), so callers never touch
protobuf types.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final

from orchestrator_client._codec import (
    TASK_STATUS_PREFIX,
    WORKFLOW_STATUS_PREFIX,
    decode_object,
    enum_name,
)
from orchestrator_client.v1 import workflows_pb2

_TERMINAL_WORKFLOW_STATUSES: Final = frozenset(
    {"COMPLETED", "FAILED", "TERMINATED", "TIMED_OUT", "COMPENSATED"}
)
_TERMINAL_TASK_STATUSES: Final = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "FAILED_WITH_TERMINAL_ERROR",
        "TIMED_OUT",
        "CANCELED",
        "COMPLETED_WITH_ERRORS",
        "SKIPPED",
    }
)


@dataclass(frozen=True, slots=True)
class Task:
    """One attempt of a task, as the server reports it.

    JSON documents are decoded (``input``, ``output``) and the status is a plain string such
    as ``"IN_PROGRESS"``.
    """

    task_id: str
    task_type: str
    reference_task_name: str
    workflow_id: str
    workflow_type: str
    status: str
    input: dict[str, Any]
    output: dict[str, Any]
    retry_count: int
    poll_count: int
    scheduled_time_ms: int
    start_time_ms: int
    end_time_ms: int
    reason_for_incompletion: str
    worker_id: str
    response_timeout_seconds: int
    lease_expires_ms: int
    seq: int
    retried_task_id: str
    correlation_id: str
    domain: str = ""

    @property
    def is_terminal(self) -> bool:
        """Whether this attempt has finished (completed, failed, timed out, canceled, skipped).

        Returns:
            True for a final status.
        """
        return self.status in _TERMINAL_TASK_STATUSES

    @classmethod
    def from_proto(cls, msg: workflows_pb2.Task) -> Task:
        """Builds the view from the wire message.

        Args:
            msg: An ``orchestrator.v1.Task`` message.

        Returns:
            The decoded task.

        Raises:
            ValueError: A JSON field does not hold a JSON object.
        """
        return cls(
            task_id=msg.task_id,
            task_type=msg.task_type,
            reference_task_name=msg.reference_task_name,
            workflow_id=msg.workflow_id,
            workflow_type=msg.workflow_type,
            status=enum_name(workflows_pb2.TaskStatus, msg.status, TASK_STATUS_PREFIX),
            input=decode_object(msg.input_json),
            output=decode_object(msg.output_json),
            retry_count=msg.retry_count,
            poll_count=msg.poll_count,
            scheduled_time_ms=msg.scheduled_time_ms,
            start_time_ms=msg.start_time_ms,
            end_time_ms=msg.end_time_ms,
            reason_for_incompletion=msg.reason_for_incompletion,
            worker_id=msg.worker_id,
            response_timeout_seconds=msg.response_timeout_seconds,
            lease_expires_ms=msg.lease_expires_ms,
            seq=msg.seq,
            retried_task_id=msg.retried_task_id,
            correlation_id=msg.correlation_id,
            domain=msg.domain,
        )


@dataclass(frozen=True, slots=True)
class Workflow:
    """A workflow execution, as the server reports it.

    JSON documents are decoded (``input``, ``output``, ``variables``), the status is a plain
    string such as ``"RUNNING"``, and ``tasks`` is empty when fetched without tasks.
    """

    workflow_id: str
    workflow_name: str
    workflow_version: int
    status: str
    input: dict[str, Any]
    output: dict[str, Any]
    reason_for_incompletion: str
    correlation_id: str
    create_time_ms: int
    end_time_ms: int
    tasks: tuple[Task, ...]
    variables: dict[str, Any]
    idempotency_key: str
    priority: int
    task_to_domain: dict[str, str] = dataclasses.field(default_factory=dict)
    triggering_workflow_id: str = ""
    # When it last started running (0 while QUEUED behind its definition's limits).
    start_time_ms: int = 0

    @property
    def is_terminal(self) -> bool:
        """Whether the workflow has finished (COMPLETED, FAILED, TERMINATED or TIMED_OUT).

        Returns:
            True for a final status; PAUSED and RUNNING are not final.
        """
        return self.status in _TERMINAL_WORKFLOW_STATUSES

    def task_by_ref(self, reference_task_name: str) -> Task | None:
        """Finds the latest attempt of a task by its reference name.

        Args:
            reference_task_name: The ``taskReferenceName`` from the workflow definition.

        Returns:
            The attempt with the highest ``seq`` for that reference, or None if there is none
            (or the workflow was fetched without tasks).
        """
        found: Task | None = None
        for task in self.tasks:
            if task.reference_task_name == reference_task_name and (
                found is None or task.seq >= found.seq
            ):
                found = task
        return found

    @classmethod
    def from_proto(cls, msg: workflows_pb2.Workflow) -> Workflow:
        """Builds the view from the wire message.

        Args:
            msg: An ``orchestrator.v1.Workflow`` message.

        Returns:
            The decoded workflow.

        Raises:
            ValueError: A JSON field does not hold a JSON object.
        """
        return cls(
            workflow_id=msg.workflow_id,
            workflow_name=msg.workflow_name,
            workflow_version=msg.workflow_version,
            status=enum_name(workflows_pb2.WorkflowStatus, msg.status, WORKFLOW_STATUS_PREFIX),
            input=decode_object(msg.input_json),
            output=decode_object(msg.output_json),
            reason_for_incompletion=msg.reason_for_incompletion,
            correlation_id=msg.correlation_id,
            create_time_ms=msg.create_time_ms,
            end_time_ms=msg.end_time_ms,
            tasks=tuple(Task.from_proto(t) for t in msg.tasks),
            variables=decode_object(msg.variables_json),
            idempotency_key=msg.idempotency_key,
            priority=msg.priority,
            task_to_domain=dict(msg.task_to_domain),
            triggering_workflow_id=msg.triggering_workflow_id,
            start_time_ms=msg.start_time_ms,
        )
