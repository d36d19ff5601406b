"""Broker bridges (orchestrator/bridge/): the replicated marks that make a source exactly once
into the event log and let a sink resume where it was.

IngestEvent appends a broker message through eventlog.append_event only when its sequence is
past the source's mark, and moves the mark to it in the same apply, so a message proposed twice
(a retry, or an old and a new leader) enters the log once. A message the log refuses (a bad
name, a payload too large) still moves the mark, its refusal in the outcome: one bad message
must not stop its source for ever. AdvanceSink moves a sink's mark, never backwards and never
past the log's last offset.
"""

from __future__ import annotations

from typing import Any

from .. import events as E
from .. import limits
from ..codec import encoded_size
from ..commands import AdvanceSink, IngestEvent
from ..context import Ctx
from ..definitions import name_field
from ..errors import Rejected, invalid
from .eventlog import append_event, check_event

JSON = Any


def ingest_event(ctx: Ctx, cmd: IngestEvent) -> dict[str, JSON]:
    source = name_field(cmd.source, "source")
    seq = _count(cmd.seq, "seq")
    mark = ctx.st.source_marks.get(source, 0)
    if seq <= mark:
        # Already in the log (or refused) under this mark: nothing new.
        return {"offset": 0, "duplicate": True, "mark": mark}
    ctx.emit(E.BridgeMarkSet("source_marks", source, seq))
    journal = ctx.mark()
    try:
        name, key = check_event(cmd.name, cmd.payload, cmd.correlation_key)
        if encoded_size(cmd.payload) > limits.MAX_JSON_BYTES:
            raise invalid(f"payload: over {limits.MAX_JSON_BYTES} bytes")
        result = append_event(ctx, name, cmd.payload, key, source=source)
    except Rejected as rej:
        ctx.rollback(journal)
        return {"offset": 0, "refused": rej.message, "mark": seq}
    return {**result, "mark": seq}


def advance_sink(ctx: Ctx, cmd: AdvanceSink) -> dict[str, JSON]:
    sink = name_field(cmd.sink, "sink")
    offset = _count(cmd.offset, "offset")
    st = ctx.st
    if offset > st.event_offset:
        raise invalid(f"offset: {offset} is past the log's last offset {st.event_offset}")
    mark = st.sink_marks.get(sink, 0)
    if offset > mark:
        ctx.emit(E.BridgeMarkSet("sink_marks", sink, offset))
        mark = offset
    return {"mark": mark}


def _count(value: JSON, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(f"{field}: must be a positive integer")
    return value
