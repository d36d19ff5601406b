"""A call forwarded by a follower is judged, and its leases bound, as its original caller's
(a real three-replica cluster with TLS and tokens, as tests/cluster_support.py makes them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from orchestrator_client import OrchestratorClient
from orchestrator_client.errors import OrchestratorError

from tests.cluster_support import auth_metadata, make_cluster, wait_for

pytestmark = pytest.mark.cluster

TASK = "fwd_t"
WF = "fwd_flow"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: Any) -> Iterator[Any]:
    c = make_cluster(tmp_path_factory.mktemp("fwd"))
    c.start_all()
    try:
        c.wait_healthy(timeout_s=60)
        with c.client(retry_budget_s=30) as admin:
            admin.register_task_defs(
                [{"name": TASK, "retryCount": 0, "responseTimeoutSeconds": 60}]
            )
            admin.register_workflow_def(
                {"name": WF, "tasks": [{"name": TASK, "taskReferenceName": "a"}]}
            )
        yield c
    finally:
        c.kill_all()


def _via(cluster: Any, name: str, role: str, nid: str) -> OrchestratorClient:
    """A client of one replica only (no failover), authenticated as `name` with `role`."""
    auth_metadata(cluster, role, name)  # makes the identity's token
    return cluster.client(name, addresses=[cluster.replicas[nid].grpc], retry_budget_s=20)


def _roles(cluster: Any) -> tuple[str, str]:
    leader = wait_for(cluster.leader, 30, "a leader")
    return leader, next(n for n in cluster.replicas if n != leader)


def _denied(fn: Any) -> str:
    with pytest.raises(OrchestratorError) as info:
        fn()
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED, info.value
    return info.value.details


def test_a_worker_polling_through_a_follower_owns_its_lease(cluster: Any) -> None:
    leader, follower = _roles(cluster)
    with cluster.client("operator", retry_budget_s=20) as op:
        wid = op.start_workflow(WF, {})
    alice = _via(cluster, "fwd-alice", "worker", follower)
    alice_direct = _via(cluster, "fwd-alice", "worker", leader)
    mallory = _via(cluster, "fwd-mallory", "worker", follower)
    try:
        got: list[Any] = []
        wait_for(
            lambda: got.extend(alice.poll_tasks(TASK, worker_id="alice", timeout_ms=500)) or got,
            30,
            "the task, polled through the follower",
        )
        task = got[0]
        assert task.workflow_id == wid
        # The leader bound the lease to alice, not to the forwarding replica: another worker
        # (through the same follower) is refused, and alice, calling the leader itself,
        # completes it.
        _denied(lambda: mallory.complete_task(task.task_id, {}, worker_id="mallory"))
        alice_direct.complete_task(task.task_id, {"ok": True}, worker_id="alice")
        with cluster.client(retry_budget_s=20) as admin:
            assert admin.wait_for_workflow(wid, timeout_s=30).status == "COMPLETED"
    finally:
        for c in (alice, alice_direct, mallory):
            c.close()


def test_through_a_follower_an_operator_terminates_and_a_reader_cannot(cluster: Any) -> None:
    _, follower = _roles(cluster)
    with cluster.client("operator", retry_budget_s=20) as op:
        first, second = op.start_workflow(WF, {}), op.start_workflow(WF, {})
    reader = _via(cluster, "fwd-reader", "reader", follower)
    operator = _via(cluster, "fwd-operator", "operator", follower)
    worker = _via(cluster, "fwd-worker", "worker", follower)
    try:
        message = _denied(lambda: reader.terminate_workflow(first, "no"))
        assert "WorkflowService.TerminateWorkflow needs role admin or operator" in message
        _denied(lambda: worker.terminate_workflow(first, "no"))
        # Forwarded to the leader as the operator's (the replica credential alone is a reader).
        operator.terminate_workflow(second, "yes")
        # (Read by the operator's client: it has seen the termination's sequence number.)
        assert operator.get_workflow(second).status == "TERMINATED"
        assert operator.get_workflow(first).status == "RUNNING"
    finally:
        for c in (reader, operator, worker):
            c.close()
