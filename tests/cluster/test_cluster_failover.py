"""The foundation's end-to-end promise, on three real replica processes on loopback.

50 workflows of 3 tasks run through Python workers while the leader is killed with kill -9,
and once more by a failpoint right after a commit and before the reply (so a client retry with
the same request_id meets an already-applied command). Afterwards the recorded history is
checked; then the whole cluster is killed with kill -9 after snapshots were taken, restarted,
and every workflow and definition must still be there.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Any

import pytest
from orchestrator_client import OrchestratorClient, Worker

from tests.cluster_support import History, make_cluster, read_log, start_node, wait_for

pytestmark = pytest.mark.cluster

N_WORKFLOWS = 50

TASK_DEFS = [
    {
        "name": name,
        "retryCount": 3,
        "retryLogic": "FIXED",
        "retryDelaySeconds": 0,
        "responseTimeoutSeconds": 20,
    }
    for name in ("ft_reserve", "ft_charge", "ft_ship")
]
WORKFLOW = {
    "name": "ft_order",
    "version": 1,
    "tasks": [
        {
            "name": "ft_reserve",
            "taskReferenceName": "reserve",
            "inputParameters": {"order": "${workflow.input.order}"},
        },
        {
            "name": "ft_charge",
            "taskReferenceName": "charge",
            "inputParameters": {"amount": "${reserve.output.amount}"},
        },
        {
            "name": "ft_ship",
            "taskReferenceName": "ship",
            "inputParameters": {"payment": "${charge.output.payment}"},
        },
    ],
    "outputParameters": {
        "tracking": "${ship.output.tracking}",
        "amount": "${reserve.output.amount}",
    },
}


class RecordingWorker:
    """Handlers that record every task they ran and every result the server acknowledged."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, int] = {}

    def handler(self, kind: str) -> Any:
        def fn(task: Any) -> dict[str, Any]:
            with self.lock:
                self.runs[task.task_id] = self.runs.get(task.task_id, 0) + 1
            order = task.input.get("order") or task.input.get("amount") or task.input.get("payment")
            return {
                "reserve": {"amount": len(str(order)) * 10},
                "charge": {"payment": f"pay-{task.workflow_id}"},
                "ship": {"tracking": f"trk-{task.workflow_id}"},
            }[kind]

        return fn


def acknowledged_completions(history: History) -> dict[str, tuple[str, Any]]:
    """request_id -> (task_id, output) for every CompleteTask the server acknowledged."""
    requests: dict[str, Any] = {}
    acked: dict[str, tuple[str, Any]] = {}
    for _, event, op, rid, detail in history.events:
        if op != "CompleteTask":
            continue
        if event == "invoke":
            requests[rid] = detail
        elif event == "ok":
            req = requests[rid]
            acked[rid] = (req.task_id, json.loads(req.output_json or "{}"))
    return acked


