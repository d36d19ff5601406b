"""Scheduling a task: its record built from the task configuration and task definition, its
input resolved, and its start by type (a worker's queue, a timer, a script, a child workflow,
or an operator that finishes at once)."""

from __future__ import annotations

import copy
import math
from decimal import Decimal
from typing import Any, assert_never

from .. import codec, limits
from .. import events as E
from ..conditions import ConditionError, parse_duration_ms, parse_until_ms
from ..context import Ctx
from ..definitions import JS_EVALUATORS, check_task_to_domain
from ..errors import Rejected, TaskCannotRun
from ..expressions import resolve, stringify
from ..records import (
    RETRY_LOGIC_OF,
    T_COMPLETED,
    T_SCHEDULED,
    TASK_TYPE_OF,
    TIMEOUT_POLICY_OF,
    WF_FAILED,
    RetryLogic,
    Task,
    TaskType,
    TimeoutPolicy,
    Workflow,
)
from . import event_task, forks, http, messages, polls, registry, scripts, tasks, workflows
from .documents import task_doc

JSON = Any
_SIMPLE = TaskType.SIMPLE
# A configuration's type -> its task's type: forks create a FORK task, as in Conductor.
_RECORD_TYPE_OF = {
    **TASK_TYPE_OF,
    TaskType.FORK_JOIN.value: TaskType.FORK,
    TaskType.FORK_JOIN_DYNAMIC.value: TaskType.FORK,
}
_TERMINATION = ("COMPLETED", "FAILED", "TERMINATED")


def schedule(
    ctx: Ctx,
    wf: Workflow,
    wt: JSON,
    path: list[str | int] | None,
    suffix: str,
    retry_of: Task | None = None,
    delay_s: int = 0,
    given_input: dict[str, JSON] | None = None,
) -> Task | None:
    """Schedule one task configuration and start it; synchronous operators finish at once.

    Returns the task record (possibly already terminal), or None when the workflow may create
    no more tasks (it fails). Never raises for bad runtime input: such a task fails terminally
    and the usual failure handling follows.
    """
    if len(wf.tasks) >= limits.MAX_TASKS_PER_WORKFLOW:
        workflows.end_workflow(
            ctx,
            wf,
            WF_FAILED,
            f"the workflow created {limits.MAX_TASKS_PER_WORKFLOW} tasks (MAX_TASKS_PER_WORKFLOW)",
        )
        return None
    if wt["type"] == "DYNAMIC":
        name = resolve_input(ctx, wf, wt, "").get(wt["dynamicTaskNameParam"])
        task = _new_task(ctx, wf, wt, path, suffix, retry_of)
        if not isinstance(name, str) or not name:
            ctx.emit(E.TaskScheduled(task))
            reason = (
                f"DYNAMIC: input parameter {wt['dynamicTaskNameParam']!r} must name a task, "
                f"got {name!r}"
            )
            tasks.fail_now(ctx, task, reason)
            return task
        # From here on it is the SIMPLE task it names (as in Conductor), kept on the record so a
        # retry runs the same task.
        wt = dict(wt, type="SIMPLE", name=name)
        wt.pop("dynamicTaskNameParam", None)
        task.dynamic_task = wt
        task.type = TaskType.SIMPLE
        task.task_type = name
    else:
        task = _new_task(ctx, wf, wt, path, suffix, retry_of)
    try:
        _configure(ctx, wf, wt, task, retry_of, given_input)
    except TaskCannotRun as exc:
        ctx.emit(E.TaskScheduled(task))
        tasks.fail_now(ctx, task, exc.reason)
        return task
    ctx.emit(E.TaskScheduled(task))
    try:
        _start(ctx, wf, wt, task, delay_s)
    except TaskCannotRun as exc:
        tasks.fail_now(ctx, task, exc.reason)
    return task


