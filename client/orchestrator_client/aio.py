"""The asyncio client and worker: the sync client's calls as coroutines, and a Worker whose
task functions are coroutines.

Example::

    async with AsyncOrchestratorClient("10.0.0.1:7070,10.0.0.2:7070") as client:
        workflow_id = await client.start_workflow("order", {"n": 1})
        worker = Worker(client, concurrency=8)

        @worker.task("charge")
        async def charge(task: Task) -> dict[str, Any]:
            return {"charged": task.input["n"]}

        await worker.run()  # until SIGINT, SIGTERM or worker.stop()

Failover is the sync client's, unchanged (the same retry plan drives both): a call follows the
leader hint of an UNAVAILABLE answer, else rotates through the addresses with backoff, within
its retry budget; every attempt of a call carries the same request id, so a retried write is
applied once; reads see the client's own writes. The arguments, results and errors of each
call are those of the sync method of the same name (see :class:`OrchestratorClient`), as are
the requests (built by the same functions). Behind this facade: _aio_workflows (workflows,
search, definitions), _aio_operations (the operator's actions, bulk actions, execution),
_aio_tasks (the worker protocol), _aio_events (events, event handlers), _aio_cluster
(membership, status, settings), _aio_transport, and aio_worker. Not here: replica_status
(one replica, no retries) and the streams (subscriptions, consumers).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import grpc

from orchestrator_client._aio_cluster import AioClusterCalls
from orchestrator_client._aio_events import AioEventCalls
from orchestrator_client._aio_operations import AioOperationCalls
from orchestrator_client._aio_tasks import AioTaskCalls
from orchestrator_client._aio_transport import AioTransport
from orchestrator_client._aio_workflows import AioWorkflowCalls
from orchestrator_client._credentials import with_token
from orchestrator_client._handler import TaskFailure
from orchestrator_client._ledger import WorkerStats
from orchestrator_client._operations import BulkResult
from orchestrator_client._search import SearchPage
from orchestrator_client._transport import MetadataLike, Recorder
from orchestrator_client._views import Task, Workflow
from orchestrator_client.aio_worker import AsyncHandler, AsyncTaskContext, Worker

__all__ = [
    "AsyncHandler",
    "AsyncOrchestratorClient",
    "AsyncTaskContext",
    "BulkResult",
    "SearchPage",
    "Task",
    "TaskFailure",
    "Worker",
    "WorkerStats",
    "Workflow",
]


class AsyncOrchestratorClient(
    AioWorkflowCalls, AioOperationCalls, AioTaskCalls, AioEventCalls, AioClusterCalls
):
    """A replica-aware asyncio client; use it from one event loop (its channels are that
    loop's). The constructor's arguments are OrchestratorClient's: ``credentials`` for TLS
    (see :func:`tls_credentials`), ``token`` for a bearer token (needs credentials)."""

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
        token: str | None = None,
    ) -> None:
        self._transport = AioTransport(
            addresses,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
            metadata=with_token(metadata, token, credentials),
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

    def __repr__(self) -> str:
        return f"AsyncOrchestratorClient({','.join(self.addresses)!r})"
