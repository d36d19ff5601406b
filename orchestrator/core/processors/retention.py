"""Retention of ended workflows: kept in the order they ended, the oldest evicted (with their
tasks) beyond limits.MAX_TERMINAL_WORKFLOWS.

Eviction runs once a command is done (engine.py), outside its undo journal: putting an evicted
workflow back in place would need its position in the workflow and task tables, a scan per
eviction on the hot path at the retention cap; and a command that is undone must not have
evicted anything. Eviction only deletes what it finds, so it cannot stop half way."""

from __future__ import annotations

from .. import events as E
from .. import limits
from ..context import Ctx


def retire(ctx: Ctx, workflow_id: str) -> None:
    ctx.emit(E.WorkflowEndRecorded(workflow_id))


def evict(ctx: Ctx) -> None:
    """The oldest ended workflows beyond the cap go. Only between commands (module doc)."""
    order = ctx.st.terminal_order
    while len(order) > limits.MAX_TERMINAL_WORKFLOWS:
        ctx.emit(E.WorkflowEvicted(next(iter(order))))
