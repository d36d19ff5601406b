"""The operator's calls of OrchestratorClient: pause, resume, restart, retry, rerun, skip a
task, remove, the same in bulk, and synchronous execution."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc

from orchestrator_client._codec import (
    encode_document,
    new_request_id,
)
from orchestrator_client._rpc import rpc_of
from orchestrator_client._search import search_request
from orchestrator_client._transport import Transport
from orchestrator_client._views import Workflow
from orchestrator_client._workflows import start_request
from orchestrator_client.v1 import workflows_pb2

__all__ = ["BULK_ACTIONS", "BulkBatches", "BulkResult", "OperationCalls"]

# What bulk_action accepts.
BULK_ACTIONS: Final = (
    "pause",
    "resume",
    "restart",
    "retry",
    "terminate",
    "remove",
    "compensate",
)
# The most workflows one BulkAction call acts on.
MAX_BULK_ITEMS: Final = 1000
# ExecuteWorkflow's longest wait on the server, in seconds.
_MAX_EXECUTE_WAIT_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class BulkResult:
    """One workflow's outcome in a bulk action: ``code`` is ``"OK"`` or a gRPC status name."""

    workflow_id: str
    code: str
    message: str

    @property
    def ok(self) -> bool:
        """Whether the action was applied to this workflow.

        Returns:
            True when code is ``"OK"``.
        """
        return self.code == "OK"


# The requests and answers of the calls, shared with the asyncio client (_aio_operations).
def pause_request(workflow_id: str, request_id: str | None) -> workflows_pb2.PauseWorkflowRequest:
    """A PauseWorkflowRequest (see OperationCalls.pause_workflow)."""
    return workflows_pb2.PauseWorkflowRequest(
        request_id=request_id or new_request_id(), workflow_id=workflow_id
    )


def resume_request(workflow_id: str, request_id: str | None) -> workflows_pb2.ResumeWorkflowRequest:
    """A ResumeWorkflowRequest (see OperationCalls.resume_workflow)."""
    return workflows_pb2.ResumeWorkflowRequest(
        request_id=request_id or new_request_id(), workflow_id=workflow_id
    )


def restart_request(
    workflow_id: str, use_latest_definition: bool, request_id: str | None
) -> workflows_pb2.RestartWorkflowRequest:
    """A RestartWorkflowRequest (see OperationCalls.restart_workflow)."""
    return workflows_pb2.RestartWorkflowRequest(
        request_id=request_id or new_request_id(),
        workflow_id=workflow_id,
        use_latest_definition=use_latest_definition,
    )


def retry_request(
    workflow_id: str, resume_subworkflow_tasks: bool, request_id: str | None
) -> workflows_pb2.RetryWorkflowRequest:
    """A RetryWorkflowRequest (see OperationCalls.retry_workflow)."""
    return workflows_pb2.RetryWorkflowRequest(
        request_id=request_id or new_request_id(),
        workflow_id=workflow_id,
        resume_subworkflow_tasks=resume_subworkflow_tasks,
    )


def rerun_request(
    workflow_id: str,
    task_id: str,
    task_input: Mapping[str, Any] | None,
    workflow_input: Mapping[str, Any] | None,
    request_id: str | None,
) -> workflows_pb2.RerunWorkflowRequest:
    """A RerunWorkflowRequest (see OperationCalls.rerun_workflow)."""
    return workflows_pb2.RerunWorkflowRequest(
        request_id=request_id or new_request_id(),
        workflow_id=workflow_id,
        task_id=task_id,
        task_input_json=encode_document(task_input),
        workflow_input_json=encode_document(workflow_input),
    )


def skip_request(
    workflow_id: str,
    task_reference_name: str,
    output: Mapping[str, Any] | None,
    request_id: str | None,
) -> workflows_pb2.SkipTaskRequest:
    """A SkipTaskRequest (see OperationCalls.skip_task)."""
    return workflows_pb2.SkipTaskRequest(
        request_id=request_id or new_request_id(),
        workflow_id=workflow_id,
        task_reference_name=task_reference_name,
        output_json=encode_document(output),
    )


