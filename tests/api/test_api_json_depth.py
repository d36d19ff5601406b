"""JSON documents nested deeper than the limit are refused before anything is proposed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from orchestrator_client.v1 import definitions_pb2 as dpb
from orchestrator_client.v1 import workflows_pb2 as wpb

from orchestrator.core import codec, limits
from orchestrator.server import ReplicaServer
from tests.cluster_support import api_stubs


@pytest.fixture(scope="module")
def wfs(server: ReplicaServer) -> Iterator[Any]:
    ch = grpc.insecure_channel(server.grpc_addr)
    stubs = api_stubs(ch)
    stubs.defs.RegisterTaskDefs(
        dpb.RegisterTaskDefsRequest(request_id="td", task_def_json=[json.dumps({"name": "d_t"})])
    )
    stubs.defs.RegisterWorkflowDef(
        dpb.RegisterWorkflowDefRequest(
            request_id="wf",
            definition_json=json.dumps(
                {
                    "name": "depth_flow",
                    "tasks": [
                        {
                            "name": "d_t",
                            "taskReferenceName": "a",
                            "inputParameters": {"x": "${workflow.input.x}"},
                        }
                    ],
                }
            ),
        )
    )
    yield stubs.wfs
    ch.close()


def nested_input(levels: int) -> str:
    """An input object whose field x holds arrays: `levels` levels in all."""
    return '{"x":' + "[" * (levels - 1) + "1" + "]" * (levels - 1) + "}"


def start(wfs: Any, input_json: str) -> Any:
    return wfs.StartWorkflow(
        wpb.StartWorkflowRequest(
            request_id=uuid.uuid4().hex, name="depth_flow", input_json=input_json
        )
    )


def test_the_deepest_allowed_input_is_accepted(server: ReplicaServer, wfs: Any) -> None:
    wid = start(wfs, nested_input(limits.MAX_JSON_DEPTH)).workflow_id
    assert wid in server.replica.state.workflows
    assert not server.replica.apply_error


@pytest.mark.parametrize("levels", [limits.MAX_JSON_DEPTH + 1, 980, 100_000])
def test_a_deeper_input_is_refused_naming_the_field(
    server: ReplicaServer, wfs: Any, levels: int
) -> None:
    seq = server.replica.state.seq
    with pytest.raises(grpc.RpcError) as err:
        start(wfs, nested_input(levels))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "input_json: nested more than 100 levels deep"
    assert server.replica.state.seq == seq, "nothing was proposed"


def test_deeper_than_counts_arrays_and_objects() -> None:
    assert not codec.deeper_than({"a": [1, {"b": 2}]}, 3)
    assert codec.deeper_than({"a": [1, {"b": []}]}, 3)
    assert not codec.deeper_than("scalar", 0)
    deep: Any = 1
    for _ in range(200_000):  # no recursion: any depth can be checked
        deep = [deep]
    assert codec.deeper_than(deep, 100) and not codec.deeper_than(deep, 200_000)