def test_workflows_survive_leader_kills_and_whole_cluster_restart(tmp_path: Any) -> None:
    cluster = make_cluster(tmp_path, failpoints=True)
    history = History()
    worker_history = History()
    workers: list[Worker] = []
    clients: list[OrchestratorClient] = []
    try:
        for nid in cluster.replicas:
            start_node(cluster, nid)
        cluster.wait_healthy(timeout_s=60)
        client = cluster.client(timeout_s=3.0, retry_budget_s=60.0, recorder=history)
        clients.append(client)
        client.register_task_defs(TASK_DEFS)
        client.register_workflow_def(WORKFLOW)

        rec = RecordingWorker()
        for i in range(2):
            wc = cluster.client(timeout_s=3.0, retry_budget_s=60.0, recorder=worker_history)
            clients.append(wc)
            w = Worker(wc, worker_id=f"worker-{i}", concurrency=4, poll_timeout_ms=1000)
            for kind in ("reserve", "charge", "ship"):
                w.register(f"ft_{kind}", rec.handler(kind))
            w.start()
            workers.append(w)

        started: list[str] = []
        start_errors: list[BaseException] = []

        def starter(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                try:
                    started.append(
                        client.start_workflow(
                            "ft_order", {"order": f"order-{i}"}, correlation_id=f"c-{i}"
                        )
                    )
                except BaseException as exc:  # recorded in history too; checked below
                    start_errors.append(exc)

        threads = [threading.Thread(target=starter, args=(k * 25, k * 25 + 25)) for k in range(2)]
        for t in threads:
            t.start()

        # Fault 1: kill -9 the leader while workflows are starting and running.
        wait_for(lambda: len(started) >= 10, 60, "10 workflows started")
        leader1 = wait_for(cluster.leader, 30, "a leader")
        cluster.kill(leader1)

        def new_leader() -> str | None:
            current = cluster.leader()
            return current if current and current != leader1 else None

        leader2 = wait_for(new_leader, 30, "a new leader")
        start_node(cluster, leader1)

        # Fault 2: the new leader dies right after committing a task completion, before replying.
        fp_file = cluster.failpoint_files[leader2]  # type: ignore[attr-defined]
        with open(fp_file, "w") as f:
            f.write("crash_after_commit=CompleteTask:3\n")
        proc = cluster.replicas[leader2].proc
        assert proc is not None
        wait_for(lambda: proc.poll() is not None, 90, f"the failpoint to kill {leader2}")
        assert proc.returncode == -signal.SIGKILL
        os.remove(fp_file)
        crash_lines = [
            json.loads(line)
            for line in read_log(cluster, leader2).splitlines()
            if "failpoint_crash_after_commit" in line
        ]
        assert len(crash_lines) == 1, "the failpoint must have fired exactly once"
        crashed_request = crash_lines[0]["request_id"]
        start_node(cluster, leader2)

        for t in threads:
            t.join(120)
        assert not start_errors, start_errors
        assert len(started) == N_WORKFLOWS

        def all_done() -> bool:
            return all(client.get_workflow(w, include_tasks=False).is_terminal for w in started)

        wait_for(all_done, 180, "every workflow to finish", interval_s=0.5)
        for w in workers:
            w.stop()

        # ---- check the history
        # The completion that was committed but never answered was retried with the same
        # request_id and acknowledged exactly once.
        assert worker_history.by_request().get(crashed_request, [])[-1:] == ["ok"], (
            "the completion committed before the crash must be acknowledged on retry"
        )
        assert len(set(started)) == N_WORKFLOWS, (
            "every start acknowledged once, with a distinct workflow"
        )
        assert history.count("unknown") == 0 and history.count("fail") == 0, history.events[-5:]
        listed = client.list_workflows(name="ft_order", limit=1000)
        assert len(listed) == N_WORKFLOWS, "no workflow was started twice by a retried start"

        acked = acknowledged_completions(worker_history)
        # At most one accepted completion per task attempt.
        per_task: dict[str, int] = {}
        for task_id, _ in acked.values():
            per_task[task_id] = per_task.get(task_id, 0) + 1
        assert all(n == 1 for n in per_task.values()), {k: v for k, v in per_task.items() if v > 1}
        final_tasks: dict[str, Any] = {}
        for wid in started:
            wf = client.get_workflow(wid)
            assert wf.status == "COMPLETED", (wid, wf.status, wf.reason_for_incompletion)
            assert wf.output["tracking"] == f"trk-{wid}"
            completed = [t for t in wf.tasks if t.status == "COMPLETED"]
            assert [t.reference_task_name for t in completed] == ["reserve", "charge", "ship"]
            for t in wf.tasks:  # any other attempt ended by its lease, never twice completed
                assert t.status in ("COMPLETED", "TIMED_OUT"), (t.task_id, t.status)
                final_tasks[t.task_id] = t
        # No acknowledged task result is lost: each is in the state, with its output.
        for task_id, output in acked.values():
            assert final_tasks[task_id].status == "COMPLETED", task_id
            assert final_tasks[task_id].output == output, task_id
        # Every completed task's result was acknowledged to some worker.
        assert {t.task_id for t in final_tasks.values() if t.status == "COMPLETED"} == set(per_task)

        # ---- whole-cluster kill -9 after snapshots, restart, everything still there
        def snapshots_everywhere() -> bool:
            return all(
                os.path.exists(os.path.join(cluster.cfg.data_dir(nid), "raft.dump"))
                for nid in cluster.replicas
            )

        wait_for(snapshots_everywhere, 120, "a snapshot on every replica", interval_s=0.5)
        cluster.kill_all()
        for nid in cluster.replicas:
            start_node(cluster, nid)
        cluster.wait_healthy(timeout_s=60)
        assert client.get_workflow_def("ft_order")["name"] == "ft_order"
        assert sorted(d["name"] for d in client.list_task_defs()) == [
            "ft_charge",
            "ft_reserve",
            "ft_ship",
        ]
        for wid in started:
            wf = client.get_workflow(wid)
            assert wf.status == "COMPLETED"
            for t in wf.tasks:
                assert (
                    t.status == final_tasks[t.task_id].status
                    and t.output == final_tasks[t.task_id].output
                )
        # And the restarted cluster still runs new work.
        w = Worker(clients[1], worker_id="after-restart", concurrency=2, poll_timeout_ms=500)
        for kind in ("reserve", "charge", "ship"):
            w.register(f"ft_{kind}", rec.handler(kind))
        w.start()
        workers.append(w)
        wid = client.start_workflow("ft_order", {"order": "after-restart"})
        assert client.wait_for_workflow(wid, timeout_s=60).status == "COMPLETED"
    finally:
        for w in workers:
            w.stop(timeout_s=5)
        for c in clients:
            c.close()
        cluster.kill_all()
