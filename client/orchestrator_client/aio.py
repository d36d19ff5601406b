"""The asyncio client: the sync client's calls a worker and a starter need, as coroutines.

Example::

    async with AsyncOrchestratorClient("10.0.0.1:7070,10.0.0.2:7070") as client:
        workflow_id = await client.start_workflow("order", {"n": 1})
        for task in await client.poll_tasks("charge", worker_id="w1", count=8):
            await client.complete_task(task.task_id, {"charged": True}, worker_id="w1")

Failover is the sync client's, unchanged (the same retry plan drives both): a call follows the
leader hint of an UNAVAILABLE answer, else rotates through the addresses with backoff, within
its retry budget; every attempt of a call carries the same request id, so a retried write is
applied once; reads see the client's own writes. The arguments, results and errors of each
call are those of the sync method of the same name (see :class:`OrchestratorClient`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import grpc

from orchestrator_client._aio_transport import AioTransport
from orchestrator_client._events import publish_request
from orchestrator_client._tasks import complete_request, fail_request, poll_request
from orchestrator_client._transport import MetadataLike, Recorder
from orchestrator_client._views import Task, Workflow
from orchestrator_client._workflows import start_request
from orchestrator_client.v1 import events_pb2, tasks_pb2, workflows_pb2

__all__ = ["AsyncOrchestratorClient"]


class AsyncOrchestratorClient:
    """A replica-aware asyncio client; use it from one event loop (its channels are that
    loop's). The constructor's arguments are OrchestratorClient's."""

    def __init__(
        self,
        addresses: Sequence[str] | str,
        *,
        timeout_s: float = 5.0,
        retry_budget_s: float = 30.0,
        metadata: MetadataLike | None = None,
        recorder: Recorder | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        channel_options: Sequence[tuple[str, Any]] | None = None,
    ) -> None:
        self._transport = AioTransport(
            addresses,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
            metadata=metadata,
            recorder=recorder,
            credentials=credentials,
            channel_options=channel_options,
        )

    @property
    def addresses(self) -> tuple[str, ...]:
        return self._transport.addresses

    @property
    def last_sequence(self) -> int:
        """The highest replica sequence number seen (sent with every call: read-your-writes)."""
        return self._transport.last_sequence

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

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

    async def poll_tasks(
        self,
        task_type: str,
        *,
        worker_id: str,
        count: int = 1,
        timeout_ms: int = 1000,
        domain: str = "",
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> list[Task]:
        """Leases up to ``count`` tasks, long-polling up to ``timeout_ms`` (see
        OrchestratorClient.poll_tasks: ``timeout_s`` is the time beyond the wait)."""
        request = poll_request(task_type, worker_id, count, timeout_ms, domain, request_id)
        extra = self._transport.timeout_s if timeout_s is None else timeout_s
        response = await self._transport.invoke(
            request,
            tasks_pb2.PollTasksResponse,
            request.request_id,
            timeout_s=timeout_ms / 1000.0 + extra,
            retry_budget_s=retry_budget_s,
        )
        return [Task.from_proto(t) for t in response.tasks]

    async def complete_task(
        self,
        task_id: str,
        output: Mapping[str, Any] | None = None,
        *,
        worker_id: str = "",
        workflow_id: str = "",
        reference_task_name: str = "",
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Completes a task attempt with its output (see OrchestratorClient.complete_task)."""
        request = complete_request(
            task_id, output, worker_id, workflow_id, reference_task_name, request_id
        )
        await self._transport.invoke(
            request,
            tasks_pb2.CompleteTaskResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )

    async def fail_task(
        self,
        task_id: str,
        reason: str,
        *,
        terminal: bool = False,
        output: Mapping[str, Any] | None = None,
        worker_id: str = "",
        workflow_id: str = "",
        reference_task_name: str = "",
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Fails a task attempt (see OrchestratorClient.fail_task)."""
        request = fail_request(
            task_id,
            reason,
            terminal,
            output,
            worker_id,
            workflow_id,
            reference_task_name,
            request_id,
        )
        await self._transport.invoke(
            request,
            tasks_pb2.FailTaskResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )

    async def publish_event(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        correlation_key: str = "",
        *,
        ttl_ms: int = 0,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> int:
        """Appends an event to the replicated log; its offset (see
        OrchestratorClient.publish_event)."""
        request = publish_request(name, payload, correlation_key, ttl_ms, request_id)
        response = await self._transport.invoke(
            request,
            events_pb2.PublishEventResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return int(response.offset)

    def __repr__(self) -> str:
        return f"AsyncOrchestratorClient({','.join(self.addresses)!r})"
