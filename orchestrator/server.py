"""One replica process: Raft node, runtime duties and the gRPC server."""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from orchestrator_client.v1 import (
    cluster_pb2_grpc,
    definitions_pb2_grpc,
    events_pb2_grpc,
    history_sync_pb2_grpc,
    tasks_pb2_grpc,
    workflows_pb2_grpc,
)

from . import logging as olog
from . import web
from .api.admission import Admission, pool_workers
from .api.auth import AUTHORIZATION_KEY, Authenticator, AuthInterceptor
from .api.cluster import ClusterService
from .api.context import AfterCommit, NodeContext
from .api.definitions import DefinitionService
from .api.events import EventService
from .api.health import serving_state
from .api.rpc import SERVICES, DecodeGuard
from .api.streams import SubscriptionService
from .api.tasks import TaskService
from .api.workflows import WorkflowService
from .bridge.runner import BridgeRunner
from .config import ClusterConfig, ConfigError
from .history import History
from .history.sync import HistorySyncServicer
from .metrics import MetricsEndpoint
from .replication.api import Member, Replica
from .replication.journal import JournalCorrupt
from .replication.node import RaftReplica
from .replication.settings import from_config as raft_settings
from .replication.settings import has_raft_state
from .replication.snapshot import SnapshotError
from .runtime.dispatcher import Dispatcher
from .runtime.http import HttpExecutor
from .runtime.sandbox import default_sandbox
from .runtime.scripts import ScriptExecutor
from .runtime.timer import Timer
from .security import tls as tlsmod
from .security.tokens import TOKENS_ENV, TOKENS_FILE_ENV, TokenStore, forward_token

log = structlog.get_logger("server")

SERVICE_NAMES = tuple(s.full_name for s in SERVICES)
# The test-only hooks (orchestrator/testing.py), each switched on by naming its file.
FAILPOINTS_ENV = "ORCHESTRATOR_FAILPOINTS_FILE"
WALL_OFFSET_ENV = "ORCHESTRATOR_TEST_WALL_OFFSET_FILE"


def _after_commit_hook() -> AfterCommit | None:
    """The fault tests' failpoints when switched on; production never imports them."""
    path = os.environ.get(FAILPOINTS_ENV, "")
    if not path:
        return None
    from .testing import Failpoints

    return Failpoints(path).after_commit


class Security:
    """What guards this replica's gRPC port: TLS (server and towards peers) and who may call
    what. `insecure` (the --insecure flag) turns both off, whatever the config says."""

    def __init__(self, cfg: ClusterConfig, node_id: str, insecure: bool) -> None:
        self.insecure = insecure
        self.forward_token = forward_token(cfg.password)
        self.server_credentials: grpc.ServerCredentials | None = None
        self.peer_credentials: grpc.ChannelCredentials | None = None
        self.authenticator: Authenticator | None = None
        self.mutual = False
        if insecure:
            return
        if cfg.tls is None:
            raise ConfigError(
                f"{cfg.path}: no 'tls' settings (cert, key, ca): a replica serves gRPC over TLS "
                "unless started with --insecure"
            )
        tokens = TokenStore.from_env(cfg.auth.tokens_file)
        if not tokens.path and not tokens.configured:
            raise ConfigError(
                f"{cfg.path}: no tokens: set auth.tokens_file (or {TOKENS_FILE_ENV} or "
                f"{TOKENS_ENV}); a replica authenticates its callers unless started with "
                "--insecure"
            )
        self.server_credentials = tlsmod.server_credentials(cfg.tls, node_id)
        self.peer_credentials = tlsmod.peer_credentials(cfg.tls, node_id)
        self.authenticator = Authenticator(tokens, self.forward_token)
        self.mutual = cfg.tls.require_client_cert

    def interceptors(self) -> list[grpc.ServerInterceptor[Any, Any]]:
        """The authentication interceptors, in call order (after admission control: a call
        refused for load should cost no authentication)."""
        out: list[grpc.ServerInterceptor[Any, Any]] = []
        if self.authenticator is not None:
            out.append(AuthInterceptor(self.authenticator))
        return out

    def log_mode(self) -> None:
        if self.insecure:
            log.warning(
                "insecure_mode",
                detail="--insecure: gRPC is plaintext and unauthenticated; anyone who reaches "
                "the port can read and change everything (configured tls/auth ignored)",
            )
        else:
            assert self.authenticator is not None
            log.info(
                "security",
                tls="mutual" if self.mutual else "server",
                tokens_file=self.authenticator.tokens.path,
            )