def _new_task(
    ctx: Ctx,
    wf: Workflow,
    wt: JSON,
    path: list[str | int] | None,
    suffix: str,
    retry_of: Task | None,
) -> Task:
    """The task record, SCHEDULED, with the defaults of a task definition (not yet in the
    state: the caller configures it and emits TaskScheduled)."""
    ttype = _RECORD_TYPE_OF[wt["type"]]
    dynamic = wt if path is None else (retry_of.dynamic_task if retry_of is not None else None)
    return Task(
        task_id=codec.built_id(f"{wf.workflow_id}-{wf.task_seq}", limits.MAX_BUILT_ID_LENGTH),
        task_type=wt["name"] if ttype is _SIMPLE else ttype._value_,
        type=ttype,
        reference_task_name=wt["taskReferenceName"] + suffix,
        workflow_id=wf.workflow_id,
        workflow_type=wf.workflow_name,
        correlation_id=wf.correlation_id,
        path=path,
        seq=len(wf.tasks),
        status=T_SCHEDULED,
        input={},
        output={},
        retry_count=retry_of.retry_count + 1 if retry_of is not None else 0,
        retried_task_id=retry_of.task_id if retry_of is not None else "",
        poll_count=0,
        scheduled_time_ms=ctx.now,
        start_time_ms=0,
        end_time_ms=0,
        lease_expires_ms=0,
        reason_for_incompletion="",
        worker_id="",
        response_timeout_seconds=3600,
        retry_limit=0,
        retry_logic=RetryLogic.FIXED,
        retry_delay_seconds=0,
        backoff_scale_factor=1,
        max_retry_delay_seconds=0,
        optional=bool(wt.get("optional", False)),
        permissive=bool(wt.get("permissive", False)),
        dynamic_task=dynamic,
        base_ref=wt["taskReferenceName"] if suffix else "",
        iteration=int(suffix.rsplit("__", 1)[1]) if suffix else 0,
    )


def _configure(
    ctx: Ctx,
    wf: Workflow,
    wt: JSON,
    task: Task,
    retry_of: Task | None,
    given_input: dict[str, JSON] | None = None,
) -> None:
    """Fill in what the task definition says, then the input (resolved as if the task were
    already the workflow's newest)."""
    td = registry.effective_task_def(ctx.st, wf, wt)
    task.response_timeout_seconds = td["responseTimeoutSeconds"]
    task.retry_limit = td["retryCount"]
    task.retry_logic = RETRY_LOGIC_OF.get(td["retryLogic"], RetryLogic.FIXED)
    task.retry_delay_seconds = td["retryDelaySeconds"]
    task.backoff_scale_factor = td["backoffScaleFactor"]
    task.max_retry_delay_seconds = td["maxRetryDelaySeconds"]
    if wt["type"] in ("SIMPLE", "WAIT_FOR_EVENT"):  # a WAIT_FOR_EVENT's from its start
        task.timeout_policy = TIMEOUT_POLICY_OF.get(
            td.get("timeoutPolicy", ""), TimeoutPolicy.TIME_OUT_WF
        )
        task.timeout_seconds = td.get("timeoutSeconds") or 0
    if wt["type"] == "SIMPLE":
        task.poll_timeout_seconds = td.get("pollTimeoutSeconds") or 0
        task.total_timeout_seconds = td.get("totalTimeoutSeconds") or 0
        if retry_of is None:
            task.first_scheduled_ms = ctx.now
        elif retry_of.first_scheduled_ms is not None:
            task.first_scheduled_ms = retry_of.first_scheduled_ms
        else:
            task.first_scheduled_ms = retry_of.scheduled_time_ms
        task.domain = polls.active_domain(ctx.st, wf, task.task_type)
    if given_input is None:
        task_input = resolve_input(ctx, wf, wt, task.task_id, pending=task)
    else:  # an operator's rerun with the task's input
        task_input = copy.deepcopy(given_input)
    for k, v in (td.get("inputTemplate") or {}).items():
        if task_input.get(k) is None:
            task_input[k] = v
    if codec.deeper_than(task_input, limits.MAX_TASK_INPUT_DEPTH):
        raise TaskCannotRun(
            f"the task input is nested more than {limits.MAX_TASK_INPUT_DEPTH} levels deep"
        )
    task.input = task_input


def resolve_input(
    ctx: Ctx, wf: Workflow, wt: JSON, task_id: str, pending: Task | None = None
) -> dict[str, JSON]:
    doc = task_doc(ctx.st, wf, pending)
    task_input = resolve(wt["inputParameters"], doc, {"CPEWF_TASK_ID": task_id})
    return task_input if isinstance(task_input, dict) else {}


