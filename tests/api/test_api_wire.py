"""Clean wire answers: undecodable requests are INVALID_ARGUMENT naming the method (no traceback
logged), and error messages quote a bounded part of the input."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from orchestrator_client.v1 import cluster_pb2 as cpb
from orchestrator_client.v1 import cluster_pb2_grpc
from orchestrator_client.v1 import workflows_pb2 as wpb

from orchestrator.api import rpc
from orchestrator.api.errors import MAX_MESSAGE_CHARS, QUOTE_CHARS, bounded, quote
from orchestrator.server import ReplicaServer
from tests.cluster_support import api_stubs


@pytest.fixture(scope="module")
def channel(server: ReplicaServer) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(server.grpc_addr)
    yield ch
    ch.close()


def _raw(channel: grpc.Channel, service: Any, method: str) -> Any:
    """The method, sending bytes as they are."""
    return channel.unary_unary(
        rpc.path(service, method),
        request_serializer=None,
        response_deserializer=rpc.response_type(service, method).FromString,
    )


GARBAGE = b"\xff\xff\xff\xff"


def _not_utf8(method: Any) -> bytes | None:
    """The request with its first string field holding bytes that are not UTF-8 (None when it
    has no string field)."""
    for field in method.input_type.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            return bytes([field.number << 3 | 2, 2, 0xFF, 0xFE])
    return None


@pytest.mark.parametrize("kind", ["not-utf8", "garbage"])
def test_an_undecodable_request_is_invalid_argument_without_a_logged_traceback(
    channel: grpc.Channel, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    for service in rpc.SERVICES:
        for method, desc in service.methods_by_name.items():
            data = GARBAGE if kind == "garbage" else _not_utf8(desc)
            if data is None:
                continue
            with pytest.raises(grpc.RpcError) as info:
                _raw(channel, service, method)(data, timeout=5)
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, (method, info.value)
            assert info.value.details().startswith(f"{method}: the request is not a valid")
    assert not [r for r in caplog.records if "deserializ" in r.getMessage().lower()]
    # The replica serves on.
    api_stubs(channel).wfs.ListWorkflows(wpb.ListWorkflowsRequest(), timeout=5)


def test_a_huge_bad_value_comes_back_as_a_short_message(channel: grpc.Channel) -> None:
    stub = cluster_pb2_grpc.ClusterServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.AddReplica(
            cpb.AddReplicaRequest(
                request_id="big", node_id="n9", raft_address="x" * 2**20, grpc_address="h:1"
            ),
            timeout=5,
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "raft_address" in info.value.details()
    assert len(info.value.details()) < MAX_MESSAGE_CHARS + 64


def test_quote_and_bounded() -> None:
    assert quote("short") == "short"
    long = quote("y" * 5000)
    assert long.startswith("y" * QUOTE_CHARS + "...") and "5000 characters" in long
    assert len(long) < QUOTE_CHARS + 40
    assert len(bounded("z" * 10**6)) < MAX_MESSAGE_CHARS + 40
    # A lone surrogate (JSON can carry one) must not make the status unsendable.
    assert bounded("bad \udc80 text").encode("utf-8")
