"""Retention of ended workflows: kept in the order they ended, the oldest evicted (with their
tasks) beyond limits.MAX_TERMINAL_WORKFLOWS."""

from __future__ import annotations

from .. import events as E
from .. import limits
from ..context import Ctx


def retire(ctx: Ctx, workflow_id: str) -> None:
    ctx.emit(E.WorkflowEndRecorded(workflow_id))
    order = ctx.st.terminal_order
    while len(order) > limits.MAX_TERMINAL_WORKFLOWS:
        ctx.emit(E.WorkflowEvicted(next(iter(order))))
