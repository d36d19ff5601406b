"""Fault injection on real replica processes, each fault its own test, checked afterwards.

Each test runs a steady load (workflow starts and Python workers), injects one fault, heals it,
stops the load, and then checks the recorded history against the final state (tests/checker.py):
no acknowledged start or task result lost, every workflow terminal, at most one accepted
completion per task attempt, replicas agreeing on their rolling hash at equal sequence numbers,
and clients succeeding again within a bound.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import grpc
import pytest
from orchestrator_client import OrchestratorClient, Worker
from orchestrator_client.v1 import tasks_pb2, tasks_pb2_grpc, workflows_pb2, workflows_pb2_grpc

from orchestrator.tools.verify import (
    WF,
    Load,
    check_history,
    check_replicas_agree,
    definitions,
    time_until_success,
)
from tests.cluster_support import History, make_cluster, read_log, wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(tmp_path: Any) -> Any:
    c = make_cluster(tmp_path)
    c.start_all()
    c.wait_healthy(timeout_s=60)
    client = c.client(retry_budget_s=30)
    tds, wf = definitions()
    client.register_task_defs(tds)
    client.register_workflow_def(wf)
    client.close()
    yield c
    c.kill_all()


def _finish(cluster: Any, load: Load) -> dict[str, Any]:
    load.end()
    result = check_history(load.client, load.starts, load.results, WF, load.polled, load=load)
    assert result["workflows"] > 0
    check_replicas_agree(load.client)
    return result


def _await_load(load: Load, starts: int, timeout_s: float = 60) -> None:
    wait_for(
        lambda: load.starts.count("ok") >= starts,
        timeout_s,
        lambda: (
            f"{starts} acknowledged starts: {load.starts.count('ok')} ok, errors {load.errors[:3]}"
        ),
    )


def _probe(load: Load) -> Any:
    return load.probe({"n": -1}, retry_budget_s=0.5, timeout_s=1.0)


def test_leader_kill_9(cluster: Any) -> None:
    load = Load(cluster.access())
    try:
        load.begin()
        _await_load(load, 20)
        leader = wait_for(cluster.leader, 30, "a leader")
        cluster.kill(leader)
        recovery = time_until_success(lambda: _probe(load))
        cluster.start(leader)
        wait_for(lambda: load.starts.count("ok") >= 60, 90, "more load after the fault")
        result = _finish(cluster, load)
        print(f"leader kill: recovered in {recovery:.2f}s; {result}")
    finally:
        load.close()


def test_cluster_time_keeps_running_through_an_election(cluster: Any) -> None:
    """Cluster time (timers, createTime, WAIT until) must not stop while there is no leader.

    The leader is killed and the other two are kept from electing one for 4 s (one paused);
    the first workflow started afterwards must carry a cluster time at least the real time
    that passed (minus a second for commit delays), not one that lost the leaderless 4 s.
    """
    admin = cluster.client(retry_budget_s=60)
    try:
        before = admin.get_workflow(admin.start_workflow(WF, {"n": "clock-before"}))
        after_before = time.monotonic()
        leader = wait_for(cluster.leader, 30, "a leader")
        paused = next(n for n in cluster.replicas if n != leader)
        cluster.signal(paused, signal.SIGSTOP)
        cluster.kill(leader)
        time.sleep(4.0)  # the fault's duration: no majority, no leader
        cluster.signal(paused, signal.SIGCONT)
        cluster.start(leader)
        sent = time.monotonic()
        after = admin.get_workflow(admin.start_workflow(WF, {"n": "clock-after"}))
        elapsed_ms = (sent - after_before) * 1000
        gained_ms = after.create_time_ms - before.create_time_ms
        assert gained_ms >= elapsed_ms - 1000, (
            f"cluster time advanced {gained_ms:.0f} ms over {elapsed_ms:.0f} ms of real time"
        )
    finally:
        admin.close()


def test_follower_kill_9(cluster: Any) -> None:
    load = Load(cluster.access())
    try:
        load.begin()
        _await_load(load, 20)
        leader = wait_for(cluster.leader, 30, "a leader")
        follower = next(n for n in cluster.replicas if n != leader)
        cluster.kill(follower)
        wait_for(lambda: load.starts.count("ok") >= 50, 60, "load continuing without the follower")
        cluster.start(follower)
        wait_for(lambda: cluster.health(follower), 60, "the follower to catch up and serve")
        _finish(cluster, load)
    finally:
        load.close()


def test_whole_cluster_kill_9_and_restart(cluster: Any) -> None:
    load = Load(cluster.access())
    try:
        load.begin()
        wait_for(lambda: load.starts.count("ok") >= 30, 60, "load")
        cluster.kill_all()
        cluster.start_all()
        cluster.wait_healthy(timeout_s=60)
        wait_for(lambda: load.starts.count("ok") >= 60, 90, "load after the restart")
        _finish(cluster, load)
    finally:
        load.close()


def test_paused_leader_hands_out_no_task_and_serves_no_stale_read(cluster: Any) -> None:
    load = Load(cluster.access())
    old_addr = ""
    try:
        load.begin()
        _await_load(load, 20)
        old = wait_for(cluster.leader, 30, "a leader")
        old_addr = cluster.replicas[old].grpc
        cluster.signal(old, signal.SIGSTOP)
        # A new leader is elected past the election timeout, and commits new work.
        new = wait_for(
            lambda: (lambda x: x if x and x != old else None)(cluster.leader()), 30, "a new leader"
        )
        fresh_id = load.client.start_workflow(WF, {"n": "during-pause"})
        # Resume the old leader and immediately ask it directly, bypassing the client's failover.
        with cluster.channel(old_addr) as ch:
            wfs = workflows_pb2_grpc.WorkflowServiceStub(ch)
            tasks = tasks_pb2_grpc.TaskServiceStub(ch)
            cluster.signal(old, signal.SIGCONT)
            try:
                got = wfs.GetWorkflow(
                    workflows_pb2.GetWorkflowRequest(workflow_id=fresh_id), timeout=5
                )
                assert got.workflow.workflow_id == fresh_id  # served only once caught up
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
            try:
                resp = tasks.PollTasks(
                    tasks_pb2.PollTasksRequest(
                        request_id=uuid.uuid4().hex,
                        task_type="fault_a",
                        worker_id="resumed-probe",
                        count=5,
                        timeout_ms=0,
                    ),
                    timeout=5,
                )
                for t in resp.tasks:  # anything handed out must be a committed lease
                    load.polled[t.task_id] = "resumed-probe"
                    load.clients[1].complete_task(
                        t.task_id, {"m": "probe"}, worker_id="resumed-probe"
                    )
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
        assert new != old
        wait_for(lambda: load.starts.count("ok") >= 60, 90, "load after resume")
        _finish(cluster, load)
    finally:
        if old_addr:
            for nid, rp in cluster.replicas.items():
                if rp.grpc == old_addr and cluster.alive(nid):
                    cluster.signal(nid, signal.SIGCONT)
        load.close()


def test_sigterm_leader_steps_aside(cluster: Any) -> None:
    load = Load(cluster.access())
    try:
        load.begin()
        _await_load(load, 20)
        leader = wait_for(cluster.leader, 30, "a leader")
        cluster.stop(leader)  # SIGTERM, then waits for the process to exit
        assert cluster.replicas[leader].proc.returncode == 0
        assert "stepped_down" in read_log(cluster, leader)
        time_until_success(lambda: _probe(load))
        cluster.start(leader)
        wait_for(lambda: load.starts.count("ok") >= 60, 90, "load after the restart")
        _finish(cluster, load)
    finally:
        load.close()


WORKER_SCRIPT = r"""
import sys, time, threading
from orchestrator_client import OrchestratorClient, Worker, read_token_file, tls_credentials
client = OrchestratorClient(
    sys.argv[1].split(","), credentials=tls_credentials(sys.argv[2]), token=read_token_file(sys.argv[3])
)
w = Worker(client, worker_id="doomed", concurrency=4, poll_timeout_ms=500, heartbeat_interval_s=0.5)
out = threading.Lock()  # concurrent print()s to a pipe can lose lines
def slow(task):
    with out:
        print("HOLDING", task.task_id, flush=True)
    time.sleep(3600)