class ReplicaServer:
    def __init__(
        self,
        cfg: ClusterConfig,
        node_id: str,
        data_dir: str | None = None,
        replica: Replica | None = None,
        insecure: bool = False,
    ) -> None:
        """One replica: over Raft with the configured peers, or on `replica` (tests' fake).
        Its gRPC port uses the configured TLS and tokens, or neither when `insecure`."""
        self.cfg = cfg
        self.node_id = node_id
        me = cfg.replica(node_id)
        self.data_dir = data_dir or cfg.data_dir(node_id)
        # Before the Raft node starts: a configuration error must leave nothing running.
        self.security = Security(cfg, node_id, insecure)
        settings = raft_settings(cfg, node_id, data_dir)
        if cfg.bind_host and settings.bind_addr is None:
            settings.bind_addr = bind_address(cfg, me.raft)
        # Attached before the Raft node loads a snapshot or applies an entry: the history must
        # see every batch (an archived workflow exists nowhere else once it left memory).
        self.history = History(self.data_dir, fsync=settings.fsync)
        if replica is None:
            members = [Member(r.node_id, r.raft, r.grpc) for r in cfg.replicas]
            replica = RaftReplica(settings, members, before_start=self.history.attach)
        else:
            self.history.attach(replica)
        self.replica = replica
        olog.set_role_provider(lambda: (self.replica.role(), self.replica.term()))
        self.dispatcher = Dispatcher(self.replica)
        self.timer = Timer(self.replica)
        self.scripts = ScriptExecutor(self.replica, default_sandbox())
        self.http = HttpExecutor(self.replica, cfg.http_allow, ca_file=cfg.http_ca_file)
        self.bridges = BridgeRunner(self.replica, cfg.bridges)
        self.node = NodeContext(
            node_id,
            self.replica,
            self.dispatcher,
            _after_commit_hook(),
            self.security.peer_credentials,
            self.security.forward_token,
            self.history,
        )
        self.admission = Admission(cfg.admission)
        metrics_port = cfg.metrics_port_of(node_id)
        self.metrics = (
            MetricsEndpoint(self, metrics_port, bind_address(cfg, me.grpc).rpartition(":")[0])
            if metrics_port
            else None
        )
        # Timed from the first interceptor: a call refused for load counts too.
        timing = [] if self.metrics is None else [self.metrics.interceptor]
        self.server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=pool_workers(cfg.admission), thread_name_prefix="grpc"
            ),
            # Admission first (a call refused for load costs nothing more), the decode guard last.
            interceptors=[*timing, self.admission, *self.security.interceptors(), DecodeGuard()],
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
            ClusterService(self.node, cfg.health), self.server
        )
        events_pb2_grpc.add_EventServiceServicer_to_server(EventService(self.node), self.server)
        self.streams = SubscriptionService(self.node)
        events_pb2_grpc.add_SubscriptionServiceServicer_to_server(self.streams, self.server)
        # Replica to replica only (security/permissions.INTERNAL): a copy of this history.
        history_sync_pb2_grpc.add_HistorySyncServiceServicer_to_server(
            HistorySyncServicer(self.history), self.server
        )
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        creds = self.security.server_credentials
        listen = bind_address(cfg, me.grpc)
        bound = (
            self.server.add_insecure_port(listen)
            if creds is None
            else self.server.add_secure_port(listen, creds)
        )
        if not bound:
            raise ConfigError(f"cannot bind gRPC to {listen}")
        self.health_server = health_port_server(cfg, me.grpc, self.health)
        # A client of this replica's own gRPC port, never of the Raft node (orchestrator/web/).
        self.web = web.for_replica(cfg, node_id, self.security)
        self.grpc_addr = me.grpc
        self._stop = threading.Event()
        self._health_thread = threading.Thread(target=self._health_loop, name="health", daemon=True)

    def start(self) -> None:
        self.security.log_mode()
        self.server.start()
        # Copies a peer's history whenever this one misses what a loaded snapshot covers.
        self.history.start_sync(
            self._peer_addresses,
            self.node.channel,
            ((AUTHORIZATION_KEY, f"Bearer {self.security.forward_token}"),),
        )
        self.timer.start()
        self.scripts.start()
        self.http.start()
        self.bridges.start()
        self._health_thread.start()
        if self.health_server is not None:
            self.health_server.start()
        if self.metrics is not None:
            self.metrics.start()
        if self.web is not None:
            self.web.start()
        log.info(
            "replica_started",
            grpc=self.grpc_addr,
            raft=self.replica.address,
            data_dir=self.data_dir,
        )

    def _peer_addresses(self) -> list[str]:
        return [m.grpc for m in self.replica.members() if m.node_id != self.node_id and m.grpc]

    def _health_loop(self) -> None:
        last: Any = None
        while not self._stop.is_set():
            try:
                serving, detail = serving_state(self.replica, self.cfg.health)
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
        if self.replica.is_leader():
            # Step aside first so clients fail over in milliseconds, not an election timeout.
            self.replica.request_step_down()
            deadline = time.monotonic() + 3.0
            while self.replica.is_leader() and time.monotonic() < deadline:
                time.sleep(0.02)
            log.info("stepped_down", leader=self.replica.leader_addr())
        self.timer.stop()
        self.scripts.stop()
        self.http.stop()
        self.bridges.stop()
        if self.web is not None:
            self.web.stop()  # before the gRPC port it calls
        self.streams.close()  # open streams end now, not after the grace period
        self.server.stop(grace_s).wait(grace_s + 1)
        if self.health_server is not None:
            self.health_server.stop(0).wait(1)
        if self.metrics is not None:
            self.metrics.stop()
        self.node.close()
        self.replica.stop()
        self.history.stop()  # after the last apply: what was handed over is written
        log.info("replica_stopped")


