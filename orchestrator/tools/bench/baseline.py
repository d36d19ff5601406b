"""The baseline: empty commands committed through the replication adapter alone.

Noops padded to the workload's mean logged command size go through ``RaftReplica.propose()``
with the same Raft settings and window as the workload, in three child processes that build a
``RaftReplica`` each on their main thread (the Raft library's tick thread dies with the thread
that built it). The workload's commands/s over the baseline's says what the layers above replication cost.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from typing import Any

from .stats import latency_summary_ms, self_cpu_s
from .workload import padded_noop


def _baseline_replica_main(cfg_path: str, node_id: str, conn: Any) -> None:
    """One baseline replica process: a bare Replica built on this process's main thread."""
    import logging

    from orchestrator import logging as olog
    from orchestrator.config import load
    from orchestrator.replication.node import RaftReplica
    from orchestrator.replication.settings import from_config

    olog.configure(node_id, "WARNING")
    logging.getLogger().setLevel(logging.WARNING)
    cfg = load(cfg_path)
    replica = RaftReplica(from_config(cfg, node_id))
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


def _drive_noops(
    replica: Any, seconds: float, window: int, warmup_s: float, command_bytes: int = 0
) -> dict[str, Any]:
    """Propose padded Noops with at most `window` in flight; count commits in the interval."""
    from orchestrator.replication.api import ProposalError

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
            cpu0 = self_cpu_s()
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
    cpu1 = self_cpu_s()
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

    from ..localcluster import write_config

    ctx = mp.get_context("spawn")
    tmp = tempfile.mkdtemp(prefix="orchestrator-bench-baseline-")
    procs: list[Any] = []
    try:
        cfg_path = write_config(os.path.join(tmp, "cluster.json"), n=3, raft=raft)
        conns = _start_replicas(ctx, load(cfg_path), cfg_path, procs)
        leader = _leader_conn(conns)
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


def _start_replicas(ctx: Any, cfg: Any, cfg_path: str, procs: list[Any]) -> list[Any]:
    """Start a baseline replica per configured one (into `procs`); wait until each is up."""
    conns: list[Any] = []
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
    return conns


def _leader_conn(conns: list[Any]) -> Any:
    """The pipe of the one replica that is a ready leader."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for c in conns:
            c.send(("ready",))
        ready = [c.recv() for c in conns]
        if ready.count(True) == 1:
            return conns[ready.index(True)]
        time.sleep(0.1)
    raise RuntimeError("no baseline leader within 60 s")
