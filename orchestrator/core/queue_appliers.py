"""The appliers of the task queues and their flow limits (processors/flow.py): a task queued by
priority, taken out of its queue, a lease counted against its queue's concurrency limit and
rate window, capacity that returns. Like appliers.py (which maps these events here), every
write first journals its inverse.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from typing import TYPE_CHECKING

from . import events as E
from . import journal as J
from .state import ReadyQueue

if TYPE_CHECKING:
    from .context import Ctx


def note_ready(ctx: Ctx, queue_name: str) -> None:
    """The queue has a task to lease: waiting polls are woken, parked ones filled after the
    batch (polls.fill_parked)."""
    ctx.fx.ready(queue_name)
    if ctx.st.parked and queue_name not in ctx.fill_types:
        ctx.fill_types.append(queue_name)


def task_queued(ctx: Ctx, ev: E.TaskQueued) -> None:
    st, u = ctx.st, ctx.undo
    queue = st.queues.get(ev.queue)
    if queue is None:
        queue = ReadyQueue()
        J.set_key(u, st.queues, ev.queue, queue)
    sub = queue.by_priority.get(ev.priority)
    if sub is None:
        sub = OrderedDict()
        J.set_key(u, queue.by_priority, ev.priority, sub)
    J.set_key(u, sub, ev.task_id, st.clock_ms)
    note_ready(ctx, ev.queue)


def unqueue(ctx: Ctx, queue_name: str, task_id: str) -> None:
    queues = ctx.st.queues
    queue = queues.get(queue_name)
    if queue is None:
        return
    priority = queue.priority_of(task_id)
    if priority is None:
        return
    sub = queue.by_priority[priority]
    J.pop_key(ctx.undo, sub, task_id)
    if not sub:
        J.pop_key(ctx.undo, queue.by_priority, priority)
        if not queue:
            J.pop_key(ctx.undo, queues, queue_name)


def capacity_returned(ctx: Ctx, ev: E.CapacityReturned) -> None:
    note_ready(ctx, ev.queue)


def lease_ended(ctx: Ctx, queue_name: str) -> None:
    """A leased task left IN_PROGRESS: its queue has a slot more (concurrentExecLimit)."""
    leased = ctx.st.leased
    n = leased.get(queue_name, 0)
    if n <= 1:
        J.pop_key(ctx.undo, leased, queue_name)
    else:
        J.set_key(ctx.undo, leased, queue_name, n - 1)
    if ctx.st.queues.get(queue_name):
        note_ready(ctx, queue_name)


def note_lease_time(ctx: Ctx, queue_name: str, window_ms: int) -> None:
    """Keep the lease's time while its queue has a rate limit (window_ms); leases that left
    the window are trimmed lazily, once they are half the list (amortized O(1) a lease)."""
    st, u = ctx.st, ctx.undo
    times = st.lease_times
    if not window_ms:  # the limit is gone, and so is its window
        J.pop_key(u, times, queue_name)
        return
    log = times.get(queue_name)
    if log is None:
        log = []
        J.set_key(u, times, queue_name, log)
    else:
        gone = bisect_right(log, st.clock_ms - window_ms)
        if gone and 2 * gone >= len(log):
            log = log[gone:]
            J.set_key(u, times, queue_name, log)
    u.append((list.pop, log))
    log.append(st.clock_ms)
