"""Appliers of message correlation (processors/messages.py); journaled like every applier
(appliers.py). The waiting index is derived from the tasks (State.rebuild_event_waits)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import events as E
from . import journal as J
from .codec import encoded_size
from .records import Task

if TYPE_CHECKING:
    from .context import Ctx


def event_record_set(ctx: Ctx, ev: E.EventRecordSet) -> None:
    st = ctx.st
    old = st.event_log.get(ev.offset)
    if old is None:  # dropped by retention meanwhile (a long chain in one apply)
        return
    # A new record, not an update in place: readers may hold the old one.
    new = {**old, ev.key: ev.value}
    ctx.undo.append((J.restore, st, ("event_bytes",), (st.event_bytes,)))
    st.event_bytes += encoded_size(new) - encoded_size(old)
    J.set_key(ctx.undo, st.event_log, ev.offset, new)


def event_wait_started(ctx: Ctx, ev: E.EventWaitStarted) -> None:
    waits = ctx.st.event_waits
    key = (ev.name, ev.key)
    if key not in waits:
        J.set_key(ctx.undo, waits, key, {})
    J.set_key(ctx.undo, waits[key], ev.task_id, None)


def unindex_wait(ctx: Ctx, task: Task) -> None:
    """A WAIT_FOR_EVENT task ends (completed, timed out, cancelled): it waits no more."""
    key = (task.input.get("event"), task.input.get("correlationKey"))
    waiting = ctx.st.event_waits.get(key)  # type: ignore[arg-type]
    if waiting is None or task.task_id not in waiting:
        return
    J.pop_key(ctx.undo, waiting, task.task_id)
    if not waiting:
        J.pop_key(ctx.undo, ctx.st.event_waits, key)


def message_buffered(ctx: Ctx, ev: E.MessageBuffered) -> None:
    J.set_key(ctx.undo, ctx.st.messages, ev.message["offset"], ev.message)


def message_removed(ctx: Ctx, ev: E.MessageRemoved) -> None:
    J.pop_key(ctx.undo, ctx.st.messages, ev.offset)


def async_output_set(ctx: Ctx, ev: E.AsyncOutputSet) -> None:
    task = ctx.st.tasks[ev.task_id]
    ctx.undo.append((J.restore, task, ("output", "script"), (task.output, task.script)))
    task.output = ev.output
    task.script = None
