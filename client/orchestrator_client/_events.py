"""The event calls of OrchestratorClient: the replicated event log and event handlers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from orchestrator_client._codec import (
    decode_object,
    encode_definition,
    encode_document,
    new_request_id,
)
from orchestrator_client._transport import Transport
from orchestrator_client.v1 import events_pb2


def publish_request(
    name: str,
    payload: Mapping[str, Any] | None,
    correlation_key: str,
    ttl_ms: int,
    request_id: str | None,
) -> events_pb2.PublishEventRequest:
    """A PublishEventRequest (see EventCalls.publish_event; also the asyncio client's)."""
    return events_pb2.PublishEventRequest(
        request_id=request_id or new_request_id(),
        name=name,
        payload_json=encode_document(payload if payload is not None else {}),
        correlation_key=correlation_key,
        ttl_ms=ttl_ms,
    )


def handler_request(
    handler: Mapping[str, Any] | str, overwrite: bool, request_id: str | None
) -> events_pb2.RegisterEventHandlerRequest:
    """A RegisterEventHandlerRequest (see EventCalls.register_event_handler)."""
    return events_pb2.RegisterEventHandlerRequest(
        request_id=request_id or new_request_id(),
        handler_json=encode_definition(handler),
        overwrite=overwrite,
    )


def remove_handler_request(
    name: str, request_id: str | None
) -> events_pb2.RemoveEventHandlerRequest:
    """A RemoveEventHandlerRequest (see EventCalls.remove_event_handler)."""
    return events_pb2.RemoveEventHandlerRequest(
        request_id=request_id or new_request_id(), name=name
    )


def handlers_of(response: events_pb2.ListEventHandlersResponse) -> list[dict[str, Any]]:
    """A ListEventHandlers answer as EventCalls.list_event_handlers returns it."""
    return [decode_object(text) for text in response.handler_json]


class EventCalls:
    """EventService, as methods of OrchestratorClient."""

    _transport: Transport

    def publish_event(
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
        """Appends an event to the replicated log; the matching event handlers act on it, and
        with a correlation key it completes the WAIT_FOR_EVENT tasks waiting for it.

        Args:
            name: The event's name.
            payload: A JSON object (None: ``{}``).
            correlation_key: Optional; handlers read it as ``${correlationKey}``, and
                WAIT_FOR_EVENT tasks wait for an event of this name with this key.
            ttl_ms: With a correlation key: if no task waits for the event now, it waits this
                many milliseconds (at most 7 days) for one; 0: it is not kept.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The event's offset (1, 2, ...); a retry returns the first one.

        Raises:
            InvalidArgumentError: A bad name, payload or correlation key.
            OrchestratorError: Any other server error.
        """
        request = publish_request(name, payload, correlation_key, ttl_ms, request_id)
        response = self._transport.invoke(
            request,
            events_pb2.PublishEventResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return int(response.offset)

    def register_event_handler(
        self,
        handler: Mapping[str, Any] | str,
        *,
        overwrite: bool = False,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> str:
        """Registers an event handler ({name, event, condition, actions, active}); returns its
        name. With overwrite, replaces one of the same name (else ALREADY_EXISTS)."""
        request = handler_request(handler, overwrite, request_id)
        response = self._transport.invoke(
            request,
            events_pb2.RegisterEventHandlerResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return str(response.name)

    def remove_event_handler(
        self,
        name: str,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Removes an event handler (NOT_FOUND when there is none of that name)."""
        request = remove_handler_request(name, request_id)
        self._transport.invoke(
            request,
            events_pb2.RemoveEventHandlerResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )

    def list_event_handlers(
        self, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Every event handler, in registration order."""
        response = self._transport.invoke(
            events_pb2.ListEventHandlersRequest(),
            events_pb2.ListEventHandlersResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return handlers_of(response)

    def read_events(
        self,
        from_offset: int = 0,
        limit: int = 0,
        *,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> list[dict[str, Any]]:
        """Events from ``from_offset`` on, oldest first (at most ``limit``; 0 means 100).

        Returns:
            One dict per event: offset, name, payload, correlation_key, time_ms and actions
            (the handlers' per-action outcomes).
        """
        response = self._transport.invoke(
            events_pb2.ReadEventsRequest(from_offset=from_offset, limit=limit),
            events_pb2.ReadEventsResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return [event_dict(e) for e in response.events]


def event_dict(e: events_pb2.Event) -> dict[str, Any]:
    """An Event message as the client returns it (read_events, subscriptions)."""
    return {
        "offset": e.offset,
        "name": e.name,
        "payload": decode_object(e.payload_json),
        "correlation_key": e.correlation_key,
        "time_ms": e.time_ms,
        "actions": json.loads(e.actions_json) if e.actions_json else [],
    }