# ---------------------------------------------------------------- starting, by type


def _start(ctx: Ctx, wf: Workflow, wt: JSON, task: Task, delay_s: int) -> None:
    ttype = task.type
    if ttype is _SIMPLE:
        _start_worker_task(ctx, wt, task, delay_s)
        return
    running = ttype in _RUNNING_AT_START
    ctx.emit(E.TaskStarted(task.task_id, running))
    tid = task.task_id
    match ttype:
        case TaskType.SWITCH | TaskType.DECISION:
            _start_switch(ctx, wt, task)
        case TaskType.INLINE:
            _start_inline(ctx, task)
        case TaskType.JSON_JQ_TRANSFORM:
            query = task.input.get("queryExpression")
            if not isinstance(query, str) or not query.strip():
                raise TaskCannotRun(
                    "JSON_JQ_TRANSFORM: queryExpression must be a non-empty jq program"
                )
            scripts.await_script(ctx, task, "jq", query)
        case TaskType.FORK | TaskType.FORK_JOIN | TaskType.FORK_JOIN_DYNAMIC:
            _start_fork(ctx, wf, wt, task)
        case TaskType.JOIN | TaskType.EXCLUSIVE_JOIN:
            ctx.emit(E.TaskInputSet(tid, {"joinOn": forks.join_on(ctx.st, wf, wt, task)}))
        case TaskType.DO_WHILE:
            _start_loop(ctx, wf, wt, task)
        case TaskType.SUB_WORKFLOW:
            _start_sub_workflow(ctx, wf, wt, task)
        case TaskType.START_WORKFLOW:
            _start_workflow_task(ctx, wf, task)
        case TaskType.SET_VARIABLE:
            ctx.emit(E.VariablesSet(wf.workflow_id, task.input))
            tasks.end_task(ctx, task, T_COMPLETED, output={})
        case TaskType.NOOP:
            tasks.end_task(ctx, task, T_COMPLETED, output={})
        case TaskType.TERMINATE:
            _start_terminate(ctx, task)
        case TaskType.WAIT:
            _start_wait(ctx, task)
        case TaskType.HUMAN:
            pass  # IN_PROGRESS until the API completes or fails it
        case TaskType.HTTP:
            http.start_http(ctx, task)
        case TaskType.EVENT:
            event_task.start_event(ctx, wf, task)
        case TaskType.WAIT_FOR_EVENT:
            messages.start_wait(ctx, task)
        case TaskType.SIMPLE | TaskType.DYNAMIC:  # pragma: no cover - started above / resolved
            raise TaskCannotRun(f"task type {ttype} is not supported")
        case _ as unreachable:
            assert_never(unreachable)


# Types IN_PROGRESS from their start (they wait for something outside the walk).
_RUNNING_AT_START = frozenset(
    (
        *(TaskType.JOIN, TaskType.EXCLUSIVE_JOIN, TaskType.DO_WHILE, TaskType.WAIT),
        *(TaskType.HUMAN, TaskType.EVENT, TaskType.WAIT_FOR_EVENT),
    )
)


def _start_worker_task(ctx: Ctx, wt: JSON, task: Task, delay_s: int) -> None:
    """A SIMPLE task waits in its queue (or for its start delay) for a worker's poll."""
    if not task.retry_count:
        delay_s = max(delay_s, int(wt.get("startDelay", 0)))
    tid = task.task_id
    if task.poll_timeout_seconds:
        due = ctx.now + (delay_s + task.poll_timeout_seconds) * 1000
        ctx.emit(E.TimerSet(f"ptmo:{tid}", due))
    if task.total_timeout_seconds:
        first = task.first_scheduled_ms if task.first_scheduled_ms is not None else ctx.now
        ctx.emit(E.TimerSet(f"ttmo:{tid}", first + task.total_timeout_seconds * 1000))
    if delay_s > 0:
        ctx.emit(E.TimerSet(f"ready:{tid}", ctx.now + delay_s * 1000))
    else:
        tasks.enqueue(ctx, task)


