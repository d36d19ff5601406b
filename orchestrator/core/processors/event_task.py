"""The EVENT task (Conductor's): publishes its input as an event through eventlog.append_event,
in the same apply as its start. Its sink names the event: "conductor:<name>" is the log alone,
bare "conductor" names it <workflow name>:<task reference>, "<bridge kind>:<subject>" (e.g.
nats:orders.created) names it <subject> and marks the record for that bridge's sink
(orchestrator/bridge/), which forwards it at least once.

asyncComplete (the task's own field, or its input): the task stays IN_PROGRESS after publishing,
until a signal (CompleteTask/FailTask by workflow id and reference, or by task id) or an event
handler's complete_task ends it. The same holds for an HTTP task after a 2xx response."""

from __future__ import annotations

from typing import Any

from .. import events as E
from .. import limits
from ..context import Ctx
from ..definition_tasks import event_sink
from ..definitions import name_field
from ..errors import Rejected, TaskCannotRun
from ..records import T_COMPLETED, Task, TaskType, Workflow
from ..state import State
from . import eventlog, messages, registry, tasks

JSON = Any

# Input keys that configure the task and are not part of the event's payload.
CONTROL_KEYS = ("sink", "correlationKey", "ttl_ms", "asyncComplete")


def start_event(ctx: Ctx, wf: Workflow, task: Task) -> None:
    inp = task.input
    try:
        kind, name = event_sink(inp.get("sink"), "EVENT: inputParameters.sink")
        key = inp.get("correlationKey") or ""
        if not isinstance(key, str) or len(key) > limits.MAX_CORRELATION_KEY_LENGTH:
            raise TaskCannotRun(
                "EVENT: inputParameters.correlationKey must resolve to a string of at most "
                f"{limits.MAX_CORRELATION_KEY_LENGTH} characters"
            )
        ttl_ms = messages.check_ttl(inp.get("ttl_ms", 0), "EVENT: inputParameters.ttl_ms")
        if kind == "conductor" and not name:
            name = name_field(f"{wf.workflow_name}:{task.reference_task_name}", "event name")
        payload = {k: v for k, v in inp.items() if k not in CONTROL_KEYS}
        payload.update(
            workflowInstanceId=wf.workflow_id,
            workflowType=wf.workflow_name,
            workflowVersion=wf.workflow_version,
            correlationId=wf.correlation_id,
            taskRefName=task.reference_task_name,
        )
        sink = "" if kind == "conductor" else f"{kind}:{name}"
        result = eventlog.append_event(ctx, name, payload, key, ttl_ms=ttl_ms, sink=sink)
    except Rejected as rej:  # a bad sink from a template, or the chain guard
        raise TaskCannotRun(f"EVENT: {rej.message}") from None
    output = {"event": name, "offset": result["offset"], "sink": sink}
    if async_complete(ctx.st, wf, task):
        ctx.emit(E.AsyncOutputSet(task.task_id, output))
    else:
        tasks.end_task(ctx, task, T_COMPLETED, output=output)


def async_complete(st: State, wf: Workflow, task: Task) -> bool:
    """The task waits for a signal after its work (EVENT, HTTP with asyncComplete)."""
    if task.type not in (TaskType.EVENT, TaskType.HTTP):
        return False
    return bool(registry.wt_of(st, wf, task).get("asyncComplete")) or (
        task.input.get("asyncComplete") is True
    )
