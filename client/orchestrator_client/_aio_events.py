"""The asyncio client's event calls: publishing, event handlers, reading the log and a
consumer group's position, with the sync calls' requests and decoders (_events, _streams)
awaited on the asyncio transport.

Arguments, results and errors are those of the sync method of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator_client._aio_transport import AioTransport
from orchestrator_client._events import (
    event_dict,
    handler_request,
    handlers_of,
    publish_request,
    remove_handler_request,
)
from orchestrator_client._streams import consumer_group_dict
from orchestrator_client.v1 import events_pb2

__all__ = ["AioEventCalls"]


class AioEventCalls:
    """EventService's unary calls, as coroutines of AsyncOrchestratorClient."""

    _transport: AioTransport

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

    async def register_event_handler(
        self,
        handler: Mapping[str, Any] | str,
        *,
        overwrite: bool = False,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> str:
        """Registers an event handler; its name (see
        OrchestratorClient.register_event_handler)."""
        request = handler_request(handler, overwrite, request_id)
        response = await self._transport.invoke(
            request,
            events_pb2.RegisterEventHandlerResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return str(response.name)

    async def remove_event_handler(
        self,
        name: str,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Removes an event handler (see OrchestratorClient.remove_event_handler)."""
        request = remove_handler_request(name, request_id)
        await self._transport.invoke(
            request,
            events_pb2.RemoveEventHandlerResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )

    async def list_event_handlers(
        self, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Every event handler, in registration order (see
        OrchestratorClient.list_event_handlers)."""
        response = await self._transport.invoke(
            events_pb2.ListEventHandlersRequest(),
            events_pb2.ListEventHandlersResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return handlers_of(response)

    async def read_events(
        self,
        from_offset: int = 0,
        limit: int = 0,
        *,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> list[dict[str, Any]]:
        """Events from ``from_offset`` on, oldest first (see OrchestratorClient.read_events)."""
        response = await self._transport.invoke(
            events_pb2.ReadEventsRequest(from_offset=from_offset, limit=limit),
            events_pb2.ReadEventsResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return [event_dict(e) for e in response.events]

    async def get_consumer_group(
        self,
        stream: str,
        group: str,
        *,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> dict[str, int]:
        """A consumer group's position on "events" or "workflows" (see
        OrchestratorClient.get_consumer_group)."""
        response = await self._transport.invoke(
            events_pb2.GetConsumerGroupRequest(stream=stream, group=group),
            events_pb2.GetConsumerGroupResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return consumer_group_dict(response)
