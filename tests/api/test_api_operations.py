"""The operator's actions, BulkAction, ExecuteWorkflow and the cluster settings over the gRPC API
of one replica (the fake replica: real servicers and core, no Raft).

A workflow archived in history is stood in for by a stub history holding its archive document
(the real History has its own tests in tests/history/): what the API does with it is the point.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from orchestrator_client import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OrchestratorClient,
)
from orchestrator_client.v1 import cluster_pb2, cluster_pb2_grpc
from orchestrator_client.v1 import workflows_pb2 as wpb

from orchestrator.api import search as api_search
from orchestrator.core import history_ops, queries
from orchestrator.server import ReplicaServer
from tests.cluster_support import api_stubs, wait_for

FLOW = "ops_flow"


@pytest.fixture(scope="module")
def client(server: ReplicaServer) -> Iterator[OrchestratorClient]:
    c = OrchestratorClient(server.grpc_addr, timeout_s=5.0, retry_budget_s=10.0)
    c.register_task_defs(
        [{"name": n, "retryCount": 0, "responseTimeoutSeconds": 60} for n in ("ops_a", "ops_b")]
    )
    c.register_workflow_def(
        {
            "name": FLOW,
            "tasks": [
                {"name": "ops_a", "taskReferenceName": "a"},
                {"name": "ops_b", "taskReferenceName": "b"},
            ],
        }
    )
    yield c
    c.close()


@pytest.fixture(scope="module")
def stubs(server: ReplicaServer) -> Iterator[Any]:
    ch = grpc.insecure_channel(server.grpc_addr)
    ns = api_stubs(ch)
    ns.cluster = cluster_pb2_grpc.ClusterServiceStub(ch)
    yield ns
    ch.close()


def rid() -> str:
    return uuid.uuid4().hex


def _task(c: OrchestratorClient, wid: str, ref: str) -> Any:
    return c.get_workflow(wid).task_by_ref(ref)


def _lease(c: OrchestratorClient, wid: str, ref: str) -> Any:
    """Polls the task `ref` of workflow `wid` (other workflows' tasks of the type are completed
    out of the way, so tests do not depend on each other's leftovers)."""
    task_type = f"ops_{ref}"
    for _ in range(50):
        for t in c.poll_tasks(task_type, worker_id="w", count=100, timeout_ms=0):
            if t.workflow_id == wid:
                return t
            c.complete_task(t.task_id, {}, worker_id="w")
    raise AssertionError(f"task {ref} of {wid} never came")


def _started(c: OrchestratorClient) -> str:
    return c.start_workflow(FLOW, {"n": 1})


def _failed(c: OrchestratorClient) -> str:
    """A workflow whose task a completed and whose task b failed for good (so it FAILED)."""
    wid = _started(c)
    a = _lease(c, wid, "a")
    c.complete_task(a.task_id, {"a": "done"}, worker_id="w")
    b = _lease(c, wid, "b")
    c.fail_task(b.task_id, "card declined", worker_id="w", terminal=True)
    wait_for(lambda: c.get_workflow(wid).status == "FAILED", 10, "the workflow to fail")
    return wid


# ---- validation: every error names its field, and nothing reaches Raft


INVALID = [
    ("PauseWorkflow", wpb.PauseWorkflowRequest(workflow_id="w"), "request_id"),
    ("ResumeWorkflow", wpb.ResumeWorkflowRequest(request_id="r"), "workflow_id"),
    (
        "RerunWorkflow",
        wpb.RerunWorkflowRequest(request_id="r", workflow_id="w", task_input_json="[1]"),
        "task_input_json",
    ),
    (
        "RerunWorkflow",
        wpb.RerunWorkflowRequest(request_id="r", workflow_id="w", workflow_input_json="{x"),
        "workflow_input_json",
    ),
    ("SkipTask", wpb.SkipTaskRequest(request_id="r", workflow_id="w"), "task_reference_name"),
    (
        "SkipTask",
        wpb.SkipTaskRequest(
            request_id="r", workflow_id="w", task_reference_name="a", output_json="1"
        ),
        "output_json",
    ),
    ("RemoveWorkflow", wpb.RemoveWorkflowRequest(request_id="r"), "workflow_id"),
    ("BulkAction", wpb.BulkActionRequest(request_id="r", workflow_ids=["w"]), "action"),
    (
        "BulkAction",
        wpb.BulkActionRequest(
            request_id="r",
            action=wpb.BULK_ACTION_TYPE_PAUSE,
            workflow_ids=[f"w{i}" for i in range(1001)],
        ),
        "workflow_ids",
    ),
    (
        "BulkAction",
        wpb.BulkActionRequest(
            request_id="r",
            action=wpb.BULK_ACTION_TYPE_RETRY,
            search=wpb.SearchWorkflowsRequest(statuses=[42]),
        ),
        "statuses[0]",
    ),
    (
        "BulkAction",
        wpb.BulkActionRequest(
            request_id="r",
            action=wpb.BULK_ACTION_TYPE_TERMINATE,
            workflow_ids=["w"],
            reason="x" * 5000,
        ),
        "reason",
    ),
    ("ExecuteWorkflow", wpb.ExecuteWorkflowRequest(), "start"),
    (
        "ExecuteWorkflow",
        wpb.ExecuteWorkflowRequest(start=wpb.StartWorkflowRequest(request_id="r")),
        "start.name",
    ),
    (
        "ExecuteWorkflow",
        wpb.ExecuteWorkflowRequest(
            start=wpb.StartWorkflowRequest(request_id="r", name=FLOW), wait_timeout_ms=60_001
        ),
        "wait_timeout_ms",
    ),
]


@pytest.mark.parametrize(
    "method, request_, field", INVALID, ids=[f"{m}-{f}" for m, _, f in INVALID]
)
def test_a_bad_request_is_invalid_argument_naming_the_field(
    server: ReplicaServer, stubs: Any, method: str, request_: Any, field: str
) -> None:
    log_len = server.replica.status().log_len
    with pytest.raises(grpc.RpcError) as err:
        getattr(stubs.wfs, method)(request_, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field), err.value.details()
    assert server.replica.status().log_len == log_len


# ---- the actions


def test_pause_holds_back_the_next_task_and_resume_schedules_it(client: OrchestratorClient) -> None:
    wid = _started(client)
    a = _lease(client, wid, "a")
    client.pause_workflow(wid)
    client.pause_workflow(wid)  # pausing a paused workflow is fine
    assert client.get_workflow(wid).status == "PAUSED"
    client.complete_task(a.task_id, {"a": 1}, worker_id="w")  # in progress: recorded
    wf = client.get_workflow(wid)
    assert wf.task_by_ref("a").status == "COMPLETED" and wf.task_by_ref("b") is None
    client.resume_workflow(wid)
    wf = client.get_workflow(wid)
    assert wf.status == "RUNNING" and wf.task_by_ref("b").status == "SCHEDULED"
    with pytest.raises(FailedPreconditionError, match=wid):
        client.resume_workflow(wid)


def test_retry_keeps_completed_work_and_gives_the_failed_task_a_new_attempt(
    client: OrchestratorClient,
) -> None:
    wid = _failed(client)
    client.retry_workflow(wid)
    wf = client.get_workflow(wid)
    assert wf.status == "RUNNING"
    assert [t.status for t in wf.tasks if t.reference_task_name == "a"] == ["COMPLETED"]
    b = wf.task_by_ref("b")
    assert b.status == "SCHEDULED" and b.retry_count == 1


def test_restart_runs_a_terminal_workflow_again_under_its_id(client: OrchestratorClient) -> None:
    wid = _started(client)
    client.terminate_workflow(wid, "stop")
    client.restart_workflow(wid)
    wf = client.get_workflow(wid)
    assert wf.status == "RUNNING" and wf.input == {"n": 1} and wf.end_time_ms == 0
    assert [t.reference_task_name for t in wf.tasks] == ["a"]
    with pytest.raises(FailedPreconditionError):
        client.restart_workflow(wid)  # running


def test_rerun_from_a_task_with_new_input(client: OrchestratorClient) -> None:
    wid = _failed(client)
    a = _task(client, wid, "a")
    client.rerun_workflow(wid, task_id=a.task_id, task_input={"again": True})
    wf = client.get_workflow(wid)
    assert wf.status == "RUNNING"
    assert wf.task_by_ref("a").status == "SCHEDULED" and wf.task_by_ref("a").input == {
        "again": True
    }
    assert wf.task_by_ref("b") is None


def test_skip_task_skips_it_with_its_output_and_the_workflow_goes_on(
    client: OrchestratorClient,
) -> None:
    wid = _started(client)
    client.skip_task(wid, "a", {"skipped": "yes"})
    wf = client.get_workflow(wid)
    assert wf.task_by_ref("a").status == "SKIPPED"
    assert wf.task_by_ref("a").output == {"skipped": "yes"}
    assert wf.task_by_ref("b").status == "SCHEDULED"


def test_remove_refuses_a_running_workflow_and_forgets_an_ended_one(
    client: OrchestratorClient,
) -> None:
    wid = _started(client)
    with pytest.raises(FailedPreconditionError, match="terminate"):
        client.remove_workflow(wid)
    client.terminate_workflow(wid, "done with it")
    request_id = rid()
    client.remove_workflow(wid, request_id=request_id)
    client.remove_workflow(wid, request_id=request_id)  # a retry: its first outcome
    with pytest.raises(NotFoundError):
        client.get_workflow(wid)
    with pytest.raises(NotFoundError):
        client.remove_workflow(wid)  # a new request: nowhere to be found
    with pytest.raises(NotFoundError):
        client.pause_workflow("no-such-workflow")


def test_an_action_retried_with_its_request_id_changes_nothing_more(
    client: OrchestratorClient, stubs: Any
) -> None:
    wid = _failed(client)
    request = wpb.RetryWorkflowRequest(request_id=rid(), workflow_id=wid)
    stubs.wfs.RetryWorkflow(request, timeout=5)
    before = client.get_workflow(wid)
    stubs.wfs.RetryWorkflow(request, timeout=5)
    assert client.get_workflow(wid) == before
    reused = wpb.RetryWorkflowRequest(
        request_id=request.request_id, workflow_id=wid, resume_subworkflow_tasks=True
    )
    with pytest.raises(grpc.RpcError) as err:
        stubs.wfs.RetryWorkflow(reused, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ---- bulk


def test_bulk_reports_each_workflow_and_a_retried_call_is_deduplicated(
    client: OrchestratorClient, stubs: Any
) -> None:
    running = [_started(client) for _ in range(3)]
    request = wpb.BulkActionRequest(
        request_id=rid(),
        action=wpb.BULK_ACTION_TYPE_PAUSE,
        workflow_ids=[*running, "no-such-workflow"],
    )
    first = stubs.wfs.BulkAction(request, timeout=10)
    assert [r.workflow_id for r in first.results] == request.workflow_ids
    assert [r.code for r in first.results] == [0, 0, 0, grpc.StatusCode.NOT_FOUND.value[0]]
    assert "no-such-workflow" in first.results[3].message
    assert all(client.get_workflow(w).status == "PAUSED" for w in running)
    client.resume_workflow(running[0])
    again = stubs.wfs.BulkAction(request, timeout=10)  # deduplicated item by item
    assert [r.code for r in again.results] == [r.code for r in first.results]
    assert client.get_workflow(running[0]).status == "RUNNING"
    results = list(client.bulk_action("terminate", running, reason="bulk"))
    assert [r.ok for r in results] == [True, True, True]
    assert {client.get_workflow(w).status for w in running} == {"TERMINATED"}


# ---- synchronous execution


def test_execute_returns_the_ended_workflow(client: OrchestratorClient) -> None:
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            for ref in ("a", "b"):
                for t in client.poll_tasks(f"ops_{ref}", worker_id="x", count=10, timeout_ms=50):
                    client.complete_task(t.task_id, {ref: "ok"}, worker_id="x")

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        wf, ended = client.execute_workflow(FLOW, {"n": 2}, wait_s=20, include_tasks=True)
    finally:
        stop.set()
        thread.join(10)
    assert ended and wf.status == "COMPLETED"
    assert [t.status for t in wf.tasks] == ["COMPLETED", "COMPLETED"]


def test_execute_gives_up_waiting_after_its_timeout(client: OrchestratorClient) -> None:
    wf, ended = client.execute_workflow(FLOW, {"n": 3}, wait_s=0.3)
    assert not ended and wf.status == "RUNNING" and wf.tasks == ()
    client.terminate_workflow(wf.workflow_id, "test over")


# ---- archived workflows (a stub history)


class StubHistory:
    def __init__(self, docs: dict[str, dict[str, Any]]) -> None:
        self.docs = docs
        self.asked: list[tuple[str, int]] = []

    def get_doc(self, workflow_id: str, min_seq: int = 0) -> dict[str, Any] | None:
        self.asked.append((workflow_id, min_seq))
        return self.docs.get(workflow_id)

    def search(self, replica: Any, q: Any, min_seq: int = 0) -> Any:
        raise AssertionError("not searched here")

    def seq(self) -> int:
        return 0


def _archived(server: ReplicaServer, client: OrchestratorClient) -> tuple[str, dict[str, Any]]:
    """A FAILED workflow's archive document, the workflow itself then removed from memory."""
    wid = _failed(client)

    def doc(st: Any) -> dict[str, Any]:
        wf = queries.workflow(st, wid)
        tasks = tuple(queries.workflow_tasks(st, wf))
        return history_ops.archive_doc(history_ops.Archive(st.seq, wf, tasks, None))

    archived = server.replica.read(doc)
    client.remove_workflow(wid)
    return wid, json.loads(json.dumps(archived))


def test_get_workflow_falls_back_to_the_history(
    server: ReplicaServer, client: OrchestratorClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    wid, doc = _archived(server, client)
    stub = StubHistory({wid: doc})
    monkeypatch.setattr(server.node, "history", stub)
    wf = client.get_workflow(wid)
    assert wf.status == "FAILED" and [t.reference_task_name for t in wf.tasks] == ["a", "b"]
    assert stub.asked[-1][1] >= client.last_sequence - 1  # read at the replica's sequence


def test_retry_brings_an_archived_workflow_back(
    server: ReplicaServer, client: OrchestratorClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    wid, doc = _archived(server, client)
    monkeypatch.setattr(server.node, "history", StubHistory({wid: doc}))
    client.retry_workflow(wid)
    wf = client.get_workflow(wid)
    assert wf.status == "RUNNING" and wf.task_by_ref("b").retry_count == 1
    assert [t.status for t in wf.tasks if t.reference_task_name == "a"] == ["COMPLETED"]


def test_an_archived_document_too_big_to_bring_back_is_refused(
    server: ReplicaServer, client: OrchestratorClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    wid, doc = _archived(server, client)
    doc["workflow"]["output"] = {"blob": "x" * api_search.MAX_RESTORE_BYTES}
    monkeypatch.setattr(server.node, "history", StubHistory({wid: doc}))
    log_len = server.replica.status().log_len
    with pytest.raises(FailedPreconditionError, match="bytes"):
        client.restart_workflow(wid)
    assert server.replica.status().log_len == log_len


def test_actions_on_an_archived_workflow_name_its_status(
    server: ReplicaServer, client: OrchestratorClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    wid, doc = _archived(server, client)
    monkeypatch.setattr(server.node, "history", StubHistory({wid: doc}))
    for act in (
        client.pause_workflow,
        client.resume_workflow,
        lambda w: client.skip_task(w, "b"),
        lambda w: client.terminate_workflow(w, "late"),
    ):
        with pytest.raises(FailedPreconditionError, match=f"{wid} is FAILED"):
            act(wid)
    with pytest.raises(NotFoundError):
        client.pause_workflow(f"{wid}-unknown")
    results = list(client.bulk_action("pause", [wid]))
    assert results[0].code == "FAILED_PRECONDITION" and "archived" in results[0].message


def test_remove_deletes_an_archived_workflow_and_refuses_an_unknown_one(
    server: ReplicaServer, client: OrchestratorClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    wid, doc = _archived(server, client)
    monkeypatch.setattr(server.node, "history", StubHistory({wid: doc}))
    client.remove_workflow(wid)
    with pytest.raises(NotFoundError):
        client.remove_workflow(f"{wid}-unknown")


# ---- cluster settings


def test_settings_default_to_seven_days_and_are_set_by_an_admin(
    client: OrchestratorClient, stubs: Any
) -> None:
    assert client.cluster_settings()["history_retention_ms"] > 0
    settings = client.set_history_retention(3 * 86_400_000, 5000)
    assert settings == {"history_retention_ms": 3 * 86_400_000, "history_max_workflows": 5000}
    assert client.cluster_settings() == settings
    for bad, field in (
        (cluster_pb2.SetHistoryRetentionRequest(request_id="r", retention_ms=5), "retention_ms"),
        (
            cluster_pb2.SetHistoryRetentionRequest(
                request_id="r", retention_ms=86_400_000, max_workflows=-1
            ),
            "max_workflows",
        ),
    ):
        with pytest.raises(grpc.RpcError) as err:
            stubs.cluster.SetHistoryRetention(bad, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith(field)
    with pytest.raises(InvalidArgumentError):
        client.set_history_retention(0)
