"""The asyncio client's workflow and definition calls: the sync calls' requests and decoders
(_workflows, _search, _definitions), awaited on the asyncio transport.

Arguments, results and errors are those of the sync method of the same name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from orchestrator_client._aio_operations import act
from orchestrator_client._aio_transport import AioTransport
from orchestrator_client._codec import decode_object
from orchestrator_client._definitions import (
    task_defs_page,
    task_defs_request,
    workflow_def_request,
    workflow_defs_page,
)
from orchestrator_client._rpc import MAX_BATCH
from orchestrator_client._search import SearchPage, search_page, search_request
from orchestrator_client._views import Workflow
from orchestrator_client._workflows import (
    list_request,
    start_request,
    started_ids,
    terminate_request,
)
from orchestrator_client.errors import OrchestratorError, UnavailableError
from orchestrator_client.v1 import definitions_pb2, workflows_pb2

__all__ = ["AioWorkflowCalls", "every_page"]

_T = TypeVar("_T")


async def every_page(fetch: Callable[[str], Awaitable[tuple[list[_T], str]]]) -> list[_T]:
    """Every item of a List RPC, as _rpc.pages: ``await fetch(page_token)`` is one page's
    items and the next page's token ("" after the last)."""
    items: list[_T] = []
    token = ""
    while True:
        page, next_token = await fetch(token)
        items.extend(page)
        if not next_token or next_token == token:
            return items
        token = next_token


