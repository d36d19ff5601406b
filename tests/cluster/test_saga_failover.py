"""A saga compensating while the leader is killed with kill -9 finishes COMPENSATED, each
completed step compensated exactly once.

Three real replicas; five workflows of four steps that declare a compensation, then a step that
fails for good. Their compensations run one at a time (a slow worker); while they run, the
leader is killed by its PID and restarted. Every workflow must end COMPENSATED with one
compensation task record per step (a lease lost in the failover would have been a second
record, a step compensated twice a second record too), in reverse completion order. The kill
must have happened mid-compensation, or the test proved nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from orchestrator_client import TaskFailure, Worker

from tests.cluster_support import kill_leader, make_cluster, rejoin, wait_for

pytestmark = pytest.mark.cluster

N_WORKFLOWS = 5
STEPS = 4
TASK_DEFS = [
    {"name": n, "retryCount": 0, "responseTimeoutSeconds": 30}
    for n in ("saga_step", "saga_last", "saga_undo")
]
WORKFLOW = {
    "name": "saga_failover",
    "tasks": [
        *(
            {
                "name": "saga_step",
                "taskReferenceName": f"step{i}",
                "compensateWith": {
                    "name": "saga_undo",
                    "taskReferenceName": f"undo{i}",
                    "inputParameters": {"step": "${compensated.taskId}"},
                },
            }
            for i in range(STEPS)
        ),
        {"name": "saga_last", "taskReferenceName": "last"},
    ],
}


class Undo:
    """A slow compensation handler that counts the runs per step (at least once: a run whose
    completion the failover lost may run again; the server still schedules it once)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = 0

    def __call__(self, task: Any) -> dict[str, Any]:
        time.sleep(0.3)
        with self.lock:
            self.done += 1
        return {"undone": task.input["step"]}


def _fail(task: Any) -> dict[str, Any]:
    raise TaskFailure("out of stock", terminal=True)


def test_a_saga_compensates_exactly_once_across_a_leader_kill(tmp_path: Any) -> None:
    cluster = make_cluster(tmp_path)
    workers: list[Worker] = []
    clients: list[Any] = []
    try:
        cluster.start_all()
        cluster.wait_healthy(timeout_s=60)
        client = cluster.client(timeout_s=3.0, retry_budget_s=60.0)
        clients.append(client)
        client.register_task_defs(TASK_DEFS)
        client.register_workflow_def(WORKFLOW)
        undo = Undo()
        wc = cluster.client(timeout_s=3.0, retry_budget_s=60.0)
        clients.append(wc)
        w = Worker(wc, worker_id="saga-w", concurrency=2, poll_timeout_ms=500)
        w.register("saga_step", lambda t: {"done": t.reference_task_name})
        w.register("saga_last", _fail)
        w.register("saga_undo", undo)
        workers.append(w)
        w.start()
        wids = [client.start_workflow("saga_failover", {"i": i}) for i in range(N_WORKFLOWS)]

        wait_for(lambda: undo.done >= 3, 60, "a few compensations to run before the kill")
        statuses = [client.get_workflow(x, include_tasks=False).status for x in wids]
        assert "COMPENSATING" in statuses, statuses
        leader = kill_leader(cluster)
        assert undo.done < N_WORKFLOWS * STEPS, "every compensation ran before the kill"
        rejoin(cluster, leader)

        def all_compensated() -> bool:
            return all(
                client.get_workflow(x, include_tasks=False).status == "COMPENSATED" for x in wids
            )

        wait_for(all_compensated, 90, "every saga to be compensated", interval_s=0.5)
        for wid in wids:
            wf = client.get_workflow(wid)
            assert "out of stock" in wf.reason_for_incompletion
            steps = {t.task_id: t for t in wf.tasks if t.reference_task_name.startswith("step")}
            undos = [t for t in wf.tasks if t.reference_task_name.startswith("undo")]
            # Exactly one compensation record per step, each completed, latest step first.
            assert [t.reference_task_name for t in undos] == [
                f"undo{i}" for i in reversed(range(STEPS))
            ], [(t.reference_task_name, t.status) for t in undos]
            assert all(t.status == "COMPLETED" for t in undos)
            assert sorted(t.input["step"] for t in undos) == sorted(steps)
    finally:
        for w in workers:
            w.stop(timeout_s=5)
        for c in clients:
            c.close()
        cluster.kill_all()
