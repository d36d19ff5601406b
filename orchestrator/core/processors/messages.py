"""Message correlation (Zeebe's message catch): a WAIT_FOR_EVENT task waits IN_PROGRESS for an
event of its name with its correlation key; every appended event with a key completes the
waiting tasks it matches (eventlog.append_event calls correlate), at most one per workflow, the
oldest waiting first. An event nobody waits for may wait for its task instead, up to its ttl_ms
of cluster time (a buffered message), and a WAIT_FOR_EVENT that starts takes the oldest
unexpired one at once.

A buffered message holds only its offset, name, key and expiry: its payload is the event log's,
so a message whose event left the log (retention) is gone too. Expired messages are dropped as
they are met (oldest first, and whenever a scan passes them), never by a replica's clock."""

from __future__ import annotations

from typing import Any

from .. import events as E
from .. import limits
from ..context import Ctx
from ..definitions import name_field
from ..errors import Rejected, TaskCannotRun, invalid
from ..records import T_COMPLETED, T_IN_PROGRESS, TIMEOUT_TIMER, WF_LIVE, Task
from ..state import State
from . import decider, tasks

JSON = Any


def start_wait(ctx: Ctx, task: Task) -> None:
    """A WAIT_FOR_EVENT task starts (IN_PROGRESS): it takes a buffered message or waits."""
    try:
        name = name_field(task.input.get("event"), "WAIT_FOR_EVENT: inputParameters.event")
    except Rejected as rej:
        raise TaskCannotRun(rej.message) from None
    key = task.input.get("correlationKey")
    if not isinstance(key, str) or not key or len(key) > limits.MAX_CORRELATION_KEY_LENGTH:
        raise TaskCannotRun(
            "WAIT_FOR_EVENT: inputParameters.correlationKey must resolve to a non-empty string "
            f"of at most {limits.MAX_CORRELATION_KEY_LENGTH} characters"
        )
    record = _take_buffered(ctx, name, key)
    if record is not None:
        tasks.end_task(ctx, task, T_COMPLETED, output=_output(record))
        ctx.emit(E.EventRecordSet(record["offset"], "correlated", [task.task_id]))
        return
    ctx.emit(E.EventWaitStarted(task.task_id, name, key))
    if task.timeout_seconds:  # the task definition's, as for a worker task (timers.py)
        ctx.emit(E.TimerSet(TIMEOUT_TIMER + task.task_id, ctx.now + task.timeout_seconds * 1000))


def _take_buffered(ctx: Ctx, name: str, key: str) -> dict[str, JSON] | None:
    st = ctx.st
    for offset, msg in list(st.messages.items()):
        record = st.event_log.get(offset)
        if record is None or msg["expires"] <= ctx.now:
            ctx.emit(E.MessageRemoved(offset))
            continue
        if msg["name"] == name and msg["correlationKey"] == key:
            ctx.emit(E.MessageRemoved(offset))
            return record
    return None


def _output(record: dict[str, JSON]) -> dict[str, JSON]:
    return {
        "event": record["name"],
        "offset": record["offset"],
        "payload": record["payload"],
        "correlationKey": record["correlationKey"],
        "time": record["time"],
    }


def correlate(ctx: Ctx, record: dict[str, JSON]) -> list[str]:
    """Complete the WAIT_FOR_EVENT tasks the appended event matches: the ids, in order."""
    st = ctx.st
    waiting = st.event_waits.get((record["name"], record["correlationKey"]))
    if not waiting:
        return []
    candidates = _in_waiting_order(st, [st.tasks[t] for t in waiting if t in st.tasks])
    done: list[str] = []
    seen: set[str] = set()  # membership only, never iterated
    for task in candidates:
        wf = st.workflows.get(task.workflow_id)
        if task.workflow_id in seen or task.status != T_IN_PROGRESS or wf is None:
            continue
        if wf.status not in WF_LIVE:
            continue
        seen.add(task.workflow_id)
        mark = ctx.mark()
        try:
            tasks.end_task(ctx, task, T_COMPLETED, output=_output(record))
            decider.decide(ctx, wf)
        except Rejected:  # the workflow's walk refused (a limit): it keeps waiting
            ctx.rollback(mark)
            continue
        done.append(task.task_id)
    return done


def _in_waiting_order(st: State, candidates: list[Task]) -> list[Task]:
    """By start time, ties by creation order (the order of `st.tasks`, which a snapshot keeps):
    the same whether the index was built live or rebuilt on load."""
    starts = [t.start_time_ms for t in candidates]
    if len(set(starts)) == len(starts):
        return sorted(candidates, key=lambda t: t.start_time_ms)
    wanted = {t.task_id for t in candidates}
    position = {tid: i for i, tid in enumerate(st.tasks) if tid in wanted}
    return sorted(candidates, key=lambda t: (t.start_time_ms, position[t.task_id]))


def buffer(ctx: Ctx, record: dict[str, JSON], ttl_ms: int) -> None:
    """The event completed nothing: it waits ttl_ms for a WAIT_FOR_EVENT task."""
    st = ctx.st
    message = {
        "offset": record["offset"],
        "name": record["name"],
        "correlationKey": record["correlationKey"],
        "expires": ctx.now + ttl_ms,
    }
    ctx.emit(E.MessageBuffered(message))
    for offset, msg in list(st.messages.items()):
        over = len(st.messages) > limits.MAX_BUFFERED_MESSAGES
        if not over and msg["expires"] > ctx.now and offset in st.event_log:
            break
        ctx.emit(E.MessageRemoved(offset))


def check_ttl(ttl_ms: JSON, field: str = "ttl_ms") -> int:
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int):
        raise invalid(f"{field}: must be an integer of milliseconds")
    if not 0 <= ttl_ms <= limits.MAX_MESSAGE_TTL_MS:
        raise invalid(f"{field}: must be 0..{limits.MAX_MESSAGE_TTL_MS} (7 days)")
    return ttl_ms
