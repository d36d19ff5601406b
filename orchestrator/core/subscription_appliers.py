"""The workflow change feed and consumer groups' committed offsets (processors/subscriptions.py),
written by appliers and journaled like every write (appliers.py).

admission_appliers.status_changed is the one place every change of a workflow's status passes
(a start, an admission, an end, a reopen, a compensation), so it calls `workflow_changed`: the
feed gets one record per change, in apply order, the same on every replica. The feed is bounded
like the event log, by count and by size, the oldest dropped first. A record's size is counted
from its strings' lengths, not by encoding it: the feed is written on the hot path of every
workflow, and its records hold only short fields.

A record is a tuple of strings and integers (FEED_FIELDS), not a dict: cheaper to build on
this hot path, and written to the snapshot without its keys (perf_core's 12 000 changes: +0.6 MB
instead of +1.4 MB). `feed_record` gives the dict readers see.
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
FEED_FIELDS = ("offset", "workflowId", "name", "version", "status", "correlationId", "time")
# (offset, workflowId, name, version, status, correlationId, time)
FeedRecord = tuple[int, str, str, int, str, str, int]
# What a record holds beyond its strings (keys, offset, version, time, punctuation), roughly.
RECORD_OVERHEAD = 96
_FEED_COUNTERS = ("feed_offset", "feed_bytes")


def record_size(record: FeedRecord) -> int:
    return RECORD_OVERHEAD + len(record[1]) + len(record[2]) + len(record[4]) + len(record[5])


def feed_record(record: FeedRecord) -> dict[str, JSON]:
    return dict(zip(FEED_FIELDS, record, strict=True))


def workflow_changed(ctx: Ctx, wf: Workflow) -> None:
    st = ctx.st
    offset = st.feed_offset + 1
    record: FeedRecord = (
        offset,
        wf.workflow_id,
        wf.workflow_name,
        wf.workflow_version,
        wf.status.value,
        wf.correlation_id,
        st.clock_ms,
    )
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