class AioWorkflowCalls:
    """WorkflowService and DefinitionService, as coroutines of AsyncOrchestratorClient."""

    _transport: AioTransport

    async def start_workflow(
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
        """Starts a workflow; its id (see OrchestratorClient.start_workflow)."""
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
        response = await self._transport.invoke(
            request,
            workflows_pb2.StartWorkflowResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return response.workflow_id

    async def start_workflows(
        self,
        starts: Sequence[tuple[str, Mapping[str, Any] | None]],
        *,
        version: int = 0,
        correlation_id: str = "",
        priority: int = 0,
        task_to_domain: Mapping[str, str] | None = None,
        request_ids: Sequence[str] | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> list[str | OrchestratorError]:
        """Starts several workflows in one StartWorkflows call (at most 100).

        Each start is applied as if made alone, with its own request id: a retried call is
        deduplicated start by start, and one refused start does not affect the others.

        Args:
            starts: ``(definition name, input)`` pairs; an input of None means ``{}``.
            version, correlation_id, priority, task_to_domain: As for start_workflow, for
                every start.
            request_ids: One idempotency id per start; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            Per start, in order: the workflow id, or the error for it (NotFoundError for an
            unknown definition, ...).

        Raises:
            ValueError: No starts, more than 100, request ids not matching the starts, or an
                input that is not valid JSON.
            UnavailableError: No replica decided the call within the retry budget (retry
                with the same request ids).
            OrchestratorError: Any other error of the whole call.
        """
        if not starts or len(starts) > MAX_BATCH:
            raise ValueError(f"start_workflows takes 1 to {MAX_BATCH} starts")
        ids = list(request_ids) if request_ids is not None else [None] * len(starts)
        if len(ids) != len(starts):
            raise ValueError("request_ids must match starts one to one")
        requests = [
            start_request(
                name,
                input,
                version=version,
                correlation_id=correlation_id,
                idempotency_key="",
                idempotency_strategy="FAIL",
                priority=priority,
                task_to_domain=task_to_domain,
                request_id=rid,
            )
            for (name, input), rid in zip(starts, ids, strict=True)
        ]
        answers = await self._transport.invoke_batch(
            workflows_pb2.StartWorkflowsRequest(items=requests),
            workflows_pb2.StartWorkflowsResponse,
            requests,
            [r.request_id for r in requests],
            lambda response: response.results,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return started_ids(answers)

    async def get_workflow(
        self,
        workflow_id: str,
        *,
        include_tasks: bool = True,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> Workflow:
        """Fetches a workflow execution (see OrchestratorClient.get_workflow)."""
        request = workflows_pb2.GetWorkflowRequest(
            workflow_id=workflow_id, include_tasks=include_tasks
        )
        response = await self._transport.invoke(
            request,
            workflows_pb2.GetWorkflowResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return Workflow.from_proto(response.workflow)

    async def list_workflows(
        self,
        *,
        name: str = "",
        status: str = "",
        limit: int = 100,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> list[Workflow]:
        """Lists workflow executions, newest first, without their tasks (see
        OrchestratorClient.list_workflows)."""
        want = limit or 100  # 0: the server's default page, as the sync client
        listed: list[Workflow] = []
        token = ""
        while len(listed) < want:
            response = await self._transport.invoke(
                list_request(name, status, want - len(listed), token),
                workflows_pb2.ListWorkflowsResponse,
                timeout_s=timeout_s,
                retry_budget_s=retry_budget_s,
            )
            listed.extend(Workflow.from_proto(w) for w in response.workflows)
            if not response.next_page_token or response.next_page_token == token:
                break
            token = response.next_page_token
        return listed[:want]

    async def search_workflows(
        self,
        *,
        page_token: str = "",
        page_size: int = 100,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
        **filters: Any,
    ) -> SearchPage:
        """Searches running and archived workflows: one page (see
        OrchestratorClient.search_workflows for the filters)."""
        request = search_request(page_token=page_token, page_size=page_size, **filters)
        response = await self._transport.invoke(
            request,
            workflows_pb2.SearchWorkflowsResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return search_page(response)

    async def search(
        self, *, limit: int = 0, page_size: int = 100, **filters: Any
    ) -> AsyncIterator[Workflow]:
        """Every workflow a search matches, a page fetched at a time as the caller iterates
        (``async for``; see OrchestratorClient.search)."""
        filters.setdefault("with_total", False)
        token, seen = "", 0
        while True:
            size = min(page_size, limit - seen) if limit else page_size
            page = await self.search_workflows(page_token=token, page_size=size, **filters)
            for wf in page.workflows:
                yield wf
                seen += 1
            if not page.next_page_token or (limit and seen >= limit):
                return
            token = page.next_page_token

    async def wait_for_workflow(
        self,
        workflow_id: str,
        *,
        timeout_s: float = 60.0,
        poll_interval_s: float = 0.2,
        include_tasks: bool = True,
    ) -> Workflow:
        """Polls a workflow until it reaches a terminal status, tolerating unavailability
        until the timeout (see OrchestratorClient.wait_for_workflow)."""
        deadline = time.monotonic() + timeout_s
        last_error: UnavailableError | None = None
        last_status = "unknown"
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                # Polls skip the task list, which can be large; the final fetch adds it back.
                workflow = await self.get_workflow(
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
                    return await self.get_workflow(workflow_id, include_tasks=True)
            await asyncio.sleep(max(0.0, min(poll_interval_s, deadline - time.monotonic())))
        raise TimeoutError(
            f"workflow {workflow_id} not terminal after {timeout_s}s (last status: {last_status})"
        ) from last_error

    async def terminate_workflow(
        self,
        workflow_id: str,
        reason: str = "",
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Terminates a running workflow (see OrchestratorClient.terminate_workflow)."""
        request = terminate_request(workflow_id, reason, request_id)
        await act(self._transport, request, timeout_s, retry_budget_s)

    async def register_workflow_def(
        self,
        definition: Mapping[str, Any] | str,
        *,
        overwrite: bool = False,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> tuple[str, int]:
        """Registers one version of a workflow definition; ``(name, version)`` (see
        OrchestratorClient.register_workflow_def)."""
        request = workflow_def_request(definition, overwrite, request_id)
        response = await self._transport.invoke(
            request,
            definitions_pb2.RegisterWorkflowDefResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return response.name, response.version

    async def get_workflow_def(
        self,
        name: str,
        version: int = 0,
        *,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> dict[str, Any]:
        """One version of a workflow definition, decoded (see
        OrchestratorClient.get_workflow_def)."""
        response = await self._transport.invoke(
            definitions_pb2.GetWorkflowDefRequest(name=name, version=version),
            definitions_pb2.GetWorkflowDefResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return decode_object(response.definition_json)

    async def register_task_defs(
        self,
        task_defs: Sequence[Mapping[str, Any] | str],
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> list[str]:
        """Registers or replaces task definitions; their names (see
        OrchestratorClient.register_task_defs)."""
        request = task_defs_request(task_defs, request_id)
        response = await self._transport.invoke(
            request,
            definitions_pb2.RegisterTaskDefsResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return list(response.names)

    async def get_task_def(
        self, name: str, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> dict[str, Any]:
        """A task definition, decoded (see OrchestratorClient.get_task_def)."""
        response = await self._transport.invoke(
            definitions_pb2.GetTaskDefRequest(name=name),
            definitions_pb2.GetTaskDefResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return decode_object(response.task_def_json)

    async def list_workflow_defs(
        self, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Every registered version of every workflow definition, decoded (see
        OrchestratorClient.list_workflow_defs)."""

        async def fetch(token: str) -> tuple[list[dict[str, Any]], str]:
            response = await self._transport.invoke(
                definitions_pb2.ListWorkflowDefsRequest(page_token=token),
                definitions_pb2.ListWorkflowDefsResponse,
                timeout_s=timeout_s,
                retry_budget_s=retry_budget_s,
            )
            return workflow_defs_page(response)

        return await every_page(fetch)

    async def list_task_defs(
        self, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Every task definition, decoded (see OrchestratorClient.list_task_defs)."""

        async def fetch(token: str) -> tuple[list[dict[str, Any]], str]:
            response = await self._transport.invoke(
                definitions_pb2.ListTaskDefsRequest(page_token=token),
                definitions_pb2.ListTaskDefsResponse,
                timeout_s=timeout_s,
                retry_budget_s=retry_budget_s,
            )
            return task_defs_page(response)

        return await every_page(fetch)
