"""Audits of issue 17's limits from the records a cluster reports, after a run.

Task limits are checked from task records alone, because every lease of a task is one record
(a lease that expires ends the record TIMED_OUT; a retry is a new record): its
[start_time_ms, end_time_ms) is its time IN_PROGRESS (end 0: still in progress), and
start_time_ms is its lease time. Workflow limits are checked the same way from each workflow's
[start_time_ms, end_time_ms) (start 0: it never ran). Intervals are half-open because cluster
time has millisecond steps: a task that ends and one leased in the same millisecond (a
completion whose answer carries the next task) do not overlap. The converse, a lease applied
before an end in the same millisecond, is invisible to these audits.

The functions take duck-typed records (client views or hand-made ones) and return JSON-ready
results; a violation is named with the time, the count, the limit and the records involved.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_OPEN = math.inf  # the end of an interval still open when the records were read
_SAMPLE = 5  # violations named per queue or definition


@dataclass(frozen=True)
class TaskLimit:
    """A task definition's limits (0 = none), per queue as the core applies them."""

    concurrent: int = 0  # concurrentExecLimit
    rate: int = 0  # rateLimitPerFrequency
    per_seconds: int = 1  # rateLimitFrequencyInSeconds


@dataclass(frozen=True)
class WorkflowLimit:
    """A workflow definition's `limits` (0 = none), per definition name."""

    max_running: int = 0
    per_correlation_id: int = 0


def queue_of(task: Any) -> str:
    """The queue a task was leased from (the core's records.queue_key)."""
    domain = getattr(task, "domain", "") or ""
    return f"{task.task_type}@{domain}" if domain else str(task.task_type)


def peak_overlap(
    intervals: Iterable[tuple[int, float, str]], limit: int = 0
) -> tuple[int, list[dict[str, Any]]]:
    """The most intervals (start, end, id) open at one instant, and each instant where more than
    `limit` (> 0) were open, with their ids. End 0 means still open."""
    points: list[tuple[float, int, str]] = []
    for start, end, ident in intervals:
        stop = end or _OPEN
        if stop <= start:
            continue  # ended in the millisecond it began: in progress at no instant
        points.append((start, 1, ident))
        points.append((stop, 0, ident))  # 0 sorts ends before starts at equal times
    points.sort(key=lambda p: (p[0], p[1]))
    open_now: dict[str, None] = {}
    peak = 0
    violations: list[dict[str, Any]] = []
    for at, kind, ident in points:
        if kind == 0:
            open_now.pop(ident, None)
            continue
        open_now[ident] = None
        peak = max(peak, len(open_now))
        if limit and len(open_now) > limit and len(violations) < _SAMPLE:
            violations.append({"at_ms": at, "open": len(open_now), "ids": list(open_now)})
    return peak, violations


def peak_window(
    leases: Iterable[tuple[int, str]], window_ms: int, limit: int = 0
) -> tuple[int, list[dict[str, Any]]]:
    """The most leases (time, id) within one sliding window (t - window_ms, t], and each lease
    that made a window hold more than `limit` (> 0), with the window's leases."""
    ordered = sorted(leases)
    peak = 0
    first = 0
    violations: list[dict[str, Any]] = []
    for i, (at, _) in enumerate(ordered):
        while ordered[first][0] <= at - window_ms:
            first += 1
        count = i - first + 1
        peak = max(peak, count)
        if limit and count > limit and len(violations) < _SAMPLE:
            ids = [ident for _, ident in ordered[first : i + 1]]
            violations.append({"at_ms": at, "leases": count, "ids": ids})
    return peak, violations