def remove_request(workflow_id: str, request_id: str | None) -> workflows_pb2.RemoveWorkflowRequest:
    """A RemoveWorkflowRequest (see OperationCalls.remove_workflow)."""
    return workflows_pb2.RemoveWorkflowRequest(
        request_id=request_id or new_request_id(), workflow_id=workflow_id
    )


def compensate_request(
    workflow_id: str, reason: str, request_id: str | None
) -> workflows_pb2.CompensateWorkflowRequest:
    """A CompensateWorkflowRequest (see OperationCalls.compensate_workflow)."""
    return workflows_pb2.CompensateWorkflowRequest(
        request_id=request_id or new_request_id(), workflow_id=workflow_id, reason=reason
    )


class BulkBatches:
    """The BulkAction requests of one bulk_action, a batch at a time (no I/O: both clients
    send them). Each has a request id of its own, reused by that call's retries."""

    def __init__(
        self,
        action: str,
        workflow_ids: Sequence[str] | None,
        filters: Mapping[str, Any] | None,
        batch_size: int,
        *,
        reason: str,
        use_latest_definition: bool,
        resume_subworkflow_tasks: bool,
    ) -> None:
        """The arguments are bulk_action's.

        Raises:
            ValueError: Unknown action, a bad batch size, or neither ids nor filters.
        """
        if action not in BULK_ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {BULK_ACTIONS}")
        if not 1 <= batch_size <= MAX_BULK_ITEMS:
            raise ValueError(f"batch_size must be between 1 and {MAX_BULK_ITEMS}")
        if workflow_ids is None and filters is None:
            raise ValueError("give workflow_ids or filters")
        self._template = workflows_pb2.BulkActionRequest(
            action=f"BULK_ACTION_TYPE_{action.upper()}",
            reason=reason,
            use_latest_definition=use_latest_definition,
            resume_subworkflow_tasks=resume_subworkflow_tasks,
        )
        self._ids = list(workflow_ids) if workflow_ids is not None else None
        self._size = batch_size
        self._sent = 0
        # Filters given with ids are ignored, as they always were.
        self._search = (
            search_request(page_size=batch_size, with_total=False, **(filters or {}))
            if self._ids is None
            else workflows_pb2.SearchWorkflowsRequest()
        )

    def next_request(self, answered_token: str | None) -> workflows_pb2.BulkActionRequest | None:
        """The next batch's request, or None after the last; ``answered_token`` is the previous
        answer's next_page_token (None before the first call)."""
        request = workflows_pb2.BulkActionRequest()
        request.CopyFrom(self._template)
        request.request_id = new_request_id()
        if self._ids is not None:
            if self._sent >= len(self._ids):
                return None
            request.workflow_ids.extend(self._ids[self._sent : self._sent + self._size])
            self._sent += self._size
            return request
        if answered_token is not None:
            if not answered_token or answered_token == self._search.page_token:
                return None
            self._search.page_token = answered_token
        request.search.CopyFrom(self._search)
        return request


def bulk_results(response: workflows_pb2.BulkActionResponse) -> tuple[list[BulkResult], str]:
    """A BulkAction answer: each workflow's outcome, and the next page's token."""
    results = [BulkResult(r.workflow_id, _code_name(r.code), r.message) for r in response.results]
    return results, response.next_page_token


def execute_request(
    name: str,
    input: Mapping[str, Any] | None,
    *,
    wait_s: float,
    include_tasks: bool,
    **start: Any,
) -> workflows_pb2.ExecuteWorkflowRequest:
    """An ExecuteWorkflowRequest (see OperationCalls.execute_workflow); ``start``: the
    start_request keywords.

    Raises:
        ValueError: A wait outside (0, 60] seconds or an unknown strategy.
    """
    if not 0 < wait_s <= _MAX_EXECUTE_WAIT_S:
        raise ValueError(f"wait_s must be in (0, {_MAX_EXECUTE_WAIT_S}]")
    return workflows_pb2.ExecuteWorkflowRequest(
        start=start_request(name, input, **start),
        wait_timeout_ms=int(wait_s * 1000),
        include_tasks=include_tasks,
    )


