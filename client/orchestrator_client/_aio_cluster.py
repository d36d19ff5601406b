"""The asyncio client's cluster calls: membership, status and settings, with the sync calls'
requests and decoders (_cluster) awaited on the asyncio transport.

Arguments, results and errors are those of the sync method of the same name.
"""

from __future__ import annotations

from typing import Any

from orchestrator_client._aio_transport import AioTransport
from orchestrator_client._cluster import (
    add_replica_request,
    remove_replica_request,
    replicas_of,
    retention_request,
    settings_dict,
)
from orchestrator_client._codec import message_to_plain_dict
from orchestrator_client.v1 import cluster_pb2

__all__ = ["AioClusterCalls"]


class AioClusterCalls:
    """ClusterService, as coroutines of AsyncOrchestratorClient."""

    _transport: AioTransport

    async def cluster_status(
        self, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Every replica's status, as gathered by the replica that answers (see
        OrchestratorClient.cluster_status)."""
        response = await self._transport.invoke(
            cluster_pb2.GetClusterStatusRequest(),
            cluster_pb2.GetClusterStatusResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return replicas_of(response)

    async def replica_status(
        self, address: str | None = None, *, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """One replica's status, without retrying elsewhere (see
        OrchestratorClient.replica_status)."""
        response = await self._transport.invoke(
            cluster_pb2.GetReplicaStatusRequest(),
            cluster_pb2.ReplicaStatus,
            timeout_s=timeout_s,
            retry_budget_s=0.0,
            pinned_address=address,
        )
        return message_to_plain_dict(response)

    async def cluster_settings(
        self, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> dict[str, int]:
        """The cluster's replicated settings (see OrchestratorClient.cluster_settings)."""
        response = await self._transport.invoke(
            cluster_pb2.GetClusterSettingsRequest(),
            cluster_pb2.GetClusterSettingsResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return settings_dict(response.settings)

    async def set_history_retention(
        self,
        retention_ms: int,
        max_workflows: int = 0,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> dict[str, int]:
        """Sets how long, and how many, ended workflows the history keeps; the settings
        afterwards (see OrchestratorClient.set_history_retention)."""
        request = retention_request(retention_ms, max_workflows, request_id)
        response = await self._transport.invoke(
            request,
            cluster_pb2.SetHistoryRetentionResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return settings_dict(response.settings)

    async def add_replica(
        self,
        node_id: str,
        *,
        raft_address: str,
        grpc_address: str,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Adds a replica to the membership (see OrchestratorClient.add_replica)."""
        request = add_replica_request(node_id, raft_address, grpc_address, request_id)
        await self._transport.invoke(
            request,
            cluster_pb2.AddReplicaResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )

    async def remove_replica(
        self,
        node_id: str,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Removes a replica from the membership (see OrchestratorClient.remove_replica)."""
        request = remove_replica_request(node_id, request_id)
        await self._transport.invoke(
            request,
            cluster_pb2.RemoveReplicaResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
