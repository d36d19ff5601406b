"""`orchestrator bench`: throughput and latency of a cluster, measured end to end.

The benchmark runs against a given cluster (``--addresses``) or brings up a local three-replica
cluster in a temporary folder and stops it (by pid) at the end, whatever happens.

How it measures:

* Starters are closed-loop: each of ``--concurrency`` threads starts a workflow and waits until
  its last task has been completed before it starts the next one, so ``--concurrency`` is the
  number of workflows in flight. Concurrency 1 therefore measures the latency of a lone workflow.
* Workers run in separate processes (multiprocessing, spawn) with the Python worker SDK. They
  timestamp every successful CompleteTask on CLOCK_MONOTONIC (shared by every process on the
  machine) and send the timestamps to the bench process; a workflow's end-to-end latency is the
  time from its starter invoking StartWorkflow to the worker's CompleteTask of its last task
  returning OK (the workflow completes in that same committed command).
* Per-RPC latency comes from the client's recorder hook (invoke -> ok of one logical call,
  retries included). PollTasks is a long poll: its latency includes the wait for a task, so it
  is reported separately for polls that returned tasks. A worker with nothing else in flight
  asks for its next task with each completion (CompleteTasks with a poll that does not wait):
  those polls are reported as "PollTasks in CompleteTasks", with that call's latency.
* Commands/s of the workload is the leader's applied sequence number (one per command) before
  and after the measured phase, divided by its duration.
* The baseline commits empty commands (``Noop``, padded to the workload's mean logged command
  size) through the same replication adapter (``Replica.propose()``) with the same Raft
  settings and window, in three child processes that build a ``Replica`` each on their main
  thread; see `run_baseline`.

Nothing here is asserted as a wall-clock bound; the numbers are reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import queue
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

TASK_TYPE = "bench_task"
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --------------------------------------------------------------------------------------------
# small helpers


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0-100) by nearest rank, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary_ms(values_s: Sequence[float]) -> dict[str, Any]:
    """count/p50/p90/p99/max in milliseconds of latencies given in seconds."""
    out: dict[str, Any] = {"count": len(values_s)}
    for name, p in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0)):
        v = percentile(values_s, p)
        out[name] = None if v is None else round(v * 1000.0, 3)
    out["max"] = round(max(values_s) * 1000.0, 3) if values_s else None
    return out


def proc_stats(pid: int) -> dict[str, Any] | None:
    """CPU seconds (own and reaped children) and peak RSS of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces; the fields after it are space-separated.
    rest = stat[stat.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    hwm_kib = rss_kib = 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            hwm_kib = int(line.split()[1])
        elif line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    return {
        "cpu_s": (utime + stime) / _CLK_TCK,
        "children_cpu_s": (cutime + cstime) / _CLK_TCK,
        "peak_rss_mib": round(hwm_kib / 1024.0, 1),
        "rss_mib": round(rss_kib / 1024.0, 1),
    }


def _self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _code_name(exc: object) -> str:
    code = getattr(exc, "code", None)
    name = getattr(code, "name", None)
    return str(name) if name else type(exc).__name__


class RpcRecorder:
    """The client's recorder hook: latency of each logical call (invoke -> ok) and errors."""

    def __init__(self) -> None:
        self.enabled = True
        self._open: dict[str, float] = {}
        self._riding: set[str] = set()
        self.latencies: dict[str, list[float]] = {}
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()
        # Called with (op, request_id, detail, t_ok) on every ok while enabled.
        self.on_ok: Callable[[str, str, Any, float], None] | None = None

    def __call__(self, event: str, op: str, request_id: str, detail: Any) -> None:
        now = time.monotonic()
        if event == "invoke":
            self._open[request_id] = now
            if op == "PollTasks" and detail.timeout_ms == 0:
                # The bench's workers long-poll: a poll that does not wait rode in a
                # CompleteTasks call (its latency is that call's).
                self._riding.add(request_id)
            return
        t0 = self._open.pop(request_id, None)
        riding = request_id in self._riding
        self._riding.discard(request_id)
        if not self.enabled or t0 is None:
            return
        if event == "ok":
            key = op
            if op == "PollTasks":
                key = "PollTasks(with tasks)" if len(detail.tasks) else "PollTasks(empty)"
                if riding:
                    key = key.replace("PollTasks", "PollTasks in CompleteTasks")
            with self._lock:
                self.latencies.setdefault(key, []).append(now - t0)
            if self.on_ok is not None:
                self.on_ok(op, request_id, detail, now)
        else:
            with self._lock:
                self.errors[f"{op}:{_code_name(detail)}:{event}"] += 1

    def reset(self) -> None:
        with self._lock:
            self.latencies.clear()
            self.errors.clear()


# --------------------------------------------------------------------------------------------
# definitions


def parse_shape(text: str) -> tuple[str, int]:
    kind, _, num = text.partition(":")
    if kind not in ("seq", "fork") or not num.isdigit() or int(num) < 1:
        raise argparse.ArgumentTypeError("expected seq:N or fork:N with N >= 1")
    return kind, int(num)


def workflow_def(kind: str, n: int) -> dict[str, Any]:
    """The benchmark workflow: n SIMPLE tasks in sequence, or a fork of n parallel branches."""
    name = f"bench_{kind}_{n}"
    if kind == "seq":
        tasks: list[dict[str, Any]] = []
        for i in range(n):
            src = "${workflow.input.payload}" if i == 0 else f"${{t{i - 1}.output.p}}"
            tasks.append(
                {
                    "name": TASK_TYPE,
                    "taskReferenceName": f"t{i}",
                    "type": "SIMPLE",
                    "inputParameters": {"p": src},
                }
            )
        out = {"p": f"${{t{n - 1}.output.p}}"}
    else:
        branches = [
            [
                {
                    "name": TASK_TYPE,
                    "taskReferenceName": f"b{i}",
                    "type": "SIMPLE",
                    "inputParameters": {"p": "${workflow.input.payload}"},
                }
            ]
            for i in range(n)
        ]
        tasks = [
            {
                "name": "bench_fork",
                "taskReferenceName": "fork",
                "type": "FORK_JOIN",
                "forkTasks": branches,
            },
            {
                "name": "bench_join",
                "taskReferenceName": "join",
                "type": "JOIN",
                "joinOn": [f"b{i}" for i in range(n)],
            },
        ]
        out = {"done": "${join.output}"}
    return {
        "name": name,
        "version": 1,
        "description": "orchestrator bench workload",
        "tasks": tasks,
        "outputParameters": out,
    }


TASK_DEF = {
    "name": TASK_TYPE,
    "retryCount": 2,
    "retryLogic": "FIXED",
    "retryDelaySeconds": 1,
    "responseTimeoutSeconds": 60,
}


# --------------------------------------------------------------------------------------------
# worker processes


def _worker_main(
    index: int,
    addresses: list[str],
    concurrency: int,
    poll_timeout_ms: int,
    out_q: Any,
    measuring: Any,
    stop: Any,
) -> None:
    """One worker process: completes every bench task and reports completion timestamps."""
    from orchestrator_client import OrchestratorClient, Worker

    rec = RpcRecorder()
    refs: dict[str, tuple[str, str]] = {}  # task id -> (workflow id, ref), until completed
    complete_rids: dict[str, str] = {}  # CompleteTask request id -> task id
    pending: list[tuple[str, str, float]] = []
    plock = threading.Lock()

    orig_call = rec.__call__

    def recorder(event: str, op: str, request_id: str, detail: Any) -> None:
        if op == "CompleteTask" and event == "invoke":
            complete_rids[request_id] = detail.task_id
        orig_call(event, op, request_id, detail)
        if op == "CompleteTask" and event != "invoke":
            task_id = complete_rids.pop(request_id, "")
            wf_ref = refs.pop(task_id, None)
            if event == "ok" and wf_ref is not None:
                with plock:
                    pending.append((wf_ref[0], wf_ref[1], time.monotonic()))

    client = OrchestratorClient(addresses, timeout_s=10.0, retry_budget_s=30.0, recorder=recorder)
    worker = Worker(
        client,
        worker_id=f"bench-{index}-{os.getpid()}",
        concurrency=concurrency,
        poll_timeout_ms=poll_timeout_ms,
    )

    @worker.task(TASK_TYPE)
    def handle(task: Any) -> dict[str, Any]:
        refs[task.task_id] = (task.workflow_id, task.reference_task_name)
        return {"p": task.input.get("p")}

    cpu0 = _self_cpu_s()
    worker.start()
    out_q.put(("ready", index, os.getpid()))
    was_measuring = False
    while not stop.wait(0.005):
        if measuring.is_set() and not was_measuring:
            rec.reset()
            cpu0 = _self_cpu_s()
            was_measuring = True
        rec.enabled = measuring.is_set()
        with plock:
            batch = pending[:]
            pending.clear()
        if batch:
            out_q.put(("done", batch))
    worker.stop()
    with plock:
        batch = pending[:]
        pending.clear()
    if batch:
        out_q.put(("done", batch))
    stats = worker.stats
    client.close()
    out_q.put(
        (
            "final",
            index,
            {
                "latencies": rec.latencies,
                "errors": dict(rec.errors),
                "stats": {f.name: getattr(stats, f.name) for f in fields(stats)},
                "cpu_s": _self_cpu_s() - cpu0,
                "peak_rss_mib": round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1
                ),
            },
        )
    )


