"""The workflow change feed and consumer groups' committed offsets (processors/subscriptions.py),
written by appliers and journaled like every write (appliers.py).

admission_appliers.status_changed is the one place every change of a workflow's status passes
(a start, an admission, an end, a reopen, a compensation), so it calls `workflow_changed`: the
feed gets one record per change, in apply order, the same on every replica. The feed is bounded
like the event log, by count and by size, the oldest dropped first. A record's size is counted
from its strings' lengths, not by encoding it: the feed is written on the hot path of every
workflow, and its records hold only short fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import events as E
from . import journal as J
from . import limits

if TYPE_CHECKING:
    from .context import Ctx
    from .records import Workflow

JSON = Any
# What a record holds beyond its strings (keys, offset, version, time, punctuation), roughly.
RECORD_OVERHEAD = 96
_FEED_COUNTERS = ("feed_offset", "feed_bytes")


def record_size(record: dict[str, JSON]) -> int:
    return (
        RECORD_OVERHEAD
        + len(record["workflowId"])
        + len(record["name"])
        + len(record["status"])
        + len(record["correlationId"])
    )


def workflow_changed(ctx: Ctx, wf: Workflow) -> None:
    st = ctx.st
    offset = st.feed_offset + 1
    record = {
        "offset": offset,
        "workflowId": wf.workflow_id,
        "name": wf.workflow_name,
        "version": wf.workflow_version,
        "status": wf.status.value,
        "correlationId": wf.correlation_id,
        "time": st.clock_ms,
    }
    ctx.undo.append((J.restore, st, _FEED_COUNTERS, (st.feed_offset, st.feed_bytes)))
    st.feed_offset = offset
    st.feed_bytes += record_size(record)
    feed = st.workflow_feed
    J.set_key(ctx.undo, feed, offset, record)
    while len(feed) > limits.MAX_WORKFLOW_CHANGES or st.feed_bytes > limits.MAX_WORKFLOW_FEED_BYTES:
        dropped = J.pop_key(ctx.undo, feed, next(iter(feed)))
        st.feed_bytes -= record_size(dropped)


def consumer_committed(ctx: Ctx, ev: E.ConsumerCommitted) -> None:
    J.set_key(ctx.undo, ctx.st.consumer_groups, ev.key, ev.offset)
