"""Retention of ended workflows: kept in memory in the order they ended, the oldest evicted
(with their tasks) beyond limits.MAX_TERMINAL_WORKFLOWS into the durable history
(history_ops.Archive), which keeps them for the cluster's retention (history_ops.Expire).

Eviction runs once a command is done (engine.py), outside its undo journal: putting an evicted
workflow back in place would need its position in the workflow and task tables, a scan per
eviction on the hot path at the retention cap; and a command that is undone must not have
evicted anything. Eviction only deletes what it finds, so it cannot stop half way.

The history's retention runs on a replicated timer (every HISTORY_EXPIRE_PERIOD_MS of cluster
time once anything was archived, and at once when the setting changes), so every replica
deletes the same rows at the same log position, and an idle cluster still expires its rows.
"""

from __future__ import annotations

from typing import Any

from .. import events as E
from .. import limits
from ..context import Ctx
from ..history_ops import Expire
from ..records import HISTORY_TIMER

JSON = Any


def retire(ctx: Ctx, workflow_id: str) -> None:
    ctx.emit(E.WorkflowEndRecorded(workflow_id))


def evict(ctx: Ctx) -> None:
    """The oldest ended workflows beyond the cap go. Only between commands (module doc)."""
    order = ctx.st.terminal_order
    if len(order) <= limits.MAX_TERMINAL_WORKFLOWS:
        return
    while len(order) > limits.MAX_TERMINAL_WORKFLOWS:
        ctx.emit(E.WorkflowEvicted(next(iter(order))))
    if HISTORY_TIMER not in ctx.st.timers:  # the first archive: retention starts running
        ctx.emit(E.TimerSet(HISTORY_TIMER, ctx.now + limits.HISTORY_EXPIRE_PERIOD_MS))


def expire(ctx: Ctx) -> None:
    """Retention of the durable history, now (a Tick of its timer, or a changed setting)."""
    s = ctx.st.settings
    ctx.emit(
        E.HistoryExpiryDue(
            cutoff_ms=max(0, ctx.now - s["history_retention_ms"]),
            max_rows=s["history_max_workflows"],
            next_due_ms=ctx.now + limits.HISTORY_EXPIRE_PERIOD_MS,
        )
    )


def note(ctx: Ctx, first: int) -> None:
    """The command applied gave the history the operations from `first` on: record what a
    replica that installs a later snapshot needs to know of them (history/writer.py). Only
    between commands (module doc)."""
    ops = ctx.fx.history[first:]
    if not ops:
        return
    structural = any(not isinstance(op, Expire) for op in ops)
    last = next((op for op in reversed(ops) if isinstance(op, Expire)), None)
    expire_row = [] if last is None else [last.seq, last.cutoff_ms, last.max_rows]
    ctx.emit(E.HistoryNoted(ctx.st.seq if structural else 0, expire_row))


def settings(ctx: Ctx) -> dict[str, JSON]:
    return dict(ctx.st.settings)
