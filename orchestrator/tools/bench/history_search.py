"""Search over a large durable history: `orchestrator bench --history-rows N`.

Fills one replica's history store (orchestrator/history/store.py, through `Store.write`, the
writer thread's own call) with N synthetic archived workflows, then pages through searches with
different filters via `History.search` (what the API calls), with an empty memory side, and
reports p50/p99 per query shape. No cluster: the store is what a replica holds, the numbers are
SQLite's and the search code's.

The rows: 8 workflow names, versions 1-3, 85 % COMPLETED, 10 % FAILED, 3 % TERMINATED,
2 % TIMED_OUT, created over 7 days in order of their number, 3 tasks each (the failed ones with
a failed task of one of 6 types and a reason of a few words), 2 000 correlation ids.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from orchestrator.core.history_ops import Archive
from orchestrator.core.records import (
    RetryLogic,
    Task,
    TaskStatus,
    TaskType,
    Workflow,
    WorkflowStatus,
)

from .stats import latency_summary_ms

NAMES = [f"order_flow_{i}" for i in range(8)]
FAILED_TYPES = ["charge_card", "reserve_stock", "ship", "notify", "fraud_check", "invoice"]
WORDS = ["timeout", "declined", "unavailable", "refused", "quota", "invalid", "expired", "lost"]
T0_MS = 1_790_000_000_000
SPAN_MS = 7 * 24 * 3600 * 1000


def _status(r: random.Random) -> WorkflowStatus:
    x = r.random()
    if x < 0.85:
        return WorkflowStatus.COMPLETED
    if x < 0.95:
        return WorkflowStatus.FAILED
    return WorkflowStatus.TERMINATED if x < 0.98 else WorkflowStatus.TIMED_OUT


def _task(
    wid: str, name: str, i: int, ttype: str, status: TaskStatus, at: int, reason: str
) -> Task:
    return Task(
        task_id=f"{wid}-t{i}-1",
        task_type=ttype,
        type=TaskType.SIMPLE,
        reference_task_name=f"t{i}",
        workflow_id=wid,
        workflow_type=name,
        correlation_id="",
        path=["tasks", i],
        seq=i,
        status=status,
        input={"order": wid, "step": i},
        output={"ok": status == TaskStatus.COMPLETED},
        retry_count=0,
        retried_task_id="",
        poll_count=1,
        scheduled_time_ms=at,
        start_time_ms=at + 1,
        end_time_ms=at + 20,
        lease_expires_ms=0,
        reason_for_incompletion=reason,
        worker_id="worker-1",
        response_timeout_seconds=60,
        retry_limit=0,
        retry_logic=RetryLogic.FIXED,
        retry_delay_seconds=0,
        backoff_scale_factor=1.0,
        max_retry_delay_seconds=0,
        optional=False,
    )


def synthetic(i: int, r: random.Random, rows: int) -> Archive:
    """The i-th synthetic archived workflow (created in order of i over 7 days)."""
    wid = f"wf-{i:09d}"
    name = NAMES[r.randrange(len(NAMES))]
    status = _status(r)
    create = T0_MS + (SPAN_MS * i) // max(1, rows)
    end = create + r.randrange(50, 60_000)
    reason = ""
    tasks = []
    failed_at = r.randrange(3) if status != WorkflowStatus.COMPLETED else 3
    for k in range(3):
        ttype = FAILED_TYPES[r.randrange(len(FAILED_TYPES))] if k == failed_at else f"step_{k}"
        if k < failed_at:
            tasks.append(_task(wid, name, k, ttype, TaskStatus.COMPLETED, create + k * 30, ""))
        elif k == failed_at:
            reason = f"{ttype} {' '.join(r.sample(WORDS, 3))} after {r.randrange(1, 9)} tries"
            tasks.append(_task(wid, name, k, ttype, TaskStatus.FAILED, create + k * 30, reason))
    wf = Workflow(
        workflow_id=wid,
        workflow_name=name,
        workflow_version=1 + r.randrange(3),
        def_hash="h" * 16,
        status=status,
        input={"order": wid, "amount": r.randrange(10_000)},
        output={"done": status == WorkflowStatus.COMPLETED},
        variables={},
        correlation_id=f"customer-{r.randrange(2000)}",
        priority=0,
        idempotency_key="",
        create_time_ms=create,
        end_time_ms=end,
        reason_for_incompletion=reason,
        tasks=[t.task_id for t in tasks],
        ref_index={t.reference_task_name: t.task_id for t in tasks},
        task_seq=len(tasks),
    )
    return Archive(seq=i + 1, workflow=wf, tasks=tuple(tasks), definition=None)


def fill(store: Any, rows: int, batch: int = 5000, seed: int = 14) -> float:
    """Write `rows` archived workflows through the store's writer call; the seconds it took."""
    r = random.Random(seed)
    t0 = time.monotonic()
    last = t0
    for start in range(store.seq(), rows, batch):
        ops = [synthetic(i, r, rows) for i in range(start, min(rows, start + batch))]
        store.write([(ops[-1].seq, list(ops))])
        if time.monotonic() - last >= 10.0:
            last = time.monotonic()
            print(f"bench: history rows {start + len(ops)}/{rows}", file=sys.stderr)
    return time.monotonic() - t0