def _start_fork(ctx: Ctx, wf: Workflow, wt: JSON, task: Task) -> None:
    """The FORK task completes at once; the walk then enters its branches."""
    tid = task.task_id
    if wt["type"] == TaskType.FORK_JOIN:
        forked = {"forkedTasks": [b[0]["taskReferenceName"] for b in wt["forkTasks"]]}
        ctx.emit(E.TaskInputSet(tid, forked))
    else:
        planned = forks.dynamic_fork_tasks(wf, wt, task.input, task)
        ctx.emit(E.DynamicForkPlanned(tid, planned))
    tasks.end_task(ctx, task, T_COMPLETED, output={})


def _start_switch(ctx: Ctx, wt: JSON, task: Task) -> None:
    if task.type is TaskType.SWITCH and wt.get("evaluatorType") in JS_EVALUATORS:
        scripts.await_script(ctx, task, "js", wt["expression"])
        return
    if task.type is TaskType.DECISION and wt.get("caseExpression") is not None:
        scripts.await_script(ctx, task, "js", wt["caseExpression"])
        return
    param = wt["expression"] if task.type is TaskType.SWITCH else wt["caseValueParam"]
    output = select_case(ctx, task, wt, task.input.get(param))
    tasks.end_task(ctx, task, T_COMPLETED, output=output)


def select_case(ctx: Ctx, task: Task, wt: JSON, value: JSON) -> dict[str, JSON]:
    """SWITCH/DECISION: the case a value selects, recorded on the task.

    As in Conductor's SwitchTaskMapper and DecisionTaskMapper, the value becomes text the way
    Java prints it (`"" + value`); that text picks the case (one without tasks runs the default
    case) and is what the output reports, even when the default case runs.
    """
    key = java_text(value)
    case = key if wt["decisionCases"].get(key) else None
    ctx.emit(E.CaseSelected(task.task_id, case))
    if task.type is TaskType.DECISION:
        return {"caseOutput": [key]}
    return {"evaluationResult": [key], "selectedCase": key}


def java_text(value: JSON) -> str:
    """A JSON value as Java's String.valueOf prints what Jackson reads it into (strings, null,
    booleans and integers as expressions print them)."""
    if isinstance(value, float):
        return _java_double(value)
    if isinstance(value, list):
        return "[" + ", ".join(java_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={java_text(v)}" for k, v in value.items()) + "}"
    return stringify(value)


def _java_double(x: float) -> str:
    """Double.toString: the shortest digits that read back as x (Java 19+), in plain notation
    from 10^-3 up to 10^7 and as d.dddE<n> outside it; always a digit after the point."""
    if not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if x == 0:
        return sign + "0.0"
    _, digit_tuple, exp = Decimal(repr(abs(x))).as_tuple()
    assert isinstance(exp, int)  # finite
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exp += len(digit_tuple) - len(digits)
    e10 = len(digits) + exp - 1  # x = d.ddd * 10^e10
    if -3 <= e10 < 7:
        if e10 < 0:
            return f"{sign}0.{'0' * (-e10 - 1)}{digits}"
        whole = digits[: e10 + 1].ljust(e10 + 1, "0")
        return f"{sign}{whole}.{digits[e10 + 1 :] or '0'}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{e10}"


def _start_inline(ctx: Ctx, task: Task) -> None:
    inp = task.input
    ev, expr = inp.get("evaluatorType"), inp.get("expression")
    if ev == "value-param":
        if not isinstance(expr, str):
            raise TaskCannotRun("INLINE: expression must name an input parameter")
        tasks.end_task(ctx, task, T_COMPLETED, output={"result": inp.get(expr)})
    elif ev in JS_EVALUATORS:
        if not isinstance(expr, str) or not expr.strip():
            raise TaskCannotRun("INLINE: expression must be a non-empty JavaScript string")
        scripts.await_script(ctx, task, "js", expr)
    else:
        raise TaskCannotRun(
            f"INLINE: evaluatorType {ev!r} is not supported (javascript, graaljs, value-param)"
        )


def _start_loop(ctx: Ctx, wf: Workflow, wt: JSON, task: Task) -> None:
    tid = task.task_id
    ctx.emit(E.LoopStarted(tid))
    items = wt.get("items", task.input.get("items"))
    if "items" in wt:
        items = resolve(items, task_doc(ctx.st, wf))
    if items is not None:
        if not isinstance(items, list):
            raise TaskCannotRun(f"DO_WHILE items must resolve to a list, got {stringify(items)}")
        ctx.emit(E.LoopItemsSet(tid, items))
        if not items:
            tasks.end_task(ctx, task, T_COMPLETED, output={"iteration": 0})
            return
    ctx.emit(E.LoopIterationStarted(tid, 1))


