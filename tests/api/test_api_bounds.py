"""Bad JSON values are refused at the API with INVALID_ARGUMENT naming the field (not UNKNOWN,
not stored and served back as something that is not JSON)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from orchestrator_client.v1 import workflows_pb2 as wpb

from tests.cluster_support import api_stubs


@pytest.fixture(scope="module")
def stubs(server: Any) -> Iterator[Any]:
    ch = grpc.insecure_channel(server.grpc_addr)
    yield api_stubs(ch)
    ch.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"x": NaN}', "input_json: NaN and Infinity are not JSON"),
        ('{"x": [1, -Infinity]}', "input_json: NaN and Infinity are not JSON"),
        ('{"x": "\\ud800"}', "input_json: a string holds a lone surrogate"),
        ('{"\\udfff": 1}', "input_json: a string holds a lone surrogate"),
    ],
)
def test_non_json_values_are_invalid_arguments(stubs: Any, text: str, message: str) -> None:
    request = wpb.StartWorkflowRequest(request_id=uuid.uuid4().hex, name="any", input_json=text)
    with pytest.raises(grpc.RpcError) as info:
        stubs.wfs.StartWorkflow(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()


def test_a_paired_surrogate_escape_is_fine(stubs: Any) -> None:
    request = wpb.StartWorkflowRequest(
        request_id=uuid.uuid4().hex, name="not-registered", input_json='{"x": "\\ud83d\\ude00"}'
    )
    with pytest.raises(grpc.RpcError) as info:
        stubs.wfs.StartWorkflow(request)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND, "past validation"
