"""The bad-input suite's one cluster, and the checks every bad-input test ends with.

Each test starts a control workflow before it sends its bad input and, once the bad input is
answered, asserts three things (`BadInputCluster.survives`): every replica still serves (health
and its own status), the control workflow completes (its task is polled and completed through
the cluster like any worker would), and the replicas agree (same applied sequence, same rolling
hash of applied entries: `orchestrator.tools.verify.check_replicas_agree`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from orchestrator_client import OrchestratorClient
from orchestrator_client.errors import OrchestratorError

from orchestrator.replication.settings import DUMP_FILE
from orchestrator.tools.localcluster import LocalCluster
from orchestrator.tools.verify import check_replicas_agree
from tests import cluster_support
from tests.cluster_support import make_cluster, start_node, wait_for

# Snapshots every few seconds while entries flow (pysyncobj compacts when the log is longer than
# the minimum entries OR the minimum time has passed), so a test can watch one happen after its
# bad input instead of waiting for the default 30 s.
RAFT = {"log_compaction_min_time_s": 4.0}

CONTROL_TASK = "bi_control"
CONTROL_WF = "bi_control"
QUICK_WF = "bi_quick"  # ends at once: one cheap log entry per start
TASK_DEFS = [
    {"name": CONTROL_TASK, "retryCount": 0, "responseTimeoutSeconds": 120},
    {"name": "bi_gate", "retryCount": 0, "responseTimeoutSeconds": 120},
    {"name": "bi_idle", "retryCount": 0, "responseTimeoutSeconds": 120},
    {"name": "bi_leased", "retryCount": 0, "responseTimeoutSeconds": 120},
]
WORKFLOW_DEFS = [
    {
        "name": CONTROL_WF,
        "version": 1,
        "tasks": [{"name": CONTROL_TASK, "taskReferenceName": "control"}],
    },
    {
        "name": QUICK_WF,
        "version": 1,
        "tasks": [{"name": "noop", "taskReferenceName": "noop", "type": "NOOP"}],
    },
]


def code_of(fn: Callable[[], Any]) -> grpc.StatusCode:
    """The status code a call ends with (OK when it returns), from the client or a raw stub."""
    try:
        fn()
    except OrchestratorError as exc:
        return exc.code
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def details_of(fn: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a raw stub call that is expected to fail."""
    try:
        fn()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""  # type: ignore[no-any-return]
    return grpc.StatusCode.OK, ""


def strict_json(text: str) -> Any:
    """JSON as every other language reads it: NaN and Infinity are not JSON."""

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text or "null", parse_constant=refuse)


