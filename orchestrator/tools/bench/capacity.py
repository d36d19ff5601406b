"""Capacity: many workflows running at once, snapshots of that state, recovery, time windows.

`--park N` starts N workflows that each wait on a HUMAN (or WAIT) task, so they stay RUNNING
in every replica's memory, and measures the closed loop (usually concurrency 1) on the empty
cluster first and then on the parked one. On a cluster the bench started it also reports what
the snapshots of that state cost the Raft tick thread (`replication/tick_stats.py` writes it to
each data folder), waits until every replica has a snapshot holding the parked state, and then
times a replica restarted after kill -9 and a fourth replica added to the membership until each
serves again with everything applied. `--duration S` runs the closed loop for S seconds and
reports throughput and latency per `--window-s` window, not only a total.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import time
from collections import Counter
from typing import Any

from orchestrator.replication import tick_stats
from orchestrator.replication.settings import DUMP_FILE

from .stats import code_name, latency_summary_ms

PARK_KINDS = ("human", "wait")


def park_def(kind: str) -> dict[str, Any]:
    """A workflow that parks on its only task: HUMAN (until someone completes it) or a WAIT of
    nine days (a timer per workflow)."""
    if kind == "human":
        task: dict[str, Any] = {"name": "bench_human", "taskReferenceName": "h", "type": "HUMAN"}
    else:
        task = {
            "name": "bench_wait",
            "taskReferenceName": "w",
            "type": "WAIT",
            "inputParameters": {"duration": "9 days"},
        }
    return {
        "name": f"bench_park_{kind}",
        "version": 1,
        "description": "orchestrator bench: parks on its only task",
        "tasks": [task],
        "outputParameters": {},
    }


def park(client: Any, kind: str, count: int, concurrency: int) -> dict[str, Any]:
    """Start `count` parking workflows from `concurrency` threads sharing one client (which
    batches concurrent starts into StartWorkflows calls)."""
    wdef = park_def(kind)
    client.register_workflow_def(wdef, overwrite=True)
    lock = threading.Lock()
    next_i = [0]
    errors: Counter[str] = Counter()
    done = [0]

    def starter() -> None:
        while True:
            with lock:
                if next_i[0] >= count:
                    return
                i = next_i[0]
                next_i[0] += 1
            try:
                client.start_workflow(wdef["name"], {"i": i})
            except Exception as exc:
                with lock:
                    errors[code_name(exc)] += 1
                continue
            with lock:
                done[0] += 1

    threads = [
        threading.Thread(target=starter, name=f"park-{j}", daemon=True)
        for j in range(max(1, min(concurrency, count)))
    ]
    t0 = time.monotonic()
    last = t0
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        threads[0].join(0.5) if threads[0].is_alive() else time.sleep(0.5)
        if time.monotonic() - last >= 5.0:
            last = time.monotonic()
            rate = done[0] / (last - t0)
            print(f"bench: parked {done[0]}/{count} ({rate:.0f}/s)", file=sys.stderr)
    seconds = time.monotonic() - t0
    return {
        "kind": kind,
        "workflows": done[0],
        "seconds": round(seconds, 1),
        "per_s": round(done[0] / seconds, 1) if seconds > 0 else None,
        "errors": dict(errors),
    }


def windows(
    ends: list[tuple[float, float]],
    t_start: float,
    window_s: float,
    tasks_per_wf: int,
    duration_s: float = 0.0,
) -> list[dict[str, Any]]:
    """Workflows/s, tasks/s and latency of the workflows that completed in each window; a
    window from `duration_s` on holds only the workflows in flight at the end (`drain`)."""
    if not ends or window_s <= 0:
        return []
    buckets: dict[int, list[float]] = {}
    for t1, lat in ends:
        buckets.setdefault(max(0, int((t1 - t_start) // window_s)), []).append(lat)
    out = []
    for i in range(max(buckets) + 1):
        lats = buckets.get(i, [])
        s = latency_summary_ms(lats)
        out.append(
            {
                "from_s": round(i * window_s, 1),
                "workflows": len(lats),
                "workflows_per_s": round(len(lats) / window_s, 1),
                "tasks_per_s": round(len(lats) * tasks_per_wf / window_s, 1),
                "p50_ms": s["p50"],
                "p99_ms": s["p99"],
                "max_ms": s["max"],
                "drain": bool(duration_s) and i * window_s >= duration_s,
            }
        )
    return out


def dump_header(data_dir: str) -> dict[str, Any] | None:
    """The header of a replica's snapshot (snapshot.py's layout) without reading its body."""
    path = os.path.join(data_dir, DUMP_FILE)
    try:
        with open(path, "rb") as f:
            magic = f.read(10)
            (hlen,) = struct.unpack(">I", f.read(4))
            header: dict[str, Any] = json.loads(f.read(hlen))
        header["file_bytes"] = os.path.getsize(path)
        header["mtime"] = os.path.getmtime(path)
        return header if magic == b"ORCHSNAP1\n" else None
    except (OSError, ValueError, struct.error):
        return None


def wait_for_snapshots(cluster: Any, seq: int, timeout_s: float) -> dict[str, Any]:
    """Wait until every replica's snapshot holds applied sequence `seq` (or the time is up)."""
    t0 = time.monotonic()
    dirs = {nid: cluster.cfg.data_dir(nid) for nid in cluster.replicas}
    while True:
        heads = {nid: dump_header(d) for nid, d in dirs.items()}
        ready = {nid: bool(h and int(h.get("seq", 0)) >= seq) for nid, h in heads.items()}
        if all(ready.values()) or time.monotonic() - t0 > timeout_s:
            break
        time.sleep(1.0)
    return {
        "target_seq": seq,
        "all_covered": all(ready.values()),
        "waited_s": round(time.monotonic() - t0, 1),
        "dumps": {
            nid: ({"seq": h.get("seq"), "mib": round(h["file_bytes"] / 2**20, 1)} if h else None)
            for nid, h in heads.items()
        },
    }


