"""One benchmark run, step by step: cluster, definitions, workers, warm-up, measured phase,
report, then the baseline. Whatever happens, what the run started is stopped (by pid)."""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field, fields, replace
from typing import Any, cast

from ..access import Access
from .baseline import run_baseline
from .capacity import CapacityRun
from .loop import Tracker, new_outcome, run_closed_loop
from .measure import applied, leader_of, measure
from .report import not_completed_status, summarise
from .stats import RpcRecorder, code_name
from .workers import WorkerPool
from .workload import task_def, workflow_def, workload_command_bytes


@dataclass
class _Started:
    """What a run has started, in the order `close` stops it."""

    keep_dir: bool
    pool: WorkerPool | None = None
    clients: list[Any] = field(default_factory=list)
    cluster: Any = None  # a LocalCluster the bench started, or None for a given cluster
    tmp: str | None = None
    pids: dict[str, int | None] = field(default_factory=dict)
    extra: list[Any] = field(default_factory=list)  # replicas added by --recovery

    def _stop_clusters(self) -> None:
        for cluster in [*self.extra, self.cluster]:
            if cluster is None:
                continue
            # Stops each replica by its own pid (SIGTERM, then SIGKILL after 10 s).
            cluster.stop_all()
            for nid in cluster.replicas:
                cluster.kill(nid)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        for c in self.clients:
            with contextlib.suppress(Exception):
                c.close()
        self._stop_clusters()
        if self.tmp is not None:
            if self.keep_dir:
                print(f"bench: kept {self.tmp}", file=sys.stderr)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)