# --------------------------------------------------------------------------------------------
# the baseline: empty commands through the replication adapter


def _baseline_replica_main(cfg_path: str, node_id: str, conn: Any) -> None:
    """One baseline replica process: a bare Replica built on this process's main thread."""
    import logging

    from orchestrator import logging as olog
    from orchestrator.config import load
    from orchestrator.replication.node import Replica
    from orchestrator.server import raft_settings

    olog.configure(node_id, "WARNING")
    logging.getLogger().setLevel(logging.WARNING)
    cfg = load(cfg_path)
    replica = Replica(raft_settings(cfg, node_id))
    conn.send(("up", os.getpid()))
    while True:
        if not conn.poll(0.05):
            with contextlib.suppress(Exception):
                replica.ensure_epoch()
            continue
        msg = conn.recv()
        if msg[0] == "ready":
            conn.send(bool(replica.leader_ready()))
        elif msg[0] == "run":
            conn.send(_drive_noops(replica, *msg[1:]))
        elif msg[0] == "stop":
            replica.stop()
            conn.send("stopped")
            return


def padded_noop(command_bytes: int) -> Any:
    """A Noop whose logged form is `command_bytes` long (or as short as a Noop can be)."""
    from orchestrator.core.commands import Noop

    bare = len(Noop().log_json())
    return Noop(pad="x" * max(0, command_bytes - bare))


