"""CompleteTasks with polls riding behind the results: the answer carries the next task."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from orchestrator_client import OrchestratorClient, Worker, WorkerStats
from orchestrator_client.v1 import definitions_pb2 as dpb
from orchestrator_client.v1 import tasks_pb2 as tpb
from orchestrator_client.v1 import workflows_pb2 as wpb

from orchestrator.server import ReplicaServer
from tests.cluster_support import History, api_stubs, wait_for


@pytest.fixture(scope="module")
def stubs(server: ReplicaServer) -> Iterator[Any]:
    ch = grpc.insecure_channel(server.grpc_addr)
    ns = api_stubs(ch)
    ns.defs.RegisterTaskDefs(
        dpb.RegisterTaskDefsRequest(
            request_id="td",
            task_def_json=[
                json.dumps({"name": name, "retryCount": 0, "responseTimeoutSeconds": 60})
                for name in ("chain_t", "then_t")
            ],
        )
    )
    # chain_flow: two tasks of one type; mixed_flow: the second of another type.
    for name, second in (("chain_flow", "chain_t"), ("mixed_flow", "then_t")):
        ns.defs.RegisterWorkflowDef(
            dpb.RegisterWorkflowDefRequest(
                request_id=f"wf-{name}",
                definition_json=json.dumps(
                    {
                        "name": name,
                        "tasks": [
                            {"name": "chain_t", "taskReferenceName": "a"},
                            {"name": second, "taskReferenceName": "b"},
                        ],
                    }
                ),
            )
        )
    yield ns
    ch.close()


def rid() -> str:
    return uuid.uuid4().hex


def first_task(stubs: Any) -> tuple[str, Any]:
    wid = stubs.wfs.StartWorkflow(
        wpb.StartWorkflowRequest(request_id=rid(), name="chain_flow")
    ).workflow_id
    got: list[Any] = []
    wait_for(
        lambda: (
            got.extend(
                stubs.tasks.PollTasks(
                    tpb.PollTasksRequest(
                        request_id=rid(), task_type="chain_t", worker_id="w", count=1
                    )
                ).tasks
            )
            or bool(got)
        ),
        30,
        "task a",
    )
    (task,) = got
    assert task.workflow_id == wid and task.reference_task_name == "a"
    return wid, task


def complete_and_poll(task_id: str, item_id: str, poll_id: str, **poll: Any) -> Any:
    fields = {"task_type": "chain_t", "worker_id": "w", "count": 1, **poll}
    return tpb.CompleteTasksRequest(
        items=[tpb.CompleteTaskRequest(request_id=item_id, task_id=task_id, worker_id="w")],
        polls=[tpb.PollTasksRequest(request_id=poll_id, **fields)],
    )


def test_the_answer_carries_the_next_task_before_a_parked_poll_gets_it(
    server: ReplicaServer, stubs: Any
) -> None:
    wid, a = first_task(stubs)
    # A long poll of another worker parked for the same type, as the SDK keeps one.
    parked_id = rid()
    parked: dict[str, Any] = {}

    def long_poll() -> None:
        parked["resp"] = stubs.tasks.PollTasks(
            tpb.PollTasksRequest(
                request_id=parked_id,
                task_type="chain_t",
                worker_id="lp",
                count=1,
                timeout_ms=2000,
            ),
            timeout=30,
        )

    t = threading.Thread(target=long_poll)
    t.start()
    try:
        wait_for(lambda: server.node.dispatcher.waiting(parked_id), 10, "the long poll to wait")
        item_id, poll_id = rid(), rid()
        resp = stubs.tasks.CompleteTasks(complete_and_poll(a.task_id, item_id, poll_id))
        assert [s.code for s in resp.statuses] == [0]
        (answer,) = resp.polled
        (b,) = answer.tasks
        assert (b.workflow_id, b.reference_task_name, b.worker_id) == (wid, "b", "w")
        assert b.status == wpb.TASK_STATUS_IN_PROGRESS
        # A retry of the call (its answer lost): the same verdict and the same task.
        again = stubs.tasks.CompleteTasks(complete_and_poll(a.task_id, item_id, poll_id))
        assert [s.code for s in again.statuses] == [0]
        assert [x.task_id for x in again.polled[0].tasks] == [b.task_id]
    finally:
        t.join(30)
    assert not parked["resp"].tasks, "the parked poll did not get the next task"
    # The last task: nothing becomes ready, so the poll takes nothing.
    last = stubs.tasks.CompleteTasks(complete_and_poll(b.task_id, rid(), rid()))
    assert [s.code for s in last.statuses] == [0] and not last.polled[0].tasks
    wf = stubs.wfs.GetWorkflow(wpb.GetWorkflowRequest(workflow_id=wid))
    assert wf.workflow.status == wpb.WORKFLOW_STATUS_COMPLETED


@pytest.mark.parametrize(
    ("poll", "named"),
    [
        ({"timeout_ms": 5}, "polls[0].timeout_ms"),
        ({"count": 101}, "polls[0].count"),
        ({"task_type": ""}, "polls[0].task_type"),
    ],
)
def test_a_bad_poll_fails_the_call_and_applies_nothing(
    stubs: Any, poll: dict[str, Any], named: str
) -> None:
    wid, a = first_task(stubs)
    with pytest.raises(grpc.RpcError) as err:
        stubs.tasks.CompleteTasks(complete_and_poll(a.task_id, rid(), rid(), **poll))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in (err.value.details() or "")
    wf = stubs.wfs.GetWorkflow(wpb.GetWorkflowRequest(workflow_id=wid, include_tasks=True))
    (still,) = [t for t in wf.workflow.tasks if t.reference_task_name == "a"]
    assert still.status == wpb.TASK_STATUS_IN_PROGRESS, "the result was not applied"
    stubs.tasks.CompleteTasks(complete_and_poll(a.task_id, rid(), rid()))  # tidy up


def one_at_a_time(
    server: ReplicaServer,
    flow: str,
    types: list[str],
    n: int,
    concurrency: int,
    recorder: Any = None,
) -> WorkerStats:
    """Run `n` workflows one after another (so the worker has nothing else in flight) with a
    worker of `types`; each must complete. Returns the worker's counters."""
    client = OrchestratorClient([server.grpc_addr], retry_budget_s=10, recorder=recorder)
    worker = Worker(client, worker_id=f"quiet-{flow}", concurrency=concurrency, poll_timeout_ms=500)
    for task_type in types:
        worker.register(task_type, lambda t: {"ref": t.reference_task_name})
    worker.start()
    try:
        for _ in range(n):
            wid = client.start_workflow(flow)
            wait_for(lambda w=wid: client.get_workflow(w).is_terminal, 30, "the workflow to finish")
            assert client.get_workflow(wid).status == "COMPLETED"
    finally:
        worker.stop(timeout_s=10)
        client.close()
    return worker.stats


