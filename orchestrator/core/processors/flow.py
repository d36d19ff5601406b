"""Flow control: a task definition's concurrency and rate limits on its queues, and the order
a queue hands out its tasks (priority with aging).

The limits in force are those of the task definition registered now, not a workflow's copy:
an operator's change holds from the next poll. They count per queue (`queue_key`), so each task
domain has its own budget. concurrentExecLimit bounds the queue's tasks IN_PROGRESS at once
(`State.leased`); rateLimitPerFrequency bounds its leases within the last
rateLimitFrequencyInSeconds of cluster time, a sliding window (`State.lease_times`). A poll
beyond them leases fewer or none and the tasks stay SCHEDULED. Capacity that returns makes the
queue ready in the same apply: a leased task's end (appliers), the rate window moving (the
replicated `rate:<queue>` timer, armed when the window fills) or a registration.

Order: the effective priority of a ready task is its workflow's priority plus one per
PRIORITY_AGING_MS it has waited; the highest goes first, ties to the oldest. A task therefore
goes before any task queued (q - p) * PRIORITY_AGING_MS or more after it (p its priority, q the
other's), so no load of higher priorities starves it.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from .. import events as E
from ..context import Ctx
from ..limits import PRIORITY_AGING_MS
from ..records import RATE_TIMER
from ..state import ReadyQueue, State

JSON = Any
Limits = tuple[int, int, int]  # concurrentExecLimit, rateLimitPerFrequency, window in ms
NO_LIMITS: Limits = (0, 0, 0)


def _count(value: JSON) -> int:
    # Definitions registered before the limits were validated may hold anything: not a limit.
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def limits_of(st: State, queue: str) -> Limits:
    """The limits of a queue's task definition as registered now (no definition: none)."""
    td = st.task_defs.get(queue.partition("@")[0])
    if td is None:
        return NO_LIMITS
    conc = _count(td.get("concurrentExecLimit"))
    rate = _count(td.get("rateLimitPerFrequency"))
    if not (conc or rate):
        return NO_LIMITS
    return conc, rate, (_count(td.get("rateLimitFrequencyInSeconds")) or 1) * 1000


def in_window(st: State, queue: str, window_ms: int) -> int:
    """Leases of the queue within the last window_ms of cluster time."""
    log = st.lease_times.get(queue)
    if not log:
        return 0
    return len(log) - bisect_right(log, st.clock_ms - window_ms)


def room(st: State, queue: str, want: int, lim: Limits) -> int:
    """How many of `want` leases the queue's limits allow now."""
    conc, rate, window = lim
    if conc:
        want = min(want, conc - st.leased.get(queue, 0))
    if rate:
        want = min(want, rate - in_window(st, queue, window))
    return max(want, 0)


def can_lease(st: State, queue: str) -> bool:
    """A poll of the queue would lease a task now: one is ready and the limits allow it."""
    if not st.queues.get(queue):
        return False
    lim = limits_of(st, queue)
    return lim is NO_LIMITS or room(st, queue, 1, lim) > 0


def head(queue: ReadyQueue, now_ms: int) -> str:
    """The task the queue hands out next: highest effective priority, ties to the oldest.

    Within one priority the oldest has waited longest, so only each priority's head competes:
    the cost is the number of priorities waiting (one in the common case)."""
    by_priority = queue.by_priority
    if len(by_priority) == 1:
        for sub in by_priority.values():
            return next(iter(sub))
    best, best_key = "", (-1, 0)
    for priority, sub in by_priority.items():
        task_id, at = next(iter(sub.items()))
        # Equal effective priorities with equal times are the same priority: never a tie here.
        key = (priority + (now_ms - at) // PRIORITY_AGING_MS, -at)
        if key > best_key:
            best, best_key = task_id, key
    return best


def arm_rate_timer(ctx: Ctx, queue: str, lim: Limits) -> None:
    """The queue's rate window is full: a Tick when the lease that keeps it full leaves it."""
    _, rate, window = lim
    st = ctx.st
    log = st.lease_times.get(queue)
    if not rate or not log:
        return
    start = bisect_right(log, st.clock_ms - window)
    used = len(log) - start
    if used < rate:
        return
    due = log[start + used - rate] + window
    key = RATE_TIMER + queue
    if st.timers.get(key) != due:
        ctx.emit(E.TimerSet(key, due))


def recheck(ctx: Ctx, queue: str) -> None:
    """The queue's limits may let a lease through again (its rate timer fired, or its task
    definition was registered): say so when they do and a task waits, else keep a timer for
    the rate window (a full window always has one, so a task queued later is not stranded)."""
    st = ctx.st
    lim = limits_of(st, queue)
    if lim is not NO_LIMITS and room(st, queue, 1, lim) == 0:
        arm_rate_timer(ctx, queue, lim)
    elif st.queues.get(queue):
        ctx.emit(E.CapacityReturned(queue))


def limits_changed(ctx: Ctx, names: list[str]) -> None:
    """Task definitions were registered: each of their queues with ready tasks or a rate window
    is rechecked (a raised limit serves waiting polls at once; a lowered one may have filled
    its window)."""
    st = ctx.st
    changed = dict.fromkeys(names)
    queues = dict.fromkeys(
        q for q in (*st.queues, *st.lease_times) if q.partition("@")[0] in changed
    )
    for queue in queues:
        recheck(ctx, queue)