def workload_command_bytes(
    kind: str, n: int, payload: str, commands_per_workflow: float | None
) -> int:
    """The mean logged size of the workload's commands, weighted as the run committed them.

    Per workflow: one StartWorkflow, one CompleteTask per SIMPLE task (its output carries the
    payload back, as the bench's workers answer), and the rest PollTasks; each built as the
    servers build them, with ids of the same lengths.
    """
    from orchestrator.core.commands import CompleteTask, PollTasks, StartWorkflow

    rid, wid = "r" * 32, "w" * 36
    start = StartWorkflow(
        request_id=rid,
        workflow_id=wid,
        name=workflow_def(kind, n)["name"],
        input={"payload": payload},
    )
    complete = CompleteTask(
        request_id=rid, task_id=f"{wid}-t0-1", output={"p": payload}, worker_id="bench-w0-12345"
    )
    poll = PollTasks(
        request_id=rid, task_type=TASK_TYPE, worker_id="bench-w0-12345", count=16, epoch=1
    )
    per_wf = commands_per_workflow or float(1 + n)
    polls = max(0.0, per_wf - 1 - n)
    total = len(start.log_json()) + n * len(complete.log_json()) + polls * len(poll.log_json())
    return round(total / (1 + n + polls))


def _drive_noops(
    replica: Any, seconds: float, window: int, warmup_s: float, command_bytes: int = 0
) -> dict[str, Any]:
    """Propose padded Noops with at most `window` in flight; count commits in the interval."""
    from orchestrator.replication.node import ProposalError

    noop = padded_noop(command_bytes)

    sem = threading.BoundedSemaphore(window)
    lock = threading.Lock()
    lat: list[float] = []
    errors: Counter[str] = Counter()
    state = {"measuring": False, "ok": 0}
    t_start = time.monotonic()
    t_measure = t_start + warmup_s
    t_end = t_measure + seconds
    cpu0: float | None = None
    seq0 = seq1 = 0

    def done(fut: Any, t0: float) -> None:
        now = time.monotonic()
        sem.release()
        exc = fut.exception()
        with lock:
            if exc is not None:
                errors[type(exc).__name__] += 1
            elif t_measure <= now < t_end:
                state["ok"] += 1
                lat.append(now - t0)

    while True:
        now = time.monotonic()
        if now >= t_end:
            break
        if cpu0 is None and now >= t_measure:
            cpu0 = _self_cpu_s()
            seq0 = replica.state.seq
        if not sem.acquire(timeout=0.5):
            continue
        t0 = time.monotonic()
        try:
            fut = replica.propose(noop)
        except ProposalError as exc:
            sem.release()
            with lock:
                errors[type(exc).__name__] += 1
            time.sleep(0.01)
            continue
        fut.add_done_callback(lambda f, t0=t0: done(f, t0))
    seq1 = replica.state.seq
    cpu1 = _self_cpu_s()
    # Let the window drain so stopping does not count as errors.
    for _ in range(window):
        if not sem.acquire(timeout=5.0):
            break
    with lock:
        ok = state["ok"]
        return {
            "commands_per_s": round(ok / seconds, 1),
            "applied_per_s": round((seq1 - seq0) / seconds, 1),
            "commit_latency_ms": latency_summary_ms(lat),
            "errors": dict(errors),
            "leader_cpu_s": round(cpu1 - (cpu0 or cpu1), 2),
            "seconds": seconds,
            "window": window,
            "command_bytes": len(noop.log_json()),
        }


def run_baseline(
    raft: dict[str, Any],
    seconds: float,
    window: int,
    warmup_s: float = 1.0,
    command_bytes: int = 0,
) -> dict[str, Any]:
    """Commit empty commands through three Replicas (child processes) with the given settings.

    The commands are Noops padded to `command_bytes` (the workload's mean command size).

    Returns:
        commands/s, commit latency, errors, and the leader's CPU seconds.
    """
    from orchestrator.config import load

    from .localcluster import write_config

    ctx = mp.get_context("spawn")
    tmp = tempfile.mkdtemp(prefix="orchestrator-bench-baseline-")
    procs: list[Any] = []
    conns: list[Any] = []
    try:
        cfg_path = write_config(os.path.join(tmp, "cluster.json"), n=3, raft=raft)
        cfg = load(cfg_path)
        for r in cfg.replicas:
            parent, child = ctx.Pipe()
            p = ctx.Process(
                target=_baseline_replica_main, args=(cfg_path, r.node_id, child), daemon=True
            )
            p.start()
            procs.append(p)
            conns.append(parent)
        for c in conns:
            if not c.poll(60):
                raise RuntimeError("a baseline replica did not come up within 60 s")
            c.recv()
        deadline = time.monotonic() + 60
        leader = None
        while leader is None and time.monotonic() < deadline:
            for c in conns:
                c.send(("ready",))
            ready = [c.recv() for c in conns]
            if ready.count(True) == 1:
                leader = conns[ready.index(True)]
            else:
                time.sleep(0.1)
        if leader is None:
            raise RuntimeError("no baseline leader within 60 s")
        leader.send(("run", seconds, window, warmup_s, command_bytes))
        if not leader.poll(seconds + warmup_s + 60):
            raise RuntimeError("the baseline run did not finish")
        result: dict[str, Any] = leader.recv()
        for c in conns:
            with contextlib.suppress(Exception):
                c.send(("stop",))
        for c in conns:
            with contextlib.suppress(Exception):
                if c.poll(10):
                    c.recv()
        return result
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# the workload


