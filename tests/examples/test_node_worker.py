"""examples/node/worker.js and start.js against three real replicas. With TLS and tokens (as
`make run` has them): start.js registers a workflow of two SIMPLE tasks and starts 30, worker.js
completes their tasks, the leader is killed -9 by its PID mid-run, and every workflow still
completes with each task completed exactly once. Plaintext: tasks that outlast their lease are
kept by heartbeats. Runs when node and npm are present (the pinned packages installed into
examples/node/node_modules, ignored by git); skipped otherwise, except under CI=true."""

from __future__ import annotations

import queue
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.cluster_support import kill_leader, make_cluster, start_node, wait_for
from tests.examples.node_support import Line, node_ready, run_node

pytestmark = pytest.mark.cluster

WORKFLOWS = 30
KILL_AFTER = 10  # completions accepted before the leader is killed

Seen = dict[str, list[dict[str, Any]]]


class Run:
    """worker.js and start.js against one cluster; what they printed, by tag."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.lines: queue.Queue[Line] = queue.Queue()
        self.seen: Seen = {}
        self.procs: dict[str, Any] = {}

    def start(self, tag: str, script: str, args: list[str], role: str) -> None:
        secure = not self.cluster.insecure
        common = ["--addresses", ",".join(self.cluster.addresses)]
        common += ["--ca", self.cluster.access().ca_file] if secure else []
        token = {"ORCHESTRATOR_TOKEN": str(self.cluster.access(role).bearer())} if secure else {}
        self.procs[tag] = run_node(script, [*common, *args], self.lines, tag, token)

    def collect(self) -> None:
        """What the programs printed so far (waiting a little for the first line)."""
        try:
            tag, msg = self.lines.get(timeout=0.2)
            while True:
                self.seen.setdefault(tag, []).append(msg)
                tag, msg = self.lines.get_nowait()
        except queue.Empty:
            return

    def tail(self) -> dict[str, list[dict[str, Any]]]:
        return {tag: msgs[-8:] for tag, msgs in self.seen.items()}

    def until_started_all(self, timeout_s: float, each: Callable[[], None] = lambda: None) -> None:
        """Until start.js exits (calling `each` between reads), then stops worker.js with
        SIGTERM (it finishes the tasks in hand); both must exit 0."""
        starter, worker = self.procs["start"], self.procs["worker"]
        deadline = time.monotonic() + timeout_s
        while starter.poll() is None and time.monotonic() < deadline:
            self.collect()
            each()
            assert worker.poll() is None, f"worker.js exited early: {self.tail()}"
        wait_for(lambda: starter.poll() is not None or None, 10, lambda: f"start.js {self.tail()}")
        worker.send_signal(signal.SIGTERM)
        wait_for(lambda: worker.poll() is not None or None, 30, lambda: f"worker {self.tail()}")
        time.sleep(0.5)
        self.collect()
        assert starter.returncode == 0, f"start.js: {self.tail()}"
        assert worker.returncode == 0, f"worker.js: {self.tail()}"

    def completions(self) -> list[str]:
        return [m["completed"] for m in self.seen.get("worker", []) if "completed" in m]

    def ended(self) -> dict[str, dict[str, Any]]:
        return {m["ended"]: m for m in self.seen.get("start", []) if "ended" in m}


@contextmanager
def node_run(tmp_path: Any, insecure: bool) -> Iterator[Run]:
    """A three-replica cluster up; afterwards every process it and the test started is
    stopped by its PID."""
    node_ready()
    cluster = make_cluster(tmp_path, insecure=insecure)
    run = Run(cluster)
    try:
        for nid in cluster.replicas:
            start_node(cluster, nid)
        cluster.wait_healthy(timeout_s=60)
        yield run
    finally:
        for proc in run.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        cluster.stop_all()


def _check_every_task_completed_once(run: Run, ended_at_kill: int) -> None:
    started = [m["started"] for m in run.seen["start"] if "started" in m]
    ended = run.ended()
    assert len(set(started)) == WORKFLOWS
    assert set(ended) == set(started)
    assert 0 <= ended_at_kill < WORKFLOWS, "the leader was killed after the run"
    # The kill was felt: some call failed over (retried on another replica).
    retries = [m for t in ("worker.err", "start.err") for m in run.seen.get(t, []) if "retry" in m]
    assert retries, f"no call was retried across the kill: {run.tail()}"

    # Every task of every workflow completed once, by the worker, which saw each accepted
    # once (a retried CompleteTask returned the first outcome, not a second completion).
    completions = run.completions()
    assert not [t for t, n in Counter(completions).items() if n > 1], "a task completed twice"
    assert not [m for m in run.seen["worker"] if "refused" in m or "gave_up" in m], run.tail()
    task_ids = []
    with run.cluster.client(timeout_s=3.0, retry_budget_s=60.0) as client:
        for wid in started:
            assert ended[wid]["status"] == "COMPLETED"
            wf = client.get_workflow(wid, include_tasks=True)
            assert wf.status == "COMPLETED"
            assert sorted(t.reference_task_name for t in wf.tasks) == ["first", "second"]
            assert all(t.status == "COMPLETED" and t.retry_count == 0 for t in wf.tasks)
            task_ids += [t.task_id for t in wf.tasks]
    assert sorted(completions) == sorted(task_ids)


def test_node_worker_and_start_survive_a_leader_kill(tmp_path: Any) -> None:
    with node_run(tmp_path, insecure=False) as run:
        task_type = f"node_echo_{uuid.uuid4().hex[:6]}"
        run.start("worker", "worker.js", ["--task-type", task_type, "--work-ms", "20"], "worker")
        starting = ["--task-type", task_type, "--name", f"{task_type}_flow", "--count"]
        starting += [str(WORKFLOWS), "--interval-ms", "100", "--timeout-s", "150"]
        run.start("start", "start.js", starting, "admin")
        killed: list[int] = []

        def kill_mid_run() -> None:
            if not killed and len(run.completions()) >= KILL_AFTER:
                killed.append(len(run.ended()))
                kill_leader(run.cluster)  # SIGKILL by PID

        run.until_started_all(180, kill_mid_run)
        assert killed, f"the worker never completed {KILL_AFTER} tasks: {run.tail()}"
        _check_every_task_completed_once(run, killed[0])


def test_node_worker_heartbeats_a_task_that_outlasts_its_lease(tmp_path: Any) -> None:
    """Tasks with a 2 s lease take 5 s each: the worker's heartbeats keep them its own, so each
    completes on its first attempt (without them the lease ends, the task times out and the
    late completion is refused). Plaintext, no token: an --insecure cluster."""
    with node_run(tmp_path, insecure=True) as run:
        run.start("worker", "worker.js", ["--task-type", "slow", "--work-ms", "5000"], "worker")
        starting = ["--task-type", "slow", "--name", "slow_flow", "--count", "2", "--lease-s"]
        run.start("start", "start.js", [*starting, "2", "--timeout-s", "60"], "admin")
        run.until_started_all(90)
        ended = list(run.ended().values())
        assert len(ended) == 2 and all(m["status"] == "COMPLETED" for m in ended), run.tail()
        assert all(t["retry_count"] == 0 for m in ended for t in m["tasks"]), ended
        assert len(run.completions()) == 4
        assert not [m for m in run.seen["worker"] if "refused" in m], run.seen["worker"]
