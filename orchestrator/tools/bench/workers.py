"""The bench's worker processes: they complete every bench task and report when each finished.

Workers run in separate processes (spawn) so that their Python does not compete with the
bench's starters for one GIL. Each timestamps every successful CompleteTask on CLOCK_MONOTONIC,
which every process on the machine shares, and sends the timestamps to the bench process.
"""

from __future__ import annotations

import os
import queue
import resource
import threading
import time
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from .loop import Tracker
from .stats import RpcRecorder, self_cpu_s
from .workload import TASK_TYPE

if TYPE_CHECKING:
    from ..access import Access


class _Completions:
    """The recorder hook of a worker process: per-RPC latency, plus when each task completed."""

    def __init__(self, rec: RpcRecorder) -> None:
        self.rec = rec
        self.refs: dict[str, tuple[str, str]] = {}  # task id -> (workflow id, ref), until completed
        self._rids: dict[str, str] = {}  # CompleteTask request id -> task id
        self._pending: list[tuple[str, str, float]] = []
        self._lock = threading.Lock()

    def __call__(self, event: str, op: str, request_id: str, detail: Any) -> None:
        if op == "CompleteTask" and event == "invoke":
            self._rids[request_id] = detail.task_id
        self.rec(event, op, request_id, detail)
        if op == "CompleteTask" and event != "invoke":
            task_id = self._rids.pop(request_id, "")
            wf_ref = self.refs.pop(task_id, None)
            if event == "ok" and wf_ref is not None:
                with self._lock:
                    self._pending.append((wf_ref[0], wf_ref[1], time.monotonic()))

    def take(self) -> list[tuple[str, str, float]]:
        """The completions seen since the last call."""
        with self._lock:
            batch = self._pending[:]
            self._pending.clear()
        return batch


def _worker_main(
    index: int,
    access: Access,
    concurrency: int,
    poll_timeout_ms: int,
    out_q: Any,
    measuring: Any,
    stop: Any,
    parent: int,
) -> None:
    """One worker process: completes every bench task and reports completion timestamps."""
    from orchestrator_client import Worker

    rec = RpcRecorder()
    completions = _Completions(rec)
    client = access.client(timeout_s=10.0, retry_budget_s=30.0, recorder=completions)
    worker = Worker(
        client,
        worker_id=f"bench-{index}-{os.getpid()}",
        concurrency=concurrency,
        poll_timeout_ms=poll_timeout_ms,
    )

    @worker.task(TASK_TYPE)
    def handle(task: Any) -> dict[str, Any]:
        completions.refs[task.task_id] = (task.workflow_id, task.reference_task_name)
        return {"p": task.input.get("p")}

    cpu0 = self_cpu_s()
    # A bench killed outright (SIGKILL) runs no cleanup: a worker whose parent is gone exits
    # instead of polling for ever as an orphan. At once: nobody reads its numbers, and a
    # graceful stop would spend its retry budget on replicas that are going too.
    worker.start()
    out_q.put(("ready", index, os.getpid()))
    was_measuring = False
    while not stop.wait(0.005):
        if os.getppid() != parent:
            os._exit(0)
        if measuring.is_set() and not was_measuring:
            rec.reset()
            cpu0 = self_cpu_s()
            was_measuring = True
        rec.enabled = measuring.is_set()
        batch = completions.take()
        if batch:
            out_q.put(("done", batch))
    worker.stop()
    batch = completions.take()
    if batch:
        out_q.put(("done", batch))
    stats = worker.stats
    client.close()
    out_q.put(("final", index, _final_numbers(rec, stats, cpu0)))


def _final_numbers(rec: RpcRecorder, stats: Any, cpu0: float) -> dict[str, Any]:
    return {
        "latencies": rec.latencies,
        "errors": dict(rec.errors),
        "stats": {f.name: getattr(stats, f.name) for f in fields(stats)},
        "cpu_s": self_cpu_s() - cpu0,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }


class WorkerPool:
    """The worker processes and the thread that feeds their completions to the tracker."""

    def __init__(self, ctx: Any, tracker: Tracker) -> None:
        self.stop_ev = ctx.Event()
        self.measuring_ev = ctx.Event()
        self.out_q: Any = ctx.Queue()
        self.ctx = ctx
        self.tracker = tracker
        self.procs: list[Any] = []
        self.finals: dict[int, dict[str, Any]] = {}
        self.ready = 0
        self._collector_stop = threading.Event()
        self._collector: threading.Thread | None = None

    def start(self, count: int, access: Access, concurrency: int, poll_ms: int) -> None:
        for i in range(count):
            p = self.ctx.Process(
                target=_worker_main,
                args=(
                    i,
                    access,
                    concurrency,
                    poll_ms,
                    self.out_q,
                    self.measuring_ev,
                    self.stop_ev,
                    os.getpid(),
                ),
                daemon=True,
            )
            p.start()
            self.procs.append(p)

    def drain(self, block_s: float) -> None:
        """Handle every message queued, waiting up to `block_s` for the first."""
        try:
            msg = self.out_q.get(timeout=block_s)
        except queue.Empty:
            return
        while True:
            if msg[0] == "done":
                self.tracker.completions(msg[1])
            elif msg[0] == "ready":
                self.ready += 1
            elif msg[0] == "final":
                self.finals[msg[1]] = msg[2]
            try:
                msg = self.out_q.get_nowait()
            except queue.Empty:
                return

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Wait until every worker polls, then collect their completions on a thread."""
        deadline = time.monotonic() + timeout_s
        while self.ready < len(self.procs) and time.monotonic() < deadline:
            self.drain(0.2)
            dead = [p for p in self.procs if not p.is_alive()]
            if dead:
                raise RuntimeError(f"a worker process exited with {dead[0].exitcode}")
        if self.ready < len(self.procs):
            raise RuntimeError("worker processes did not start within 60 s")
        self._collector = threading.Thread(target=self._collect, name="collector", daemon=True)
        self._collector.start()

    def _collect(self) -> None:
        while not self._collector_stop.is_set():
            self.drain(0.1)

    def stop_and_collect(self, timeout_s: float = 30) -> None:
        """Stop the workers and wait for their final numbers."""
        self.stop_ev.set()
        deadline = time.monotonic() + timeout_s
        while len(self.finals) < len(self.procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._collector_stop.set()
        if self._collector is not None:
            self._collector.join(2)
        self.drain(0.1)

    def close(self) -> None:
        self.stop_ev.set()
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