@dataclass
class BadInputCluster:
    cluster: LocalCluster
    client: OrchestratorClient  # the administrator's
    worker: OrchestratorClient  # a worker's (polls and completes the control tasks)

    # ------------------------------------------------------------------ credentials and channels

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials for raw channels when the test cluster runs with TLS."""
        fn = getattr(cluster_support, "channel_credentials", None)
        return fn(self.cluster) if fn is not None else None

    def metadata(self, role: str = "admin") -> tuple[tuple[str, str], ...]:
        """Call metadata authenticating with the test cluster's `role` token; empty when the
        test cluster has no tokens."""
        fn = getattr(cluster_support, "auth_metadata", None)
        return tuple(fn(self.cluster, role)) if fn is not None else ()

    @property
    def tokens_on(self) -> bool:
        return bool(self.metadata("worker"))

    def channel(self, nid: str, options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
        """A raw channel to one replica (each its own connection)."""
        opts = [("grpc.use_local_subchannel_pool", 1), *(options or [])]
        addr = self.cluster.replicas[nid].grpc
        creds = self.credentials()
        if creds is None:
            return grpc.insecure_channel(addr, options=opts)
        return grpc.secure_channel(addr, creds, options=opts)

    def new_client(self, role: str = "admin", **kw: Any) -> OrchestratorClient:
        return OrchestratorClient(
            self.cluster.addresses,
            credentials=self.credentials(),
            metadata=self.metadata(role) or None,
            **kw,
        )

    # ------------------------------------------------------------------ views of the cluster

    def rows(self) -> dict[str, dict[str, Any]]:
        """Cluster status by node id."""
        return {r["node_id"]: r for r in self.client.cluster_status()}

    def leader(self) -> str:
        return str(wait_for(self.cluster.leader, 30, "a leader"))

    def terms(self) -> dict[str, int]:
        return {nid: int(r["term"]) for nid, r in self.rows().items()}

    def snapshot_times(self) -> dict[str, int]:
        """When each replica last wrote its snapshot (ns; 0 for none yet)."""
        out = {}
        for nid in self.cluster.replicas:
            path = os.path.join(self.cluster.cfg.data_dir(nid), DUMP_FILE)
            out[nid] = os.stat(path).st_mtime_ns if os.path.exists(path) else 0
        return out

    def wait_for_snapshots_after(self, t_ns: int, timeout_s: float = 60) -> None:
        """Every replica writes a snapshot after `t_ns`; entries keep flowing meanwhile (a
        replica snapshots only when something new was applied)."""

        def all_newer() -> bool:
            self.client.start_workflow(QUICK_WF, {})
            return all(t > t_ns for t in self.snapshot_times().values())

        wait_for(
            all_newer,
            timeout_s,
            lambda: f"snapshots after the bad input: {self.snapshot_times()}",
            0.5,
        )

    # ------------------------------------------------------------------ the three checks

    def start_control(self) -> str:
        return str(self.client.start_workflow(CONTROL_WF, {"started": time.time()}))

    def finish_control(self, control_id: str, timeout_s: float = 60) -> None:
        """Poll and complete control tasks (earlier tests' leftovers too) until this one's
        workflow is COMPLETED."""

        def done() -> bool:
            for task in self.worker.poll_tasks(
                CONTROL_TASK, worker_id="bi-control", count=10, timeout_ms=500
            ):
                self.worker.complete_task(task.task_id, {"ok": True}, worker_id="bi-control")
            return self.client.get_workflow(control_id).status == "COMPLETED"

        wait_for(done, timeout_s, f"the control workflow {control_id} to complete")

    def assert_every_replica_serves(self, timeout_s: float = 30) -> None:
        for nid, rp in self.cluster.replicas.items():
            wait_for(lambda nid=nid: self.cluster.health(nid), timeout_s, f"{nid} to be healthy")
            status = self.client.replica_status(rp.grpc, timeout_s=5)
            assert status["node_id"] == nid and status["serving"], status

    def assert_sound(self, control_id: str) -> None:
        self.assert_every_replica_serves()
        self.finish_control(control_id)
        check_replicas_agree(self.client)

    @contextmanager
    def survives(self) -> Iterator[str]:
        """Start a control workflow, run the bad input (the with-block), then the three checks.
        Yields the control workflow's id."""
        control_id = self.start_control()
        yield control_id
        self.assert_sound(control_id)

    def close(self) -> None:
        self.client.close()
        self.worker.close()


def start_bad_input_cluster(tmp: Any) -> BadInputCluster:
    cluster = make_cluster(tmp, raft=RAFT)
    try:
        for nid in cluster.replicas:
            start_node(cluster, nid)
        cluster.wait_healthy(timeout_s=60)
        bi = BadInputCluster(cluster, None, None)  # type: ignore[arg-type]
        bi.client = bi.new_client("admin", timeout_s=5.0, retry_budget_s=30.0)
        bi.worker = bi.new_client("worker", timeout_s=5.0, retry_budget_s=30.0)
        bi.client.register_task_defs(TASK_DEFS)
        for wf in WORKFLOW_DEFS:
            bi.client.register_workflow_def(wf)
        return bi
    except BaseException:
        cluster.kill_all()
        raise
