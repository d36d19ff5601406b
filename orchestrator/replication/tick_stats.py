"""How long the Raft tick thread went without ticking, and what the snapshots cost it.

The tick thread sends heartbeats: a gap between two ticks longer than the election timeout
starts an election. A snapshot is the usual suspect (the fork of a large heap runs on the tick
thread, and so does loading a snapshot a follower receives), so each snapshot is recorded with
its fork time, how long its child took, and the longest gap while it ran.

The numbers go to a small JSON file in the data folder (at most once a second, written from
the tick thread: a write and a rename, no fsync), where `orchestrator bench` reads them; the
gRPC status has no field for them. A snapshot's end is also logged (`snapshot_written`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
from collections import deque
from time import perf_counter
from typing import Any

import structlog

log = structlog.get_logger("replication")

STATS_FILE = "tick_stats.json"
# A tick waits at most the auto tick period (20 ms by default) for work, so a longer gap means
# the tick thread was busy or starved. Seconds with a gap this long are kept (the last
# WINDOWS of them, each with its longest gap), and the last SNAPSHOTS snapshots.
NOTABLE_GAP_S = 0.05
WINDOWS = 2000
SNAPSHOTS = 50


# The collector's pauses in this process, by generation (a full collection of a large heap
# stops every thread, the tick thread included): count and longest.
_gc: dict[str, Any] = {"count": [0, 0, 0], "max_ms": [0.0, 0.0, 0.0], "total_ms": [0.0, 0.0, 0.0]}
_gc_t0 = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_t0[0] = perf_counter()
        return
    gen = int(info.get("generation", 0))
    ms = (perf_counter() - _gc_t0[0]) * 1000.0
    _gc["count"][gen] += 1
    _gc["total_ms"][gen] += ms
    _gc["max_ms"][gen] = max(_gc["max_ms"][gen], ms)


def _watch_gc() -> None:
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


class TickStats:
    """Fed by the tick thread only (ticks, snapshot start/end, loads); `write` publishes it."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, STATS_FILE)
        self.started_wall = time.time()
        self.ticks = 0
        self.max_gap_s = 0.0
        self.max_gap_wall = 0.0
        self._last: float | None = None
        # [wall second, longest gap ending in it (s)], seconds with a notable gap only
        self.windows: deque[list[float]] = deque(maxlen=WINDOWS)
        self.snapshots: deque[dict[str, Any]] = deque(maxlen=SNAPSHOTS)
        self.loads: deque[dict[str, Any]] = deque(maxlen=SNAPSHOTS)
        self._snap: dict[str, Any] | None = None
        self._snap_t0 = 0.0
        self._written = 0.0
        _watch_gc()

    def tick(self) -> None:
        now = time.monotonic()
        if self._last is not None:
            gap = now - self._last
            wall = time.time()
            if gap > self.max_gap_s:
                self.max_gap_s, self.max_gap_wall = gap, wall
            second = float(int(wall))
            if gap < NOTABLE_GAP_S:
                pass
            elif self.windows and self.windows[-1][0] == second:
                self.windows[-1][1] = max(self.windows[-1][1], gap)
            else:
                self.windows.append([second, gap])
            if self._snap is not None:
                self._snap["max_gap_ms"] = max(self._snap["max_gap_ms"], gap * 1000.0)
        self._last = now
        self.ticks += 1
        if now - self._written >= 1.0:
            self.write(now)

    def fork_started(self) -> None:
        self._snap_t0 = time.monotonic()
        self._snap = {"wall": time.time(), "fork_ms": 0.0, "max_gap_ms": 0.0}

    def fork_returned(self) -> None:
        if self._snap is not None:
            self._snap["fork_ms"] = (time.monotonic() - self._snap_t0) * 1000.0

    def snapshot_ended(self, result: int) -> None:
        """`result`: pysyncobj's serializer state, 2 success, 3 failed."""
        snap, self._snap = self._snap, None
        if snap is None:
            return
        snap["duration_ms"] = (time.monotonic() - self._snap_t0) * 1000.0
        snap["ok"] = result == 2
        self.snapshots.append(snap)
        log.info(
            "snapshot_written",
            ok=snap["ok"],
            fork_ms=round(snap["fork_ms"], 1),
            duration_ms=round(snap["duration_ms"], 1),
            max_tick_gap_ms=round(snap["max_gap_ms"], 1),
        )
        self.write(time.monotonic())

    def loaded(self, seconds: float, size: int) -> None:
        self.loads.append({"wall": time.time(), "ms": seconds * 1000.0, "bytes": size})
        self.write(time.monotonic())

    def as_dict(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "started_wall": self.started_wall,
            "ticks": self.ticks,
            "max_gap_ms": self.max_gap_s * 1000.0,
            "max_gap_wall": self.max_gap_wall,
            "windows": [[w, round(g * 1000.0, 2)] for w, g in self.windows],
            "snapshots": list(self.snapshots),
            "snapshot_running": self._snap is not None,
            "loads": list(self.loads),
            "gc": {k: [round(x, 1) for x in v] for k, v in _gc.items()},
        }

    def write(self, now: float) -> None:
        self._written = now
        tmp = self.path + ".tmp"
        # A full disk or a removed folder must never stop the tick thread.
        with contextlib.suppress(OSError):
            with open(tmp, "w") as f:
                json.dump(self.as_dict(), f)
            os.replace(tmp, self.path)


def read(data_dir: str) -> dict[str, Any] | None:
    """The stats a replica last wrote in `data_dir`, or None."""
    try:
        with open(os.path.join(data_dir, STATS_FILE)) as f:
            out: dict[str, Any] = json.load(f)
            return out
    except (OSError, ValueError):
        return None


def max_gap_between(stats: dict[str, Any], wall_from: float, wall_to: float) -> float:
    """The longest tick gap (ms) from `wall_from` to `wall_to` (wall times, to the second);
    0.0 when none reached NOTABLE_GAP_S."""
    gaps = [g for w, g in stats.get("windows", []) if wall_from - 1.0 <= w <= wall_to]
    return max(gaps) if gaps else 0.0
