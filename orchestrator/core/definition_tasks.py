"""Task configurations, type by type: the checks and defaults of each task type's own fields
(definitions.py walks the definition and the fields every task has).

Only functions here: definitions.py imports this module while it is itself being imported,
so nothing may read its names at import time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import definitions as D
from . import limits
from .conditions import ConditionError, parse_duration_ms, parse_until_ms
from .errors import Rejected, invalid

JSON = Any


TERMINATION_STATUSES = ("COMPLETED", "FAILED", "TERMINATED")
MAX_SCRIPT_CHARS = 64 * 1024


def _script_field(value: JSON, field: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{field}: required, a non-empty script")
    if len(value) > MAX_SCRIPT_CHARS:
        raise invalid(f"{field}: a script may have at most {MAX_SCRIPT_CHARS} characters")


def _norm_switch(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    if t["type"] == "SWITCH":
        ev = t.get("evaluatorType", "value-param")
        if ev not in ("value-param", *D.JS_EVALUATORS):
            raise invalid(
                f"{w}.evaluatorType ({ref}): must be value-param, javascript or graaljs, got {ev!r}"
                + (" (python is not supported)" if ev == "python" else "")
            )
        t["evaluatorType"] = ev
        expr = t.get("expression")
        if ev in D.JS_EVALUATORS:
            _script_field(expr, f"{w}.expression ({ref})")
        elif not isinstance(expr, str) or not expr:
            raise invalid(f"{w}.expression ({ref}): required, the name of an input parameter")
    elif t.get("caseExpression") is not None:
        _script_field(t["caseExpression"], f"{w}.caseExpression ({ref})")
    else:
        cvp = t.get("caseValueParam")
        if not isinstance(cvp, str) or not cvp:
            raise invalid(f"{w}.caseValueParam ({ref}): required, the name of an input parameter")
    cases = t.get("decisionCases", {})
    if not isinstance(cases, dict):
        raise invalid(f"{w}.decisionCases ({ref}): must be an object of case -> task list")
    if len(cases) > limits.MAX_SWITCH_CASES:
        raise invalid(f"{w}.decisionCases ({ref}): at most {limits.MAX_SWITCH_CASES} cases")
    t["decisionCases"] = {
        str(k): D.task_list(val, f"{w}.decisionCases.{k}", v, depth + 1, empty_ok=True)
        for k, val in cases.items()
    }
    t["defaultCase"] = D.task_list(
        t.get("defaultCase", []), f"{w}.defaultCase", v, depth + 1, empty_ok=True
    )


def _norm_loop(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    t["loopOver"] = D.task_list(t.get("loopOver"), f"{w}.loopOver", v, depth + 1, empty_ok=False)
    cond = t.get("loopCondition")
    items = t.get("items", t["inputParameters"].get("items"))
    if cond is None and items is None:
        raise invalid(f"{w}.loopCondition ({ref}): required (or items to iterate over)")
    if cond is not None:
        # The restricted forms are evaluated by the core itself; anything else is JavaScript,
        # evaluated in the sandbox (compiled at registration by the API).
        _script_field(cond, f"{w}.loopCondition ({ref})")
    if items is not None and not isinstance(items, list) and not D.is_expr(items):
        raise invalid(f"{w}.items ({ref}): must be a list or a ${{...}} expression")
    keep = t["inputParameters"].get("keepLastN")
    if keep is not None and not D.is_expr(keep):
        D.int_field(
            t["inputParameters"],
            "keepLastN",
            f"{w}.inputParameters.keepLastN ({ref})",
            1,
            limits.MAX_LOOP_ITERATIONS,
            1,
        )
    if "items" in t:
        v.expr_places.append((f"{w}.items ({ref})", t["items"]))


def _norm_fork(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    forks = t.get("forkTasks")
    if not isinstance(forks, list) or not forks:
        raise invalid(f"{w}.forkTasks ({ref}): required, a non-empty list of task lists")
    if len(forks) > limits.MAX_FORK_BRANCHES:
        raise invalid(
            f"{w}.forkTasks ({ref}): at most {limits.MAX_FORK_BRANCHES} branches, got {len(forks)}"
        )
    t["forkTasks"] = [
        D.task_list(b, f"{w}.forkTasks[{i}]", v, depth + 1, empty_ok=False)
        for i, b in enumerate(forks)
    ]


def _norm_dynamic_fork(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    ip = t["inputParameters"]
    p1, p2 = t.get("dynamicForkTasksParam"), t.get("dynamicForkTasksInputParamName")
    if p1 is not None or p2 is not None:
        for key, val in (
            ("dynamicForkTasksParam", p1),
            ("dynamicForkTasksInputParamName", p2),
        ):
            if not isinstance(val, str) or not val:
                raise invalid(f"{w}.{key} ({ref}): required, the name of an input parameter")
    elif "forkTaskInputs" not in ip or not (
        "forkTaskName" in ip or "forkTaskWorkflow" in ip or "forkTaskType" in ip
    ):
        raise invalid(
            f"{w} ({ref}): a FORK_JOIN_DYNAMIC needs dynamicForkTasksParam and "
            "dynamicForkTasksInputParamName, or inputParameters forkTaskName (or "
            "forkTaskWorkflow) and forkTaskInputs"
        )


def _norm_join(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    for key in ("joinOn", "defaultExclusiveJoinTask"):
        val = t.get(key, [])
        if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
            raise invalid(f"{w}.{key} ({ref}): must be a list of task references")
        t[key] = val
        v.joins.append((f"{w}.{key}", ref, val))


def _norm_sub_workflow(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    swp = t.get("subWorkflowParam")
    if not isinstance(swp, dict):
        raise invalid(f"{w}.subWorkflowParam ({ref}): required, an object with a name")
    swp = {k: val for k, val in swp.items() if val is not None}
    inline = swp.get("workflowDefinition")
    if inline is not None:
        if not isinstance(inline, dict):
            raise invalid(
                f"{w}.subWorkflowParam.workflowDefinition ({ref}): only an inline definition "
                "object is supported (an expression is not supported yet)"
            )
        try:
            swp["workflowDefinition"] = D.normalize_workflow_def(inline, _depth=depth + 1)
        except Rejected as rej:
            raise invalid(
                f"{w}.subWorkflowParam.workflowDefinition ({ref}): {rej.message}"
            ) from None
        swp.setdefault("name", swp["workflowDefinition"]["name"])
    swp["name"] = D.name_field(swp.get("name"), f"{w}.subWorkflowParam.name ({ref})")
    if "version" in swp:
        swp["version"] = D.int_field(
            swp, "version", f"{w}.subWorkflowParam.version ({ref})", 0, 2**31 - 1, 0
        )
    if swp.get("taskToDomain") is not None:
        swp["taskToDomain"] = D.check_task_to_domain(
            swp["taskToDomain"], f"{w}.subWorkflowParam.taskToDomain ({ref})"
        )
    t["subWorkflowParam"] = swp


def _norm_start_workflow(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    sw = t["inputParameters"].get("startWorkflow")
    if not (isinstance(sw, dict) and isinstance(sw.get("name"), str)) and not D.is_expr(sw):
        raise invalid(
            f"{w}.inputParameters.startWorkflow ({ref}): required, an object with a "
            "workflow name (and optional version, input, correlationId)"
        )
    if isinstance(sw, dict) and not D.is_expr(sw["name"]):
        D.name_field(sw["name"], f"{w}.inputParameters.startWorkflow.name ({ref})")


def _norm_dynamic(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    p = t.get("dynamicTaskNameParam")
    if not isinstance(p, str) or not p:
        raise invalid(f"{w}.dynamicTaskNameParam ({ref}): required, an input parameter name")


def _norm_terminate(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    status = t["inputParameters"].get("terminationStatus")
    if not D.is_expr(status) and status not in TERMINATION_STATUSES:
        raise invalid(
            f"{w}.inputParameters.terminationStatus ({ref}): must be one of "
            f"{', '.join(TERMINATION_STATUSES)}"
        )


def _norm_inline(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    ip = t["inputParameters"]
    ev = ip.get("evaluatorType")
    if not D.is_expr(ev) and ev not in D.INLINE_EVALUATORS:
        raise invalid(
            f"{w}.inputParameters.evaluatorType ({ref}): must be one of "
            f"{', '.join(D.INLINE_EVALUATORS)}, got {ev!r}"
            + (" (python is not supported)" if ev == "python" else "")
        )
    _script_field(ip.get("expression"), f"{w}.inputParameters.expression ({ref})")


def _norm_jq(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    query = t["inputParameters"].get("queryExpression")
    _script_field(query, f"{w}.inputParameters.queryExpression ({ref})")


HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
HTTP_MAX_TIMEOUT_MS = 60_000  # a request holds one of the leader's HTTP threads that long
HTTP_DEFAULT_TIMEOUT_MS = 10_000
_HTTP_KEYS = (
    *("uri", "method", "headers", "body", "connectionTimeOut", "readTimeOut"),
    *("accept", "contentType"),
)


def http_request(hr: JSON, field: str, ref: str = "") -> dict[str, JSON]:
    """Conductor's http_request, checked and with its defaults. A value that is still an
    expression (at registration) is left for the check at the task's start."""
    at = f" ({ref})" if ref else ""
    if not isinstance(hr, dict):
        raise invalid(f"{field}{at}: required, an object with uri and method")
    extra = sorted(k for k in hr if k not in _HTTP_KEYS)
    if extra:
        raise invalid(f"{field}{at}: unknown field(s) {', '.join(extra)}")
    out = dict(hr)
    uri = hr.get("uri")
    if not D.is_expr(uri) and not (
        isinstance(uri, str) and uri.startswith(("http://", "https://")) and len(uri) <= 8192
    ):
        raise invalid(f"{field}.uri{at}: required, an http:// or https:// URL, got {uri!r}")
    method = out.setdefault("method", "GET")
    if not D.is_expr(method) and method not in HTTP_METHODS:
        allowed = ", ".join(HTTP_METHODS)
        raise invalid(f"{field}.method{at}: must be one of {allowed}, got {method!r}")
    headers = out.setdefault("headers", {})
    if not D.is_expr(headers) and not (
        isinstance(headers, dict) and all(isinstance(x, str) for x in headers.values())
    ):
        raise invalid(f"{field}.headers{at}: must be an object of string values")
    for key in ("connectionTimeOut", "readTimeOut"):
        if not D.is_expr(out.get(key)):
            out[key] = D.int_field(
                out, key, f"{field}.{key}{at}", 1, HTTP_MAX_TIMEOUT_MS, HTTP_DEFAULT_TIMEOUT_MS
            )
    return out


