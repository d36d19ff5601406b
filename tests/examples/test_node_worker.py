"""examples/node/worker.js and start.js against three real replicas (TLS and tokens, as `make
run` has them): start.js registers a workflow of two SIMPLE tasks and starts 30, worker.js
completes their tasks, the leader is killed -9 by its PID mid-run, and every workflow still
completes with each task completed exactly once. Runs when node and npm are present (the pinned
packages installed into examples/node/node_modules, ignored by git); skipped otherwise, except
under CI=true."""

from __future__ import annotations

import queue
import signal
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from tests.cluster_support import kill_leader, make_cluster, start_node, wait_for
from tests.examples.node_support import Line, node_ready, run_node

pytestmark = pytest.mark.cluster

WORKFLOWS = 30
KILL_AFTER = 10  # completions accepted before the leader is killed


def _collect(lines: queue.Queue[Line], seen: dict[str, list[dict[str, Any]]]) -> None:
    """What the programs printed so far (waiting a little for the first line)."""
    try:
        tag, msg = lines.get(timeout=0.2)
        while True:
            seen.setdefault(tag, []).append(msg)
            tag, msg = lines.get_nowait()
    except queue.Empty:
        return


def _completions(seen: dict[str, list[dict[str, Any]]]) -> list[str]:
    return [m["completed"] for m in seen.get("worker", []) if "completed" in m]


def _check_every_task_completed_once(
    seen: dict[str, list[dict[str, Any]]], client: Any, ended_at_kill: int, tail: Any
) -> None:
    started = [m["started"] for m in seen["start"] if "started" in m]
    ended = {m["ended"]: m for m in seen["start"] if "ended" in m}
    assert len(set(started)) == WORKFLOWS
    assert set(ended) == set(started)
    assert 0 <= ended_at_kill < WORKFLOWS, "the leader was killed after the run"
    # The kill was felt: some call failed over (retried on another replica).
    retries = [m for tag in ("worker.err", "start.err") for m in seen.get(tag, []) if "retry" in m]
    assert retries, f"no call was retried across the kill: {tail}"

    # Every task of every workflow completed once, by the worker, which saw each accepted
    # once (a retried CompleteTask returned the first outcome, not a second completion).
    completions = _completions(seen)
    assert not [t for t, n in Counter(completions).items() if n > 1], "a task completed twice"
    assert not [m for m in seen["worker"] if "refused" in m or "gave_up" in m], tail
    task_ids = []
    for wid in started:
        assert ended[wid]["status"] == "COMPLETED"
        wf = client.get_workflow(wid, include_tasks=True)
        assert wf.status == "COMPLETED"
        assert sorted(t.reference_task_name for t in wf.tasks) == ["first", "second"]
        assert all(t.status == "COMPLETED" and t.retry_count == 0 for t in wf.tasks)
        task_ids += [t.task_id for t in wf.tasks]
    assert sorted(completions) == sorted(task_ids)


def test_node_worker_and_start_survive_a_leader_kill(tmp_path: Any) -> None:
    node_ready()
    cluster = make_cluster(tmp_path)
    client = worker = starter = None
    seen: dict[str, list[dict[str, Any]]] = {}
    lines: queue.Queue[Line] = queue.Queue()
    try:
        for nid in cluster.replicas:
            start_node(cluster, nid)
        cluster.wait_healthy(timeout_s=60)
        tail = lambda: {tag: msgs[-8:] for tag, msgs in seen.items()}  # noqa: E731
        common = ["--addresses", ",".join(cluster.addresses), "--ca", cluster.access().ca_file]
        task_type = f"node_echo_{uuid.uuid4().hex[:6]}"
        worker = run_node(
            "worker.js",
            [*common, "--task-type", task_type, "--work-ms", "20"],
            lines,
            "worker",
            {"ORCHESTRATOR_TOKEN": str(cluster.access("worker").bearer())},
        )
        start_args = ["--task-type", task_type, "--name", f"{task_type}_flow", "--count"]
        start_args += [str(WORKFLOWS), "--interval-ms", "100", "--timeout-s", "150"]
        starter = run_node(
            "start.js",
            [*common, *start_args],
            lines,
            "start",
            {"ORCHESTRATOR_TOKEN": str(cluster.access("admin").bearer())},
        )
        killed = ""
        ended_at_kill = -1
        deadline = time.monotonic() + 180
        while starter.poll() is None and time.monotonic() < deadline:
            _collect(lines, seen)
            if not killed and len(_completions(seen)) >= KILL_AFTER:
                ended_at_kill = sum("ended" in m for m in seen.get("start", []))
                killed = kill_leader(cluster)  # SIGKILL by PID
            assert worker.poll() is None, f"worker.js exited early: {tail()}"
        assert killed, f"the worker never completed {KILL_AFTER} tasks: {tail()}"
        wait_for(lambda: starter.poll() is not None or None, 10, lambda: f"start.js: {tail()}")
        worker.send_signal(signal.SIGTERM)  # a clean stop: finish the tasks in hand, exit 0
        wait_for(lambda: worker.poll() is not None or None, 30, lambda: f"worker.js: {tail()}")
        time.sleep(0.5)
        _collect(lines, seen)
        assert starter.returncode == 0, f"start.js: {tail()}"
        assert worker.returncode == 0, f"worker.js: {tail()}"

        client = cluster.client(timeout_s=3.0, retry_budget_s=60.0)
        _check_every_task_completed_once(seen, client, ended_at_kill, tail())
    finally:
        for proc in (worker, starter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if client is not None:
            client.close()
        cluster.stop_all()
