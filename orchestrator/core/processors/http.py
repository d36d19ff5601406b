"""HTTP tasks in two phases, like scripts (scripts.py): the task waits IN_PROGRESS with a marker
(lang "http", the checked request as its input); the leader's runtime (runtime/http.py) makes
the request outside apply and proposes HttpResult, committed here. The request is never made
in apply: apply must be pure, and a replayed log must not call anyone again."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .. import codec, limits
from .. import events as E
from ..commands import HttpResult
from ..context import Ctx
from ..definition_tasks import http_request
from ..errors import Rejected, TaskCannotRun
from ..records import T_ACTIVE, T_COMPLETED, T_FAILED, T_FAILED_WITH_TERMINAL_ERROR, WF_LIVE, Task
from ..state import State
from . import decider, event_task, scripts, tasks

JSON = Any
LANG = "http"


@dataclass(frozen=True, slots=True)
class HttpJob:
    """What the HTTP executor needs for one pending request, copied out of the state."""

    task_id: str
    fence: int
    request: JSON
    workflow_id: str
    task_type: str = "HTTP"


def start_http(ctx: Ctx, task: Task) -> None:
    """Phase one: check the resolved request and mark the task as waiting for it."""
    try:
        req = http_request(task.input.get("http_request"), "http_request")
    except Rejected as rej:
        raise TaskCannotRun(f"HTTP: {rej.message}") from None
    scripts.await_script(ctx, task, LANG, "", input=req)


def http_result(ctx: Ctx, cmd: HttpResult) -> dict[str, JSON]:
    """Phase two: a 2xx response completes the task; anything else fails it, retryable by its
    task definition unless the runtime refused the request (allow-list): then terminally."""
    task, wf = scripts.pending_evaluation(ctx.st, cmd.task_id, cmd.fence, http=True)
    resp = cmd.response if isinstance(cmd.response, dict) else None
    problem = codec.json_problem(resp) if resp is not None else ""
    if problem:  # stored, it would be served back as something no client can read
        resp, error = None, f"the response is not valid JSON: {problem}"
    else:
        error = (cmd.error if isinstance(cmd.error, str) else "") or "no response"
    code = resp.get("statusCode") if resp is not None else None
    if isinstance(code, int) and 200 <= code < 300:
        if event_task.async_complete(ctx.st, wf, task):  # waits for a signal (event_task.py)
            ctx.emit(E.AsyncOutputSet(task.task_id, {"response": resp}))
            return {}
        tasks.end_task(ctx, task, T_COMPLETED, output={"response": resp})
        decider.decide(ctx, wf)
        return {}
    if resp is not None:
        error = f"HTTP {code} {resp.get('reasonPhrase', '')}".rstrip()
    status = T_FAILED_WITH_TERMINAL_ERROR if cmd.terminal else T_FAILED
    output: JSON = {"response": resp} if resp is not None else {"error": error}
    reason = f"HTTP task failed: {error}"[: limits.MAX_REASON_LENGTH - 100]
    tasks.end_task(ctx, task, status, output=output, reason=reason)
    tasks.handle_failure(ctx, wf, task)
    return {}


def pending_http(st: State) -> list[tuple[str, int]]:
    """(task id, fence) of every HTTP request waiting for an HttpResult."""
    return scripts.pending_scripts(st, http=True)


def http_job(st: State, task_id: str) -> HttpJob | None:
    task = st.tasks.get(task_id)
    if task is None or task.status not in T_ACTIVE:
        return None
    marker = task.script
    if marker is None or marker.lang != LANG:
        return None
    wf = st.workflows.get(task.workflow_id)
    if wf is None or wf.status not in WF_LIVE:
        return None
    return HttpJob(task_id, marker.fence, copy.deepcopy(marker.input), task.workflow_id)
