"""Support for cluster tests: real replica processes on loopback, and a recorded history."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import grpc

from orchestrator.tools.access import add_token, token_path
from orchestrator.tools.localcluster import LocalCluster, write_config
from orchestrator.tools.verify import History, wait_for

__all__ = [
    "TEST_RAFT",
    "History",
    "api_stubs",
    "auth_metadata",
    "channel_credentials",
    "kill_leader",
    "make_cluster",
    "read_log",
    "rejoin",
    "single_replica",
    "start_node",
    "wait_for",
]

# Raft settings for tests: small compaction threshold so snapshots really happen.
TEST_RAFT = {
    "log_compaction_min_entries": 200,
    "log_compaction_min_time_s": 30.0,
}


def make_cluster(
    tmp_path: Any,
    n: int = 3,
    raft: dict[str, Any] | None = None,
    failpoints: bool = False,
    insecure: bool = False,
) -> LocalCluster:
    """n replicas on loopback, with TLS and tokens unless `insecure`; `cluster.client()`,
    `cluster.channel(addr)` and `cluster.access()` reach them as the admin (or as a role)."""
    cfg = write_config(
        str(tmp_path / "cluster.json"),
        n=n,
        raft=dict(TEST_RAFT, **(raft or {})),
        secure=not insecure,
    )
    env = {"ORCHESTRATOR_LOG_LEVEL": "INFO"}
    cluster = LocalCluster(cfg, env=env, insecure=insecure)
    if failpoints:
        # Each replica reads its own file; the test arms the one that leads.
        cluster.failpoint_files = {
            nid: str(tmp_path / f"failpoints-{nid}") for nid in cluster.replicas
        }  # type: ignore[attr-defined]
    return cluster


def channel_credentials(cluster: LocalCluster) -> grpc.ChannelCredentials | None:
    """TLS credentials trusting the cluster's CA (None for an insecure cluster)."""
    return cluster.access().credentials()


def auth_metadata(cluster: LocalCluster, role: str, name: str = "") -> tuple[tuple[str, str], ...]:
    """Call metadata authenticating as `name` (default: the role's own identity) with `role`;
    a new name gets a token of its own, which the replicas read on their next call. Empty for
    an insecure cluster."""
    name = name or role
    if cluster.insecure or cluster.cfg.tls is None:
        return ()
    if not os.path.exists(token_path(cluster.cfg, name)):
        add_token(cluster.cfg, name, role)
    return cluster.access(name).metadata()


def start_node(cluster: LocalCluster, nid: str) -> None:
    files = getattr(cluster, "failpoint_files", None)
    cluster.start(nid, {"ORCHESTRATOR_FAILPOINTS_FILE": files[nid]} if files else None)


def kill_leader(cluster: LocalCluster) -> str:
    """SIGKILL the current leader by its PID; its node id."""
    leader = wait_for(cluster.leader, 30, "a leader")
    proc = cluster.replicas[leader].proc
    assert proc is not None
    cluster.kill(leader)
    assert proc.returncode == -signal.SIGKILL
    return str(leader)


def rejoin(cluster: LocalCluster, killed: str) -> None:
    """Wait until another replica leads, then start the killed one again."""
    new_leader = wait_for(cluster.leader, 30, "a new leader")
    assert new_leader != killed
    cluster.start(killed)


def read_log(cluster: LocalCluster, nid: str) -> str:
    path = cluster.replicas[nid].log_path
    return open(path, errors="replace").read() if os.path.exists(path) else ""


@contextmanager
def single_replica(
    tmp: Any,
    n: int = 1,
    replica: Callable[[Any], Any] | None = None,
    secure: bool = False,
    tls: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """Replica n1 of an n-replica configuration as a server in this process, leading (a
    one-replica Raft node leads at once), stopped on exit. `replica(cfg)` builds its replica
    instead of a Raft node (tests/fakes.py). Plaintext and unauthenticated (the API's tests)
    unless `secure`: then TLS and a token per role as a local cluster has them (`srv.access`),
    `tls` overriding TLS settings (e.g. require_client_cert)."""
    from orchestrator.config import load
    from orchestrator.server import ReplicaServer
    from orchestrator.tools.access import local_access, prepare

    path = write_config(str(tmp / "cluster.json"), n=n, secure=secure)
    if tls:
        raw = json.loads(open(path).read())
        raw["tls"].update(tls)
        open(path, "w").write(json.dumps(raw))
    cfg = load(path)
    if secure:
        prepare(cfg)
    srv = ReplicaServer(cfg, "n1", replica=replica(cfg) if replica else None, insecure=not secure)
    srv.access = local_access(cfg)
    srv.start()
    try:
        wait_for(srv.replica.leader_ready, 30, "the replica to lead")
        yield srv
    finally:
        srv.stop(grace_s=0.5)


def api_stubs(channel: Any) -> SimpleNamespace:
    """The API's stubs on one channel: .defs, .wfs and .tasks."""
    from orchestrator_client.v1 import definitions_pb2_grpc, tasks_pb2_grpc, workflows_pb2_grpc

    return SimpleNamespace(
        defs=definitions_pb2_grpc.DefinitionServiceStub(channel),
        wfs=workflows_pb2_grpc.WorkflowServiceStub(channel),
        tasks=tasks_pb2_grpc.TaskServiceStub(channel),
    )
