"""The services and their methods, from the generated descriptors (no hand-written tables), and
the guard that answers undecodable requests INVALID_ARGUMENT."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError
from orchestrator_client.v1 import (
    cluster_pb2,
    definitions_pb2,
    events_pb2,
    tasks_pb2,
    workflows_pb2,
)

from . import errors

DEFINITIONS: ServiceDescriptor = definitions_pb2.DESCRIPTOR.services_by_name["DefinitionService"]
WORKFLOWS: ServiceDescriptor = workflows_pb2.DESCRIPTOR.services_by_name["WorkflowService"]
TASKS: ServiceDescriptor = tasks_pb2.DESCRIPTOR.services_by_name["TaskService"]
CLUSTER: ServiceDescriptor = cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"]
EVENTS: ServiceDescriptor = events_pb2.DESCRIPTOR.services_by_name["EventService"]
SUBSCRIPTIONS: ServiceDescriptor = events_pb2.DESCRIPTOR.services_by_name["SubscriptionService"]
SERVICES: tuple[ServiceDescriptor, ...] = (
    DEFINITIONS,
    WORKFLOWS,
    TASKS,
    CLUSTER,
    EVENTS,
    SUBSCRIPTIONS,
)


def response_type(service: ServiceDescriptor, method: str) -> Any:
    """The generated response message class of service/method (e.g. to decode a forwarded
    call's answer)."""
    return message_factory.GetMessageClass(service.methods_by_name[method].output_type)


def path(service: ServiceDescriptor, method: str) -> str:
    """The method's gRPC path, /package.Service/Method."""
    return f"/{service.full_name}/{service.methods_by_name[method].name}"


Behaviour = Callable[[Any, grpc.ServicerContext], Any]
# Wraps a handler's behaviour; told whether it streams its responses (a generator, to wrap as one).
Guard = Callable[[Behaviour, bool], Behaviour]


def wrap_handler(handler: Any, guard: Guard, **replace: Any) -> Any:
    """`handler` (grpc's method handler tuple) with its behaviour passed through `guard`, and
    the other fields in `replace` (a request_deserializer) replaced."""
    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            replace[kind] = guard(behaviour, kind.endswith("_stream"))
            break
    return handler._replace(**replace)


def around(
    enter: Callable[[Any, grpc.ServicerContext], Any], leave: Callable[[Any], None]
) -> Guard:
    """A guard that calls `enter(request, context)` before the behaviour (it may abort the call)
    and `leave(what enter returned)` after it, also after the last response of a stream."""

    def guard(behaviour: Behaviour, streams: bool) -> Behaviour:
        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            entered = enter(request, context)
            try:
                return behaviour(request, context)
            finally:
                leave(entered)

        def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            entered = enter(request, context)
            try:
                yield from behaviour(request, context)
            finally:
                leave(entered)

        return streaming if streams else unary

    return guard


class Undecodable:
    """What a guarded deserializer returns for bytes that are not the method's request message
    (wire garbage, or a string field that is not UTF-8): the handler answers INVALID_ARGUMENT
    instead of gRPC's INTERNAL with a traceback logged per request."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _guarded_deserializer(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def guarded(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as exc:
            return Undecodable(str(exc))

    return guarded


def _answer_undecodable(method: str) -> Guard:
    name = method.rpartition("/")[2] or method

    def guard(behaviour: Behaviour, streams: bool) -> Behaviour:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                # The reason is protobuf's (the message type and what was wrong), not the bytes.
                msg = f"{name}: the request is not a valid message: {request.reason}"
                errors.abort(context, errors.invalid(msg))
            return behaviour(request, context)

        return handle

    return guard


class DecodeGuard(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Guards the deserializer of every unary-request method: gRPC Python decodes the request
    before any handler runs (on its polling thread), so a DecodeError cannot be caught there.
    The last interceptor: authentication answers first."""

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if (
            handler is None
            or handler.request_streaming
            or handler.request_deserializer is None
            or not hasattr(handler, "_replace")  # not grpc's own handler tuple
        ):
            return handler
        return wrap_handler(
            handler,
            _answer_undecodable(handler_call_details.method),
            request_deserializer=_guarded_deserializer(handler.request_deserializer),
        )