w.register("fault_a", slow)
w.start()
time.sleep(3600)
"""


def test_worker_killed_while_holding_tasks(tmp_path: Any) -> None:
    c = make_cluster(tmp_path)
    c.start_all()
    proc = None
    load = None
    try:
        c.wait_healthy(timeout_s=60)
        admin = c.client()
        tds, wf = definitions(response_timeout_s=2)
        admin.register_task_defs(tds)
        admin.register_workflow_def(wf)
        ids = [admin.start_workflow(WF, {"n": i}) for i in range(4)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        err_path = tmp_path / "worker.stderr"
        with open(err_path, "w") as err_file:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER_SCRIPT,
                    ",".join(c.addresses),
                    c.access().ca_file,
                    c.access().token_file,
                ],
                stdout=subprocess.PIPE,
                stderr=err_file,
                text=True,
                env=env,
            )
        assert proc.stdout is not None
        held = []
        while len(held) < 4:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(
                    f"the worker exited ({proc.wait(10)}): {err_path.read_text()[-2000:]}"
                )
            if line.startswith("HOLDING "):
                held.append(line.split()[1])
        proc.kill()
        proc.wait(10)
        # The leases expire (heartbeats stopped with the worker) and other workers finish the job.
        load = Load(c.access(), workers=1)
        for w in load.workers:
            w.start()
        for wid in ids:
            assert admin.wait_for_workflow(wid, timeout_s=60).status == "COMPLETED"
        for task_id in held:
            t = next(
                t for wid in ids for t in admin.get_workflow(wid).tasks if t.task_id == task_id
            )
            assert t.status == "TIMED_OUT" and t.worker_id == "doomed"
        admin.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        if load is not None:
            load.close()
        c.kill_all()


def test_stalled_worker_late_result_is_rejected(tmp_path: Any) -> None:
    c = make_cluster(tmp_path)
    c.start_all()
    clients: list[OrchestratorClient] = []
    workers: list[Worker] = []
    try:
        c.wait_healthy(timeout_s=60)
        history = History()
        admin = c.client()
        clients.append(admin)
        tds, wf = definitions(response_timeout_s=1)
        admin.register_task_defs(tds)
        admin.register_workflow_def(wf)
        wid = admin.start_workflow(WF, {"n": 1})
        stalled_client = c.client(recorder=history)
        clients.append(stalled_client)
        [task] = wait_for(
            lambda: stalled_client.poll_tasks("fault_a", worker_id="staller", timeout_ms=1000),
            30,
            "a task",
        )
        # The lease (1 s) runs out while the worker stalls; it is re-delivered and completed.
        healthy = Worker(c.client(), worker_id="healthy", concurrency=2, poll_timeout_ms=500)
        healthy.register("fault_a", lambda t: {"m": "fresh"})
        healthy.register("fault_b", lambda t: {"done": True})
        healthy.start()
        workers.append(healthy)
        final = admin.wait_for_workflow(wid, timeout_s=60)
        assert final.status == "COMPLETED"
        with pytest.raises(Exception) as info:
            stalled_client.complete_task(task.task_id, {"m": "late"}, worker_id="staller")
        assert type(info.value).__name__ == "FailedPreconditionError", info.value
        again = admin.get_workflow(wid)
        old = next(t for t in again.tasks if t.task_id == task.task_id)
        assert old.status == "TIMED_OUT" and old.output != {"m": "late"}
        assert [t.status for t in again.tasks if t.reference_task_name == "a"][-1] == "COMPLETED"
        assert json.dumps(again.output) != json.dumps({"m": "late"})
    finally:
        for w in workers:
            w.stop(timeout_s=5)
        for cl in clients:
            cl.close()
        c.kill_all()


def test_corrupted_journal_refuses_to_start_and_the_rest_carry_on(cluster: Any) -> None:
    load = Load(cluster.access())
    try:
        load.begin()
        _await_load(load, 20)
        leader = wait_for(cluster.leader, 30, "a leader")
        victim = next(n for n in cluster.replicas if n != leader)
        cluster.kill(victim)
        path = os.path.join(cluster.cfg.data_dir(victim), "raft.journal")
        data = bytearray(open(path, "rb").read())
        # The records end where the zero-filled space the journal grows into begins.
        records = len(bytes(data).rstrip(b"\0"))
        assert records > 200, "the journal must hold entries for the test to mean anything"
        data[records // 2] ^= 0xFF
        open(path, "wb").write(bytes(data))
        cluster.start(victim)
        proc = cluster.replicas[victim].proc
        wait_for(lambda: proc.poll() is not None, 30, "the corrupt replica to refuse to start")
        assert proc.returncode == 3
        assert "refusing_to_start" in read_log(cluster, victim)
        wait_for(lambda: load.starts.count("ok") >= 60, 90, "the other two carry on")
        load.end()
        check_history(load.client, load.starts, load.results, WF, load.polled, load=load)
    finally:
        load.close()


def test_clock_jumps_on_the_leader_fire_no_timer_early(tmp_path: Any) -> None:
    """Wall-clock jumps on the leader move nothing: cluster time follows the monotonic clock.

    The leader runs under a clock that jumps +1 h and then -1 h (time.time patched by the
    test-only ORCHESTRATOR_TEST_WALL_OFFSET_FILE); a retry delay of 2 s must neither fire early nor stall.
    """
    c = make_cluster(tmp_path)
    offset_file = str(tmp_path / "wall-offset")
    c.env["ORCHESTRATOR_TEST_WALL_OFFSET_FILE"] = offset_file
    c.start_all()
    clients: list[OrchestratorClient] = []
    try:
        c.wait_healthy(timeout_s=60)
        admin = c.client()
        clients.append(admin)
        admin.register_task_defs(
            [
                {
                    "name": "clock_t",
                    "retryCount": 1,
                    "retryDelaySeconds": 2,
                    "responseTimeoutSeconds": 60,
                }
            ]
        )
        admin.register_workflow_def(
            {"name": "clock_flow", "tasks": [{"name": "clock_t", "taskReferenceName": "t"}]}
        )
        for jump_s in (3600, -3600):
            wid = admin.start_workflow("clock_flow", {})
            [task] = wait_for(
                lambda: admin.poll_tasks("clock_t", worker_id="w", timeout_ms=1000), 30, "a task"
            )
            with open(offset_file, "w") as f:
                f.write(str(jump_s * 1000))
            wait_for(
                lambda: "wall_clock_offset" in "".join(read_log(c, n) for n in c.replicas),
                10,
                "the jump",
            )
            failed_at = time.monotonic()
            admin.fail_task(task.task_id, "try again")
            retry = wait_for(
                lambda: admin.poll_tasks("clock_t", worker_id="w", timeout_ms=500), 30, "the retry"
            )
            waited = time.monotonic() - failed_at
            assert waited >= 1.9, f"retry delay of 2 s fired after {waited:.2f}s: early"
            admin.complete_task(retry[0].task_id, {})
            assert admin.wait_for_workflow(wid, timeout_s=30).status == "COMPLETED"
            os.remove(offset_file)
    finally:
        for cl in clients:
            cl.close()
        c.kill_all()
