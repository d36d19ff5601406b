"""Fuzzing the request messages of every RPC against one replica (on the fake replica): random
bytes and random well-formed messages (any field value, enum numbers out of range, JSON fields
with odd documents) never get UNKNOWN or INTERNAL, and the replica serves on afterwards."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from orchestrator_client.v1 import definitions_pb2 as dpb
from orchestrator_client.v1 import workflows_pb2 as wpb

from orchestrator.api import rpc
from orchestrator.server import ReplicaServer
from tests.cluster_support import api_stubs

BAD_CODES = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
STREAM_S = 0.2
METHODS = [(s, m) for s in rpc.SERVICES for m in s.methods]
_FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_INT32 = st.one_of(
    st.integers(-5, 5), st.integers(-(2**31), 2**31 - 1), st.sampled_from([99, 2**31 - 1])
)
_INT64 = st.one_of(st.integers(-5, 5), st.integers(-(2**63), 2**63 - 1))
_JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_NAMES = st.one_of(
    st.sampled_from(["fz_t", "fz_flow", "n1", "", "*", "127.0.0.1:1"]),
    st.text(max_size=40),
    st.text(min_size=250, max_size=300),
)


def _json_text() -> st.SearchStrategy[str]:
    return st.one_of(
        _JSON_VALUES.map(json.dumps),
        st.dictionaries(st.text(max_size=8), _JSON_VALUES, max_size=5).map(json.dumps),
        st.sampled_from(['{"a": NaN}', '{"x": 1e999}', '{"s": "\\udc80"}', "[" * 200, "{}"]),
        st.text(max_size=30),
    )


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return _json_text() if field.name.endswith("_json") else _NAMES
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_ENUM, FieldDescriptor.TYPE_SINT32):
        return _INT32
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
        return _INT64
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64):
        return st.integers(0, 2**32 - 1)
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=20)
    if t == FieldDescriptor.TYPE_MESSAGE:
        return _message(field.message_type, depth + 1)
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=False, width=32)
    raise AssertionError(f"no strategy for {field.full_name}")


@st.composite
def _message(draw: Any, desc: Descriptor, depth: int = 0) -> Any:
    cls = message_factory.GetMessageClass(desc)
    msg = cls()
    if depth > 2:
        return msg
    for field in desc.fields:
        if not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, val = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            entries = draw(st.dictionaries(_value(key, depth), _value(val, depth), max_size=3))
            getattr(msg, field.name).update(entries)
        elif field.is_repeated:
            values = draw(st.lists(_value(field, depth), max_size=3))
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(msg, field.name).extend(values)
            else:
                getattr(msg, field.name)[:] = values
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(msg, field.name).CopyFrom(draw(_value(field, depth)))
        else:
            setattr(msg, field.name, draw(_value(field, depth)))
    return msg


def _tame(method: MethodDescriptor, msg: Any) -> Any:
    """What would stop this one replica serving the next example, for reasons that are not
    bad input: a long poll waits its time out, and removing the only replica leaves no leader."""
    if method.name == "PollTasks" and msg.timeout_ms > 0:
        msg.timeout_ms = min(msg.timeout_ms, 20)
    if method.name == "RemoveReplica" and msg.node_id == "n1":
        msg.node_id = "n1-not"
    return msg


@pytest.fixture(scope="module")
def channel(server: ReplicaServer) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(server.grpc_addr)
    stubs = api_stubs(ch)
    stubs.defs.RegisterTaskDefs(
        dpb.RegisterTaskDefsRequest(request_id="fz-td", task_def_json=['{"name": "fz_t"}'])
    )
    stubs.defs.RegisterWorkflowDef(
        dpb.RegisterWorkflowDefRequest(
            request_id="fz-wf",
            definition_json=json.dumps(
                {"name": "fz_flow", "tasks": [{"name": "fz_t", "taskReferenceName": "a"}]}
            ),
        )
    )
    yield ch
    ch.close()


def _send(channel: grpc.Channel, service: Any, method: str, data: bytes) -> None:
    path = rpc.path(service, method)
    try:
        if service.methods_by_name[method].server_streaming:
            # A valid subscription streams for ever: what it answers within a short deadline.
            stream = channel.unary_stream(path, request_serializer=None, response_deserializer=None)
            list(stream(data, timeout=STREAM_S))
        else:
            call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            call(data, timeout=10)
    except grpc.RpcError as err:
        assert err.code() not in BAD_CODES, (method, err.code(), err.details())


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.name for _, m in METHODS])
def test_random_bytes_never_get_unknown_or_internal(
    channel: grpc.Channel, service: Any, method: MethodDescriptor
) -> None:
    @_FUZZ
    @given(data=st.binary(max_size=200))
    def run(data: bytes) -> None:
        _send(channel, service, method.name, data)

    run()


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.name for _, m in METHODS])
def test_random_messages_never_get_unknown_or_internal(
    channel: grpc.Channel, service: Any, method: MethodDescriptor
) -> None:
    @_FUZZ
    @given(msg=_message(method.input_type))
    def run(msg: Any) -> None:
        _send(channel, service, method.name, _tame(method, msg).SerializeToString())

    run()


def test_the_replica_serves_on_after_the_fuzzing(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stubs = api_stubs(channel)
    started = stubs.wfs.StartWorkflow(
        wpb.StartWorkflowRequest(request_id=uuid.uuid4().hex, name="fz_flow"), timeout=5
    )
    got = stubs.wfs.GetWorkflow(wpb.GetWorkflowRequest(workflow_id=started.workflow_id), timeout=5)
    assert got.workflow.status == wpb.WORKFLOW_STATUS_RUNNING
