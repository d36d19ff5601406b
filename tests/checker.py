"""A history checker for fault tests (Jepsen-style): what the clients saw against the final state."""

from __future__ import annotations

import json
import time
from typing import Any

from orchestrator_client import OrchestratorClient

from .cluster_support import History, wait_for


def check_history(
    client: OrchestratorClient,
    starts: History,
    workers: History,
    workflow_name: str,
    polled: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Verify the promises after a fault healed; returns counts for the test to report."""
    # 1. Every acknowledged start exists and reached a terminal state; nothing was started twice.
    started_ok: dict[str, str] = {}
    unknown_starts = 0
    for rid, events in starts.by_request("StartWorkflow").items():
        if "ok" in events:
            started_ok[rid] = next(
                d.workflow_id
                for _, e, op, r, d in starts.events
                if r == rid and e == "ok" and op == "StartWorkflow"
            )
        elif "unknown" in events:
            unknown_starts += 1
    ids = set(started_ok.values())
    assert len(ids) == len(started_ok), "two acknowledged starts returned the same workflow"

    def all_terminal() -> bool:
        return all(client.get_workflow(w, include_tasks=False).is_terminal for w in ids)

    wait_for(
        all_terminal, 120, "every acknowledged workflow to reach a terminal state", interval_s=0.5
    )
    listed = {w.workflow_id for w in client.list_workflows(name=workflow_name, limit=1000)}
    assert ids <= listed, f"acknowledged starts lost: {sorted(ids - listed)[:5]}"
    assert len(listed) <= len(ids) + unknown_starts, "a retried start created a second workflow"

    # 2. Task results: each acknowledged completion is in the state with its output, and at
    # most one completion was accepted per task attempt.
    requests: dict[str, Any] = {}
    accepted: dict[str, Any] = {}
    for _, event, op, rid, detail in workers.events:
        if op != "CompleteTask":
            continue
        if event == "invoke":
            requests[rid] = detail
        elif event == "ok":
            task_id = requests[rid].task_id
            assert task_id not in accepted, f"task {task_id} completed twice"
            accepted[task_id] = json.loads(requests[rid].output_json or "{}")
    tasks: dict[str, Any] = {}
    for wid in listed:
        wf = client.get_workflow(wid)
        for t in wf.tasks:
            tasks[t.task_id] = t
    for task_id, output in accepted.items():
        assert task_id in tasks, f"acknowledged result of {task_id} lost"
        assert tasks[task_id].status == "COMPLETED" and tasks[task_id].output == output, task_id
    # 3. A task handed to a poller was leased to it in the committed state.
    for task_id, worker_id in (polled or {}).items():
        assert task_id in tasks and tasks[task_id].worker_id == worker_id, (
            f"task {task_id} was handed to {worker_id} without a committed lease"
        )
    return {"workflows": len(ids), "completions": len(accepted), "unknown_starts": unknown_starts}


def check_replicas_agree(client: OrchestratorClient, timeout_s: float = 60) -> int:
    """Once quiescent, every replica is at the same sequence with the same rolling hash."""

    def agreed() -> int | None:
        rows = client.cluster_status()
        if any(r.get("role") == "UNREACHABLE" for r in rows):
            return None
        seqs = {int(r["applied_sequence"]) for r in rows}
        hashes = {r["applied_hash"] for r in rows}
        if len(seqs) == 1 and len(hashes) == 1:
            return seqs.pop()
        if len(seqs) == 1:
            raise AssertionError(f"replicas diverged at sequence {seqs}: {rows}")
        return None

    return int(
        wait_for(agreed, timeout_s, "replicas to agree on sequence and hash", interval_s=0.3)
    )


def time_until_success(fn: Any, timeout_s: float = 60) -> float:
    """Seconds until fn() succeeds (the availability check after a fault)."""
    t0 = time.monotonic()
    wait_for(lambda: fn() or True, timeout_s, "a successful client call", interval_s=0.05)
    return time.monotonic() - t0