def tick_report(
    cluster: Any, since_wall: float, window: tuple[float, float] | None = None
) -> dict[str, Any]:
    """Per replica: snapshots since `since_wall` (fork ms, child ms, longest tick gap while it
    ran), snapshot loads, the longest tick gap since then and within `window` (wall times)."""
    out: dict[str, Any] = {}
    now = time.time()
    for nid in cluster.replicas:
        st = tick_stats.read(cluster.cfg.data_dir(nid))
        if st is None:
            out[nid] = None
            continue
        snaps = [s for s in st.get("snapshots", []) if s.get("wall", 0) >= since_wall]
        out[nid] = {
            "snapshots": [
                {k: round(v, 1) if isinstance(v, float) else v for k, v in s.items()} for s in snaps
            ],
            "max_gap_ms_since": tick_stats.max_gap_between(st, since_wall, now),
            "loads": [
                {"ms": round(x["ms"], 1), "mib": round(x["bytes"] / 2**20, 1)}
                for x in st.get("loads", [])
            ],
            # The longest gaps (>= 50 ms), seconds after `since_wall`.
            "long_gaps": sorted(
                (
                    [round(w - since_wall), g]
                    for w, g in st.get("windows", [])
                    if w >= since_wall - 1.0
                ),
                key=lambda x: -x[1],
            )[:10],
            "gc": st.get("gc"),
        }
        if window is not None:
            out[nid]["max_gap_ms_in_window"] = tick_stats.max_gap_between(st, *window)
    return out