class OperationCalls:
    """The operator and execution calls of WorkflowService, as client methods."""

    _transport: Transport

    def _act(self, request: Any, timeout_s: float | None, retry_budget_s: float | None) -> None:
        """One action's call (its response is empty)."""
        self._transport.invoke(
            request,
            rpc_of(request).response_type,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )

    def pause_workflow(
        self,
        workflow_id: str,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Pauses a running workflow: nothing new is scheduled until it is resumed.

        Args:
            workflow_id: The workflow id.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            NotFoundError: No such workflow.
            FailedPreconditionError: The workflow is not running.
            OrchestratorError: Any other server error.
        """
        self._act(pause_request(workflow_id, request_id), timeout_s, retry_budget_s)

    def resume_workflow(
        self,
        workflow_id: str,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Resumes a paused workflow.

        Args:
            workflow_id: The workflow id.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            NotFoundError: No such workflow.
            FailedPreconditionError: The workflow is not paused.
            OrchestratorError: Any other server error.
        """
        self._act(resume_request(workflow_id, request_id), timeout_s, retry_budget_s)

    def restart_workflow(
        self,
        workflow_id: str,
        *,
        use_latest_definition: bool = False,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Restarts an ended workflow (also one archived in history) from the beginning.

        Args:
            workflow_id: The workflow id (it stays the same).
            use_latest_definition: Run the latest version of its definition.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            NotFoundError: No such workflow.
            FailedPreconditionError: The workflow has not ended.
            OrchestratorError: Any other server error.
        """
        request = restart_request(workflow_id, use_latest_definition, request_id)
        self._act(request, timeout_s, retry_budget_s)

    def retry_workflow(
        self,
        workflow_id: str,
        *,
        resume_subworkflow_tasks: bool = False,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Retries a failed, timed out or terminated workflow from its failed tasks.

        Args:
            workflow_id: The workflow id (also one archived in history).
            resume_subworkflow_tasks: Retry a failed sub-workflow's child instead of starting
                a new child.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            NotFoundError: No such workflow.
            FailedPreconditionError: The workflow is running or completed.
            OrchestratorError: Any other server error.
        """
        request = retry_request(workflow_id, resume_subworkflow_tasks, request_id)
        self._act(request, timeout_s, retry_budget_s)

    def rerun_workflow(
        self,
        workflow_id: str,
        *,
        task_id: str = "",
        task_input: Mapping[str, Any] | None = None,
        workflow_input: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Reruns a workflow from one of its tasks; the tasks after it are dropped.

        Args:
            workflow_id: The workflow id (also one archived in history).
            task_id: The task to rerun from; empty reruns from the beginning.
            task_input: The task's new input; None keeps it.
            workflow_input: The workflow's new input; None keeps it.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            NotFoundError: No such workflow or task.
            FailedPreconditionError: The workflow cannot be rerun now.
            OrchestratorError: Any other server error.
        """
        request = rerun_request(workflow_id, task_id, task_input, workflow_input, request_id)
        self._act(request, timeout_s, retry_budget_s)

    def skip_task(
        self,
        workflow_id: str,
        task_reference_name: str,
        output: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Skips a task of a running workflow: it becomes SKIPPED and the workflow goes on.

        Args:
            workflow_id: The workflow id.
            task_reference_name: The task's reference name (scheduled, in progress, or not
                scheduled yet).
            output: The skipped task's output; None means ``{}``.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            NotFoundError: No such workflow or task.
            FailedPreconditionError: The workflow is not running, or the task has ended.
            OrchestratorError: Any other server error.
        """
        request = skip_request(workflow_id, task_reference_name, output, request_id)
        self._act(request, timeout_s, retry_budget_s)

    def remove_workflow(
        self,
        workflow_id: str,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Removes an ended workflow from memory and history.

        Args:
            workflow_id: The workflow id.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            NotFoundError: Neither in memory nor in history.
            FailedPreconditionError: The workflow is running or paused.
            OrchestratorError: Any other server error.
        """
        self._act(remove_request(workflow_id, request_id), timeout_s, retry_budget_s)

    def compensate_workflow(
        self,
        workflow_id: str,
        reason: str = "",
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Compensates a workflow (a saga): its completed steps' compensateWith tasks run in
        reverse completion order; it is COMPENSATING, then COMPENSATED (or FAILED when a
        compensation fails for good).

        A running or paused workflow is stopped first; a failed, terminated or timed out one
        (archived too) is compensated. Compensating one that is COMPENSATING changes nothing.

        Args:
            workflow_id: The workflow id.
            reason: Why; the workflow's reason when it was running.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            NotFoundError: Neither in memory nor in history.
            FailedPreconditionError: It is COMPLETED or COMPENSATED, or ended with nothing to
                compensate.
            OrchestratorError: Any other server error.
        """
        request = compensate_request(workflow_id, reason, request_id)
        self._act(request, timeout_s, retry_budget_s)

    def bulk_action(
        self,
        action: str,
        workflow_ids: Sequence[str] | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        batch_size: int = 100,
        reason: str = "",
        use_latest_definition: bool = False,
        resume_subworkflow_tasks: bool = False,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> Iterator[BulkResult]:
        """One action on many workflows, in bounded batches, reported per workflow.

        Each batch is one BulkAction call (retried with its request id, so a workflow is
        acted on at most once per batch); the next batch is sent as the caller iterates.

        Args:
            action: One of ``BULK_ACTIONS``.
            workflow_ids: The workflows; None to act on the matches of ``filters``.
            filters: Search filters, as for :meth:`search_workflows` (without paging).
            batch_size: Workflows per call (1-1000).
            reason: The reason, for ``terminate`` and ``compensate``.
            use_latest_definition: For ``restart``.
            resume_subworkflow_tasks: For ``retry``.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            An iterator over each workflow's outcome.

        Raises:
            ValueError: Unknown action, a bad batch size, or neither ids nor filters.
            OrchestratorError: A batch failed as a whole (while iterating).
        """
        batches = BulkBatches(
            action,
            workflow_ids,
            filters,
            batch_size,
            reason=reason,
            use_latest_definition=use_latest_definition,
            resume_subworkflow_tasks=resume_subworkflow_tasks,
        )
        request = batches.next_request(None)
        while request is not None:
            response = self._transport.invoke(
                request,
                workflows_pb2.BulkActionResponse,
                request.request_id,
                timeout_s=timeout_s,
                retry_budget_s=retry_budget_s,
            )
            results, token = bulk_results(response)
            yield from results
            request = batches.next_request(token)

    def execute_workflow(
        self,
        name: str,
        input: Mapping[str, Any] | None = None,
        *,
        wait_s: float = 10.0,
        include_tasks: bool = False,
        version: int = 0,
        correlation_id: str = "",
        idempotency_key: str = "",
        idempotency_strategy: str = "FAIL",
        priority: int = 0,
        request_id: str | None = None,
        retry_budget_s: float | None = None,
    ) -> tuple[Workflow, bool]:
        """Starts a workflow and waits for its end, in one call (synchronous execution).

        A retry (with the same request id) starts nothing new: it waits for the workflow the
        first attempt started.

        Args:
            name: The workflow definition name.
            input: The workflow input; None means ``{}``.
            wait_s: How long the server waits for the end (at most 60 s).
            include_tasks: Return the workflow with its tasks.
            version: The definition version; 0 means the latest.
            correlation_id: Free-form id to find related workflows by.
            idempotency_key: Business key that identifies this start across calls.
            idempotency_strategy: As for :meth:`start_workflow`.
            priority: Workflow priority (0-99).
            request_id: Idempotency id of the start; generated when None.
            retry_budget_s: Overall deadline override.

        Returns:
            (the workflow as it was when the wait ended, whether it had ended).

        Raises:
            ValueError: A wait outside (0, 60] seconds or an unknown strategy.
            NotFoundError: No such workflow definition.
            OrchestratorError: Any other server error.
        """
        request = execute_request(
            name,
            input,
            wait_s=wait_s,
            include_tasks=include_tasks,
            version=version,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
            idempotency_strategy=idempotency_strategy,
            priority=priority,
            request_id=request_id,
        )
        response = self._transport.invoke(
            request,
            workflows_pb2.ExecuteWorkflowResponse,
            request.start.request_id,
            # The attempt must outlive the server's wait.
            timeout_s=wait_s + self._transport.timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return Workflow.from_proto(response.workflow), response.ended


def _code_name(code: int) -> str:
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return str(status.name)
    return str(code)