def bind_address(cfg: ClusterConfig, advertised: str) -> str:
    """Where to listen for `advertised` (host:port): the configured bind_host, if any, on its
    port (a pod cannot bind its own DNS name before that name resolves)."""
    host, _, port = advertised.rpartition(":")
    return f"{cfg.bind_host or host}:{port}"


def health_port_server(
    cfg: ClusterConfig, advertised: str, servicer: health.HealthServicer
) -> grpc.Server | None:
    """The plaintext health-only port (config health_port), or None: Kubernetes' gRPC probes
    speak neither TLS nor tokens, and the answer (serving or not) discloses nothing."""
    if not cfg.health_port:
        return None
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="health"))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, srv)
    listen = bind_address(cfg, f"{advertised.rpartition(':')[0]}:{cfg.health_port}")
    if not srv.add_insecure_port(listen):
        raise ConfigError(f"cannot bind the health port to {listen}")
    return srv


FRESH_DATA_HELP = (
    "the data folder {path} holds no Raft state. A replica that lost its disk must not rejoin as "
    "the same voter (it could elect a leader that lacks committed entries): remove it "
    "(`orchestrator members remove {node}`), add it back (`orchestrator members add ...`), then "
    "start it with --join. Start the replicas of a brand-new cluster with --bootstrap."
)


