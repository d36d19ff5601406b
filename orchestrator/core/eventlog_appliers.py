"""Appliers of the replicated event log and its handlers (processors/eventlog.py); journaled
like every applier (appliers.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import events as E
from . import journal as J
from .codec import encoded_size

if TYPE_CHECKING:
    from .context import Ctx


def event_appended(ctx: Ctx, ev: E.EventAppended) -> None:
    st = ctx.st
    offset = ev.record["offset"]
    ctx.undo.append(
        (J.restore, st, ("event_offset", "event_bytes"), (st.event_offset, st.event_bytes))
    )
    st.event_offset = offset
    st.event_bytes += encoded_size(ev.record)
    J.set_key(ctx.undo, st.event_log, offset, ev.record)


def oldest_event_dropped(ctx: Ctx, ev: E.OldestEventDropped) -> None:
    st = ctx.st
    record = J.pop_key(ctx.undo, st.event_log, ev.offset)
    if record is not None:
        ctx.undo.append((J.restore, st, ("event_bytes",), (st.event_bytes,)))
        st.event_bytes -= encoded_size(record)


def event_handler_set(ctx: Ctx, ev: E.EventHandlerSet) -> None:
    J.set_key(ctx.undo, ctx.st.event_handlers, ev.handler["name"], ev.handler)


def event_handler_removed(ctx: Ctx, ev: E.EventHandlerRemoved) -> None:
    J.pop_key(ctx.undo, ctx.st.event_handlers, ev.name)


def bridge_mark_set(ctx: Ctx, ev: E.BridgeMarkSet) -> None:
    J.set_key(ctx.undo, getattr(ctx.st, ev.marks), ev.name, ev.value)
