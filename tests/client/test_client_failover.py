"""Client calls succeed through the remaining replicas when one is stopped or paused (SIGSTOP)."""

from __future__ import annotations

import signal
import uuid
from typing import Any

import pytest
from orchestrator_client import OrchestratorClient

from tests.cluster_support import History, make_cluster, wait_for

pytestmark = pytest.mark.cluster

TASK_DEF = {"name": "cf_task", "retryCount": 0, "responseTimeoutSeconds": 30}
WORKFLOW = {"name": "cf_flow", "tasks": [{"name": "cf_task", "taskReferenceName": "only"}]}


def _round_trip(client: OrchestratorClient) -> None:
    """Start a workflow, run its task through the worker protocol, and read it back."""
    wid = client.start_workflow("cf_flow", {"n": uuid.uuid4().hex})
    tasks = wait_for(
        lambda: client.poll_tasks("cf_task", worker_id="cf", count=1, timeout_ms=1000), 30, "a task"
    )
    for t in tasks:
        client.complete_task(t.task_id, {"done": t.workflow_id})
    wf = client.wait_for_workflow(wid, timeout_s=30)
    assert wf.status == "COMPLETED"


@pytest.mark.parametrize(
    "fault", ["stop_leader", "stop_follower", "pause_leader", "pause_follower"]
)
def test_client_survives_one_replica_down(tmp_path: Any, fault: str) -> None:
    cluster = make_cluster(tmp_path)
    history = History()
    cluster.start_all()
    client = cluster.client(timeout_s=2.0, retry_budget_s=45.0, recorder=history)
    victim = ""
    try:
        cluster.wait_healthy(timeout_s=60)
        client.register_task_defs([TASK_DEF])
        client.register_workflow_def(WORKFLOW)
        _round_trip(client)
        leader = wait_for(cluster.leader, 30, "a leader")
        victim = (
            leader if fault.endswith("leader") else next(n for n in cluster.replicas if n != leader)
        )
        if fault.startswith("stop"):
            cluster.kill(victim)
            assert not cluster.alive(victim)
        else:
            cluster.signal(victim, signal.SIGSTOP)
            wait_for(
                lambda: open(f"/proc/{cluster.pid(victim)}/stat").read().split()[2] == "T",
                10,
                "the pause",
            )
        # The client lists every replica, the victim first, and must still get through.
        client.close()
        victim_addr = cluster.replicas[victim].grpc
        client = cluster.client(
            addresses=[victim_addr] + [a for a in cluster.addresses if a != victim_addr],
            timeout_s=2.0,
            retry_budget_s=45.0,
            recorder=history,
        )
        for _ in range(3):
            _round_trip(client)
        assert client.get_workflow_def("cf_flow")["name"] == "cf_flow"
        assert history.count("unknown") == 0 and history.count("fail") == 0
    finally:
        if victim and fault.startswith("pause") and cluster.alive(victim):
            cluster.signal(victim, signal.SIGCONT)
        client.close()
        cluster.kill_all()
