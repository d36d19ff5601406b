"""The measured phase: the closed loop between two readings of the cluster's counters.

Commands/s of the workload is the leader's applied sequence number (one per command) before
and after the measured phase, divided by its duration; leaders are sampled meanwhile (at most
once a second) to count leader changes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .loop import Progress, new_outcome, run_closed_loop
from .stats import RpcRecorder, proc_stats, self_cpu_s
from .workers import WorkerPool


def leader_of(statuses: list[dict[str, Any]]) -> tuple[str, int]:
    leader = ""
    term = 0
    for r in statuses:
        term = max(term, int(r.get("term", 0)))
        if r.get("role") == "LEADER":
            leader = str(r.get("node_id", ""))
    return leader, term


def applied(client: Any, addresses: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in addresses:
        try:
            st = client.replica_status(a, timeout_s=3.0)
        except Exception:
            continue
        out[str(st.get("node_id") or a)] = int(st.get("applied_sequence", 0))
    return out


class LeaderWatch:
    """The leaders (node id, term) seen during the measured phase, and how often it changed."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self.before = leader_of(monitor.cluster_status())
        self.after = self.before
        self.seen: list[tuple[str, int]] = [self.before]
        self.changes = 0
        self._last_sample = 0.0

    @property
    def current(self) -> str:
        return self.seen[-1][0]

    def _see(self, cur: tuple[str, int]) -> None:
        if cur[0] and cur != self.seen[-1]:
            if self.seen[-1][0]:
                self.changes += 1
            self.seen.append(cur)

    def sample(self, now: float) -> None:
        """Ask the cluster who leads, if the last answer is a second old."""
        if now - self._last_sample < 1.0:
            return
        self._last_sample = now
        try:
            cur = leader_of(self.monitor.cluster_status())
        except Exception:
            cur = ("", self.seen[-1][1])
        self._see(cur)

    def finish(self) -> None:
        self.after = leader_of(self.monitor.cluster_status())
        self._see(self.after)
        if self.after[1] != self.before[1] and self.changes == 0:
            self.changes = 1  # a term moved even if the monitor missed the moment


@dataclass
class Measured:
    """What the measured phase saw: the starters' outcome and the counters around it."""

    outcome: dict[str, Any]
    duration_s: float
    bench_cpu_s: float
    applied_before: dict[str, int]
    applied_after: dict[str, int]
    cpu_before: dict[str, dict[str, Any] | None]
    cpu_after: dict[str, dict[str, Any] | None]
    leaders: LeaderWatch
    t_start: float = 0.0  # CLOCK_MONOTONIC, as the outcome's `ends`


def measure(
    opts: argparse.Namespace,
    rec: RpcRecorder,
    client: Any,
    monitor: Any,
    addresses: Sequence[str],
    pool: WorkerPool,
    workflow_name: str,
    payload: str,
    pids: dict[str, int | None],
) -> Measured:
    """Run `opts.workflows` workflows closed-loop with every counter read before and after."""
    kind, n = opts.shape
    rec.reset()
    leaders = LeaderWatch(monitor)
    applied_before = applied(monitor, addresses)
    cpu_before = {nid: proc_stats(pid) for nid, pid in pids.items() if pid}
    bench_cpu0 = self_cpu_s()
    with pool.tracker.lock:
        pool.tracker.measuring = True
    pool.measuring_ev.set()
    outcome = new_outcome()
    duration_s = float(getattr(opts, "duration", 0) or 0)
    count = 10**9 if duration_s > 0 else opts.workflows
    progress = Progress(0 if duration_s > 0 else count, f"bench {kind}:{n} c={opts.concurrency}")
    t_start = time.monotonic()

    def on_progress() -> None:
        now = time.monotonic()
        leaders.sample(now)
        errors = (
            sum(outcome["start_errors"].values())
            + len(outcome["timed_out"])
            + sum(rec.errors.values())
        )
        done = len(outcome["latencies"]) + len(outcome["timed_out"])
        progress.show(done, now - t_start, errors, leaders.current)

    run_closed_loop(
        client,
        pool.tracker,
        workflow_name,
        payload,
        count,
        opts.concurrency,
        opts.workflow_timeout,
        outcome,
        on_progress,
        t_start + duration_s if duration_s > 0 else None,
    )
    t_end = time.monotonic()
    on_progress()
    progress.show(
        len(outcome["latencies"]) + len(outcome["timed_out"]),
        t_end - t_start,
        sum(outcome["start_errors"].values()) + len(outcome["timed_out"]),
        leaders.current,
        final=True,
    )
    pool.measuring_ev.clear()
    bench_cpu_s = self_cpu_s() - bench_cpu0
    applied_after = applied(monitor, addresses)
    cpu_after = {nid: proc_stats(pid) for nid, pid in pids.items() if pid}
    leaders.finish()
    return Measured(
        outcome,
        t_end - t_start,
        bench_cpu_s,
        applied_before,
        applied_after,
        cpu_before,
        cpu_after,
        leaders,
        t_start,
    )
