"""Task limits through the leader's dispatcher, on a real single-replica Raft node in this
process: a long poll that waits because its queue is at a limit gets a task as soon as capacity
returns (a slot freed by a completion, the rate window moving on by the replicated timer's
Tick), whether it waits on the leader (a cold type) or is parked in the state (a busy type).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from orchestrator_client.v1 import definitions_pb2 as dpb
from orchestrator_client.v1 import tasks_pb2 as tpb
from orchestrator_client.v1 import workflows_pb2 as wpb

from orchestrator.server import ReplicaServer
from tests.cluster_support import api_stubs, single_replica, wait_for

LIMITS = {
    "conc_cold": {"concurrentExecLimit": 1},
    "conc_hot": {"concurrentExecLimit": 1},
    "rate_t": {"rateLimitPerFrequency": 1, "rateLimitFrequencyInSeconds": 2},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[ReplicaServer]:  # overrides conftest's fake
    with single_replica(tmp_path_factory.mktemp("limits")) as srv:
        yield srv


@pytest.fixture(scope="module")
def stubs(server: ReplicaServer) -> Iterator[Any]:
    ch = grpc.insecure_channel(server.grpc_addr)
    ns = api_stubs(ch)
    task_defs = [
        json.dumps({"name": name, "retryCount": 0, "responseTimeoutSeconds": 60, **lim})
        for name, lim in LIMITS.items()
    ]
    ns.defs.RegisterTaskDefs(dpb.RegisterTaskDefsRequest(request_id="td", task_def_json=task_defs))
    for name in LIMITS:
        definition = {"name": f"{name}_flow", "tasks": [{"name": name, "taskReferenceName": "a"}]}
        ns.defs.RegisterWorkflowDef(
            dpb.RegisterWorkflowDefRequest(
                request_id=f"wf-{name}", definition_json=json.dumps(definition)
            )
        )
    yield ns
    ch.close()


def rid() -> str:
    return uuid.uuid4().hex


def poll(stubs: Any, task_type: str, timeout_ms: int) -> Any:
    req = tpb.PollTasksRequest(
        request_id=rid(), task_type=task_type, worker_id="w", count=1, timeout_ms=timeout_ms
    )
    return stubs.tasks.PollTasks.future(req, timeout=timeout_ms / 1000 + 10)


def start(stubs: Any, task_type: str, n: int) -> None:
    for _ in range(n):
        stubs.wfs.StartWorkflow(
            wpb.StartWorkflowRequest(request_id=rid(), name=f"{task_type}_flow")
        )


def complete(stubs: Any, task_id: str) -> None:
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(request_id=rid(), task_id=task_id))


def waiting_polls(server: ReplicaServer, task_type: str) -> bool:
    return bool(server.node.dispatcher._by_type.get(task_type))


def lease_time_ms(stubs: Any, task: Any) -> int:
    """When the task was leased, in cluster time (its record's start_time_ms)."""
    wf = stubs.wfs.GetWorkflow(
        wpb.GetWorkflowRequest(workflow_id=task.workflow_id, include_tasks=True)
    ).workflow
    (record,) = [t for t in wf.tasks if t.task_id == task.task_id]
    return int(record.start_time_ms)


# A long poll that times out answers with no task, so a poll of 30 s that gets one was served
# when capacity returned: no wall-clock measure is needed to tell the two apart.
LONG_POLL_MS = 30_000


@pytest.mark.parametrize("task_type", ["conc_cold", "conc_hot"])
def test_a_poll_waiting_on_a_full_queue_gets_the_slot_a_completion_frees(
    server: ReplicaServer, stubs: Any, task_type: str
) -> None:
    start(stubs, task_type, 2)
    (first,) = poll(stubs, task_type, 0).result().tasks
    assert not poll(stubs, task_type, 0).result().tasks, "a task is ready but no slot is free"
    waiting = poll(stubs, task_type, LONG_POLL_MS)
    wait_for(lambda: waiting_polls(server, task_type), 10, "the poll to wait")
    assert not waiting.done()
    complete(stubs, first.task_id)
    (second,) = waiting.result().tasks
    assert second.task_id != first.task_id
    complete(stubs, second.task_id)


def test_a_poll_waiting_on_a_full_rate_window_gets_a_task_when_it_moves_on(
    server: ReplicaServer, stubs: Any
) -> None:
    start(stubs, "rate_t", 2)
    (first,) = poll(stubs, "rate_t", 0).result().tasks
    complete(stubs, first.task_id)  # an end frees no rate budget
    assert not poll(stubs, "rate_t", 0).result().tasks, "the window holds one lease"
    # Nothing else commits meanwhile: only the rate timer's Tick moves cluster time past the
    # window (a poll waiting on the leader re-reads the state, whose clock would stand still).
    (second,) = poll(stubs, "rate_t", LONG_POLL_MS).result().tasks
    gap_ms = lease_time_ms(stubs, second) - lease_time_ms(stubs, first)
    assert gap_ms >= 2_000, f"leased {gap_ms} ms after the first, inside its 2 s window"
    complete(stubs, second.task_id)
