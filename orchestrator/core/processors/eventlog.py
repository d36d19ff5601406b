"""The replicated event log: PublishEvent appends an event with the next offset (1, 2, ...)
and the cluster time, and the active handlers of its name (processors/event_handlers.py) act on
it in the same apply, so each action runs exactly once per event by construction.

Each action runs under its own journal mark: one that is refused (a task already completed, a
workflow not found) is undone alone and its refusal recorded on the event, beside the outcomes
of the others; the event stays. Workflows an action starts get ids derived from the event's
offset and the action's index, the same on every replica. At most limits.MAX_EVENTS events, and
at most limits.MAX_EVENT_LOG_BYTES of them encoded, stay in memory, the oldest dropped first.
"""

from __future__ import annotations

from typing import Any

from .. import events as E
from .. import limits
from ..commands import CompleteTask, FailTask, PublishEvent, StartWorkflow, TerminateWorkflow
from ..conditions import condition_true
from ..context import Ctx
from ..definitions import name_field
from ..errors import Code, Rejected, invalid, precondition
from ..expressions import resolve
from . import messages, tasks, workflows

JSON = Any


def publish_event(ctx: Ctx, cmd: PublishEvent) -> dict[str, JSON]:
    name, key = check_event(cmd.name, cmd.payload, cmd.correlation_key)
    ttl_ms = messages.check_ttl(cmd.ttl_ms)
    return append_event(ctx, name, cmd.payload, key, ttl_ms=ttl_ms)


def check_event(name: JSON, payload: JSON, correlation_key: JSON) -> tuple[str, str]:
    """An event from outside the core (PublishEvent, a broker's IngestEvent): its name and key,
    or Rejected naming the field that is wrong."""
    checked = name_field(name, "name")
    if not isinstance(payload, dict):
        raise invalid("payload: must be a JSON object")
    key = correlation_key
    if not isinstance(key, str) or len(key) > limits.MAX_CORRELATION_KEY_LENGTH:
        raise invalid(f"correlation_key: at most {limits.MAX_CORRELATION_KEY_LENGTH} characters")
    return checked, key


def append_event(
    ctx: Ctx,
    name: str,
    payload: JSON,
    correlation_key: str,
    *,
    ttl_ms: int = 0,
    sink: str = "",
    source: str = "",
) -> dict[str, JSON]:
    """The one way into the log (PublishEvent, the EVENT task, a broker's source): the caller has
    validated name, payload and key. The record is appended first, so events appended by what
    this one causes (a handler's workflow publishing) come after it; its handlers then act on it
    and it completes the WAIT_FOR_EVENT tasks it matches (processors/messages.py)."""
    if ctx.event_depth >= limits.MAX_EVENT_CHAIN:
        raise precondition(
            f"event {name!r}: events caused by events nest at most {limits.MAX_EVENT_CHAIN} "
            "deep in one command (limits.MAX_EVENT_CHAIN)"
        )
    st = ctx.st
    offset = st.event_offset + 1
    record = {
        "offset": offset,
        "name": name,
        "payload": payload,
        "correlationKey": correlation_key,
        "time": ctx.now,
        "actions": [],
        "sink": sink,
        "correlated": [],
    }
    if source:
        record["source"] = source
    ctx.emit(E.EventAppended(record))
    ctx.event_depth += 1
    try:
        outcomes = _handle(ctx, record)
        correlated = messages.correlate(ctx, record) if correlation_key else []
    finally:
        ctx.event_depth -= 1
    if outcomes:
        ctx.emit(E.EventRecordSet(offset, "actions", outcomes))
    if correlated:
        ctx.emit(E.EventRecordSet(offset, "correlated", correlated))
    elif correlation_key and ttl_ms > 0:
        messages.buffer(ctx, record, ttl_ms)
    # The newest event always stays (a payload is within MAX_JSON_BYTES, far below the bound).
    while len(st.event_log) > 1 and (
        len(st.event_log) > limits.MAX_EVENTS or st.event_bytes > limits.MAX_EVENT_LOG_BYTES
    ):
        ctx.emit(E.OldestEventDropped(next(iter(st.event_log))))
    return {"offset": offset}


def _handle(ctx: Ctx, record: dict[str, JSON]) -> list[dict[str, JSON]]:
    """The active handlers of the event's name act on it: their outcomes, in order."""
    name, payload, offset = record["name"], record["payload"], record["offset"]
    doc = {"payload": payload, "event": name, "correlationKey": record["correlationKey"]}
    outcomes: list[dict[str, JSON]] = []
    for handler in list(ctx.st.event_handlers.values()):
        if not handler["active"] or handler["event"] != name:
            continue
        if handler["condition"] and not condition_true(handler["condition"], payload):
            continue
        for action in handler["actions"]:
            outcome = _run(ctx, action, doc, f"event-{offset}-{len(outcomes)}")
            outcomes.append({"handler": handler["name"], "action": action["action"], **outcome})
    return outcomes


def _run(ctx: Ctx, action: JSON, doc: JSON, workflow_id: str) -> dict[str, JSON]:
    """One action, undone alone when refused: its outcome as {code, message, result}."""
    mark = ctx.mark()
    try:
        result = _act(ctx, action["action"], resolve(action[action["action"]], doc), workflow_id)
    except Rejected as rej:
        ctx.rollback(mark)
        return {"code": rej.code.value, "message": rej.message, "result": {}}
    return {"code": Code.OK.value, "message": "", "result": result}


def _act(ctx: Ctx, kind: str, p: JSON, workflow_id: str) -> dict[str, JSON]:
    if kind == "start_workflow":
        version = p.get("version", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise invalid("start_workflow.version: must resolve to an integer")
        cmd = StartWorkflow(
            request_id="",
            workflow_id=workflow_id,
            name=_text(p, "name", kind),
            version=version,
            input=p.get("input", {}),
            correlation_id=_text(p, "correlationId", kind, ""),
        )
        return workflows.start_workflow(ctx, cmd)
    wf_id = _text(p, "workflowId", kind)
    if kind == "terminate_workflow":
        reason = _text(p, "reason", kind, "terminated by an event handler")
        return workflows.terminate_workflow(ctx, TerminateWorkflow("", wf_id, reason))
    ref = _text(p, "taskRefName", kind)
    output = p.get("output", {})
    if kind == "complete_task":
        return tasks.complete_task(
            ctx, CompleteTask("", "", output, workflow_id=wf_id, reference_task_name=ref)
        )
    reason = _text(p, "reason", kind, "failed by an event handler")
    return tasks.fail_task(
        ctx, FailTask("", "", reason, output=output, workflow_id=wf_id, reference_task_name=ref)
    )


def _text(p: JSON, key: str, kind: str, default: str | None = None) -> str:
    value = p.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise invalid(f"{kind}.{key}: must resolve to a non-empty string")
    return value