class _EmptyMemory:
    """The replica side of a search: nothing running in memory, every row applied."""

    def __init__(self, seq: int) -> None:
        from orchestrator.core.state import State

        self.state = State()
        self.state.seq = seq

    def read(self, fn: Callable[[Any], Any]) -> Any:
        return fn(self.state)

    def wait_applied(self, seq: int, timeout_s: float) -> bool:
        return True


def queries(rows: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """The query shapes measured: (label, SearchQuery fields)."""
    mid = T0_MS + SPAN_MS // 2
    yield "newest first, no filter", {}
    yield "name", {"name": NAMES[3]}
    yield "status FAILED", {"statuses": ("FAILED",)}
    yield "name + status + version", {"name": NAMES[1], "statuses": ("FAILED",), "version": 2}
    yield "correlation id", {"correlation_id": "customer-42"}
    yield "created in a 1-hour range", {"created_from_ms": mid, "created_to_ms": mid + 3_600_000}
    yield "ended range, sort by end", {"ended_from_ms": mid, "sort": "end_time"}
    yield "failed task type", {"failed_task_type": "charge_card"}
    yield "free text", {"text": "declined quota"}
    yield (
        "status + failed type + text",
        {
            "statuses": ("FAILED",),
            "failed_task_type": "ship",
            "text": "timeout",
        },
    )
    yield "oldest first, no filter", {"descending": False}


def measure_search(
    history: Any, seq: int, pages: int, page_size: int, with_total: bool
) -> dict[str, Any]:
    """Per query shape: the first page and `pages - 1` following pages by the keyset cursor."""
    from orchestrator.history import SearchQuery

    memory = _EmptyMemory(seq)
    out: dict[str, Any] = {}
    every: list[float] = []
    for label, fields in queries(seq):
        lat: list[float] = []
        after = None
        total = -1
        found = 0
        for _ in range(pages):
            q = SearchQuery(page_size=page_size, after=after, with_total=with_total, **fields)
            t0 = time.perf_counter()
            page = history.search(memory, q)
            lat.append(time.perf_counter() - t0)
            total = page.total if page.total >= 0 else total
            found += len(page.workflows)
            after = page.next_after
            if after is None:
                break
        every += lat
        s = latency_summary_ms(lat)
        out[label] = {"pages": s["count"], "rows": found, "total": total, **_ms(s)}
    return {"by_query": out, "all_pages": _ms(latency_summary_ms(every)) | {"count": len(every)}}


def _ms(s: dict[str, Any]) -> dict[str, Any]:
    return {k: s[k] for k in ("p50", "p99", "max")}


def run_history_bench(opts: Any) -> dict[str, Any]:
    """Fill (or reuse) a history store with --history-rows rows and measure search pages."""
    from orchestrator.history import History
    from orchestrator.history import store as S

    keep = bool(opts.history_dir)
    folder = opts.history_dir or tempfile.mkdtemp(prefix="orchestrator-history-bench-")
    report: dict[str, Any] = {"config": {"rows": opts.history_rows, "folder": folder}}
    try:
        os.makedirs(folder, exist_ok=True)
        store = S.Store(os.path.join(folder, S.FILE), fsync=False)
        report["fts5"] = store.fts
        have = store.seq()
        report["fill_s"] = round(fill(store, opts.history_rows), 1)
        report["rows_before"] = have
        store.close()
        path = os.path.join(folder, S.FILE)
        report["file_mib"] = round(os.path.getsize(path) / 2**20, 1)
        history = History(folder, fsync=False)
        try:
            seq = history.seq()
            for with_total in (True, False):
                key = "with_total" if with_total else "without_total"
                report[key] = measure_search(
                    history, seq, opts.search_pages, opts.search_page_size, with_total
                )
        finally:
            history.stop()
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    return report


def format_history(r: dict[str, Any]) -> str:
    lines = [
        f"history search: {r['config']['rows']} rows ({r.get('file_mib')} MiB, filled in "
        f"{r.get('fill_s')} s, FTS5 {r.get('fts5')})"
    ]
    for key in ("with_total", "without_total"):
        if key not in r:
            continue
        a = r[key]["all_pages"]
        lines.append(f"  {key}: all pages p50 {a['p50']} / p99 {a['p99']} / max {a['max']} ms")
        for label, s in r[key]["by_query"].items():
            lines.append(
                f"    {label:<30} pages {s['pages']:>3} total {s['total']:>8}  "
                f"p50 {s['p50']} / p99 {s['p99']} / max {s['max']} ms"
            )
    return "\n".join(lines)
