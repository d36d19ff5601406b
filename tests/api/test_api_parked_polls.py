"""Lease at schedule time through the API, on a real single-replica Raft node in this process
(the fake replica of the other API tests would not show what Raft's log holds).

A long poll of a busy task type parks in the replicated state; the command that makes a task
ready leases it to the poll, and the dispatcher answers the waiting call with no commit of its
own. A cold type's long poll waits on the leader without committing anything.
"""

from __future__ import annotations

import json
import threading
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


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[ReplicaServer]:  # overrides conftest's fake
    with single_replica(tmp_path_factory.mktemp("parked")) as srv:
        yield srv


@pytest.fixture(scope="module")
def stubs(server: ReplicaServer) -> Iterator[Any]:
    ch = grpc.insecure_channel(server.grpc_addr)
    ns = api_stubs(ch)
    task_defs = [
        json.dumps({"name": name, "retryCount": 0, "responseTimeoutSeconds": 60})
        for name in ("hot_t", "cold_t", "gone_t")
    ]
    ns.defs.RegisterTaskDefs(dpb.RegisterTaskDefsRequest(request_id="td", task_def_json=task_defs))
    for name in ("hot_t", "cold_t", "gone_t"):
        ns.defs.RegisterWorkflowDef(
            dpb.RegisterWorkflowDefRequest(
                request_id=f"wf-{name}",
                definition_json=json.dumps(
                    {"name": f"{name}_flow", "tasks": [{"name": name, "taskReferenceName": "a"}]}
                ),
            )
        )
    yield ns
    ch.close()


def rid() -> str:
    return uuid.uuid4().hex


def poll_req(task_type: str, request_id: str, timeout_ms: int, worker: str = "w") -> Any:
    return tpb.PollTasksRequest(
        request_id=request_id,
        task_type=task_type,
        worker_id=worker,
        count=1,
        timeout_ms=timeout_ms,
    )


def make_hot(stubs: Any, task_type: str) -> None:
    """Run one task of the type, so the leader counts the type as busy."""
    stubs.wfs.StartWorkflow(wpb.StartWorkflowRequest(request_id=rid(), name=f"{task_type}_flow"))
    (task,) = stubs.tasks.PollTasks(poll_req(task_type, rid(), 0)).tasks
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(request_id=rid(), task_id=task.task_id))


def raft_entries(server: ReplicaServer) -> int:
    return server.replica.status().log_len


def test_a_parked_poll_rides_in_the_entry_that_makes_its_task_ready(
    server: ReplicaServer, stubs: Any
) -> None:
    make_hot(stubs, "hot_t")
    poll_id = rid()
    result: dict[str, Any] = {}

    def poll() -> None:
        result["resp"] = stubs.tasks.PollTasks(
            poll_req("hot_t", poll_id, 20_000, worker="lp"), timeout=30
        )

    t = threading.Thread(target=poll)
    seq_before, entries_before = server.replica.state.seq, raft_entries(server)
    t.start()
    wait_for(lambda: server.node.dispatcher.waiting(poll_id), 10, "the poll to wait")
    assert server.replica.state.seq == seq_before, "an idle parked poll commits nothing"
    started = stubs.wfs.StartWorkflow(wpb.StartWorkflowRequest(request_id=rid(), name="hot_t_flow"))
    t.join(30)
    (task,) = result["resp"].tasks
    assert task.workflow_id == started.workflow_id and task.worker_id == "lp"
    assert task.status == wpb.TASK_STATUS_IN_PROGRESS
    # One entry: the parked poll, then the start, which leased the task to it.
    assert server.replica.state.seq == seq_before + 2
    assert raft_entries(server) == entries_before + 1
    assert poll_id not in server.replica.state.parked
    # A retry of the same poll returns the same task.
    again = stubs.tasks.PollTasks(poll_req("hot_t", poll_id, 20_000, worker="lp"))
    assert [x.task_id for x in again.tasks] == [task.task_id]
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(request_id=rid(), task_id=task.task_id))


def test_a_parked_poll_that_nothing_carried_ends_without_a_commit(
    server: ReplicaServer, stubs: Any
) -> None:
    make_hot(stubs, "hot_t")
    seq_before = server.replica.state.seq
    resp = stubs.tasks.PollTasks(poll_req("hot_t", rid(), 300), timeout=10)
    assert list(resp.tasks) == []
    assert server.replica.state.seq == seq_before


def test_a_committed_parked_poll_ends_empty_at_its_timeout(
    server: ReplicaServer, stubs: Any
) -> None:
    make_hot(stubs, "hot_t")
    poll_id = rid()
    fut = stubs.tasks.PollTasks.future(poll_req("hot_t", poll_id, 1000), timeout=10)
    wait_for(lambda: server.node.dispatcher.waiting(poll_id), 10, "the poll to wait")
    # Any command carries the parked poll into the log.
    stubs.wfs.StartWorkflow(wpb.StartWorkflowRequest(request_id=rid(), name="cold_t_flow"))
    assert poll_id in server.replica.state.parked
    assert list(fut.result().tasks) == []
    assert poll_id not in server.replica.state.parked
    assert "poll:" + poll_id not in server.replica.state.timers
    # Nothing was leased to the ended poll: the next task waits in its queue.
    stubs.wfs.StartWorkflow(wpb.StartWorkflowRequest(request_id=rid(), name="hot_t_flow"))
    assert server.replica.state.queues.get("hot_t")
    (task,) = stubs.tasks.PollTasks(poll_req("hot_t", rid(), 0)).tasks
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(request_id=rid(), task_id=task.task_id))
    (cold,) = stubs.tasks.PollTasks(poll_req("cold_t", rid(), 0)).tasks
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(request_id=rid(), task_id=cold.task_id))


@pytest.mark.parametrize("committed", [False, True])
def test_a_poll_whose_caller_went_away_captures_nothing(
    server: ReplicaServer, stubs: Any, committed: bool
) -> None:
    make_hot(stubs, "gone_t")
    poll_id = rid()
    fut = stubs.tasks.PollTasks.future(poll_req("gone_t", poll_id, 20_000), timeout=30)
    wait_for(lambda: server.node.dispatcher.waiting(poll_id), 10, "the poll to wait")
    if committed:
        stubs.wfs.StartWorkflow(wpb.StartWorkflowRequest(request_id=rid(), name="cold_t_flow"))
        assert poll_id in server.replica.state.parked
    fut.cancel()
    wait_for(lambda: not server.node.dispatcher.waiting(poll_id), 10, "the call to end")
    assert poll_id not in server.replica.state.parked
    stubs.wfs.StartWorkflow(wpb.StartWorkflowRequest(request_id=rid(), name="gone_t_flow"))
    assert server.replica.state.queues.get("gone_t"), "the task waits for a live poller"
    (task,) = stubs.tasks.PollTasks(poll_req("gone_t", rid(), 0)).tasks
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(request_id=rid(), task_id=task.task_id))
    if committed:
        (cold,) = stubs.tasks.PollTasks(poll_req("cold_t", rid(), 0)).tasks
        stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(request_id=rid(), task_id=cold.task_id))


def test_a_cold_types_long_poll_commits_nothing(server: ReplicaServer, stubs: Any) -> None:
    seq_before = server.replica.state.seq
    resp = stubs.tasks.PollTasks(poll_req("never_t", rid(), 300), timeout=10)
    assert list(resp.tasks) == []
    assert server.replica.state.seq == seq_before
