"""The cluster calls of OrchestratorClient: replica status and membership."""

from __future__ import annotations

from typing import Any

from orchestrator_client._codec import message_to_plain_dict, new_request_id
from orchestrator_client._transport import Transport
from orchestrator_client.v1 import cluster_pb2


# The requests and answers of the calls, shared with the asyncio client (_aio_cluster).
def add_replica_request(
    node_id: str, raft_address: str, grpc_address: str, request_id: str | None
) -> cluster_pb2.AddReplicaRequest:
    """An AddReplicaRequest (see ClusterCalls.add_replica)."""
    return cluster_pb2.AddReplicaRequest(
        request_id=request_id or new_request_id(),
        node_id=node_id,
        raft_address=raft_address,
        grpc_address=grpc_address,
    )


def remove_replica_request(
    node_id: str, request_id: str | None
) -> cluster_pb2.RemoveReplicaRequest:
    """A RemoveReplicaRequest (see ClusterCalls.remove_replica)."""
    return cluster_pb2.RemoveReplicaRequest(
        request_id=request_id or new_request_id(), node_id=node_id
    )


def retention_request(
    retention_ms: int, max_workflows: int, request_id: str | None
) -> cluster_pb2.SetHistoryRetentionRequest:
    """A SetHistoryRetentionRequest (see ClusterCalls.set_history_retention)."""
    return cluster_pb2.SetHistoryRetentionRequest(
        request_id=request_id or new_request_id(),
        retention_ms=retention_ms,
        max_workflows=max_workflows,
    )


def replicas_of(response: cluster_pb2.GetClusterStatusResponse) -> list[dict[str, Any]]:
    """A GetClusterStatus answer as ClusterCalls.cluster_status returns it."""
    return [message_to_plain_dict(r) for r in response.replicas]


def settings_dict(msg: cluster_pb2.ClusterSettings) -> dict[str, int]:
    """The cluster's settings as ClusterCalls.cluster_settings returns them."""
    return {
        "history_retention_ms": msg.history_retention_ms,
        "history_max_workflows": msg.history_max_workflows,
    }


class ClusterCalls:
    """ClusterService, as methods of OrchestratorClient."""

    _transport: Transport

    def cluster_status(
        self, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Reports the status of every replica, as gathered by the replica that answers.

        Args:
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            One dict per replica with every ``ReplicaStatus`` field by its proto name (defaults
            included; 64-bit integers as ints).

        Raises:
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        response = self._transport.invoke(
            cluster_pb2.GetClusterStatusRequest(),
            cluster_pb2.GetClusterStatusResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return replicas_of(response)

    def add_replica(
        self,
        node_id: str,
        *,
        raft_address: str,
        grpc_address: str,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Adds a replica to the cluster's membership; start it with ``serve --join`` afterwards.

        Args:
            node_id: The new replica's id.
            raft_address: Its Raft address, host:port.
            grpc_address: Its gRPC address, host:port.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            InvalidArgumentError: A malformed address.
            AlreadyExistsError: The id is a member at another address.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = add_replica_request(node_id, raft_address, grpc_address, request_id)
        self._transport.invoke(
            request,
            cluster_pb2.AddReplicaResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )

    def remove_replica(
        self,
        node_id: str,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Removes a replica from the cluster's membership (stop its process afterwards).

        Args:
            node_id: The replica's id.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            NotFoundError: Not a member.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = remove_replica_request(node_id, request_id)
        self._transport.invoke(
            request,
            cluster_pb2.RemoveReplicaResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )

    def replica_status(
        self,
        address: str | None = None,
        *,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Reports the status of one replica, without retrying elsewhere.

        Args:
            address: The replica to ask; None asks whichever replica the client would use.
            timeout_s: Per-attempt deadline override.

        Returns:
            The replica's ``ReplicaStatus`` as a dict, like :meth:`cluster_status` entries.

        Raises:
            UnavailableError: The replica did not answer.
            OrchestratorError: Any other server error.
        """
        response = self._transport.invoke(
            cluster_pb2.GetReplicaStatusRequest(),
            cluster_pb2.ReplicaStatus,
            timeout_s=timeout_s,
            retry_budget_s=0.0,
            pinned_address=address,
        )
        return message_to_plain_dict(response)

    def set_history_retention(
        self,
        retention_ms: int,
        max_workflows: int = 0,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> dict[str, int]:
        """Sets how long the durable history keeps ended workflows, and how many at most.

        Args:
            retention_ms: Keep a workflow this long after its end (at least one minute).
            max_workflows: Keep at most this many, the oldest going first; 0: no bound.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The cluster's settings afterwards, as :meth:`cluster_settings` returns them.

        Raises:
            InvalidArgumentError: A value out of range.
            OrchestratorError: Any other server error.
        """
        request = retention_request(retention_ms, max_workflows, request_id)
        response = self._transport.invoke(
            request,
            cluster_pb2.SetHistoryRetentionResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return settings_dict(response.settings)

    def cluster_settings(
        self, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> dict[str, int]:
        """Reports the cluster's replicated settings.

        Args:
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            ``{"history_retention_ms": ..., "history_max_workflows": ...}``.

        Raises:
            OrchestratorError: A server error.
        """
        response = self._transport.invoke(
            cluster_pb2.GetClusterSettingsRequest(),
            cluster_pb2.GetClusterSettingsResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return settings_dict(response.settings)
