"""The workflow calls of OrchestratorClient: start (coalesced), get, list, wait, terminate."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from orchestrator_client._coalescer import StartCoalescer
from orchestrator_client._codec import (
    IDEMPOTENCY_PREFIX,
    WORKFLOW_STATUS_PREFIX,
    encode_document,
    enum_key,
    new_request_id,
)
from orchestrator_client._rpc import MAX_PAGE_SIZE, pages
from orchestrator_client._transport import Transport
from orchestrator_client._views import Workflow
from orchestrator_client.errors import OrchestratorError, UnavailableError
from orchestrator_client.v1 import workflows_pb2


def start_request(
    name: str,
    input: Mapping[str, Any] | None,
    *,
    version: int,
    correlation_id: str,
    idempotency_key: str,
    idempotency_strategy: str,
    priority: int,
    task_to_domain: Mapping[str, str] | None = None,
    request_id: str | None = None,
) -> workflows_pb2.StartWorkflowRequest:
    """A StartWorkflowRequest (see WorkflowCalls.start_workflow); ValueError for an unknown
    idempotency strategy."""
    strategy = enum_key(
        workflows_pb2.IdempotencyStrategy,
        idempotency_strategy,
        IDEMPOTENCY_PREFIX,
        "idempotency strategy",
    )
    return workflows_pb2.StartWorkflowRequest(
        request_id=request_id or new_request_id(),
        name=name,
        version=version,
        input_json=encode_document(input),
        correlation_id=correlation_id,
        idempotency_key=idempotency_key,
        idempotency_strategy=strategy,
        priority=priority,
        task_to_domain=dict(task_to_domain or {}),
    )


def terminate_request(
    workflow_id: str, reason: str, request_id: str | None
) -> workflows_pb2.TerminateWorkflowRequest:
    """A TerminateWorkflowRequest (see WorkflowCalls.terminate_workflow)."""
    return workflows_pb2.TerminateWorkflowRequest(
        request_id=request_id or new_request_id(), workflow_id=workflow_id, reason=reason
    )


def list_request(
    name: str, status: str, limit: int, page_token: str
) -> workflows_pb2.ListWorkflowsRequest:
    """One page's ListWorkflowsRequest (see WorkflowCalls.list_workflows); ValueError for an
    unknown status."""
    status_key = (
        enum_key(workflows_pb2.WorkflowStatus, status, WORKFLOW_STATUS_PREFIX, "status")
        if status
        else "WORKFLOW_STATUS_UNSPECIFIED"
    )
    return workflows_pb2.ListWorkflowsRequest(
        workflow_name=name,
        status=status_key,
        limit=min(limit, MAX_PAGE_SIZE),
        page_token=page_token,
    )


def started_ids(answers: list[Any]) -> list[Any]:
    """Per request of a StartWorkflows call (see Transport.invoke_batch): the workflow id, or
    the error for it."""
    return [a if isinstance(a, OrchestratorError) else a.workflow_id for a in answers]


class WorkflowCalls:
    """WorkflowService, as methods of OrchestratorClient."""

    _transport: Transport
    _starts: StartCoalescer | None

    def start_workflow(
        self,
        name: str,
        input: Mapping[str, Any] | None = None,
        *,
        version: int = 0,
        correlation_id: str = "",
        idempotency_key: str = "",
        idempotency_strategy: str = "FAIL",
        priority: int = 0,
        task_to_domain: Mapping[str, str] | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> str:
        """Starts a workflow from a registered definition.

        Args:
            name: The workflow definition name.
            input: The workflow input; None means ``{}``.
            version: The definition version; 0 means the latest.
            correlation_id: Free-form id to find related workflows by.
            idempotency_key: Business key that identifies this start across separate calls.
            idempotency_strategy: What to do when a workflow with the key exists: ``"FAIL"``,
                ``"RETURN_EXISTING"`` or ``"FAIL_ON_RUNNING"``.
            priority: Workflow priority (0-99).
            task_to_domain: Conductor's taskToDomain: task name (or ``"*"``) to a domain, or a
                comma-separated list of domains tried in order (``NO_DOMAIN`` = the default
                queue); workers poll a domain with ``poll_tasks(..., domain=...)``.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The workflow id (an existing one under ``RETURN_EXISTING``).

        With ``batch_starts`` (the default) and no per-call timeouts, starts that other threads
        make while one is in flight wait for it and then go together in one StartWorkflows
        call (each still its own request with its own id and outcome): a client shared by many
        threads costs the cluster one call per batch instead of one per workflow, and a lone
        start waits for nothing.

        Raises:
            ValueError: Unknown idempotency strategy, or input that is not JSON-serializable.
            TypeError: Input that is not JSON-serializable.
            NotFoundError: No such workflow definition.
            AlreadyExistsError: The idempotency key is taken under the chosen strategy.
            InvalidArgumentError: The server rejected the request.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = start_request(
            name,
            input,
            version=version,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
            idempotency_strategy=idempotency_strategy,
            priority=priority,
            task_to_domain=task_to_domain,
            request_id=request_id,
        )
        rid = request.request_id
        if self._starts is not None and timeout_s is None and retry_budget_s is None:
            return self._starts.start(request)
        response = self._transport.invoke(
            request,
            workflows_pb2.StartWorkflowResponse,
            rid,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return response.workflow_id

    def _start_one(self, request: workflows_pb2.StartWorkflowRequest) -> str:
        """One StartWorkflow call with the client's default deadlines; the workflow id."""
        response = self._transport.invoke(
            request,
            workflows_pb2.StartWorkflowResponse,
            request.request_id,
            timeout_s=None,
            retry_budget_s=None,
        )
        return response.workflow_id

    def _start_batch(self, requests: list[workflows_pb2.StartWorkflowRequest]) -> list[Any]:
        """One StartWorkflows call; per request the workflow id or the error for it.

        Raises what failed the whole call (every request shares its fate).
        """
        return started_ids(
            self._transport.invoke_batch(
                workflows_pb2.StartWorkflowsRequest(items=requests),
                workflows_pb2.StartWorkflowsResponse,
                requests,
                [r.request_id for r in requests],
                lambda response: response.results,
                timeout_s=None,
                retry_budget_s=None,
            )
        )

    def get_workflow(
        self,
        workflow_id: str,
        *,
        include_tasks: bool = True,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> Workflow:
        """Fetches a workflow execution.

        Args:
            workflow_id: The workflow id.
            include_tasks: Include the task attempts.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The workflow.

        Raises:
            NotFoundError: No such workflow.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = workflows_pb2.GetWorkflowRequest(
            workflow_id=workflow_id, include_tasks=include_tasks
        )
        response = self._transport.invoke(
            request,
            workflows_pb2.GetWorkflowResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return Workflow.from_proto(response.workflow)

    def terminate_workflow(
        self,
        workflow_id: str,
        reason: str = "",
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Terminates a running workflow; its pending tasks are canceled.

        Args:
            workflow_id: The workflow id.
            reason: Why, recorded as the workflow's reason for incompletion.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            NotFoundError: No such workflow.
            FailedPreconditionError: The workflow is no longer running.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = terminate_request(workflow_id, reason, request_id)
        self._transport.invoke(
            request,
            workflows_pb2.TerminateWorkflowResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )

    def list_workflows(
        self,
        *,
        name: str = "",
        status: str = "",
        limit: int = 100,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> list[Workflow]:
        """Lists workflow executions, newest first, without their tasks.

        Args:
            name: Only this workflow definition; empty for all.
            status: Only this status (e.g. ``"RUNNING"``); empty for all.
            limit: At most this many (fetched a page of at most 1000 at a time).
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The workflows.

        Raises:
            ValueError: Unknown status.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """

        def fetch(token: str) -> tuple[list[Workflow], str]:
            request = list_request(name, status, want - len(listed), token)
            response = self._transport.invoke(
                request,
                workflows_pb2.ListWorkflowsResponse,
                timeout_s=timeout_s,
                retry_budget_s=retry_budget_s,
            )
            return [Workflow.from_proto(w) for w in response.workflows], response.next_page_token

        want = limit or 100  # 0: the server's default page, as before paging
        listed: list[Workflow] = []
        for workflow in pages(fetch):
            listed.append(workflow)
            if len(listed) >= want:
                break
        return listed

    def wait_for_workflow(
        self,
        workflow_id: str,
        *,
        timeout_s: float = 60.0,
        poll_interval_s: float = 0.2,
        include_tasks: bool = True,
    ) -> Workflow:
        """Polls a workflow until it reaches a terminal status.

        Transient unavailability while waiting is tolerated until the timeout.

        Args:
            workflow_id: The workflow id.
            timeout_s: How long to wait, in seconds.
            poll_interval_s: Pause between polls, in seconds.
            include_tasks: Return the workflow with its tasks.

        Returns:
            The workflow in its terminal status.

        Raises:
            TimeoutError: The workflow was not terminal within ``timeout_s``.
            NotFoundError: No such workflow.
            OrchestratorError: Any other non-retryable server error.
        """
        deadline = time.monotonic() + timeout_s
        last_error: UnavailableError | None = None
        last_status = "unknown"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                # Polls skip the task list, which can be large; the final fetch adds it back.
                workflow = self.get_workflow(
                    workflow_id,
                    include_tasks=False,
                    retry_budget_s=min(self._transport.retry_budget_s, remaining),
                    timeout_s=min(self._transport.timeout_s, remaining),
                )
            except UnavailableError as exc:
                last_error = exc
            else:
                last_status = workflow.status
                if workflow.is_terminal:
                    if not include_tasks:
                        return workflow
                    # Terminal workflows do not change, so the second read is consistent.
                    return self.get_workflow(workflow_id, include_tasks=True)
            pause = min(poll_interval_s, deadline - time.monotonic())
            if pause > 0 and self._transport.closed.wait(pause):
                raise RuntimeError("OrchestratorClient is closed")
        raise TimeoutError(
            f"workflow {workflow_id} not terminal after {timeout_s}s (last status: {last_status})"
        ) from last_error