def _start_sub_workflow(ctx: Ctx, wf: Workflow, wt: JSON, task: Task) -> None:
    swp = wt["subWorkflowParam"]
    if wf.depth + 1 > limits.MAX_SUBWORKFLOW_DEPTH:
        raise TaskCannotRun(
            f"SUB_WORKFLOW: nesting deeper than {limits.MAX_SUBWORKFLOW_DEPTH} levels"
        )
    defn = swp.get("workflowDefinition") or registry.lookup_def(
        ctx.st, swp["name"], swp.get("version", 0)
    )
    # Deterministic from the attempt's task id: re-applying never launches a second child, and a
    # retry (a new attempt, a new task id) launches a new one, as Conductor does.
    child_id = codec.built_id(f"{task.task_id}-sub", limits.MAX_BUILT_ID_LENGTH)
    ctx.emit(E.SubWorkflowLinked(task.task_id, child_id))
    domains = dict(wf.task_to_domain)
    try:
        domains.update(check_task_to_domain(swp.get("taskToDomain"), "taskToDomain"))
    except Rejected as rej:  # checked at registration; kept for definitions stored before
        raise TaskCannotRun(f"SUB_WORKFLOW: subWorkflowParam.{rej.message}") from None
    workflows.launch(ctx, wf, child_id, defn, dict(task.input), wf.correlation_id, task, domains)


def _start_workflow_task(ctx: Ctx, wf: Workflow, task: Task) -> None:
    """START_WORKFLOW: a workflow of its own (no parent link); the task completes at once."""
    sw = task.input.get("startWorkflow")
    if not isinstance(sw, dict) or not isinstance(sw.get("name"), str):
        raise TaskCannotRun("START_WORKFLOW: input startWorkflow must be an object with a name")
    child_id = codec.built_id(f"{task.task_id}-start", limits.MAX_BUILT_ID_LENGTH)
    child_input = sw.get("input") or {}
    if not isinstance(child_input, dict):
        raise TaskCannotRun("START_WORKFLOW: startWorkflow.input must be an object")
    defn = registry.lookup_def(ctx.st, sw["name"], sw.get("version") or 0)
    try:
        domains = check_task_to_domain(sw.get("taskToDomain"), "startWorkflow.taskToDomain")
    except Rejected as rej:
        raise TaskCannotRun(f"START_WORKFLOW: {rej.message}") from None
    correlation_id = str(sw.get("correlationId") or "")
    workflows.launch(ctx, wf, child_id, defn, child_input, correlation_id, None, domains)
    tasks.end_task(ctx, task, T_COMPLETED, output={"workflowId": child_id})


def _start_terminate(ctx: Ctx, task: Task) -> None:
    status = task.input.get("terminationStatus")
    if status not in _TERMINATION:
        raise TaskCannotRun(
            f"TERMINATE: terminationStatus {status!r} is not COMPLETED/FAILED/TERMINATED"
        )
    # Conductor's Terminate: its output is workflowOutput's keys (another value as "output"),
    # and it becomes the workflow's output.
    out = task.input.get("workflowOutput")
    output = dict(out) if isinstance(out, dict) else {"output": out} if out is not None else {}
    tasks.end_task(ctx, task, T_COMPLETED, output=output)
    ctx.terminations.append(task.task_id)


def _start_wait(ctx: Ctx, task: Task) -> None:
    inp = task.input
    try:
        due: int | None = None
        if inp.get("duration") is not None and inp.get("until") is not None:
            raise TaskCannotRun("WAIT: give either duration or until, not both")
        if inp.get("duration") is not None:
            due = ctx.now + parse_duration_ms(inp["duration"])
        elif inp.get("until") is not None:
            due = parse_until_ms(inp["until"])
    except ConditionError as exc:
        raise TaskCannotRun(f"WAIT: {exc}") from None
    if due is not None:
        ctx.emit(E.WaitScheduled(task.task_id, due, max(due, ctx.now)))
