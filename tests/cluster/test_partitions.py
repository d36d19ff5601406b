"""Partitions between replicas in network namespaces (iptables), checked afterwards.

Each replica runs in its own network namespace; the test's clients reach all of them. Skipped
with a reason only where namespaces cannot be made, and never skipped when CI=true.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import grpc
import pytest
from orchestrator_client.v1 import tasks_pb2, tasks_pb2_grpc, workflows_pb2, workflows_pb2_grpc

from orchestrator.tools.localcluster import LocalCluster, write_config
from orchestrator.tools.netns import NetNS, namespaces_available
from orchestrator.tools.verify import WF, Load, definitions
from tests.checker import check_history, check_replicas_agree, time_until_success
from tests.cluster_support import TEST_RAFT, wait_for

pytestmark = pytest.mark.cluster


def require_namespaces() -> None:
    reason = namespaces_available()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"network namespace tests cannot be skipped in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def net_cluster(tmp_path: Any) -> Any:
    require_namespaces()
    net = NetNS()
    net.up()
    cluster = None
    try:
        cfg = write_config(
            str(tmp_path / "cluster.json"),
            grpc_ports=[50051] * 3,
            raft_ports=[7000] * 3,
            raft=TEST_RAFT,
            hosts=net.hosts,
        )
        cluster = LocalCluster(cfg, wrap={f"n{i + 1}": net.wrap(i) for i in range(3)})
        cluster.start_all()
        cluster.wait_healthy(timeout_s=60)
        admin = cluster.client(retry_budget_s=30)
        tds, wf = definitions()
        admin.register_task_defs(tds)
        admin.register_workflow_def(wf)
        admin.close()
        yield cluster, net
    finally:
        if cluster is not None:
            cluster.kill_all()
        net.down()


def _index(cluster: LocalCluster, nid: str) -> int:
    return list(cluster.replicas).index(nid)


def _probe(load: Load) -> Any:
    return load.probe({"n": -1}, retry_budget_s=0.5, timeout_s=1.0)


def test_partition_isolating_the_leader(net_cluster: Any) -> None:
    cluster, net = net_cluster
    load = Load(cluster.access())
    try:
        load.begin()
        wait_for(lambda: load.starts.count("ok") >= 20, 60, lambda: f"load: {load.errors[:3]}")
        old = wait_for(cluster.leader, 30, "a leader")
        net.isolate(_index(cluster, old))
        # The majority elects a new leader and keeps serving.
        new = wait_for(
            lambda: (lambda x: x if x and x != old else None)(cluster.leader()), 30, "a new leader"
        )
        recovery = time_until_success(lambda: _probe(load))
        created = load.client.start_workflow(WF, {"n": "during-partition"})
        # The isolated old leader, asked directly, neither serves a stale read nor leases a task.
        with cluster.channel(cluster.replicas[old].grpc) as ch:
            try:
                got = workflows_pb2_grpc.WorkflowServiceStub(ch).GetWorkflow(
                    workflows_pb2.GetWorkflowRequest(workflow_id=created), timeout=5
                )
                raise AssertionError(f"isolated replica answered a read: {got.workflow.status}")
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
            try:
                resp = tasks_pb2_grpc.TaskServiceStub(ch).PollTasks(
                    tasks_pb2.PollTasksRequest(
                        request_id=uuid.uuid4().hex,
                        task_type="fault_a",
                        worker_id="isolated",
                        count=5,
                        timeout_ms=0,
                    ),
                    timeout=5,
                )
                assert not resp.tasks, "the isolated replica handed out tasks"
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
        wait_for(lambda: load.starts.count("ok") >= 50, 60, "load during the partition")
        net.heal()
        wait_for(lambda: cluster.health(old), 60, "the old leader to rejoin and serve")
        load.end()
        result = check_history(load.client, load.starts, load.results, WF, load.polled, load=load)
        check_replicas_agree(load.client)
        assert new != old
        print(f"leader partition: clients recovered in {recovery:.2f}s; {result}")
    finally:
        load.close()


def test_asymmetric_partition(net_cluster: Any) -> None:
    cluster, net = net_cluster
    load = Load(cluster.access())
    try:
        load.begin()
        wait_for(lambda: load.starts.count("ok") >= 20, 60, "load")
        leader = wait_for(cluster.leader, 30, "a leader")
        follower = next(n for n in cluster.replicas if n != leader)
        # The follower stops hearing the leader, while the leader still hears the follower.
        net.drop_incoming(_index(cluster, follower), _index(cluster, leader))
        before = load.starts.count("ok")
        wait_for(
            lambda: load.starts.count("ok") >= before + 40,
            90,
            "progress under the asymmetric partition",
        )
        net.heal()
        wait_for(
            lambda: all(cluster.health(n) for n in cluster.replicas),
            60,
            "every replica serving again",
        )
        load.end()
        check_history(load.client, load.starts, load.results, WF, load.polled, load=load)
        check_replicas_agree(load.client)
    finally:
        load.close()


def test_packet_loss_between_replicas(net_cluster: Any) -> None:
    cluster, net = net_cluster
    load = Load(cluster.access())
    try:
        load.begin()
        wait_for(lambda: load.starts.count("ok") >= 20, 60, "load")
        net.lossy(0.1)
        before = load.starts.count("ok")
        wait_for(
            lambda: load.starts.count("ok") >= before + 40, 120, "progress with 10% packet loss"
        )
        net.heal()
        load.end()
        check_history(load.client, load.starts, load.results, WF, load.polled, load=load)
        check_replicas_agree(load.client)
    finally:
        load.close()
