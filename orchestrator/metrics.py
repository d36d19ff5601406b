"""Prometheus metrics of one replica (config `metrics_port`; docs/operations.md, "Metrics").

Three sources, none of them inside the core's apply:
- instruments observed where the work happens (commit latency, journal fsync, snapshots, RPCs):
  `Instruments` is the replication layer's Observer and the gRPC interceptor's sink;
- counters fed by the applied batches' Effects (a listener, after apply, on every replica):
  workflows started and ended, scripts asked for;
- gauges read at scrape time (`ReplicaCollector`): the Raft status, proposals in flight, and the
  state's derived indexes (queue depths, leased and running counts), whose size is the number
  of queues and workflow names, never the number of tasks or workflows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .api.rpc import Behaviour, wrap_handler
from .config import ConfigError
from .core.context import Effects
from .core.events import WorkflowEnded, WorkflowStarted
from .core.state import State
from .replication.node import Observer

PREFIX = "orchestrator"
ROLES = ("LEADER", "CANDIDATE", "FOLLOWER")
# Seconds: a commit is one fsync and one round trip to a majority (milliseconds on a LAN).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A long poll holds its call up to its timeout: the RPC buckets reach 30 s.
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SNAPSHOT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Instruments(Observer):
    """What is observed as it happens; every method is cheap (one histogram observation)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def hist(
            name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()
        ) -> Histogram:
            return Histogram(f"{PREFIX}_{name}", doc, labels, registry=registry, buckets=buckets)

        self.commit_latency = hist(
            "commit_latency_seconds",
            "From an entry handed to Raft to its outcome applied on the leader",
            LATENCY_BUCKETS,
        )
        self.fsync_latency = hist(
            "journal_fsync_seconds",
            "One journal sync: the write and its fdatasync",
            LATENCY_BUCKETS,
        )
        self.snapshot_duration = hist(
            "snapshot_duration_seconds",
            "A snapshot written, from the fork to its end",
            SNAPSHOT_BUCKETS,
        )
        self.snapshot_load = hist(
            "snapshot_load_seconds",
            "A snapshot loaded (start-up or sent by the leader)",
            SNAPSHOT_BUCKETS,
        )
        self.snapshot_failed = Counter(
            f"{PREFIX}_snapshot_failures", "Snapshots whose writing failed", registry=registry
        )
        self.snapshot_bytes = 0
        self.rpc_latency = hist(
            "rpc_duration_seconds",
            "gRPC calls handled, by method, until the last response",
            RPC_BUCKETS,
            ("method",),
        )
        self.rpc_handled = Counter(
            f"{PREFIX}_rpc_handled",
            "gRPC calls handled, by method and status code",
            ("method", "code"),
            registry=registry,
        )
        self.workflows_started = Counter(
            f"{PREFIX}_workflows_started",
            "Workflows started (applied on this replica)",
            registry=registry,
        )
        self.workflows_ended = Counter(
            f"{PREFIX}_workflows_ended",
            "Workflows that reached a terminal status (applied on this replica), by status",
            ("status",),
            registry=registry,
        )
        self.scripts_requested = Counter(
            f"{PREFIX}_scripts_requested",
            "Script and HTTP task evaluations the applied state asked for",
            registry=registry,
        )

    # ---- the replication layer's Observer

    def committed(self, seconds: float) -> None:
        self.commit_latency.observe(seconds)

    def synced(self, seconds: float) -> None:
        self.fsync_latency.observe(seconds)

    def snapshot_written(self, seconds: float, ok: bool, size: int) -> None:
        if ok:
            self.snapshot_duration.observe(seconds)
            self.snapshot_bytes = size
        else:
            self.snapshot_failed.inc()

    def snapshot_loaded(self, seconds: float, size: int) -> None:
        self.snapshot_load.observe(seconds)
        self.snapshot_bytes = size

    # ---- applied batches (the Raft tick thread, after apply: counting only)

    def on_applied(self, fx: Effects) -> None:
        for ev in fx.events:
            if type(ev) is WorkflowStarted:
                self.workflows_started.inc()
            elif type(ev) is WorkflowEnded:
                self.workflows_ended.labels(str(ev.status)).inc()
        if fx.scripts_ready:
            self.scripts_requested.inc(len(fx.scripts_ready))