class _Tracker:
    """Start and completion times of workflows; wakes the starter waiting on a workflow.

    Each waiting starter has its own Event, set only when its workflow finishes: one
    Condition shared by 64 starters woke all of them on every batch of completions, which
    cost the bench process most of its CPU (the bench shares the machine with the cluster).
    """

    def __init__(self, tasks_per_workflow: int) -> None:
        self.n = tasks_per_workflow
        self.lock = threading.Lock()
        self.started: dict[str, float] = {}
        self.refs: dict[str, set[str]] = {}
        self.last: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.waiters: dict[str, threading.Event] = {}
        self.tasks_done = 0
        self.measured_tasks = 0
        self.measuring = False

    def completions(self, batch: list[tuple[str, str, float]]) -> None:
        wake: list[threading.Event] = []
        with self.lock:
            for wid, ref, t in batch:
                refs = self.refs.setdefault(wid, set())
                if ref in refs:
                    continue
                refs.add(ref)
                self.tasks_done += 1
                if self.measuring:
                    self.measured_tasks += 1
                self.last[wid] = max(self.last.get(wid, 0.0), t)
                if len(refs) >= self.n:
                    self.finished[wid] = self.last[wid]
                    self.refs.pop(wid, None)
                    event = self.waiters.pop(wid, None)
                    if event is not None:
                        wake.append(event)
        for event in wake:
            event.set()

    def wait_finished(self, wid: str, timeout_s: float) -> float | None:
        with self.lock:
            if wid in self.finished:
                return self.finished[wid]
            event = self.waiters.setdefault(wid, threading.Event())
        event.wait(timeout_s)
        with self.lock:
            self.waiters.pop(wid, None)
            return self.finished.get(wid)


class _Progress:
    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.tty = sys.stderr.isatty()
        self._last_line = 0.0

    def show(
        self, done: int, elapsed_s: float, errors: int, leader: str, final: bool = False
    ) -> None:
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        width = 30
        filled = int(width * done / self.total) if self.total else width
        line = (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
            f"{rate:7.1f} wf/s  errors {errors}  leader {leader or '?'}"
        )
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
            sys.stderr.flush()
        elif final or time.monotonic() - self._last_line >= 5.0:
            self._last_line = time.monotonic()
            sys.stderr.write(line + "\n")
            sys.stderr.flush()


def _leader_of(statuses: list[dict[str, Any]]) -> tuple[str, int]:
    leader = ""
    term = 0
    for r in statuses:
        term = max(term, int(r.get("term", 0)))
        if r.get("role") == "LEADER":
            leader = str(r.get("node_id", ""))
    return leader, term


def _applied(client: Any, addresses: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in addresses:
        try:
            st = client.replica_status(a, timeout_s=3.0)
        except Exception:
            continue
        out[str(st.get("node_id") or a)] = int(st.get("applied_sequence", 0))
    return out


def _run_closed_loop(
    client: Any,
    tracker: _Tracker,
    name: str,
    payload: str,
    count: int,
    concurrency: int,
    wf_timeout_s: float,
    outcome: dict[str, Any],
    on_progress: Callable[[], None] | None = None,
) -> None:
    """`concurrency` threads, each starting a workflow and waiting for it, `count` in all."""
    lock = threading.Lock()
    next_i = [0]

    def starter() -> None:
        while True:
            with lock:
                if next_i[0] >= count:
                    return
                next_i[0] += 1
            t0 = time.monotonic()
            try:
                wid = client.start_workflow(name, {"payload": payload})
            except Exception as exc:
                with lock:
                    outcome["start_errors"][_code_name(exc)] += 1
                time.sleep(0.05)
                continue
            with tracker.lock:
                tracker.started[wid] = t0
            t1 = tracker.wait_finished(wid, wf_timeout_s)
            with lock:
                if t1 is None:
                    outcome["timed_out"].append(wid)
                else:
                    outcome["latencies"].append(t1 - t0)

    threads = [
        threading.Thread(target=starter, name=f"starter-{i}", daemon=True)
        for i in range(max(1, concurrency))
    ]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.25)
            if on_progress is not None:
                on_progress()


def _new_outcome() -> dict[str, Any]:
    return {"latencies": [], "timed_out": [], "start_errors": Counter()}


