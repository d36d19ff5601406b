"""One replica process: Raft node, runtime duties and the gRPC server."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent import futures
from dataclasses import fields
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from orchestrator_client.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    definitions_pb2,
    definitions_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)

from . import logging as olog
from .api.servicers import (
    ClusterService,
    DefinitionService,
    NodeContext,
    Peer,
    TaskService,
    WorkflowService,
    serving_state,
)
from .config import ClusterConfig, ConfigError
from .replication.journal import JournalCorrupt
from .replication.node import RaftSettings, Replica
from .replication.snapshot import SnapshotError
from .runtime.dispatcher import Dispatcher
from .runtime.sandbox import default_sandbox
from .runtime.scripts import ScriptExecutor
from .runtime.timer import Timer

log = structlog.get_logger("server")

SERVICE_NAMES = (
    definitions_pb2.DESCRIPTOR.services_by_name["DefinitionService"].full_name,
    workflows_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
    tasks_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name,
    cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name,
)


def raft_settings(cfg: ClusterConfig, node_id: str, data_dir: str | None = None) -> RaftSettings:
    me = cfg.replica(node_id)
    known = {f.name for f in fields(RaftSettings)}
    overrides = {k: v for k, v in cfg.raft.items() if k in known}
    unknown = sorted(set(cfg.raft) - known)
    if unknown:
        raise ConfigError(f"raft: unknown settings {unknown}")
    return RaftSettings(
        self_addr=me.raft,
        peers=[r.raft for r in cfg.replicas if r.node_id != node_id],
        password=cfg.password,
        data_dir=data_dir or cfg.data_dir(node_id),
        **overrides,
    )


class ReplicaServer:
    def __init__(self, cfg: ClusterConfig, node_id: str, data_dir: str | None = None) -> None:
        self.cfg = cfg
        self.node_id = node_id
        me = cfg.replica(node_id)
        self.replica = Replica(raft_settings(cfg, node_id, data_dir))
        olog.set_role_provider(lambda: (self.replica.role(), self.replica.raft.raftCurrentTerm))
        self.dispatcher = Dispatcher(self.replica)
        self.timer = Timer(self.replica)
        self.scripts = ScriptExecutor(self.replica, default_sandbox())
        peers = [Peer(r.node_id, r.raft, r.grpc) for r in cfg.replicas]
        self.node = NodeContext(node_id, self.replica, self.dispatcher, peers)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=128, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", 4 * 1024 * 1024),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.http2.max_ping_strikes", 0),
                ("grpc.so_reuseport", 0),
            ],
        )
        definitions_pb2_grpc.add_DefinitionServiceServicer_to_server(
            DefinitionService(self.node), self.server
        )
        workflows_pb2_grpc.add_WorkflowServiceServicer_to_server(
            WorkflowService(self.node), self.server
        )
        tasks_pb2_grpc.add_TaskServiceServicer_to_server(TaskService(self.node), self.server)
        cluster_pb2_grpc.add_ClusterServiceServicer_to_server(
            ClusterService(self.node), self.server
        )
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        bound = self.server.add_insecure_port(me.grpc)
        if not bound:
            raise ConfigError(f"cannot bind gRPC to {me.grpc}")
        self.grpc_addr = me.grpc
        self._stop = threading.Event()
        self._health_thread = threading.Thread(target=self._health_loop, name="health", daemon=True)

    def start(self) -> None:
        self.server.start()
        self.timer.start()
        self.scripts.start()
        self._health_thread.start()
        log.info(
            "replica_started",
            grpc=self.grpc_addr,
            raft=self.replica.settings.self_addr,
            data_dir=self.replica.settings.data_dir,
        )

    def _health_loop(self) -> None:
        last: Any = None
        while not self._stop.is_set():
            try:
                serving, detail = serving_state(self.replica)
            except Exception as exc:
                serving, detail = False, repr(exc)
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if serving
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in ("", *SERVICE_NAMES):
                self.health.set(name, status)
            if status != last:
                log.info("health_changed", serving=serving, detail=detail)
                last = status
            self._stop.wait(0.25)

    def stop(self, grace_s: float = 2.0) -> None:
        self._stop.set()
        self.health.enter_graceful_shutdown()
        if self.replica.raft._isLeader():
            # Step aside first so clients fail over in milliseconds, not an election timeout.
            self.replica.request_step_down()
            deadline = time.monotonic() + 3.0
            while self.replica.raft._isLeader() and time.monotonic() < deadline:
                time.sleep(0.02)
            log.info("stepped_down", leader=self.replica.leader_addr())
        self.timer.stop()
        self.scripts.stop()
        self.server.stop(grace_s).wait(grace_s + 1)
        self.node.close()
        self.replica.stop()
        log.info("replica_stopped")


def _start_wall_clock_faker(path: str) -> None:
    """Test-only: shift this process's wall clock (time.time) by the ms in `path`, like a jump.

    Used by the clock-jump fault test to show that no timer depends on the wall clock.
    """
    real_time = time.time
    offset = {"ms": 0}

    def fake_time() -> float:
        return real_time() + offset["ms"] / 1000.0

    time.time = fake_time

    def watch() -> None:
        while True:
            try:
                with open(path) as f:
                    ms = int(f.read().strip() or 0)
            except (OSError, ValueError):
                ms = 0
            if ms != offset["ms"]:
                offset["ms"] = ms
                log.warning("wall_clock_offset", offset_ms=ms)
            time.sleep(0.1)

    threading.Thread(target=watch, name="wall-clock-faker", daemon=True).start()


FRESH_DATA_HELP = (
    "the data folder {path} holds no Raft state. A replica that lost its disk must not rejoin as "
    "the same voter (it could elect a leader that lacks committed entries): remove it "
    "(`orchestrator members remove {node}`), add it back (`orchestrator members add ...`), then "
    "start it with --join. Start the replicas of a brand-new cluster with --bootstrap."
)


def has_raft_state(data_dir: str) -> bool:
    return any(os.path.exists(os.path.join(data_dir, f)) for f in ("raft.journal", "raft.dump"))


def serve(
    cfg: ClusterConfig,
    node_id: str,
    data_dir: str | None = None,
    log_level: str = "INFO",
    bootstrap: bool = False,
    join: bool = False,
) -> int:
    olog.configure(node_id, log_level)
    path = data_dir or cfg.data_dir(node_id)
    if not has_raft_state(path) and not (bootstrap or join):
        message = FRESH_DATA_HELP.format(path=path, node=node_id)
        log.error("refusing_to_start", reason=message)
        print(f"orchestrator serve: refusing to start: {message}", file=sys.stderr)
        return 4
    if os.environ.get("ORCHESTRATOR_TEST_WALL_OFFSET_FILE"):
        _start_wall_clock_faker(os.environ["ORCHESTRATOR_TEST_WALL_OFFSET_FILE"])
    try:
        # On the main thread: pysyncobj's tick thread exits with the thread that built it.
        srv = ReplicaServer(cfg, node_id, data_dir)
    except (JournalCorrupt, SnapshotError) as exc:
        log.error("refusing_to_start", reason=str(exc))
        print(f"orchestrator serve: refusing to start: {exc}", file=sys.stderr)
        return 3
    srv.start()
    done = threading.Event()

    def on_signal(signum: int, _: Any) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not done.wait(1.0):
        pass
    srv.stop()
    return 0