def run_bench(opts: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark described by the parsed options; returns the report."""
    payload = "x" * max(0, opts.payload_bytes)
    raft: dict[str, Any] = dict(opts.raft_setting or {})
    report = _new_report(opts, raft)
    started = _Started(keep_dir=opts.keep_dir)
    try:
        if not _run_workload(opts, raft, payload, report, started):
            return report
    finally:
        started.close()
    if opts.baseline:
        _add_baseline(opts, raft, payload, report)
    return report


def _new_report(opts: argparse.Namespace, raft: dict[str, Any]) -> dict[str, Any]:
    """The report's configuration; sets the journal's fsync in `raft` as --fsync asks."""
    from orchestrator.replication.settings import RaftSettings

    kind, n = opts.shape
    notes: list[str] = []
    report: dict[str, Any] = {
        "config": {
            "workflows": opts.workflows,
            "warmup_workflows": opts.warmup,
            "concurrency": opts.concurrency,
            "shape": f"{kind}:{n}",
            "payload_bytes": opts.payload_bytes,
            "task_limit": opts.task_limit,
            "rate_limit": "{}/{}s".format(*opts.rate_limit) if opts.rate_limit else None,
            "worker_processes": opts.worker_processes,
            "worker_concurrency": opts.worker_concurrency,
            "fsync": opts.fsync,
            "raft": raft,
            "cluster": "given" if opts.target_addresses else "local (3 replicas, started by bench)",
            "cpu_count": os.cpu_count(),
            "duration_s": opts.duration,
            "park": opts.park,
            "park_kind": opts.park_kind,
            "recovery": opts.recovery,
        },
        "notes": notes,
    }
    if "fsync" in {f.name for f in fields(RaftSettings)}:
        raft["fsync"] = opts.fsync == "on"
    else:
        msg = (
            f"fsync is not configurable yet (RaftSettings has no 'fsync' field); --fsync "
            f"{opts.fsync} has no effect and the Raft library's own journal never fsyncs"
        )
        print(f"bench: {msg}", file=sys.stderr)
        notes.append(msg)
        report["config"]["fsync"] = "not configurable (journal not fsynced)"
    return report


def _run_workload(
    opts: argparse.Namespace,
    raft: dict[str, Any],
    payload: str,
    report: dict[str, Any],
    started: _Started,
) -> bool:
    """Everything up to the measured fields of the report; False if the cluster refused."""
    kind, n = opts.shape
    access = _cluster_access(opts, raft, report["notes"], started)
    if opts.route == "leader":
        access = _leader_first(access)
    addresses = access.addresses
    report["config"]["addresses"] = addresses
    report["config"]["route"] = opts.route

    rec = RpcRecorder()
    client = access.client(timeout_s=10.0, retry_budget_s=30.0, recorder=rec)
    started.clients.append(client)
    monitor = access.client(timeout_s=2.0, retry_budget_s=2.0)
    started.clients.append(monitor)
    name = _register(client, kind, n, report, task_def(opts.task_limit, opts.rate_limit))
    if name is None:
        return False

    tracker = Tracker(n)
    pool = started.pool = WorkerPool(mp.get_context("spawn"), tracker)
    pool.start(opts.worker_processes, access, opts.worker_concurrency, opts.poll_timeout_ms)
    pool.wait_ready()
    if opts.warmup > 0:
        warmup_concurrency = min(opts.concurrency, opts.warmup)
        run_closed_loop(
            client,
            tracker,
            name,
            payload,
            opts.warmup,
            warmup_concurrency,
            opts.workflow_timeout,
            new_outcome(),
        )
    cap = CapacityRun(opts, report, started.cluster, monitor)

    def measure_once() -> Any:
        return measure(opts, rec, client, monitor, addresses, pool, name, payload, started.pids)

    def summarise_empty(m: Any) -> dict[str, Any]:
        # The workers' own numbers come once, at the end, for both measured phases.
        unfinished = not_completed_status(monitor, m.outcome["timed_out"])
        return summarise(m, rec, {}, n, started.pids, unfinished)

    def leader_seq() -> int:
        lead = leader_of(monitor.cluster_status())[0]
        seqs = applied(monitor, addresses)
        return seqs.get(lead) or max(seqs.values(), default=0)

    cap.empty_then_park(client, measure_once, summarise_empty, leader_seq)
    cap.measuring()
    m = measure_once()
    cap.measured()
    pool.stop_and_collect()
    unfinished = not_completed_status(monitor, m.outcome["timed_out"])
    report.update(summarise(m, rec, pool.finals, n, started.pids, unfinished))
    cap.after(m, n, client, started.extra)
    return True


def _cluster_access(
    opts: argparse.Namespace, raft: dict[str, Any], notes: list[str], started: _Started
) -> Access:
    """The given cluster (with the CLI's credential flags), or a local cluster started for the
    run (as its admin)."""
    from ..localcluster import LocalCluster, write_config

    if opts.target_addresses:
        notes.append(
            "given cluster: its Raft settings are its own; the baseline uses the bench's "
            "(defaults plus --raft-setting); no replica CPU/RSS (pids unknown)"
        )
        from orchestrator.cli import access

        flags = {k: None for k in ("token", "token_file", "ca", "cert", "key")}
        return cast(
            Access,
            access(
                argparse.Namespace(
                    **{"insecure": False, **flags, **vars(opts), "addresses": opts.target_addresses}
                )
            ),
        )
    started.tmp = tmp = tempfile.mkdtemp(prefix="orchestrator-bench-")
    cfg_path = write_config(os.path.join(tmp, "cluster.json"), n=3, raft=raft)
    env = {"ORCHESTRATOR_LOG_LEVEL": opts.log_level}
    started.cluster = cluster = LocalCluster(cfg_path, env=env)
    cluster.start_all()
    cluster.wait_healthy(timeout_s=90)
    started.pids = pids = {nid: cluster.pid(nid) for nid in cluster.replicas}
    print(
        "bench: local cluster up in "
        + tmp
        + " ("
        + ", ".join(f"{nid} pid {pid} {cluster.replicas[nid].grpc}" for nid, pid in pids.items())
        + ")",
        file=sys.stderr,
    )
    return cluster.access()


def _leader_first(access: Access) -> Access:
    """The addresses with the leader's first.

    Every client (starters, workers) then tries the leader first, so no call pays the
    follower's forwarding hop; --route first keeps the configured order (clients stick to
    whichever replica answers, usually a follower that forwards).
    """
    with access.client(timeout_s=2.0, retry_budget_s=10.0) as c0:
        statuses = c0.cluster_status()
    lead = next((str(r.get("grpc_address")) for r in statuses if r.get("role") == "LEADER"), "")
    addresses = access.addresses
    if lead in addresses:
        return replace(access, addresses=[lead] + [a for a in addresses if a != lead])
    return access


def _register(
    client: Any, kind: str, n: int, report: dict[str, Any], tdef: dict[str, Any]
) -> str | None:
    """Register the bench's definitions; the workflow's name, or None (and the report's error)
    if the cluster rejects the fork shape."""
    from orchestrator_client import OrchestratorError

    client.register_task_defs([tdef])
    wdef = workflow_def(kind, n)
    try:
        client.register_workflow_def(wdef, overwrite=True)
    except OrchestratorError as exc:
        if kind == "fork":
            report["error"] = (
                f"the cluster rejected a FORK_JOIN workflow ({code_name(exc)}: "
                f"{exc.details}); the fork shape needs FORK_JOIN support in the core"
            )
            return None
        raise
    return str(wdef["name"])


def _add_baseline(
    opts: argparse.Namespace, raft: dict[str, Any], payload: str, report: dict[str, Any]
) -> None:
    kind, n = opts.shape
    window = opts.baseline_window or opts.concurrency
    print(
        f"bench: baseline: Noop commands (padded to the workload's mean size) through "
        f"Replica.propose(), window {window}, "
        f"{opts.baseline_seconds:g} s ...",
        file=sys.stderr,
    )
    size = workload_command_bytes(kind, n, payload, report.get("commands", {}).get("per_workflow"))
    try:
        base = run_baseline(raft, opts.baseline_seconds, window, command_bytes=size)
    except Exception as exc:
        base = {"error": f"{type(exc).__name__}: {exc}"}
    report["baseline"] = base
    wl = report.get("commands", {}).get("per_s")
    bl = base.get("commands_per_s")
    report["commands_ratio"] = round(wl / bl, 3) if wl and bl else None
