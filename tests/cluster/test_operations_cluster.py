"""The operator's actions, search, bulk and execute on three real replicas (TLS and tokens).

One cluster serves the module: each action end to end; a FAILED workflow that has left memory
for the durable history (pushed out by 5,000 later workflows) is found by search on every
replica and retried from there; bulk actions over a search's matches, in batches; synchronous
execution; and a search through a follower that sees the follower's caller's own writes.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from orchestrator_client import FailedPreconditionError, NotFoundError, OrchestratorClient
from orchestrator_client.v1 import workflows_pb2 as wpb

from orchestrator.core import limits
from tests.cluster_support import api_stubs, make_cluster, start_node, wait_for

pytestmark = pytest.mark.cluster

FLOW = {
    "name": "oc_flow",
    "version": 1,
    "tasks": [
        {"name": "oc_task", "taskReferenceName": "a"},
        {"name": "oc_task", "taskReferenceName": "b"},
    ],
}
# Ends inside the command that starts it: cheap filler for the in-memory window.
QUICK = {
    "name": "oc_quick",
    "version": 1,
    "tasks": [
        {
            "name": "sv",
            "taskReferenceName": "sv",
            "type": "SET_VARIABLE",
            "inputParameters": {"x": "${workflow.input.n}"},
        }
    ],
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: Any) -> Iterator[Any]:
    c = make_cluster(tmp_path_factory.mktemp("ops"))
    try:
        for nid in c.replicas:
            start_node(c, nid)
        c.wait_healthy(timeout_s=60)
        yield c
    finally:
        c.stop_all()


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[OrchestratorClient]:
    c = cluster.client(timeout_s=5.0, retry_budget_s=60.0)
    c.register_task_defs([{"name": "oc_task", "retryCount": 0, "responseTimeoutSeconds": 60}])
    c.register_workflow_def(FLOW)
    c.register_workflow_def(QUICK)
    yield c
    c.close()


def _follower(cluster: Any) -> str:
    leader = wait_for(cluster.leader, 30, "a leader")
    return next(rp.grpc for nid, rp in cluster.replicas.items() if nid != leader)


def _lease(c: OrchestratorClient, wid: str, ref: str) -> Any:
    for _ in range(100):
        for t in c.poll_tasks("oc_task", worker_id="ops", count=100, timeout_ms=100):
            if t.workflow_id == wid and t.reference_task_name == ref:
                return t
            c.complete_task(t.task_id, {}, worker_id="ops")  # someone else's leftovers
    raise AssertionError(f"task {ref} of {wid} never came")


def test_each_action_end_to_end(client: OrchestratorClient) -> None:
    wid = client.start_workflow("oc_flow", {"n": 1})
    client.pause_workflow(wid)
    assert client.get_workflow(wid).status == "PAUSED"
    client.resume_workflow(wid)
    client.skip_task(wid, "a", {"skipped": True})
    wf = client.get_workflow(wid)
    assert wf.task_by_ref("a").status == "SKIPPED" and wf.task_by_ref("b") is not None
    client.terminate_workflow(wid, "stop")
    client.retry_workflow(wid)
    wf = client.get_workflow(wid)
    assert wf.status == "RUNNING" and wf.task_by_ref("b").retry_count == 1
    client.terminate_workflow(wid, "stop again")
    client.restart_workflow(wid)
    wf = client.get_workflow(wid)
    assert wf.status == "RUNNING" and [t.reference_task_name for t in wf.tasks] == ["a"]
    client.terminate_workflow(wid, "once more")
    client.rerun_workflow(wid, workflow_input={"n": 2})
    assert client.get_workflow(wid).input == {"n": 2}
    with pytest.raises(FailedPreconditionError):
        client.remove_workflow(wid)
    client.terminate_workflow(wid, "done")
    client.remove_workflow(wid)
    with pytest.raises(NotFoundError):
        client.get_workflow(wid)


def test_search_through_a_follower_reads_its_callers_writes(
    cluster: Any, client: OrchestratorClient
) -> None:
    via = cluster.client(addresses=[_follower(cluster)], timeout_s=5.0, retry_budget_s=30.0)
    try:
        for i in range(5):
            tag = f"ryw-{uuid.uuid4().hex}"
            wid = via.start_workflow("oc_quick", {"n": i}, correlation_id=tag)
            found = list(via.search(correlation_id=tag))  # at once: no waiting in the test
            assert [w.workflow_id for w in found] == [wid]
            assert found[0].status == "COMPLETED"
        wf, ended = via.execute_workflow("oc_quick", {"n": 9}, wait_s=20)
        assert ended and wf.status == "COMPLETED"
    finally:
        via.close()


def test_bulk_over_a_search_in_batches(client: OrchestratorClient) -> None:
    tag = f"bulk-{uuid.uuid4().hex}"
    ids = {client.start_workflow("oc_flow", {"n": i}, correlation_id=tag) for i in range(5)}
    filters = {"correlation_id": tag, "statuses": ["RUNNING"]}
    results = list(client.bulk_action("terminate", filters=filters, batch_size=2, reason="bulk"))
    assert {r.workflow_id for r in results} == ids and all(r.ok for r in results)
    page = client.search_workflows(correlation_id=tag, statuses=["TERMINATED"])
    assert page.total == 5
    results = list(
        client.bulk_action(
            "retry", filters={"correlation_id": tag, "statuses": ["TERMINATED"]}, batch_size=2
        )
    )
    assert {r.workflow_id for r in results} == ids and all(r.ok for r in results)
    assert client.search_workflows(correlation_id=tag, statuses=["RUNNING"]).total == 5
    list(client.bulk_action("terminate", list(ids)))


def _fill_memory(cluster: Any, client: OrchestratorClient, n: int) -> None:
    """n workflows that end at once, started 100 a call from a few threads."""
    leader = wait_for(cluster.leader, 30, "a leader")
    errors: list[BaseException] = []

    def run(part: int) -> None:
        try:
            with cluster.channel(cluster.replicas[leader].grpc) as ch:
                wfs = api_stubs(ch).wfs
                for start in range(part * 100, n, 400):
                    items = [
                        wpb.StartWorkflowRequest(
                            request_id=uuid.uuid4().hex, name="oc_quick", input_json='{"n":1}'
                        )
                        for _ in range(min(100, n - start))
                    ]
                    resp = wfs.StartWorkflows(wpb.StartWorkflowsRequest(items=items), timeout=30)
                    assert all(r.code == 0 for r in resp.results)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def test_an_archived_failed_workflow_is_found_everywhere_and_retried(
    cluster: Any, client: OrchestratorClient
) -> None:
    wid = client.start_workflow("oc_flow", {"n": 7}, correlation_id="archived")
    client.complete_task(_lease(client, wid, "a").task_id, {"a": 1}, worker_id="ops")
    b = _lease(client, wid, "b")
    client.fail_task(b.task_id, "the card was declined", terminal=True, worker_id="ops")
    wait_for(lambda: client.get_workflow(wid).status == "FAILED", 30, "the workflow to fail")
    _fill_memory(cluster, client, limits.MAX_TERMINAL_WORKFLOWS + 10)
    # Memory keeps the last MAX_TERMINAL_WORKFLOWS ended ones, oldest out first: wid, older
    # than every filler, has left it (the handful of others running or not are all younger).
    in_memory = max(int(r["workflows"]) for r in client.cluster_status())
    assert in_memory <= limits.MAX_TERMINAL_WORKFLOWS + 20
    for rp in cluster.replicas.values():
        one = cluster.client(addresses=[rp.grpc], timeout_s=5.0, retry_budget_s=30.0)
        try:

            def matches(c: OrchestratorClient = one) -> list[str]:
                found = c.search(failed_task_type="oc_task", text="card declined", limit=50)
                return [w.workflow_id for w in found]

            wait_for(lambda: wid in matches(), 30, f"the archived workflow on {rp.grpc}")
            archived = one.get_workflow(wid)
            assert archived.status == "FAILED"
            assert [t.status for t in archived.tasks] == ["COMPLETED", "FAILED_WITH_TERMINAL_ERROR"]
        finally:
            one.close()
    client.retry_workflow(wid)
    wf = client.get_workflow(wid)
    assert wf.status == "RUNNING" and wf.task_by_ref("b").retry_count == 1
    client.complete_task(_lease(client, wid, "b").task_id, {"b": 2}, worker_id="ops")
    done = client.wait_for_workflow(wid, timeout_s=30)
    assert done.status == "COMPLETED"
    assert [t.status for t in done.tasks] == [
        "COMPLETED",
        "FAILED_WITH_TERMINAL_ERROR",
        "COMPLETED",
    ]
