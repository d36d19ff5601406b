"""Durable subscriptions: consumer groups' committed offsets on the event log and on the
workflow change feed (subscription_appliers.py writes the feed).

A group is named per stream ("events" or "workflows"); AckEvents moves its committed offset
forward only (an ack of an older offset, a retry or a slow duplicate, changes nothing) and
never past the stream's last offset, so a consumer that fails over resumes after the last
offset any replica saw acknowledged. A stream starts at max(from_offset, committed + 1).
"""

from __future__ import annotations

from typing import Any

from .. import events as E
from .. import limits
from ..commands import AckEvents
from ..context import Ctx
from ..definitions import name_field
from ..errors import Code, Rejected, invalid
from ..state import State
from ..subscription_appliers import feed_record

JSON = Any
STREAMS = ("events", "workflows")


def group_key(stream: str, group: str) -> str:
    # "/" is not a name character: the key cannot be read two ways.
    return f"{stream}/{group}"


def check_stream(stream: JSON) -> str:
    if stream not in STREAMS:
        raise invalid(f"stream: must be one of {', '.join(STREAMS)}, got {stream!r}")
    return str(stream)


def last_offset(st: State, stream: str) -> int:
    return st.event_offset if stream == "events" else st.feed_offset


def ack_events(ctx: Ctx, cmd: AckEvents) -> dict[str, JSON]:
    stream = check_stream(cmd.stream)
    group = name_field(cmd.group, "group")
    offset = cmd.offset
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise invalid("offset: must be an integer >= 0")
    st = ctx.st
    last = last_offset(st, stream)
    if offset > last:
        raise invalid(f"offset: {offset} is past the {stream} stream's last offset {last}")
    key = group_key(stream, group)
    committed = st.consumer_groups.get(key)
    if committed is None and len(st.consumer_groups) >= limits.MAX_CONSUMER_GROUPS:
        raise Rejected(
            Code.RESOURCE_EXHAUSTED,
            f"at most {limits.MAX_CONSUMER_GROUPS} consumer groups (limits.MAX_CONSUMER_GROUPS)",
        )
    if committed is None or offset > committed:
        ctx.emit(E.ConsumerCommitted(key, offset))
        committed = offset
    return {"committed": committed}


def committed(st: State, stream: str, group: str) -> int:
    """A group's committed offset on `stream`, 0 before its first ack."""
    return st.consumer_groups.get(group_key(stream, group), 0)


def oldest_offset(st: State, stream: str) -> int:
    """The stream's oldest kept offset (last + 1 while nothing is kept)."""
    kept = st.event_log if stream == "events" else st.workflow_feed
    return next(iter(kept)) if kept else last_offset(st, stream) + 1


def read_stream(st: State, stream: str, start: int, limit: int) -> list[dict[str, JSON]]:
    """Up to `limit` records of `stream` from offset `start` on (none dropped: the caller
    checked `start` against oldest_offset)."""
    end = min(start + limit, last_offset(st, stream) + 1)
    offsets = range(max(start, 1), end)
    if stream == "events":
        return [st.event_log[o] for o in offsets if o in st.event_log]
    feed = st.workflow_feed
    return [feed_record(feed[o]) for o in offsets if o in feed]