def _norm_http(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    hr = t["inputParameters"].get("http_request")
    if not D.is_expr(hr):
        http_request(hr, f"{w}.inputParameters.http_request", ref)


def _norm_wait(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    ip = t["inputParameters"]
    dur, until = ip.get("duration"), ip.get("until")
    if dur is not None and until is not None:
        raise invalid(f"{w}.inputParameters ({ref}): give either duration or until, not both")
    try:
        if dur is not None and not D.is_expr(dur):
            parse_duration_ms(dur)
        if until is not None and not D.is_expr(until):
            parse_until_ms(until)
    except ConditionError as exc:
        key = "duration" if dur is not None else "until"
        raise invalid(f"{w}.inputParameters.{key} ({ref}): {exc}") from None


def _norm_event(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    sink = t["inputParameters"].get("sink")
    if not D.is_expr(sink):
        event_sink(sink, f"{w}.inputParameters.sink ({ref})")


def _norm_wait_for_event(t: JSON, w: str, ref: str, v: D.Validation, depth: int) -> None:
    ip = t["inputParameters"]
    if not D.is_expr(ip.get("event")):
        D.name_field(ip.get("event"), f"{w}.inputParameters.event ({ref})")
    if ip.get("correlationKey") in (None, ""):
        raise invalid(f"{w}.inputParameters.correlationKey ({ref}): required")


# Sinks an EVENT task may name: the log itself, or a broker bridge of this kind (orchestrator/
# bridge/), as "<kind>:<subject>".
SINK_KINDS = ("conductor", "nats")


def event_sink(sink: JSON, field: str) -> tuple[str, str]:
    """(kind, name) of an EVENT task's sink: "conductor" (name ""), "conductor:<event name>" or
    "<bridge kind>:<subject>"."""
    if not isinstance(sink, str) or not sink:
        raise invalid(f"{field}: required, 'conductor', 'conductor:<name>' or '<kind>:<subject>'")
    kind, _, name = sink.partition(":")
    if kind not in SINK_KINDS:
        raise invalid(f"{field}: unknown sink {kind!r} (known: {', '.join(SINK_KINDS)})")
    if name or kind != "conductor":
        D.name_field(name, field)
    return kind, name


# The checks of each task type's own fields (types without any are not listed).
BY_TYPE: dict[str, Callable[[JSON, str, str, D.Validation, int], None]] = {
    "SWITCH": _norm_switch,
    "DECISION": _norm_switch,
    "FORK_JOIN": _norm_fork,
    "FORK_JOIN_DYNAMIC": _norm_dynamic_fork,
    "JOIN": _norm_join,
    "EXCLUSIVE_JOIN": _norm_join,
    "DO_WHILE": _norm_loop,
    "SUB_WORKFLOW": _norm_sub_workflow,
    "START_WORKFLOW": _norm_start_workflow,
    "DYNAMIC": _norm_dynamic,
    "TERMINATE": _norm_terminate,
    "INLINE": _norm_inline,
    "JSON_JQ_TRANSFORM": _norm_jq,
    "WAIT": _norm_wait,
    "HTTP": _norm_http,
    "EVENT": _norm_event,
    "WAIT_FOR_EVENT": _norm_wait_for_event,
}