class RpcMetrics(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Times every call and counts it by status code (the code the handler set or aborted
    with; UNKNOWN for an exception gRPC turns into one)."""

    def __init__(self, instruments: Instruments) -> None:
        self.instruments = instruments

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or not hasattr(handler, "_replace"):
            return handler
        method = details.method.rpartition("/")[2] or details.method
        latency = self.instruments.rpc_latency.labels(method)
        handled = self.instruments.rpc_handled

        def done(t0: float, context: grpc.ServicerContext, failed: bool) -> None:
            latency.observe(time.perf_counter() - t0)
            code = context.code()  # type: ignore[attr-defined]
            name = code.name if code is not None else ("UNKNOWN" if failed else "OK")
            handled.labels(method, name).inc()

        def guard(behaviour: Behaviour, streams: bool) -> Behaviour:
            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                t0, failed = time.perf_counter(), True
                try:
                    out = behaviour(request, context)
                    failed = False
                    return out
                finally:
                    done(t0, context, failed)

            def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                t0, failed = time.perf_counter(), True
                try:
                    yield from behaviour(request, context)
                    failed = False
                finally:
                    done(t0, context, failed)

            return streaming if streams else unary

        return wrap_handler(handler, guard)


def _queue_rows(
    st: State,
) -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]]]:
    """Under the replica's read lock: ready and leased tasks per queue, running workflows per
    name (derived indexes: one row per queue or name)."""
    ready = [(k, len(q)) for k, q in st.queues.items()]
    leased = list(st.leased.items())
    running = list(st.running.items())
    return ready, leased, running


class ReplicaCollector(Collector):
    """The gauges read at scrape time from the replica and the server's duties."""

    def __init__(self, server: Any, instruments: Instruments) -> None:
        self.server = server
        self.instruments = instruments

    def describe(self) -> list[Any]:
        return []  # not checked at registration: the gauges depend on the replica's state

    def collect(self) -> Iterable[Any]:
        replica = self.server.replica
        st = replica.status()
        yield _gauge("raft_term", "The Raft term this replica is in", st.term)
        role = GaugeMetricFamily(
            f"{PREFIX}_raft_role", "1 for this replica's role", labels=["role"]
        )
        for name in ROLES:
            role.add_metric([name.lower()], 1.0 if st.role == name else 0.0)
        yield role
        yield _gauge("raft_commit_index", "The highest log index known committed", st.commit_index)
        yield _gauge("raft_applied_index", "The highest log index applied here", st.last_applied)
        yield _gauge(
            "raft_log_entries", "Entries in the Raft log since the last snapshot", st.log_len
        )
        yield _gauge("raft_has_quorum", "1 when this replica hears from a majority", st.has_quorum)
        yield _gauge(
            "applied_sequence", "Applied state machine sequence number", st.applied_sequence
        )
        yield _gauge(
            "raft_leader_known", "1 when this replica knows a leader", st.leader is not None
        )
        yield _gauge(
            "proposals_in_flight",
            "Entries handed to Raft and not yet settled",
            getattr(replica, "_in_flight", 0),
        )
        yield _gauge(
            "proposals_queued",
            "Commands waiting for the next entry",
            len(getattr(replica, "_queue", ())),
        )
        yield _gauge(
            "snapshot_size_bytes",
            "Size of the last snapshot written or loaded",
            self._snapshot_bytes(replica),
        )
        yield _gauge("workflows_in_memory", "Workflows held in the replicated state", st.workflows)
        yield from self._state_gauges(replica)
        yield from self._duty_counters()

    def _snapshot_bytes(self, replica: Any) -> int:
        size = self.instruments.snapshot_bytes
        path = getattr(replica, "dump_path", "")
        if not size and path and os.path.exists(path):
            size = os.path.getsize(path)  # the one loaded at start-up, before metrics attached
        return size

    def _state_gauges(self, replica: Any) -> Iterator[Any]:
        ready, leased, running = replica.read(_queue_rows)
        for name, doc, rows, label in (
            (
                "queue_depth",
                "Tasks ready to be polled, per queue (task type[@domain])",
                ready,
                "queue",
            ),
            ("tasks_leased", "Worker tasks polled and in progress, per queue", leased, "queue"),
            ("workflows_running", "Running workflows, per workflow name", running, "workflow"),
        ):
            family = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=[label])
            for key, n in rows:
                family.add_metric([key], n)
            yield family

    def _duty_counters(self) -> Iterator[Any]:
        srv = self.server
        runs = CounterMetricFamily(
            f"{PREFIX}_script_runs",
            "Script and HTTP task evaluations run by this replica (leader)",
            labels=["kind", "result"],
        )
        for kind, ex in (("script", srv.scripts), ("http", srv.http)):
            runs.add_metric([kind, "evaluated"], ex.evaluations)
            runs.add_metric([kind, "committed"], ex.results_committed)
            runs.add_metric([kind, "rejected"], ex.results_rejected)
        yield runs
        bridge = CounterMetricFamily(
            f"{PREFIX}_bridge_messages",
            "Bridge counters (orchestrator/bridge), per bridge",
            labels=["bridge", "counter"],
        )
        for name, counters in srv.bridges.counters.items():
            for field, value in vars(counters).items():
                bridge.add_metric([name, field], value)
        yield bridge


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=float(value))


class MetricsEndpoint:
    """The HTTP endpoint (/metrics) of one replica and what feeds it."""

    def __init__(self, server: Any, port: int, host: str) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.instruments = Instruments(self.registry)
        self.registry.register(ReplicaCollector(server, self.instruments))
        self.interceptor = RpcMetrics(self.instruments)
        self.port, self.host = port, host
        self._http: Any = None
        replica = server.replica
        replica.subscribe(self.instruments.on_applied)
        if hasattr(replica, "observer"):
            replica.observer = self.instruments

    def start(self) -> None:
        try:
            self._http, _ = start_http_server(self.port, self.host, self.registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot bind the metrics port to {self.host}:{self.port}: {exc}"
            ) from None

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
