"""EventService: publish to the replicated event log, read it, and manage event handlers
(core/processors/eventlog.py and event_handlers.py decide; this maps the wire)."""

from __future__ import annotations

import json
from typing import Any

import grpc
from orchestrator_client.v1 import events_pb2 as epb
from orchestrator_client.v1 import events_pb2_grpc

from ..core import commands as C
from ..core import limits, queries
from ..core.processors import messages
from ..core.processors.event_handlers import normalize_handler
from ..core.state import State
from . import rpc
from . import validation as v
from .errors import invalid
from .service import ServiceBase

DEFAULT_READ = 100


class EventService(ServiceBase, events_pb2_grpc.EventServiceServicer):
    SERVICE = rpc.EVENTS

    def PublishEvent(self, request: epb.PublishEventRequest, context: grpc.ServicerContext) -> Any:
        def build() -> C.Command:
            key = request.correlation_key
            if len(key) > limits.MAX_CORRELATION_KEY_LENGTH:
                raise invalid(
                    f"correlation_key: at most {limits.MAX_CORRELATION_KEY_LENGTH} characters"
                )
            return C.PublishEvent(
                request_id=v.request_id(request.request_id),
                name=v.name(request.name, "name"),
                payload=v.json_object(request.payload_json, "payload_json"),
                correlation_key=key,
                ttl_ms=messages.check_ttl(request.ttl_ms),
            )

        return self._mutate(
            context,
            request,
            "PublishEvent",
            build,
            lambda o: epb.PublishEventResponse(offset=o.result["offset"]),
        )

    def RegisterEventHandler(
        self, request: epb.RegisterEventHandlerRequest, context: grpc.ServicerContext
    ) -> Any:
        def build() -> C.Command:
            rid = v.request_id(request.request_id)
            raw = v.json_object(request.handler_json, "handler_json")
            if not raw:
                raise invalid("handler_json: required")
            handler = normalize_handler(raw)  # clear errors before anything reaches Raft
            return C.RegisterEventHandler(rid, handler, request.overwrite)

        return self._mutate(
            context,
            request,
            "RegisterEventHandler",
            build,
            lambda o: epb.RegisterEventHandlerResponse(name=o.result["name"]),
        )

    def RemoveEventHandler(
        self, request: epb.RemoveEventHandlerRequest, context: grpc.ServicerContext
    ) -> Any:
        def build() -> C.Command:
            rid = v.request_id(request.request_id)
            return C.RemoveEventHandler(rid, v.name(request.name, "name"))

        return self._mutate(
            context,
            request,
            "RemoveEventHandler",
            build,
            lambda o: epb.RemoveEventHandlerResponse(),
        )

    def ListEventHandlers(
        self, request: epb.ListEventHandlersRequest, context: grpc.ServicerContext
    ) -> Any:
        def fn(st: State) -> Any:
            return epb.ListEventHandlersResponse(
                handler_json=[json.dumps(h) for h in queries.event_handlers(st)]
            )

        return self._read(context, fn)

    def ReadEvents(self, request: epb.ReadEventsRequest, context: grpc.ServicerContext) -> Any:
        def fn(st: State) -> Any:
            if request.from_offset < 0:
                raise invalid("from_offset: must be >= 0")
            if not 0 <= request.limit <= limits.MAX_READ_EVENTS:
                raise invalid(
                    f"limit: between 0 (meaning {DEFAULT_READ}) and {limits.MAX_READ_EVENTS}"
                )
            events = queries.read_events(st, request.from_offset, request.limit or DEFAULT_READ)
            return epb.ReadEventsResponse(
                events=[_event(e) for e in events], last_offset=st.event_offset
            )

        return self._read(context, fn)


def _event(record: dict[str, Any]) -> epb.Event:
    return epb.Event(
        offset=record["offset"],
        name=record["name"],
        payload_json=json.dumps(record["payload"]),
        correlation_key=record["correlationKey"],
        time_ms=record["time"],
        actions_json=json.dumps(record["actions"]),
    )
