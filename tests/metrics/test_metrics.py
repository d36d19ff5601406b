"""A real single-replica cluster scraped over HTTP (conftest.py): the exposition parses, and its
values follow what the test does (a workflow started and completed, a poll, the leader's role
and term)."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from orchestrator_client.v1 import tasks_pb2 as tpb
from orchestrator_client.v1 import workflows_pb2 as wpb

from orchestrator.config import ConfigError, load
from orchestrator.server import ReplicaServer
from orchestrator.tools.localcluster import AlreadyRunning, LocalCluster, write_config
from tests.cluster_support import api_stubs, wait_for
from tests.metrics.conftest import scrape


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def rid() -> str:
    return uuid.uuid4().hex


def test_leader_reports_its_role_term_and_indexes(replica: tuple[ReplicaServer, int]) -> None:
    srv, port = replica
    got = scrape(port)
    assert value(got, "orchestrator_raft_role", role="leader") == 1.0
    assert value(got, "orchestrator_raft_role", role="follower") == 0.0
    assert value(got, "orchestrator_raft_term") == srv.replica.term() >= 1
    assert value(got, "orchestrator_raft_has_quorum") == 1.0
    assert value(got, "orchestrator_raft_commit_index") >= 1
    assert value(got, "orchestrator_raft_applied_index") >= 1
    # The epoch entry the leader proposed went through Raft: one commit observed at least.
    assert value(got, "orchestrator_commit_latency_seconds_count") >= 1
    assert value(got, "orchestrator_journal_fsync_seconds_count") >= 1


def test_a_workflow_and_a_poll_move_the_counters(replica: tuple[ReplicaServer, int]) -> None:
    srv, port = replica
    ch = grpc.insecure_channel(srv.grpc_addr)
    stubs = api_stubs(ch)
    from orchestrator_client import OrchestratorClient

    with OrchestratorClient([srv.grpc_addr], retry_budget_s=10) as c:
        c.register_task_defs([{"name": "m_t", "retryCount": 0, "responseTimeoutSeconds": 60}])
        c.register_workflow_def(
            {"name": "m_flow", "tasks": [{"name": "m_t", "taskReferenceName": "a"}]}
        )
    before = scrape(port)
    stubs.wfs.StartWorkflow(
        wpb.StartWorkflowRequest(request_id=rid(), name="m_flow", input_json="{}")
    )
    mid = scrape(port)
    assert value(mid, "orchestrator_workflows_started_total") == (
        value(before, "orchestrator_workflows_started_total") + 1
    )
    assert value(mid, "orchestrator_queue_depth", queue="m_t") == 1
    assert value(mid, "orchestrator_workflows_running", workflow="m_flow") == 1
    got: list[Any] = []

    def leased() -> bool:
        poll = tpb.PollTasksRequest(request_id=rid(), task_type="m_t", worker_id="w", count=1)
        got.extend(stubs.tasks.PollTasks(poll).tasks)
        return bool(got)

    wait_for(leased, 30, "the task to be leased")
    leased_now = scrape(port)
    assert value(leased_now, "orchestrator_queue_depth", queue="m_t") == 0
    assert value(leased_now, "orchestrator_tasks_leased", queue="m_t") == 1
    polls = "orchestrator_rpc_duration_seconds_count"
    assert value(leased_now, polls, method="PollTasks") > value(mid, polls, method="PollTasks")
    assert value(leased_now, "orchestrator_rpc_handled_total", method="PollTasks", code="OK") >= 1
    stubs.tasks.CompleteTask(
        tpb.CompleteTaskRequest(request_id=rid(), task_id=got[0].task_id, output_json="{}")
    )
    ended = "orchestrator_workflows_ended_total"
    wait_for(
        lambda: (
            value(scrape(port), ended, status="COMPLETED")
            == value(before, ended, status="COMPLETED") + 1
        ),
        30,
        "the workflow to complete",
    )
    after = scrape(port)
    assert value(after, ended, status="COMPLETED") == value(before, ended, status="COMPLETED") + 1
    assert value(after, "orchestrator_workflows_running", workflow="m_flow") == 0
    ch.close()


def test_errors_are_counted_by_code(replica: tuple[ReplicaServer, int]) -> None:
    srv, port = replica
    with grpc.insecure_channel(srv.grpc_addr) as ch, pytest.raises(grpc.RpcError) as err:
        api_stubs(ch).wfs.GetWorkflow(wpb.GetWorkflowRequest(workflow_id="no-such"))
    code = err.value.code().name
    assert code == "NOT_FOUND"
    got = scrape(port)
    assert value(got, "orchestrator_rpc_handled_total", method="GetWorkflow", code=code) >= 1


def test_metrics_port_is_off_by_default_and_checked(tmp_path: Path) -> None:
    path = write_config(str(tmp_path / "cluster.json"), n=1)
    assert load(path).metrics_port == 0
    raw = json.loads(Path(path).read_text())
    raw["metrics_port"] = "9100"
    Path(path).write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="metrics_port"):
        load(path)


def test_a_snapshot_is_timed_and_sized(replica: tuple[ReplicaServer, int]) -> None:
    srv, port = replica
    from orchestrator_client import OrchestratorClient

    with OrchestratorClient([srv.grpc_addr], retry_budget_s=10) as c:
        # Entries past the last snapshot: pysyncobj skips a snapshot that would add nothing.
        c.register_task_defs([{"name": "m_snap", "retryCount": 0}])
        c.register_task_defs([{"name": "m_snap", "retryCount": 1}])
    before = value(scrape(port), "orchestrator_snapshot_duration_seconds_count")

    def written() -> bool:
        srv.replica.force_snapshot()  # type: ignore[attr-defined]
        return value(scrape(port), "orchestrator_snapshot_duration_seconds_count") > before

    wait_for(written, 30, "the snapshot to be written")
    assert value(scrape(port), "orchestrator_snapshot_size_bytes") > 0


def test_local_cluster_names_a_metrics_port_another_program_holds(tmp_path: Path) -> None:
    path = write_config(str(tmp_path / "cluster.json"), n=1, secure=False)
    raw = json.loads(Path(path).read_text())
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        raw["replicas"][0]["metrics_port"] = port
        Path(path).write_text(json.dumps(raw))
        with pytest.raises(AlreadyRunning, match=f"127.0.0.1:{port} \\(n1's metrics\\)"):
            LocalCluster(path, insecure=True).claim(ports_free_within_s=0.2)
