"""The closed loop: starters that each start a workflow and wait for its last task."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from .stats import code_name


class Tracker:
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


class Progress:
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
        bar = (
            f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}" if self.total else done
        )
        line = f"{self.label} {bar} {rate:7.1f} wf/s  errors {errors}  leader {leader or '?'}"
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
            sys.stderr.flush()
        elif final or time.monotonic() - self._last_line >= 5.0:
            self._last_line = time.monotonic()
            sys.stderr.write(line + "\n")
            sys.stderr.flush()


def run_closed_loop(
    client: Any,
    tracker: Tracker,
    name: str,
    payload: str,
    count: int,
    concurrency: int,
    wf_timeout_s: float,
    outcome: dict[str, Any],
    on_progress: Callable[[], None] | None = None,
    deadline: float | None = None,
) -> None:
    """`concurrency` threads, each starting a workflow and waiting for it, `count` in all (or
    until the monotonic `deadline`, when given: workflows in flight then still finish)."""
    lock = threading.Lock()
    next_i = [0]

    def starter() -> None:
        while True:
            with lock:
                if next_i[0] >= count or (deadline is not None and time.monotonic() >= deadline):
                    return
                next_i[0] += 1
            t0 = time.monotonic()
            try:
                wid = client.start_workflow(name, {"payload": payload})
            except Exception as exc:
                with lock:
                    outcome["start_errors"][code_name(exc)] += 1
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
                    outcome["ends"].append((t1, t1 - t0))

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


def new_outcome() -> dict[str, Any]:
    # ends: (completion time on CLOCK_MONOTONIC, latency) of each workflow, for time windows
    return {"latencies": [], "timed_out": [], "start_errors": Counter(), "ends": []}
