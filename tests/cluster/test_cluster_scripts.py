"""Scripts on three real replicas: evaluated once, on the leader, in sandbox processes.

A workflow runs an INLINE task that completes and then one that loops forever. The endless one
fails with a clear reason once the sandbox's time limit passes; meanwhile other workflows with
scripts and worker tasks complete, no election happens (every replica keeps its term) and only
the leader evaluates scripts. Then the leader is killed while a script is pending, and the next
leader evaluates it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from orchestrator_client import OrchestratorClient, Worker

from tests.cluster_support import make_cluster, read_log, start_node, wait_for

pytestmark = pytest.mark.cluster


def inline(ref: str, expression: str, **inputs: Any) -> dict[str, Any]:
    return {
        "name": ref,
        "taskReferenceName": ref,
        "type": "INLINE",
        "inputParameters": {"evaluatorType": "javascript", "expression": expression, **inputs},
    }


SPIN = {
    "name": "cs_spin",
    "version": 1,
    "tasks": [
        inline("double", "$.n * 2", n="${workflow.input.n}"),
        inline("spin", "var i = 0; while (true) { i++; }"),
    ],
}
OTHER = {
    "name": "cs_other",
    "version": 1,
    "tasks": [
        {
            "name": "pick",
            "taskReferenceName": "pick",
            "type": "SWITCH",
            "evaluatorType": "javascript",
            "expression": "$.n % 2 == 0 ? 'even' : 'odd'",
            "inputParameters": {"n": "${workflow.input.n}"},
            "decisionCases": {
                "even": [inline("half", "$.n / 2", n="${workflow.input.n}")],
                "odd": [inline("triple", "$.n * 3 + 1", n="${workflow.input.n}")],
            },
        },
        {
            "name": "cs_work",
            "taskReferenceName": "work",
            "inputParameters": {"n": "${workflow.input.n}"},
        },
        {
            "name": "shape",
            "taskReferenceName": "shape",
            "type": "JSON_JQ_TRANSFORM",
            "inputParameters": {"queryExpression": "{seen: .w.seen}", "w": "${work.output}"},
        },
    ],
    "outputParameters": {"shape": "${shape.output.result}", "case": "${pick.output.selectedCase}"},
}


def spinning_task(client: OrchestratorClient, wf_id: str) -> bool:
    t = client.get_workflow(wf_id).task_by_ref("spin")
    return t is not None and t.status == "IN_PROGRESS"


def test_an_endless_script_fails_its_task_without_an_election_or_slowing_others(
    tmp_path: Any,
) -> None:
    cluster = make_cluster(tmp_path)
    client = worker = None
    try:
        for nid in cluster.replicas:
            start_node(cluster, nid)
        cluster.wait_healthy(timeout_s=60)
        client = cluster.client(timeout_s=3.0, retry_budget_s=60.0)
        client.register_task_defs(
            [{"name": "cs_work", "retryCount": 0, "responseTimeoutSeconds": 30}]
        )
        client.register_workflow_def(SPIN)
        client.register_workflow_def(OTHER)
        worker = Worker(client, worker_id="cs-worker", concurrency=4, poll_timeout_ms=1000)
        worker.register("cs_work", lambda task: {"seen": task.input["n"]})
        worker.start()

        leader = wait_for(cluster.leader, 30, "a leader")
        terms_before = {s["node_id"]: s["term"] for s in client.cluster_status()}
        assert len(terms_before) == 3

        spin_id = client.start_workflow("cs_spin", {"n": 5})

        wait_for(lambda: spinning_task(client, spin_id), 30, "the endless script to be running")

        # While the endless script holds one sandbox worker, other workflows keep moving.
        others: list[str] = []
        errors: list[BaseException] = []

        def start_others() -> None:
            try:
                for n in range(6):
                    others.append(client.start_workflow("cs_other", {"n": n}))
            except BaseException as exc:
                errors.append(exc)

        t0 = time.monotonic()
        t = threading.Thread(target=start_others)
        t.start()
        t.join(60)
        assert not errors, errors
        done = [client.wait_for_workflow(w, timeout_s=60, poll_interval_s=0.02) for w in others]
        others_s = time.monotonic() - t0
        spin = client.wait_for_workflow(spin_id, timeout_s=60, poll_interval_s=0.02)
        spin_s = time.monotonic() - t0
        print(
            f"6 other workflows done in {others_s:.2f}s; the endless script failed after {spin_s:.2f}s"
        )

        assert spin.status == "FAILED", spin.reason_for_incompletion
        double = spin.task_by_ref("double")
        assert double is not None and double.status == "COMPLETED"
        assert double.output == {"result": 10}
        spun = spin.task_by_ref("spin")
        assert spun is not None and spun.status == "FAILED"
        assert "time limit exceeded" in spun.reason_for_incompletion, spun.reason_for_incompletion
        assert "time limit exceeded" in spin.reason_for_incompletion

        for n, wf in enumerate(done):
            assert wf.status == "COMPLETED", (n, wf.reason_for_incompletion)
            case = "even" if n % 2 == 0 else "odd"
            assert wf.output == {"shape": {"seen": n}, "case": case}
            inner = wf.task_by_ref("half" if case == "even" else "triple")
            assert inner is not None
            assert inner.output == {"result": n // 2 if case == "even" else n * 3 + 1}
            # Cluster time: each ended before the endless script was given up on.
            assert wf.end_time_ms <= spun.end_time_ms, (n, wf.end_time_ms, spun.end_time_ms)

        terms_after = {s["node_id"]: s["term"] for s in client.cluster_status()}
        assert terms_after == terms_before, "no election while the script ran"
        assert cluster.leader() == leader

        # Only the leader evaluated scripts; each script once (1 + 1 + 6 * 3 evaluations).
        evaluated = {}
        for nid in cluster.replicas:
            lines = [ln for ln in read_log(cluster, nid).splitlines() if "script_evaluated" in ln]
            evaluated[nid] = [json.loads(ln) for ln in lines]
        assert {nid for nid, lines in evaluated.items() if lines} == {leader}, {
            k: len(v) for k, v in evaluated.items()
        }
        assert len(evaluated[leader]) == 2 + 6 * 3
        assert sum(1 for e in evaluated[leader] if e.get("kind") == "time") == 1

        # The leader dies while a script is pending: the next leader finds it in the state and
        # evaluates it again (at least once), and the workflow still ends.
        again_id = client.start_workflow("cs_spin", {"n": 1})
        wait_for(lambda: spinning_task(client, again_id), 30, "the second endless script")
        cluster.kill(leader)

        def new_leader() -> str | None:
            current = cluster.leader()
            return current if current and current != leader else None

        leader2 = wait_for(new_leader, 30, "a new leader")
        start_node(cluster, leader)
        again = client.wait_for_workflow(again_id, timeout_s=60)
        assert again.status == "FAILED"
        spun2 = again.task_by_ref("spin")
        assert spun2 is not None and "time limit exceeded" in spun2.reason_for_incompletion
        lines = [ln for ln in read_log(cluster, leader2).splitlines() if "script_evaluated" in ln]
        assert any(json.loads(ln)["task_id"] == spun2.task_id for ln in lines)
        after = client.wait_for_workflow(client.start_workflow("cs_other", {"n": 4}), timeout_s=60)
        assert after.status == "COMPLETED" and after.output["shape"] == {"seen": 4}
    finally:
        if worker is not None:
            worker.stop()
        if client is not None:
            client.close()
        cluster.stop_all()