def run_bench(opts: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark described by the parsed options; returns the report."""
    from orchestrator_client import OrchestratorClient, OrchestratorError

    from orchestrator.replication.node import RaftSettings

    from .localcluster import LocalCluster, write_config

    kind, n = opts.shape
    tasks_per_wf = n
    payload = "x" * max(0, opts.payload_bytes)
    raft: dict[str, Any] = dict(opts.raft_setting or {})
    notes: list[str] = []
    report: dict[str, Any] = {
        "config": {
            "workflows": opts.workflows,
            "warmup_workflows": opts.warmup,
            "concurrency": opts.concurrency,
            "shape": f"{kind}:{n}",
            "payload_bytes": opts.payload_bytes,
            "worker_processes": opts.worker_processes,
            "worker_concurrency": opts.worker_concurrency,
            "fsync": opts.fsync,
            "raft": raft,
            "cluster": "given" if opts.target_addresses else "local (3 replicas, started by bench)",
            "cpu_count": os.cpu_count(),
        },
        "notes": notes,
    }
    if "fsync" in {f.name for f in fields(RaftSettings)}:
        raft["fsync"] = opts.fsync == "on"
    else:
        msg = (
            f"fsync is not configurable yet (RaftSettings has no 'fsync' field); --fsync "
            f"{opts.fsync} has no effect and the journal is pysyncobj's, which never fsyncs"
        )
        print(f"bench: {msg}", file=sys.stderr)
        notes.append(msg)
        report["config"]["fsync"] = "not configurable (journal not fsynced)"

    ctx = mp.get_context("spawn")
    tmp: str | None = None
    cluster: LocalCluster | None = None
    workers: list[Any] = []
    stop_ev = ctx.Event()
    measuring_ev = ctx.Event()
    out_q: Any = ctx.Queue()
    client: Any = None
    monitor_client: Any = None
    pids: dict[str, int | None] = {}
    try:
        if opts.target_addresses:
            addresses = [a.strip() for a in opts.target_addresses.split(",") if a.strip()]
            notes.append(
                "given cluster: its Raft settings are its own; the baseline uses the bench's "
                "(defaults plus --raft-setting); no replica CPU/RSS (pids unknown)"
            )
        else:
            tmp = tempfile.mkdtemp(prefix="orchestrator-bench-")
            cfg_path = write_config(os.path.join(tmp, "cluster.json"), n=3, raft=raft)
            env = {"ORCHESTRATOR_LOG_LEVEL": opts.log_level}
            cluster = LocalCluster(cfg_path, env=env)
            cluster.start_all()
            cluster.wait_healthy(timeout_s=90)
            addresses = cluster.addresses
            pids = {nid: cluster.pid(nid) for nid in cluster.replicas}
            print(
                "bench: local cluster up in "
                + tmp
                + " ("
                + ", ".join(
                    f"{nid} pid {pid} {cluster.replicas[nid].grpc}" for nid, pid in pids.items()
                )
                + ")",
                file=sys.stderr,
            )
        if opts.route == "leader":
            # Every client (starters, workers) tries the leader first, so no call pays the
            # follower's forwarding hop; --route first keeps the configured order (clients stick
            # to whichever replica answers, usually a follower that forwards).
            with OrchestratorClient(addresses, timeout_s=2.0, retry_budget_s=10.0) as c0:
                statuses = c0.cluster_status()
            lead = next(
                (str(r.get("grpc_address")) for r in statuses if r.get("role") == "LEADER"), ""
            )
            if lead in addresses:
                addresses = [lead] + [a for a in addresses if a != lead]
        report["config"]["addresses"] = addresses
        report["config"]["route"] = opts.route

        rec = RpcRecorder()
        client = OrchestratorClient(addresses, timeout_s=10.0, retry_budget_s=30.0, recorder=rec)
        monitor_client = OrchestratorClient(addresses, timeout_s=2.0, retry_budget_s=2.0)

        client.register_task_defs([TASK_DEF])
        wdef = workflow_def(kind, n)
        try:
            client.register_workflow_def(wdef, overwrite=True)
        except OrchestratorError as exc:
            if kind == "fork":
                report["error"] = (
                    f"the cluster rejected a FORK_JOIN workflow ({_code_name(exc)}: "
                    f"{exc.details}); the fork shape needs FORK_JOIN support in the core"
                )
                return report
            raise

        # Workers.
        for i in range(opts.worker_processes):
            p = ctx.Process(
                target=_worker_main,
                args=(
                    i,
                    addresses,
                    opts.worker_concurrency,
                    opts.poll_timeout_ms,
                    out_q,
                    measuring_ev,
                    stop_ev,
                ),
                daemon=True,
            )
            p.start()
            workers.append(p)
        tracker = _Tracker(tasks_per_wf)
        finals: dict[int, dict[str, Any]] = {}
        ready = 0

        def drain(block_s: float) -> None:
            nonlocal ready
            try:
                msg = out_q.get(timeout=block_s)
            except queue.Empty:
                return
            while True:
                if msg[0] == "done":
                    tracker.completions(msg[1])
                elif msg[0] == "ready":
                    ready += 1
                elif msg[0] == "final":
                    finals[msg[1]] = msg[2]
                try:
                    msg = out_q.get_nowait()
                except queue.Empty:
                    return

        collector_stop = threading.Event()

        def collect() -> None:
            while not collector_stop.is_set():
                drain(0.1)

        deadline = time.monotonic() + 60
        while ready < len(workers) and time.monotonic() < deadline:
            drain(0.2)
            dead = [p for p in workers if not p.is_alive()]
            if dead:
                raise RuntimeError(f"a worker process exited with {dead[0].exitcode}")
        if ready < len(workers):
            raise RuntimeError("worker processes did not start within 60 s")
        collector = threading.Thread(target=collect, name="collector", daemon=True)
        collector.start()

        name = wdef["name"]
        if opts.warmup > 0:
            warm = _new_outcome()
            _run_closed_loop(
                client,
                tracker,
                name,
                payload,
                opts.warmup,
                min(opts.concurrency, opts.warmup),
                opts.workflow_timeout,
                warm,
            )

        # The measured phase.
        rec.reset()
        leader_before, term_before = _leader_of(monitor_client.cluster_status())
        applied_before = _applied(monitor_client, addresses)
        cpu_before = {nid: proc_stats(pid) for nid, pid in pids.items() if pid}
        bench_cpu0 = _self_cpu_s()
        leaders_seen: list[tuple[str, int]] = [(leader_before, term_before)]
        leader_changes = 0
        with tracker.lock:
            tracker.measuring = True
        measuring_ev.set()
        outcome = _new_outcome()
        progress = _Progress(opts.workflows, f"bench {kind}:{n} c={opts.concurrency}")
        t_start = time.monotonic()
        last_status = [0.0]

        def on_progress() -> None:
            nonlocal leader_changes
            now = time.monotonic()
            if now - last_status[0] >= 1.0:
                last_status[0] = now
                try:
                    cur = _leader_of(monitor_client.cluster_status())
                except Exception:
                    cur = ("", leaders_seen[-1][1])
                if cur[0] and cur != leaders_seen[-1]:
                    if leaders_seen[-1][0]:
                        leader_changes += 1
                    leaders_seen.append(cur)
            errors = (
                sum(outcome["start_errors"].values())
                + len(outcome["timed_out"])
                + sum(rec.errors.values())
            )
            progress.show(
                len(outcome["latencies"]) + len(outcome["timed_out"]),
                now - t_start,
                errors,
                leaders_seen[-1][0],
            )

        _run_closed_loop(
            client,
            tracker,
            name,
            payload,
            opts.workflows,
            opts.concurrency,
            opts.workflow_timeout,
            outcome,
            on_progress,
        )
        t_end = time.monotonic()
        on_progress()
        progress.show(
            len(outcome["latencies"]) + len(outcome["timed_out"]),
            t_end - t_start,
            sum(outcome["start_errors"].values()) + len(outcome["timed_out"]),
            leaders_seen[-1][0],
            final=True,
        )
        measuring_ev.clear()
        bench_cpu = _self_cpu_s() - bench_cpu0
        applied_after = _applied(monitor_client, addresses)
        cpu_after = {nid: proc_stats(pid) for nid, pid in pids.items() if pid}
        leader_after, term_after = _leader_of(monitor_client.cluster_status())
        if (leader_after, term_after) != leaders_seen[-1] and leader_after:
            if leaders_seen[-1][0]:
                leader_changes += 1
            leaders_seen.append((leader_after, term_after))
        if term_after != term_before and leader_changes == 0:
            leader_changes = 1  # a term moved even if the monitor missed the moment

        # Stop the workers and collect their numbers.
        stop_ev.set()
        deadline = time.monotonic() + 30
        while len(finals) < len(workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        collector_stop.set()
        collector.join(2)
        drain(0.1)

        # Workflows whose completion was never seen: ask the cluster what became of them.
        unfinished: Counter[str] = Counter()
        for wid in outcome["timed_out"][:200]:
            try:
                unfinished[monitor_client.get_workflow(wid, include_tasks=False).status] += 1
            except Exception as exc:
                unfinished[f"get failed: {_code_name(exc)}"] += 1

        duration = t_end - t_start
        completed = len(outcome["latencies"])
        tasks = completed * tasks_per_wf
        lat = outcome["latencies"]
        rpc: dict[str, list[float]] = {k: list(v) for k, v in rec.latencies.items()}
        errors: Counter[str] = Counter(rec.errors)
        wstats: Counter[str] = Counter()
        worker_cpu = 0.0
        worker_rss: list[float] = []
        for fin in finals.values():
            for k, v in fin["latencies"].items():
                rpc.setdefault(k, []).extend(v)
            errors.update(fin["errors"])
            wstats.update(fin["stats"])
            worker_cpu += fin["cpu_s"]
            worker_rss.append(fin["peak_rss_mib"])
        for code, c in outcome["start_errors"].items():
            errors[f"StartWorkflow(gave up):{code}"] += c
        if outcome["timed_out"]:
            errors["workflow not completed in time"] += len(outcome["timed_out"])
        for k in ("lost", "report_errors", "poll_errors", "failed"):
            if wstats.get(k):
                errors[f"worker:{k}"] += wstats[k]

        seq_delta = {
            nid: applied_after[nid] - applied_before[nid]
            for nid in applied_after
            if nid in applied_before
        }
        leader_seq = seq_delta.get(leader_after) or (max(seq_delta.values()) if seq_delta else 0)
        replicas: dict[str, Any] = {}
        for nid, after in cpu_after.items():
            before = cpu_before.get(nid)
            if after is None:
                replicas[nid] = {"error": "process gone"}
                continue
            replicas[nid] = {
                "pid": pids[nid],
                "cpu_s": round(after["cpu_s"] - (before["cpu_s"] if before else 0.0), 2),
                "snapshot_children_cpu_s": round(
                    after["children_cpu_s"] - (before["children_cpu_s"] if before else 0.0), 2
                ),
                "peak_rss_mib": after["peak_rss_mib"],
                "role_at_end": "LEADER" if nid == leader_after else "FOLLOWER",
            }
        report.update(
            {
                "duration_s": round(duration, 3),
                "workflows_completed": completed,
                "workflows_not_completed": len(outcome["timed_out"]),
                "not_completed_status": dict(unfinished),
                "workflows_per_s": round(completed / duration, 1) if duration > 0 else None,
                "tasks_per_s": round(tasks / duration, 1) if duration > 0 else None,
                "end_to_end_ms": latency_summary_ms(lat),
                "rpc_ms": {
                    k: {
                        kk: vv
                        for kk, vv in latency_summary_ms(v).items()
                        if kk in ("count", "p50", "p99", "max")
                    }
                    for k, v in sorted(rpc.items())
                },
                "commands": {
                    "applied_delta": seq_delta,
                    "per_s": round(leader_seq / duration, 1) if duration > 0 else None,
                    "per_workflow": round(leader_seq / completed, 2) if completed else None,
                },
                "leader": {
                    "before": leader_before,
                    "after": leader_after,
                    "term_before": term_before,
                    "term_after": term_after,
                    "changes": leader_changes,
                    "seen": [list(x) for x in leaders_seen],
                },
                "errors": dict(sorted(errors.items())),
                "error_count": sum(errors.values()),
                "replicas": replicas,
                "client": {
                    "bench_process_cpu_s": round(bench_cpu, 2),
                    "worker_processes_cpu_s": round(worker_cpu, 2),
                    "worker_peak_rss_mib": worker_rss,
                    "worker_stats": dict(wstats),
                },
            }
        )
    finally:
        stop_ev.set()
        for p in workers:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
        for c in (client, monitor_client):
            if c is not None:
                with contextlib.suppress(Exception):
                    c.close()
        if cluster is not None:
            # Stops each replica by its own pid (SIGTERM, then SIGKILL after 10 s).
            cluster.stop_all()
            for nid in cluster.replicas:
                cluster.kill(nid)
        if tmp is not None:
            if opts.keep_dir:
                print(f"bench: kept {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)

    if opts.baseline:
        window = opts.baseline_window or opts.concurrency
        print(
            f"bench: baseline: Noop commands (padded to the workload's mean size) through "
            f"Replica.propose(), window {window}, "
            f"{opts.baseline_seconds:g} s ...",
            file=sys.stderr,
        )
        size = workload_command_bytes(
            kind, n, payload, report.get("commands", {}).get("per_workflow")
        )
        try:
            base = run_baseline(raft, opts.baseline_seconds, window, command_bytes=size)
        except Exception as exc:
            base = {"error": f"{type(exc).__name__}: {exc}"}
        report["baseline"] = base
        wl = report.get("commands", {}).get("per_s")
        bl = base.get("commands_per_s")
        report["commands_ratio"] = round(wl / bl, 3) if wl and bl else None
    return report


# --------------------------------------------------------------------------------------------
# output


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if v >= 100 else f"{v:.2f}"
    return str(v)


def format_table(r: dict[str, Any]) -> str:
    cfg = r["config"]
    lines = [
        f"orchestrator bench: {cfg['workflows']} workflows {cfg['shape']}, "
        f"concurrency {cfg['concurrency']}, payload {cfg['payload_bytes']} B, "
        f"{cfg['worker_processes']} worker processes x {cfg['worker_concurrency']}, "
        f"fsync {cfg['fsync']}, route {cfg.get('route', '-')}",
    ]
    if "error" in r:
        lines.append(f"ERROR: {r['error']}")
        return "\n".join(lines)
    e2e = r["end_to_end_ms"]
    rows = [
        ("duration s", r["duration_s"]),
        ("workflows completed", f"{r['workflows_completed']} ({r['workflows_not_completed']} not)"),
        ("workflows/s", r["workflows_per_s"]),
        ("tasks/s", r["tasks_per_s"]),
        (
            "end-to-end ms p50/p90/p99/max",
            " / ".join(_fmt(e2e[k]) for k in ("p50", "p90", "p99", "max")),
        ),
        ("commands/s (applied seq)", r["commands"]["per_s"]),
        ("commands per workflow", r["commands"]["per_workflow"]),
        (
            "leader changes",
            f"{r['leader']['changes']} (term {r['leader']['term_before']} -> "
            f"{r['leader']['term_after']}, leader {r['leader']['before']} -> {r['leader']['after']})",
        ),
        ("errors", r["error_count"]),
    ]
    w = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{w}}  {_fmt(v)}" for k, v in rows]
    for k, v in r["errors"].items():
        lines.append(f"    {k}: {v}")
    lines.append("  per-RPC client latency ms (count, p50, p99, max):")
    ow = max([24, *(len(op) for op in r["rpc_ms"])])
    for op, s in r["rpc_ms"].items():
        lines.append(
            f"    {op:<{ow}} {s['count']:>8}  {_fmt(s['p50']):>8}  {_fmt(s['p99']):>8}  "
            f"{_fmt(s['max']):>8}"
        )
    if r["replicas"]:
        lines.append("  replicas (CPU s during the run, peak RSS MiB):")
        for nid, s in r["replicas"].items():
            if "error" in s:
                lines.append(f"    {nid}: {s['error']}")
                continue
            lines.append(
                f"    {nid} pid {s['pid']:<7} {s['role_at_end']:<8} cpu {s['cpu_s']:>7.2f} s "
                f"(snapshot children {s['snapshot_children_cpu_s']:.2f})  "
                f"peak RSS {s['peak_rss_mib']:.1f}"
            )
    c = r["client"]
    lines.append(
        f"  bench process cpu {c['bench_process_cpu_s']:.2f} s, "
        f"worker processes cpu {c['worker_processes_cpu_s']:.2f} s"
    )
    if "baseline" in r:
        b = r["baseline"]
        if "error" in b:
            lines.append(f"  baseline: ERROR {b['error']}")
        else:
            bl = b["commit_latency_ms"]
            lines.append(
                f"  baseline (Noops of {b.get('command_bytes', '?')} B through Replica.propose, "
                f"window {b['window']}): "
                f"{_fmt(b['commands_per_s'])} commands/s, commit p50/p99 "
                f"{_fmt(bl['p50'])} / {_fmt(bl['p99'])} ms, errors {sum(b['errors'].values())}"
            )
            lines.append(
                f"  workload commands/s / baseline commands/s = {_fmt(r.get('commands_ratio'))}"
            )
    for note in r.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# command line


def _raft_kv(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE (VALUE as JSON, e.g. 0.01)")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


class _RaftAction(argparse.Action):
    def __call__(self, parser: Any, ns: Any, values: Any, option_string: Any = None) -> None:
        current = dict(getattr(ns, self.dest, None) or {})
        key, value = values
        current[key] = value
        setattr(ns, self.dest, current)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workflows", type=int, default=1000, help="workflows to run (measured)")
    p.add_argument(
        "--warmup", type=int, default=None, help="unmeasured workflows first (default 10%%, <=50)"
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="workflows in flight: closed-loop starter threads, each waiting for its workflow",
    )
    p.add_argument(
        "--shape", type=parse_shape, default=("seq", 3), help="seq:N (default seq:3) or fork:N"
    )
    p.add_argument("--payload-bytes", type=int, default=512, help="payload size of each task")
    p.add_argument("--worker-processes", type=int, default=2)
    p.add_argument("--worker-concurrency", type=int, default=32, help="handler threads each")
    p.add_argument("--poll-timeout-ms", type=int, default=1000, help="workers' long-poll wait")
    p.add_argument("--fsync", choices=["on", "off"], default="on")
    p.add_argument(
        "--raft-setting",
        type=_raft_kv,
        action=_RaftAction,
        metavar="KEY=VALUE",
        help="a RaftSettings override for the local cluster and the baseline (repeatable)",
    )
    p.add_argument(
        "--addresses",
        dest="target_addresses",
        default=None,
        help="benchmark this cluster instead of starting a local one",
    )
    p.add_argument(
        "--route",
        choices=["leader", "first"],
        default="leader",
        help="clients try the leader first (default), or the addresses in order (a follower "
        "then forwards every call)",
    )
    p.add_argument("--json", dest="json_path", help="write the JSON report here")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--baseline-seconds", type=float, default=5.0)
    p.add_argument(
        "--baseline-window", type=int, default=0, help="Noops in flight (default: --concurrency)"
    )
    p.add_argument(
        "--workflow-timeout", type=float, default=60.0, help="give up on a workflow after this"
    )
    p.add_argument("--log-level", default="INFO", help="log level of the local replicas")
    p.add_argument("--keep-dir", action="store_true", help="keep the local cluster's folder")
    p.set_defaults(fn=cmd_bench)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `bench` command to the CLI's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="measure throughput and latency (starts a local cluster unless --addresses)",
        description="Run workflows against a cluster and report throughput, end-to-end and "
        "per-RPC latency, replica CPU and memory, leader changes, errors, and a baseline of "
        "empty commands through the same replication adapter.",
    )
    _add_arguments(p)
    return p


def cmd_bench(ns: argparse.Namespace) -> int:
    if ns.workflows < 1 or ns.concurrency < 1 or ns.worker_processes < 1:
        print("bench: --workflows, --concurrency and --worker-processes must be >= 1")
        return 2
    if ns.warmup is None:
        ns.warmup = min(50, ns.workflows // 10)
    if not getattr(ns, "target_addresses", None):
        # `orchestrator --addresses X bench` (or ORCHESTRATOR_ADDRESSES) also names a cluster.
        from orchestrator.cli import DEFAULT_ADDRESSES

        top = getattr(ns, "addresses", None)
        if top and top != DEFAULT_ADDRESSES:
            ns.target_addresses = top
    report = run_bench(ns)
    print(format_table(report))
    if ns.json_path:
        with open(ns.json_path, "w") as f:
            json.dump(report, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
    if "error" in report:
        print(f"bench: {report['error']}", file=sys.stderr)
        return 3
    if report.get("workflows_not_completed") or report.get("error_count"):
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="orchestrator bench")
    _add_arguments(p)
    ns = p.parse_args(argv)
    return int(ns.fn(ns))


if __name__ == "__main__":
    # Re-enter through the package so spawned children pickle `orchestrator.tools.bench` functions.
    from orchestrator.tools.bench import main as _main

    sys.exit(_main())
