"""A secure one-replica server over the fake replica (TLS, a token per role), and raw calls."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from google.protobuf import message_factory

from orchestrator.api.rpc import SERVICES
from orchestrator.replication.api import Member
from tests.cluster_support import single_replica
from tests.fakes import FakeReplica


@contextmanager
def secure_fake(tmp: Any, **tls: Any) -> Iterator[Any]:
    """Replica n1 on the fake replica with TLS and tokens (`srv.access` reaches it as admin)."""

    def build(cfg: Any) -> FakeReplica:
        return FakeReplica([Member(r.node_id, r.raft, r.grpc) for r in cfg.replicas])

    with single_replica(tmp, replica=build, secure=True, tls=tls or None) as srv:
        yield srv


def every_rpc() -> list[tuple[str, Any]]:
    """(gRPC path, empty request) for every method of every service."""
    out = []
    for service in SERVICES:
        for method in service.methods:
            request = message_factory.GetMessageClass(method.input_type)()
            out.append((f"/{service.full_name}/{method.name}", request))
    return out


# Server-streaming RPCs (a subscription streams for ever once admitted): what they answer
# within this deadline; DEADLINE_EXCEEDED means the stream was open.
STREAM_S = 0.5
_STREAMS = {f"/{s.full_name}/{m.name}" for s in SERVICES for m in s.methods if m.server_streaming}


def call(channel: grpc.Channel, path: str, request: Any, metadata: Any = ()) -> grpc.StatusCode:
    """The status code of one raw call (OK when it answers)."""
    serialize = type(request).SerializeToString
    try:
        if path in _STREAMS:
            stream = channel.unary_stream(
                path, request_serializer=serialize, response_deserializer=bytes
            )
            list(stream(request, metadata=tuple(metadata), timeout=STREAM_S))
        else:
            fn = channel.unary_unary(
                path, request_serializer=serialize, response_deserializer=bytes
            )
            fn(request, metadata=tuple(metadata), timeout=10)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def details(channel: grpc.Channel, path: str, request: Any, metadata: Any = ()) -> str:
    fn = channel.unary_unary(
        path, request_serializer=type(request).SerializeToString, response_deserializer=bytes
    )
    try:
        fn(request, metadata=tuple(metadata), timeout=10)
    except grpc.RpcError as err:
        return str(err.details())
    return ""
