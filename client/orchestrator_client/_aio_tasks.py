"""The asyncio client's task calls: the worker protocol, with the sync calls' requests (_tasks)
awaited on the asyncio transport.

Arguments, results and errors are those of the sync method of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator_client._aio_transport import AioTransport
from orchestrator_client._codec import encode_document
from orchestrator_client._rpc import rpc_of
from orchestrator_client._tasks import (
    RidingPolls,
    complete_request,
    complete_tasks_request,
    fail_request,
    heartbeat_request,
    poll_request,
    riding_poll_requests,
    signal_request,
)
from orchestrator_client._views import Task
from orchestrator_client.errors import OrchestratorError
from orchestrator_client.v1 import tasks_pb2

__all__ = ["AioTaskCalls"]


class AioTaskCalls:
    """TaskService, as coroutines of AsyncOrchestratorClient."""

    _transport: AioTransport

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

    async def complete_tasks(
        self,
        results: Sequence[tuple[str, Mapping[str, Any] | None]],
        *,
        worker_id: str = "",
        request_ids: Sequence[str] | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> list[OrchestratorError | None]:
        """Completes several task attempts in one call (at most 100); per result None or its
        error (see OrchestratorClient.complete_tasks)."""
        encoded = [(task_id, encode_document(output)) for task_id, output in results]
        errors, _ = await self._complete_call(
            encoded,
            worker_id=worker_id,
            request_ids=request_ids,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return errors

    async def complete_tasks_and_poll(
        self,
        results: Sequence[tuple[str, Mapping[str, Any] | None]],
        *,
        polls: Mapping[str, int],
        worker_id: str = "",
        domain: str = "",
        request_ids: Sequence[str] | None = None,
        poll_request_ids: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> tuple[list[OrchestratorError | None], dict[str, list[Task]]]:
        """complete_tasks, then in the same call polls that never wait; per result None or
        its error, and per polled task type the tasks leased (see
        OrchestratorClient.complete_tasks_and_poll)."""
        requests = riding_poll_requests(polls, worker_id, domain, poll_request_ids)
        encoded = [(task_id, encode_document(output)) for task_id, output in results]
        errors, polled = await self._complete_call(
            encoded,
            worker_id=worker_id,
            request_ids=request_ids,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
            polls=requests,
        )
        return errors, dict(zip(polls, polled, strict=True))

    async def _complete_call(
        self,
        results: Sequence[tuple[str, str]],
        *,
        worker_id: str,
        request_ids: Sequence[str] | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
        polls: Sequence[tasks_pb2.PollTasksRequest] = (),
    ) -> tuple[list[OrchestratorError | None], list[list[Task]]]:
        """One CompleteTasks call of outputs already encoded as JSON, with polls riding behind
        the results (see TaskCalls._complete_call); per result None or its error, and per poll
        the tasks it leased."""
        request, rids = complete_tasks_request(results, worker_id, request_ids, polls)
        riding = RidingPolls(self._transport, polls)
        try:
            answers = await self._transport.invoke_batch(
                request,
                tasks_pb2.CompleteTasksResponse,
                request.items,
                rids,
                riding.answers_of,
                timeout_s=timeout_s,
                retry_budget_s=retry_budget_s,
            )
        except BaseException as exc:
            riding.failed(exc)
            raise
        errors = [a if isinstance(a, OrchestratorError) else None for a in answers]
        return errors, riding.settled()

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

    async def heartbeat_task(
        self,
        task_id: str,
        *,
        worker_id: str = "",
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> int:
        """Extends the lease of an IN_PROGRESS task; the new expiry in cluster time (epoch
        ms) (see OrchestratorClient.heartbeat_task)."""
        request = heartbeat_request(task_id, worker_id, request_id)
        response = await self._transport.invoke(
            request,
            tasks_pb2.HeartbeatTaskResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return response.lease_expires_ms

    async def signal_task(
        self,
        workflow_id: str,
        reference: str,
        output: Mapping[str, Any] | None = None,
        *,
        failed: bool = False,
        reason: str = "",
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Ends a waiting task by workflow and reference (see OrchestratorClient.signal_task)."""
        request = signal_request(workflow_id, reference, output, failed, reason, request_id)
        await self._transport.invoke(
            request,
            rpc_of(request).response_type,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
