"""A task leased by a poll answers only to the principal that polled: a completion, failure or
heartbeat from another principal is PERMISSION_DENIED, and an unauthenticated caller ("", no
authentication configured) binds nothing.

The authentication interceptor (H1's api/auth.py) sets identity.current() per call; here it is
replaced by a holder the test sets before each call (the calls are sequential).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from orchestrator_client.v1 import tasks_pb2 as tpb
from orchestrator_client.v1 import workflows_pb2 as wpb

from orchestrator.api import identity
from tests.cluster_support import api_stubs, wait_for

_WHO = {"name": ""}


@pytest.fixture
def as_caller(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setattr(identity, "current", lambda: identity.Principal(_WHO["name"], "worker"))
    yield _WHO
    _WHO["name"] = ""


@pytest.fixture(scope="module")
def stubs(server: Any) -> Iterator[Any]:
    from orchestrator_client import OrchestratorClient

    with OrchestratorClient([server.grpc_addr], retry_budget_s=10) as c:
        c.register_task_defs([{"name": "lease_t", "retryCount": 0, "responseTimeoutSeconds": 60}])
        c.register_workflow_def(
            {"name": "lease_flow", "tasks": [{"name": "lease_t", "taskReferenceName": "a"}]}
        )
    ch = grpc.insecure_channel(server.grpc_addr)
    yield api_stubs(ch)
    ch.close()


def rid() -> str:
    return uuid.uuid4().hex


def _leased_to(stubs: Any, who: dict[str, str], name: str) -> tuple[str, str]:
    """Start a workflow and lease its task as `name`; returns (workflow id, task id)."""
    who["name"] = name
    wf = stubs.wfs.StartWorkflow(
        wpb.StartWorkflowRequest(request_id=rid(), name="lease_flow", input_json="{}")
    ).workflow_id
    got: list[Any] = []
    poll = tpb.PollTasksRequest(task_type="lease_t", worker_id=name or "anon", count=1)

    def leased() -> bool:
        poll.request_id = rid()
        got.extend(stubs.tasks.PollTasks(poll).tasks)
        return bool(got)

    wait_for(leased, 30, "the task to be leased")
    return wf, got[0].task_id


def _denied(call: Any, request: Any) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    return str(info.value.details())


def test_another_principal_cannot_complete_fail_or_heartbeat_a_lease(
    stubs: Any, as_caller: dict[str, str]
) -> None:
    wf, tid = _leased_to(stubs, as_caller, "alice")
    as_caller["name"] = "mallory"
    out = json.dumps({"v": "forged"})
    msg = _denied(
        stubs.tasks.CompleteTask,
        tpb.CompleteTaskRequest(request_id=rid(), task_id=tid, output_json=out),
    )
    assert "leased to another principal" in msg and "alice" not in msg
    _denied(stubs.tasks.FailTask, tpb.FailTaskRequest(request_id=rid(), task_id=tid))
    _denied(stubs.tasks.HeartbeatTask, tpb.HeartbeatTaskRequest(request_id=rid(), task_id=tid))
    batch = tpb.CompleteTasksRequest(
        items=[tpb.CompleteTaskRequest(request_id=rid(), task_id=tid, output_json=out)]
    )
    (status,) = stubs.tasks.CompleteTasks(batch).statuses
    assert status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]

    as_caller["name"] = "alice"
    stubs.tasks.HeartbeatTask(tpb.HeartbeatTaskRequest(request_id=rid(), task_id=tid))
    stubs.tasks.CompleteTask(
        tpb.CompleteTaskRequest(request_id=rid(), task_id=tid, output_json='{"v": 1}')
    )
    got = stubs.wfs.GetWorkflow(wpb.GetWorkflowRequest(workflow_id=wf))
    assert got.workflow.status == wpb.WORKFLOW_STATUS_COMPLETED


def test_an_unauthenticated_lease_binds_nothing(stubs: Any, as_caller: dict[str, str]) -> None:
    _, tid = _leased_to(stubs, as_caller, "")
    as_caller["name"] = "bob"
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(request_id=rid(), task_id=tid))