# The collector's policy (docs/performance.md, stop 13, "Collector policy"). Objects still alive
# after a full collection are frozen, so the next full collection walks only what became
# long-lived since: 100 000 parked workflows made each full pass over the whole heap a 0.4-1.5 s
# stop of every thread, the Raft tick thread included (the election timeout is 0.3-0.6 s).
# A reference cycle among frozen objects is never freed, so the whole heap is walked again
# (one long pause) once the frozen count has grown RESCAN_GROWTH times since the last such walk,
# and at most once per RESCAN_MIN_S: the kept cycles stay below the live heap plus what one
# interval leaks, and a growing heap costs a logarithmic number of long pauses. The leader waits
# for RESCAN_GROWTH squared: its pause stops the heartbeats of the whole cluster, a follower's
# only its own (and raft_fixes.StallGrace keeps that from starting an election).
RESCAN_GROWTH = 2
RESCAN_MIN_S = 3600.0


class FreezeAfterFull:
    """A gc.callbacks hook: freeze after every full collection, thaw everything rarely."""

    def __init__(
        self,
        collector: Any = gc,
        clock: Callable[[], float] = time.monotonic,
        leading: Callable[[], bool] = lambda: False,
    ) -> None:
        self.gc, self.clock, self.leading = collector, clock, leading
        self.base = max(1, collector.get_freeze_count())
        self.rescanned_at = clock()
        self.rescans = 0
        self._thawed = False

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        frozen = self.gc.get_freeze_count()
        due = self.clock() - self.rescanned_at >= RESCAN_MIN_S
        growth = RESCAN_GROWTH**2 if self.leading() else RESCAN_GROWTH
        if not self._thawed and due and frozen > growth * self.base:
            # Everything goes back to the oldest generation; the next full collection (soon:
            # it is due after a quarter of the last one's survivors) walks it all.
            self.gc.unfreeze()
            self._thawed = True
            return
        self.gc.freeze()
        if self._thawed:
            self._thawed = False
            self.base = max(1, self.gc.get_freeze_count())
            self.rescanned_at = self.clock()
            self.rescans += 1


def tune_gc(leading: Callable[[], bool] = lambda: False) -> FreezeAfterFull:
    """Freeze what start-up built (modules, the loaded state), then after every full collection.

    The thresholds stay Python's defaults: collecting young objects every 20,000 allocations
    instead of 700 gained ~3 % at concurrency 64 but cost ~0.6 ms of p50 at concurrency 1
    (interleaved A/B, docs/performance.md, stop 11).
    """
    gc.freeze()
    policy = FreezeAfterFull(leading=leading)
    gc.callbacks.append(policy)
    return policy


def serve(
    cfg: ClusterConfig,
    node_id: str,
    data_dir: str | None = None,
    log_level: str = "INFO",
    bootstrap: bool = False,
    join: bool = False,
    insecure: bool = False,
) -> int:
    olog.configure(node_id, log_level)
    path = data_dir or cfg.data_dir(node_id)
    if not has_raft_state(path) and not (bootstrap or join):
        message = FRESH_DATA_HELP.format(path=path, node=node_id)
        log.error("refusing_to_start", reason=message)
        print(f"orchestrator serve: refusing to start: {message}", file=sys.stderr)
        return 4
    if os.environ.get(WALL_OFFSET_ENV):
        from .testing import start_wall_clock_faker

        start_wall_clock_faker(os.environ[WALL_OFFSET_ENV])
    try:
        # On the main thread: the Raft tick thread exits with the thread that built it.
        srv = ReplicaServer(cfg, node_id, data_dir, insecure=insecure)
    except (JournalCorrupt, SnapshotError) as exc:
        log.error("refusing_to_start", reason=str(exc))
        print(f"orchestrator serve: refusing to start: {exc}", file=sys.stderr)
        return 3
    srv.start()
    tune_gc(srv.replica.is_leader)
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