class CapacityRun:
    """The capacity steps of one run, around its measured phase (run.py calls them in order)."""

    def __init__(self, opts: Any, report: dict[str, Any], cluster: Any, monitor: Any) -> None:
        self.opts = opts
        self.report = report
        self.cluster = cluster  # the LocalCluster the bench started, or None
        self.monitor = monitor
        self.park_wall = 0.0
        self.parked_seq = 0
        self.measure_wall = (0.0, 0.0)

    def empty_then_park(
        self, client: Any, measure_once: Any, summarise_empty: Any, leader_seq: Any
    ) -> None:
        """With --park: the measured phase on the empty cluster, then park the workflows."""
        if not self.opts.park:
            return
        print("bench: measuring the empty cluster first", file=sys.stderr)
        self.report["empty"] = summarise_empty(measure_once())
        self.park_wall = time.time()
        self.report["park"] = park(
            client, self.opts.park_kind, self.opts.park, self.opts.park_concurrency
        )
        self.report["park"]["ended_s"] = round(time.time() - self.park_wall, 1)
        self.parked_seq = leader_seq()
        self.report["park"]["applied_seq_after"] = self.parked_seq
        print(f"bench: {self.report['park']}; measuring the parked cluster", file=sys.stderr)

    def measuring(self) -> None:
        self.measure_wall = (time.time(), 0.0)

    def measured(self) -> None:
        self.measure_wall = (self.measure_wall[0], time.time())

    def after(self, m: Any, tasks_per_wf: int, admin: Any, extra: list[Any]) -> None:
        """Time windows of --duration; with --park on a local cluster the snapshots and the
        tick gaps, then (with --recovery) a restarted and an added replica."""
        opts, report = self.opts, self.report
        if opts.duration:
            report["windows"] = windows(
                m.outcome["ends"], m.t_start, opts.window_s, tasks_per_wf, opts.duration
            )
        if self.cluster is None:
            if opts.park or opts.recovery:
                report["notes"].append("snapshots, tick gaps and recovery need a local cluster")
            return
        since = self.park_wall or self.measure_wall[0]
        if opts.park and opts.snapshot_timeout > 0:
            print("bench: waiting for every replica to snapshot the parked state", file=sys.stderr)
            report["snapshot_wait"] = wait_for_snapshots(
                self.cluster, self.parked_seq, opts.snapshot_timeout
            )
        report["ticks"] = tick_report(self.cluster, since, self.measure_wall)
        report["phases_s"] = {
            "measured": [round(t - since, 1) for t in self.measure_wall],
            "ticks_read": round(time.time() - since, 1),
        }
        if opts.recovery:
            from .recovery import add_replica, restart_follower

            print("bench: recovery: kill -9 and restart a follower", file=sys.stderr)
            restarted = restart_follower(self.cluster, self.monitor, opts.recovery_timeout)
            print(f"bench: {restarted}; adding a replica", file=sys.stderr)
            added = add_replica(self.cluster, admin, self.monitor, extra, opts.recovery_timeout)
            print(f"bench: {added}", file=sys.stderr)
            report["recovery"] = {"restarted": restarted, "added": added}
            # A replica that stalls past its election timeout calls an election when it ticks
            # again, and a higher term deposes the leader: the term says whether it happened.
            terms = [int(s.get("term", 0)) for s in self.monitor.cluster_status()]
            report["recovery"]["term_before"] = report["leader"]["term_after"]
            report["recovery"]["term_after"] = max(terms, default=0)
            # The new replicas' own stats: how long loading the snapshot took them.
            after = time.time()
            for cl, rec in ((self.cluster, restarted), *((c, added) for c in extra[-1:])):
                st = tick_stats.read(cl.cfg.data_dir(rec["replica"])) if "replica" in rec else None
                if st is not None:
                    rec["snapshot_loads"] = [
                        {"ms": round(x["ms"], 1), "mib": round(x["bytes"] / 2**20, 1)}
                        for x in st.get("loads", [])
                    ]
                    rec["max_tick_gap_ms"] = tick_stats.max_gap_between(st, 0, after)


def _e2e(r: dict[str, Any]) -> str:
    e = r.get("end_to_end_ms", {})
    return (
        f"p50 {e.get('p50')} / p99 {e.get('p99')} ms over {e.get('count')} workflows, "
        f"errors {r.get('error_count')}, term {r['leader']['term_before']} -> "
        f"{r['leader']['term_after']}"
    )


def format_capacity(r: dict[str, Any]) -> str:
    """The capacity lines of the printed report (empty when no capacity option was given)."""
    lines: list[str] = []
    if "empty" in r and "end_to_end_ms" in r:
        p = r["park"]
        lines.append(
            f"  parked {p['workflows']} {p['kind']} workflows in {p['seconds']} s "
            f"({p['per_s']}/s), errors {p['errors'] or 0}"
        )
        lines.append(f"  empty cluster:  {_e2e(r['empty'])}")
        lines.append(f"  parked cluster: {_e2e(r)}")
    for w in r.get("windows", []):
        lines.append(
            f"  window {w['from_s']:>6.1f} s: {w['workflows_per_s']:>8.1f} wf/s "
            f"{w['tasks_per_s']:>8.1f} tasks/s  p50 {w['p50_ms']}  p99 {w['p99_ms']} ms"
            + ("  (drain: in flight at the end)" if w.get("drain") else "")
        )
    if "snapshot_wait" in r:
        sw = r["snapshot_wait"]
        lines.append(
            f"  snapshots of the parked state: {'all' if sw['all_covered'] else 'NOT all'} "
            f"replicas (waited {sw['waited_s']} s): {sw['dumps']}"
        )
    for nid, t in (r.get("ticks") or {}).items():
        if t is None:
            continue
        snaps = ", ".join(
            f"fork {s['fork_ms']} ms, child {s.get('duration_ms')} ms, gap {s['max_gap_ms']} ms"
            for s in t["snapshots"]
        )
        lines.append(
            f"  {nid} ticks: longest gap {t['max_gap_ms_since']} ms since parking "
            f"({t.get('max_gap_ms_in_window')} ms while measured); snapshots: {snaps or '-'}"
        )
    for what, rec in (r.get("recovery") or {}).items():
        lines.append(f"  {what}: {rec}")
    return "\n".join(lines)
