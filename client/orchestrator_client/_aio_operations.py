"""The asyncio client's operator and execution calls: the sync calls' requests and decoders
(_operations), awaited on the asyncio transport.

Arguments, results and errors are those of the sync method of the same name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from orchestrator_client._aio_transport import AioTransport
from orchestrator_client._operations import (
    BulkBatches,
    BulkResult,
    bulk_results,
    compensate_request,
    execute_request,
    pause_request,
    remove_request,
    rerun_request,
    restart_request,
    resume_request,
    retry_request,
    skip_request,
)
from orchestrator_client._rpc import rpc_of
from orchestrator_client._views import Workflow
from orchestrator_client.v1 import workflows_pb2

__all__ = ["AioOperationCalls", "act"]


async def act(
    transport: AioTransport,
    request: Any,
    timeout_s: float | None,
    retry_budget_s: float | None,
) -> None:
    """One action's call (its response is empty), retried with its request id."""
    await transport.invoke(
        request,
        rpc_of(request).response_type,
        request.request_id,
        timeout_s=timeout_s,
        retry_budget_s=retry_budget_s,
    )


class AioOperationCalls:
    """The operator and execution calls of WorkflowService, as coroutines of
    AsyncOrchestratorClient."""

    _transport: AioTransport

    async def pause_workflow(
        self,
        workflow_id: str,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Pauses a running workflow (see OrchestratorClient.pause_workflow)."""
        request = pause_request(workflow_id, request_id)
        await act(self._transport, request, timeout_s, retry_budget_s)

    async def resume_workflow(
        self,
        workflow_id: str,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Resumes a paused workflow (see OrchestratorClient.resume_workflow)."""
        request = resume_request(workflow_id, request_id)
        await act(self._transport, request, timeout_s, retry_budget_s)

    async def restart_workflow(
        self,
        workflow_id: str,
        *,
        use_latest_definition: bool = False,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Restarts an ended workflow (see OrchestratorClient.restart_workflow)."""
        request = restart_request(workflow_id, use_latest_definition, request_id)
        await act(self._transport, request, timeout_s, retry_budget_s)

    async def retry_workflow(
        self,
        workflow_id: str,
        *,
        resume_subworkflow_tasks: bool = False,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Retries a failed workflow from its failed tasks (see
        OrchestratorClient.retry_workflow)."""
        request = retry_request(workflow_id, resume_subworkflow_tasks, request_id)
        await act(self._transport, request, timeout_s, retry_budget_s)

    async def rerun_workflow(
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
        """Reruns a workflow from one of its tasks (see OrchestratorClient.rerun_workflow)."""
        request = rerun_request(workflow_id, task_id, task_input, workflow_input, request_id)
        await act(self._transport, request, timeout_s, retry_budget_s)

    async def skip_task(
        self,
        workflow_id: str,
        task_reference_name: str,
        output: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Skips a task of a running workflow (see OrchestratorClient.skip_task)."""
        request = skip_request(workflow_id, task_reference_name, output, request_id)
        await act(self._transport, request, timeout_s, retry_budget_s)

    async def remove_workflow(
        self,
        workflow_id: str,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Removes an ended workflow from memory and history (see
        OrchestratorClient.remove_workflow)."""
        request = remove_request(workflow_id, request_id)
        await act(self._transport, request, timeout_s, retry_budget_s)

    async def compensate_workflow(
        self,
        workflow_id: str,
        reason: str = "",
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Compensates a workflow, a saga (see OrchestratorClient.compensate_workflow)."""
        request = compensate_request(workflow_id, reason, request_id)
        await act(self._transport, request, timeout_s, retry_budget_s)

    async def bulk_action(
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
    ) -> AsyncIterator[BulkResult]:
        """One action on many workflows, a BulkAction call per batch as the caller iterates
        (``async for``; see OrchestratorClient.bulk_action)."""
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
            response = await self._transport.invoke(
                request,
                workflows_pb2.BulkActionResponse,
                request.request_id,
                timeout_s=timeout_s,
                retry_budget_s=retry_budget_s,
            )
            results, token = bulk_results(response)
            for result in results:
                yield result
            request = batches.next_request(token)

    async def execute_workflow(
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
        """Starts a workflow and waits for its end in one call; ``(workflow, ended)`` (see
        OrchestratorClient.execute_workflow)."""
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
        response = await self._transport.invoke(
            request,
            workflows_pb2.ExecuteWorkflowResponse,
            request.start.request_id,
            # The attempt must outlive the server's wait.
            timeout_s=wait_s + self._transport.timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return Workflow.from_proto(response.workflow), response.ended