def audit_task_limits(tasks: Iterable[Any], limits: Mapping[str, TaskLimit]) -> dict[str, Any]:
    """For each limited task type (`limits` by task type; each of its queues on its own): the
    peak IN_PROGRESS at once and the peak leases in one rate window, against the limits."""
    by_queue: dict[str, list[Any]] = {}
    for t in tasks:
        if t.task_type in limits and t.start_time_ms > 0:
            by_queue.setdefault(queue_of(t), []).append(t)
    out: dict[str, Any] = {}
    for queue in sorted(by_queue):
        records = by_queue[queue]
        lim = limits[records[0].task_type]
        peak, over = peak_overlap(
            ((t.start_time_ms, t.end_time_ms, t.task_id) for t in records), lim.concurrent
        )
        window_ms = max(1, lim.per_seconds) * 1000
        rate_peak, rate_over = peak_window(
            ((t.start_time_ms, t.task_id) for t in records), window_ms, lim.rate
        )
        out[queue] = {
            "leases": len(records),
            "concurrent_limit": lim.concurrent,
            "peak_in_progress": peak,
            "rate_limit": f"{lim.rate}/{lim.per_seconds}s" if lim.rate else None,
            "peak_leases_in_window": rate_peak,
            "violations": [{"kind": "concurrency", **v} for v in over]
            + [{"kind": "rate", **v} for v in rate_over],
        }
    return out


def audit_workflow_limits(
    workflows: Iterable[Any], limits: Mapping[str, WorkflowLimit]
) -> dict[str, Any]:
    """For each limited definition name (all versions together): the peak of its workflows
    running at once, overall and per non-empty correlation id, against the limits."""
    by_name: dict[str, list[Any]] = {}
    for wf in workflows:
        if wf.workflow_name in limits and getattr(wf, "start_time_ms", 0) > 0:
            by_name.setdefault(wf.workflow_name, []).append(wf)
    out: dict[str, Any] = {}
    for name in sorted(by_name):
        runs = by_name[name]
        lim = limits[name]
        peak, over = peak_overlap(
            ((w.start_time_ms, w.end_time_ms, w.workflow_id) for w in runs), lim.max_running
        )
        per_corr: dict[str, list[Any]] = {}
        for w in runs:
            if w.correlation_id:
                per_corr.setdefault(w.correlation_id, []).append(w)
        corr_peak = 0
        corr_over: list[dict[str, Any]] = []
        for corr in sorted(per_corr):
            p, o = peak_overlap(
                ((w.start_time_ms, w.end_time_ms, w.workflow_id) for w in per_corr[corr]),
                lim.per_correlation_id,
            )
            corr_peak = max(corr_peak, p)
            corr_over += [{"correlation_id": corr, **v} for v in o]
        out[name] = {
            "started": len(runs),
            "max_running": lim.max_running,
            "peak_running": peak,
            "max_running_per_correlation_id": lim.per_correlation_id,
            "peak_running_per_correlation_id": corr_peak,
            "violations": [{"kind": "maxRunning", **v} for v in over]
            + [{"kind": "maxRunningPerCorrelationId", **v} for v in corr_over[:_SAMPLE]],
        }
    return out


def audit_compensations(
    workflows: Iterable[Any], undo_types: Iterable[str], step_key: str = "step"
) -> dict[str, Any]:
    """Each compensated step was compensated at most once: among the COMPLETED tasks of the
    compensation types, no two of one workflow name the same step (their input's `step_key`,
    which the definition fills from `${compensated.taskId}`). Also counts the COMPENSATED
    workflows and the steps compensated."""
    undo = set(undo_types)
    steps = 0
    compensated = 0
    violations: list[dict[str, Any]] = []
    for wf in workflows:
        compensated += wf.status == "COMPENSATED"
        done: dict[str, list[str]] = {}
        for t in wf.tasks:
            if t.task_type in undo and t.status == "COMPLETED":
                done.setdefault(str(t.input.get(step_key, "")), []).append(t.task_id)
        steps += len(done)
        for step, ids in done.items():
            if len(ids) > 1 and len(violations) < _SAMPLE:
                violations.append({"workflow_id": wf.workflow_id, "step": step, "tasks": ids})
    return {
        "compensated_workflows": compensated,
        "steps_compensated": steps,
        "violations": violations,
    }


def violations_of(audit: Mapping[str, Any]) -> list[str]:
    """One line per audited queue or definition with a violation, naming its first (empty:
    every limit held); `audit` is one of the audits above."""
    if "violations" in audit:  # audit_compensations: one result for all workflows
        audit = {"compensations": audit}
    lines = []
    for key, result in audit.items():
        if isinstance(result, Mapping) and result.get("violations"):
            lines.append(f"{key}: {result['violations'][0]}")
    return lines