def test_a_quiet_worker_runs_each_next_task_from_the_completion_answer(
    server: ReplicaServer, stubs: Any
) -> None:
    history = History()
    stats = one_at_a_time(server, "chain_flow", ["chain_t"], 5, concurrency=4, recorder=history)
    # Task b of each workflow came with task a's completion, not from a long poll.
    assert stats.taken_with_completion == 5
    assert stats.completed == 10 and stats.report_errors == 0 and stats.lost == 0
    completes = history.by_request("CompleteTask")
    assert len(completes) == 10 and all(ev == ["invoke", "ok"] for ev in completes.values())


def test_each_riding_poll_answers_for_its_own_type(server: ReplicaServer, stubs: Any) -> None:
    wid = stubs.wfs.StartWorkflow(
        wpb.StartWorkflowRequest(request_id=rid(), name="mixed_flow")
    ).workflow_id
    (a,) = stubs.tasks.PollTasks(
        tpb.PollTasksRequest(request_id=rid(), task_type="chain_t", worker_id="w", count=1)
    ).tasks
    assert a.workflow_id == wid
    req = complete_and_poll(a.task_id, rid(), rid())
    req.polls.append(
        tpb.PollTasksRequest(request_id=rid(), task_type="then_t", worker_id="w", count=1)
    )
    resp = stubs.tasks.CompleteTasks(req)
    same_type, other_type = resp.polled
    assert not same_type.tasks
    (b,) = other_type.tasks
    assert (b.workflow_id, b.reference_task_name, b.task_type) == (wid, "b", "then_t")
    too_many = complete_and_poll(b.task_id, rid(), rid())
    too_many.polls.extend(too_many.polls[0] for _ in range(16))
    with pytest.raises(grpc.RpcError) as err:
        stubs.tasks.CompleteTasks(too_many)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "polls: at most 16" in (err.value.details() or "")


def test_a_worker_of_two_types_takes_the_other_type_from_the_answer(
    server: ReplicaServer, stubs: Any
) -> None:
    stats = one_at_a_time(server, "mixed_flow", ["chain_t", "then_t"], 3, concurrency=2)
    assert stats.taken_with_completion == 3, "each then_t task came with a chain_t completion"
    assert stats.completed == 6 and stats.report_errors == 0 and stats.lost == 0


def test_the_client_call_returns_each_types_tasks(server: ReplicaServer, stubs: Any) -> None:
    client = OrchestratorClient([server.grpc_addr], retry_budget_s=10)
    try:
        wid = client.start_workflow("mixed_flow")
        wait_for(lambda: bool(client.get_workflow(wid).tasks), 30, "task a")
        (a,) = client.poll_tasks("chain_t", worker_id="c", timeout_ms=1000)
        assert a.workflow_id == wid
        ids = {"chain_t": "p-chain", "then_t": "p-then"}
        args: dict[str, Any] = {
            "worker_id": "c",
            "request_ids": ["done-a"],
            "poll_request_ids": ids,
        }
        errors, tasks = client.complete_tasks_and_poll(
            [(a.task_id, {"v": 1})], polls={"chain_t": 1, "then_t": 2}, **args
        )
        assert errors == [None]
        assert tasks["chain_t"] == []
        (b,) = tasks["then_t"]
        assert (b.workflow_id, b.reference_task_name) == (wid, "b")
        # The same call again (same ids): the same answer, nothing applied twice.
        again = client.complete_tasks_and_poll(
            [(a.task_id, {"v": 1})], polls={"chain_t": 1, "then_t": 2}, **args
        )
        assert again[0] == [None] and [t.task_id for t in again[1]["then_t"]] == [b.task_id]
        with pytest.raises(ValueError):
            client.complete_tasks_and_poll([(b.task_id, {})], polls={}, worker_id="c")
    finally:
        client.close()
