"""Percentiles, process CPU and memory, and the client recorder hook that times each RPC."""

from __future__ import annotations

import math
import os
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


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


def self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def code_name(exc: object) -> str:
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
                self.errors[f"{op}:{code_name(detail)}:{event}"] += 1

    def reset(self) -> None:
        with self._lock:
            self.latencies.clear()
            self.errors.clear()
