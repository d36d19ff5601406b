"""Polls: leasing tasks to workers, long polls parked in the state until a task of their queue
is ready (lease at schedule time), and the poll times task domains choose by."""

from __future__ import annotations

from typing import Any

from .. import events as E
from .. import limits
from ..commands import CancelPoll, PollActivity, PollTasks
from ..context import Ctx, Outcome
from ..errors import invalid
from ..records import ParkedPoll, RequestRecord, Workflow, queue_key
from ..state import State
from . import flow, requests, tasks

JSON = Any


def poll_tasks(ctx: Ctx, cmd: PollTasks) -> dict[str, JSON]:
    st = ctx.st
    if not 1 <= cmd.count <= limits.MAX_POLL_COUNT:
        raise invalid(f"count: must be between 1 and {limits.MAX_POLL_COUNT}")
    if cmd.park_until_ms < 0:
        raise invalid("park_until_ms: must not be negative")
    qkey = queue_key(cmd.task_type, cmd.domain)
    ctx.emit(E.PollNoted(qkey))
    leased = tasks.lease(ctx, qkey, cmd.worker_id, cmd.count, cmd.principal)
    if leased and cmd.request_id in st.parked:
        # A retry of a parked poll found work first (in the same entry as the command that made
        # it ready): it is answered now and recorded, so it is no longer parked.
        ctx.emit(E.PollSettled(cmd.request_id))
    # The parked lifetime is bounded by the longest long poll, whatever the proposer asked.
    expires = min(cmd.park_until_ms, ctx.now + limits.MAX_POLL_TIMEOUT_MS)
    if leased or expires <= ctx.now:
        return {"task_ids": leased}
    if cmd.request_id not in st.parked and len(st.parked) >= limits.MAX_PARKED_POLLS:
        return {"task_ids": []}  # not parked: the dispatcher waits locally instead
    # A retry of a parked poll keeps its place in line and gets the new expiry.
    poll = ParkedPoll(qkey, cmd.worker_id, cmd.count, st.epoch, expires, ctx.fp, cmd.principal)
    ctx.emit(E.PollParked(cmd.request_id, poll))
    return {"task_ids": [], "parked": True}


def poll_activity(ctx: Ctx, cmd: PollActivity) -> dict[str, JSON]:
    queues = cmd.queues
    if not isinstance(queues, list) or len(queues) > limits.MAX_POLL_COUNT:
        raise invalid(f"queues: a list of at most {limits.MAX_POLL_COUNT} queue names")
    for q in queues:
        if not isinstance(q, str) or not 0 < len(q) <= 2 * limits.MAX_NAME_LENGTH + 1:
            raise invalid(f"queues: {q!r} is not a queue name")
    for q in queues:
        ctx.emit(E.PollNoted(q))
    return {}


def cancel_poll(ctx: Ctx, cmd: CancelPoll) -> dict[str, JSON]:
    if cmd.poll_request_id not in ctx.st.parked:
        return {"cancelled": False}
    ctx.emit(E.PollSettled(cmd.poll_request_id))
    return {"cancelled": True}


def fill_parked(ctx: Ctx) -> None:
    """Lease the tasks this batch made ready to the oldest parked polls of their queues.

    Runs at the end of every batch that enqueued a task while polls were parked, so no parked
    poll's queue is left with a ready task between entries. A filled poll is recorded as its
    request's outcome (a retry with the same request id returns the same task ids) and leaves
    the parked set.
    """
    st = ctx.st
    queues, ctx.fill_types = ctx.fill_types, []
    mark = ctx.mark()
    try:
        for queue in queues:
            for rid in [r for r, p in st.parked.items() if p.queue == queue]:
                if not flow.can_lease(st, queue):  # nothing ready, or no capacity left
                    break
                poll = st.parked[rid]
                ctx.emit(E.PollSettled(rid))
                leased = tasks.lease(ctx, queue, poll.worker_id, poll.count, poll.owner)
                outcome = Outcome(result={"task_ids": leased}).to_dict()
                ctx.emit(E.RequestRecorded(rid, RequestRecord(poll.fp, outcome, ctx.now)))
        requests.expire(ctx)
    except Exception:  # nothing escapes apply; a poll left parked expires by its timer
        ctx.rollback(mark)
    ctx.undo.clear()


def active_domain(st: State, wf: Workflow, task_name: str) -> str:
    """Conductor's task domain choice: the task's entry in taskToDomain (or "*"), a comma list
    tried in order; the first domain polled within ACTIVE_WORKER_MS wins, else the last listed
    ("NO_DOMAIN" = the default queue)."""
    mapping = wf.task_to_domain
    spec = mapping.get(task_name, mapping.get("*"))
    if not spec:
        return ""
    domains = [str(d).strip() for d in str(spec).split(",") if str(d).strip()]
    for d in domains:
        if d == "NO_DOMAIN":
            continue
        seen = st.last_poll.get(queue_key(task_name, d))
        if seen is not None and st.clock_ms - seen <= limits.ACTIVE_WORKER_MS:
            return d
    last = domains[-1] if domains else "NO_DOMAIN"
    return "" if last == "NO_DOMAIN" else last
