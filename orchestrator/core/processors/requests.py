"""Requests: the one deduplication rule (a retry gets the first outcome; a request id reused
for a different request is rejected), recording outcomes, and the table's retention."""

from __future__ import annotations

from .. import events as E
from .. import limits
from ..context import Ctx, Outcome
from ..errors import Code
from ..records import RequestRecord
from ..state import State


def recorded_outcome(st: State, request_id: str, fp: str) -> Outcome | None:
    """What a request id already answers: its recorded outcome (marked deduplicated), a
    rejection when the id was used for a different request, or None for a new request.

    Used by apply and by the leader's precheck alike, so both answer the same.
    """
    prev = st.requests.get(request_id)
    if prev is not None:
        if prev.fp != fp:
            return _reused(request_id)
        out = Outcome.from_dict(prev.outcome)
        out.result = dict(out.result, deduplicated=True)
        return out
    parked = st.parked.get(request_id) if st.parked else None
    if parked is not None and parked.fp != fp:
        # The id belongs to a parked poll, whose outcome is recorded under it when filled.
        return _reused(request_id)
    return None


def _reused(request_id: str) -> Outcome:
    return Outcome(
        Code.INVALID_ARGUMENT,
        f"request_id {request_id!r} was already used for a different request",
    )


def record(ctx: Ctx, request_id: str, outcome: Outcome) -> None:
    record = RequestRecord(ctx.fp, outcome.to_dict(), ctx.now)
    ctx.emit(E.RequestRecorded(request_id, record))
    reqs = ctx.st.requests
    if len(reqs) > limits.MAX_REQUEST_ENTRIES or (
        next(iter(reqs.values())).at_ms < ctx.now - limits.REQUEST_RETENTION_MS
    ):
        expire(ctx)


def expire(ctx: Ctx) -> None:
    """Forget the oldest requests beyond the table's bound or its retention time."""
    reqs = ctx.st.requests
    excess = len(reqs) - limits.MAX_REQUEST_ENTRIES
    horizon = ctx.now - limits.REQUEST_RETENTION_MS
    n = 0
    for rec in reqs.values():
        if n < excess or rec.at_ms < horizon:
            n += 1
        else:
            break
    if n:
        ctx.emit(E.RequestsExpired(n))
