"""A task definition's limits hold cluster-wide across a leader kill -9.

Three real replicas; a task type limited to 2 IN_PROGRESS at once (or to 5 leases a second);
three workers polling it with two handler threads each (six slots, three times the limit); 20
workflows of two such tasks each. While they run, the leader is killed with kill -9 (by its
PID) and restarted. Every workflow must complete, and the task records (one per lease:
[start_time_ms, end_time_ms) is its time IN_PROGRESS, start_time_ms its lease time) must never
show more than 2 in progress at once (nor may the handlers have run more than 2 at once), or
more than 5 leases in a second of cluster time. The limit must also have been reached, or the
test proved nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from orchestrator_client import Worker

from orchestrator.tools.limits_audit import TaskLimit, audit_task_limits
from tests.cluster_support import kill_leader, make_cluster, rejoin, wait_for

pytestmark = pytest.mark.cluster

LIMIT = 2
N_WORKFLOWS = 20
TASK_TYPE = "lim_task"
TASK_DEF = {
    "name": TASK_TYPE,
    "retryCount": 3,
    "retryDelaySeconds": 0,
    "responseTimeoutSeconds": 20,
}
RATE = 5  # leases per second
WORKFLOW = {
    "name": "lim_flow",
    "tasks": [
        {"name": TASK_TYPE, "taskReferenceName": "first", "inputParameters": {}},
        {"name": TASK_TYPE, "taskReferenceName": "second", "inputParameters": {}},
    ],
}


class Handlers:
    """Counts the handlers running at once (across every worker) and the tasks completed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.done = 0

    def __call__(self, task: Any) -> dict[str, Any]:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(0.2)  # long enough that the polls of six slots pile up against the limit
        with self.lock:
            self.running -= 1
            self.done += 1
        return {"by": task.task_id}


def _run_across_a_leader_kill(tmp_path: Any, limits: dict[str, int]) -> tuple[list[Any], int]:
    """Every task record of the 20 workflows, which all completed though the leader was killed
    with a fifth of the tasks done, and the most handlers that ran at once."""
    cluster = make_cluster(tmp_path)
    workers: list[Worker] = []
    clients: list[Any] = []
    try:
        cluster.start_all()
        cluster.wait_healthy(timeout_s=60)
        client = cluster.client(timeout_s=3.0, retry_budget_s=60.0)
        clients.append(client)
        client.register_task_defs([{**TASK_DEF, **limits}])
        client.register_workflow_def(WORKFLOW)
        handlers = Handlers()
        for i in range(3):
            wc = cluster.client(timeout_s=3.0, retry_budget_s=60.0)
            clients.append(wc)
            w = Worker(wc, worker_id=f"lim-{i}", concurrency=2, poll_timeout_ms=500)
            w.register(TASK_TYPE, handlers)
            workers.append(w)
            w.start()
        wids = [client.start_workflow("lim_flow", {"i": i}) for i in range(N_WORKFLOWS)]

        wait_for(lambda: handlers.done >= 8, 30, "a fifth of the tasks to run before the kill")
        leader = kill_leader(cluster)
        assert handlers.done < 2 * N_WORKFLOWS, "every task ran before the kill: no failover"
        rejoin(cluster, leader)

        def all_completed() -> bool:
            return all(
                client.get_workflow(w, include_tasks=False).status == "COMPLETED" for w in wids
            )

        wait_for(all_completed, 60, "every workflow to complete", interval_s=0.5)
        tasks = [t for w in wids for t in client.get_workflow(w).tasks]
    finally:
        for w in workers:
            w.stop(timeout_s=5)
        for c in clients:
            c.close()
        cluster.kill_all()
    return tasks, handlers.peak


def test_concurrent_exec_limit_holds_across_a_leader_kill(tmp_path: Any) -> None:
    tasks, handlers_peak = _run_across_a_leader_kill(tmp_path, {"concurrentExecLimit": LIMIT})
    audit = audit_task_limits(tasks, {TASK_TYPE: TaskLimit(concurrent=LIMIT)})[TASK_TYPE]
    assert audit["violations"] == [], audit
    assert audit["leases"] >= 2 * N_WORKFLOWS
    assert audit["peak_in_progress"] == LIMIT, audit  # the limit bound: six slots wanted more
    assert handlers_peak <= LIMIT, f"{handlers_peak} handlers ran at once"


def test_rate_limit_holds_across_a_leader_kill(tmp_path: Any) -> None:
    """The window of recent leases moves with the leadership (it is replicated state, in
    cluster time): the new leader hands out no lease the old one's window forbids."""
    rate = {"rateLimitPerFrequency": RATE, "rateLimitFrequencyInSeconds": 1}
    tasks, _ = _run_across_a_leader_kill(tmp_path, rate)
    audit = audit_task_limits(tasks, {TASK_TYPE: TaskLimit(rate=RATE, per_seconds=1)})[TASK_TYPE]
    assert audit["violations"] == [], audit
    assert audit["leases"] >= 2 * N_WORKFLOWS
    assert audit["peak_leases_in_window"] == RATE, audit  # 40 tasks wanted more than 5 a second
