"""Workflow and task definitions in Conductor's JSON (camelCase), validated and normalized.

Pure functions: api/ calls them before proposing (so bad input never reaches Raft) and apply
calls them again (the log is never trusted blindly). Errors name the field, e.g.
``tasks[2].taskReferenceName: duplicate reference 'charge'``.
"""

from __future__ import annotations

import re
from typing import Any

from . import definition_tasks, limits
from .conditions import ConditionError, parse_condition
from .errors import invalid

JSON = Any
# INLINE evaluatorTypes: JavaScript runs in the sandbox (two phases), value-param in the core.
JS_EVALUATORS = ("javascript", "graaljs")
INLINE_EVALUATORS = (*JS_EVALUATORS, "value-param")

NAME_RE = re.compile(r"^[A-Za-z0-9_.\-:]{1,256}$")
RETRY_LOGICS = ("FIXED", "EXPONENTIAL_BACKOFF", "LINEAR_BACKOFF")
TIMEOUT_POLICIES = ("RETRY", "TIME_OUT_WF", "ALERT_ONLY")
WORKFLOW_TIMEOUT_POLICIES = ("TIME_OUT_WF", "ALERT_ONLY")
JOIN_MODES = ("SYNC", "ASYNC")
# Task types this version executes. The others are Conductor types still to come (EVENT with
# the events work); a definition using one is rejected with a clear message.
SUPPORTED_TASK_TYPES = (
    "SIMPLE",
    "SWITCH",
    "DECISION",
    "FORK_JOIN",
    "FORK_JOIN_DYNAMIC",
    "JOIN",
    "EXCLUSIVE_JOIN",
    "DO_WHILE",
    "SUB_WORKFLOW",
    "START_WORKFLOW",
    "DYNAMIC",
    "SET_VARIABLE",
    "TERMINATE",
    "NOOP",
    "WAIT",
    "HUMAN",
    "INLINE",
    "JSON_JQ_TRANSFORM",
    "HTTP",
    "EVENT",
    "WAIT_FOR_EVENT",
)
KNOWN_TASK_TYPES = (*SUPPORTED_TASK_TYPES, "KAFKA_PUBLISH")

TASK_DEF_DEFAULTS: dict[str, JSON] = {
    "retryCount": 3,
    "retryLogic": "FIXED",
    "retryDelaySeconds": 60,
    "backoffScaleFactor": 1,
    "maxRetryDelaySeconds": 0,
    "responseTimeoutSeconds": 3600,
    "timeoutSeconds": 0,
    "timeoutPolicy": "TIME_OUT_WF",
    "pollTimeoutSeconds": 0,
    "totalTimeoutSeconds": 0,
}


def name_field(value: JSON, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(f"{field}: required, a non-empty string")
    if not NAME_RE.match(value):
        raise invalid(f"{field}: {value!r} may only contain letters, digits and _ . - : (max 256)")
    return value


def int_field(obj: dict[str, JSON], key: str, field: str, lo: int, hi: int, default: int) -> int:
    value = obj.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{field}: must be an integer")
    if not lo <= value <= hi:
        raise invalid(f"{field}: must be between {lo} and {hi}, got {value}")
    return value


def _flow_limits(out: dict[str, JSON], where: str, inline: bool) -> None:
    """concurrentExecLimit, rateLimitPerFrequency (0: none) and rateLimitFrequencyInSeconds,
    checked when given (absent: none). They hold per queue across workflows, as the task
    definition registered now says (processors/flow.py), so an inline taskDefinition, which
    holds for one workflow definition, may not set them."""
    for key, hi in (
        ("concurrentExecLimit", limits.MAX_CONCURRENT_EXEC_LIMIT),
        ("rateLimitPerFrequency", limits.MAX_RATE_LIMIT_PER_FREQUENCY),
    ):
        if key in out:
            out[key] = int_field(out, key, f"{where}.{key}", 0, hi, 0)
            if inline and out[key]:
                raise invalid(
                    f"{where}.{key}: limits hold for a task type across workflows: set them on "
                    "the registered task definition"
                )
    key = "rateLimitFrequencyInSeconds"
    if key in out:
        out[key] = int_field(
            out, key, f"{where}.{key}", 1, limits.MAX_RATE_LIMIT_FREQUENCY_SECONDS, 1
        )


def normalize_task_def(raw: JSON, where: str = "taskDef", inline: bool = False) -> dict[str, JSON]:
    if not isinstance(raw, dict):
        raise invalid(f"{where}: must be a JSON object")
    # Conductor exports carry explicit nulls for unset fields: null means "not given".
    out = {k: v for k, v in raw.items() if v is not None}
    out["name"] = name_field(raw.get("name"), f"{where}.name")
    for key, default in TASK_DEF_DEFAULTS.items():
        out.setdefault(key, default)
    out["retryCount"] = int_field(
        out, "retryCount", f"{where}.retryCount", 0, limits.MAX_RETRY_COUNT, 3
    )
    out["retryDelaySeconds"] = int_field(
        out, "retryDelaySeconds", f"{where}.retryDelaySeconds", 0, limits.MAX_DELAY_SECONDS, 60
    )
    out["backoffScaleFactor"] = int_field(
        out, "backoffScaleFactor", f"{where}.backoffScaleFactor", 1, 1000, 1
    )
    out["maxRetryDelaySeconds"] = int_field(
        out, "maxRetryDelaySeconds", f"{where}.maxRetryDelaySeconds", 0, limits.MAX_DELAY_SECONDS, 0
    )
    out["responseTimeoutSeconds"] = int_field(
        out,
        "responseTimeoutSeconds",
        f"{where}.responseTimeoutSeconds",
        1,
        limits.MAX_DELAY_SECONDS,
        3600,
    )
    out["timeoutSeconds"] = int_field(
        out, "timeoutSeconds", f"{where}.timeoutSeconds", 0, limits.MAX_DELAY_SECONDS, 0
    )
    out["pollTimeoutSeconds"] = int_field(
        out, "pollTimeoutSeconds", f"{where}.pollTimeoutSeconds", 0, limits.MAX_DELAY_SECONDS, 0
    )
    out["totalTimeoutSeconds"] = int_field(
        out, "totalTimeoutSeconds", f"{where}.totalTimeoutSeconds", 0, limits.MAX_DELAY_SECONDS, 0
    )
    if out["totalTimeoutSeconds"] and out["timeoutSeconds"] > out["totalTimeoutSeconds"]:
        raise invalid(f"{where}.timeoutSeconds: must not exceed totalTimeoutSeconds")
    if out["retryLogic"] not in RETRY_LOGICS:
        raise invalid(f"{where}.retryLogic: must be one of {', '.join(RETRY_LOGICS)}")
    if out["timeoutPolicy"] not in TIMEOUT_POLICIES:
        raise invalid(f"{where}.timeoutPolicy: must be one of {', '.join(TIMEOUT_POLICIES)}")
    if out["timeoutSeconds"] and out["responseTimeoutSeconds"] > out["timeoutSeconds"]:
        raise invalid(f"{where}.responseTimeoutSeconds: must not exceed timeoutSeconds")
    _flow_limits(out, where, inline)
    return out


def check_task_to_domain(value: JSON, where: str) -> dict[str, str]:
    """A taskToDomain map: task name (or "*") -> a domain or a comma list ending anywhere in
    NO_DOMAIN; raises Rejected naming the entry."""
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"{where}: must be an object mapping task names to domains")
    for name, spec in value.items():
        if not isinstance(name, str) or not (name == "*" or NAME_RE.match(name)):
            raise invalid(f"{where}: {name!r} is not a task name or *")
        if not isinstance(spec, str):
            raise invalid(f"{where}.{name}: must be a domain or a comma-separated list of them")
        for part in spec.split(","):
            d = part.strip()
            if not d or not NAME_RE.match(d) or "@" in d:
                raise invalid(f"{where}.{name}: {d!r} is not a valid domain")
    return dict(value)


def _params(value: JSON, field: str) -> dict[str, JSON]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"{field}: must be a JSON object")
    return value


class Validation:
    """Collects what whole-definition checks need while the task tree is walked."""

    def __init__(self) -> None:
        self.refs: dict[str, str] = {}  # reference -> where it is defined
        self.count = 0
        self.joins: list[tuple[str, str, list[str]]] = []  # (where, ref, joinOn refs)
        self.expr_places: list[tuple[str, JSON]] = []
        # compensateWith tasks: their expressions may also name `compensated`.
        self.compensation_places: list[tuple[str, JSON]] = []
        self.in_compensation = False


def is_expr(value: JSON) -> bool:
    return isinstance(value, str) and "${" in value


def task_list(value: JSON, field: str, v: Validation, depth: int, empty_ok: bool) -> list[JSON]:
    if not isinstance(value, list) or (not value and not empty_ok):
        raise invalid(f"{field}: required, a {'' if empty_ok else 'non-empty '}list of tasks")
    if depth > limits.MAX_NESTING_DEPTH:
        raise invalid(f"{field}: task lists nest deeper than {limits.MAX_NESTING_DEPTH} levels")
    out = [_norm_task(t, f"{field}[{i}]", v, depth) for i, t in enumerate(value)]
    for i, t in enumerate(out):
        if t["type"] in ("FORK_JOIN", "FORK_JOIN_DYNAMIC"):
            nxt = out[i + 1] if i + 1 < len(out) else None
            if nxt is None or nxt["type"] != "JOIN":
                raise invalid(
                    f"{field}[{i}] ({t['taskReferenceName']}): a {t['type']} must be followed "
                    "by a JOIN task in the same task list"
                )
    return out


_UNSUPPORTED = {
    "KAFKA_PUBLISH": "is not supported: use an EVENT task with a broker sink",
}


def _norm_task(task: JSON, where: str, v: Validation, depth: int) -> dict[str, JSON]:
    if not isinstance(task, dict):
        raise invalid(f"{where}: must be a JSON object")
    t = {k: val for k, val in task.items() if val is not None}
    ref = t.get("taskReferenceName")
    if not isinstance(ref, str) or not ref:
        raise invalid(f"{where}.taskReferenceName: required, a non-empty string")
    name_field(ref, f"{where}.taskReferenceName")
    if "__" in ref:
        raise invalid(
            f"{where}.taskReferenceName: {ref!r} must not contain '__' (reserved for DO_WHILE "
            "iteration suffixes)"
        )
    if ref == COMPENSATED_REF:
        raise invalid(
            f"{where}.taskReferenceName: {ref!r} is reserved (a compensation's input names the "
            "step it undoes with it)"
        )
    t["name"] = name_field(t.get("name"), f"{where}.name ({ref})")
    if ref in v.refs:
        raise invalid(
            f"{where}.taskReferenceName: duplicate reference {ref!r} (also at {v.refs[ref]})"
        )
    v.refs[ref] = where
    v.count += 1
    if v.count > limits.MAX_TASKS_PER_DEFINITION:
        raise invalid(
            f"tasks: at most {limits.MAX_TASKS_PER_DEFINITION} tasks per definition, "
            "counting the tasks inside forks, switch cases and loops"
        )
    ttype = t.get("type", "SIMPLE")
    if ttype not in KNOWN_TASK_TYPES:
        raise invalid(f"{where}.type ({ref}): unknown task type {ttype!r}")
    if ttype in _UNSUPPORTED:
        raise invalid(f"{where}.type ({ref}): task type {ttype} {_UNSUPPORTED[ttype]}")
    t["type"] = ttype
    t["inputParameters"] = _params(t.get("inputParameters"), f"{where}.inputParameters ({ref})")
    ip = t["inputParameters"]
    t["optional"] = bool(t.get("optional", False))
    if "permissive" in t:
        t["permissive"] = bool(t["permissive"])
    if "joinMode" in t and t["joinMode"] not in JOIN_MODES:
        raise invalid(f"{where}.joinMode ({ref}): must be one of {', '.join(JOIN_MODES)}")
    if "asyncComplete" in t:
        t["asyncComplete"] = bool(t["asyncComplete"])
    if "retryCount" in t:
        t["retryCount"] = int_field(
            t, "retryCount", f"{where}.retryCount ({ref})", 0, limits.MAX_RETRY_COUNT, 0
        )
    if "startDelay" in t:
        t["startDelay"] = int_field(
            t, "startDelay", f"{where}.startDelay ({ref})", 0, limits.MAX_DELAY_SECONDS, 0
        )
    if t.get("taskDefinition") is not None:
        t["taskDefinition"] = normalize_task_def(
            t["taskDefinition"], f"{where}.taskDefinition ({ref})", inline=True
        )
        if t["taskDefinition"]["name"] != t["name"]:
            raise invalid(f"{where}.taskDefinition.name: must equal the task name {t['name']!r}")
    v.expr_places.append((f"{where}.inputParameters ({ref})", ip))
    by_type = definition_tasks.BY_TYPE.get(ttype)
    if by_type is not None:
        by_type(t, where, ref, v, depth)
    if "compensateWith" in t:
        t["compensateWith"] = _norm_compensation(t["compensateWith"], where, ref, v, depth)
    return t


COMPENSATED_REF = "compensated"
# What may undo a step: tasks that do one thing (no forks, switches, loops or TERMINATE).
COMPENSATION_TYPES = (
    "SIMPLE",
    "INLINE",
    "JSON_JQ_TRANSFORM",
    "SUB_WORKFLOW",
    "SET_VARIABLE",
    "NOOP",
    "HUMAN",
    "WAIT",
)


def _norm_compensation(
    value: JSON, where: str, ref: str, v: Validation, depth: int
) -> list[dict[str, JSON]]:
    """A step's compensateWith: one task configuration or a non-empty list of them (run in
    order), always stored as a list."""
    field = f"{where}.compensateWith ({ref})"
    if v.in_compensation:
        raise invalid(f"{field}: a compensation task cannot declare its own compensateWith")
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list) or not items:
        raise invalid(f"{field}: must be a task configuration or a non-empty list of them")
    for i, c in enumerate(items):
        ctype = (c.get("type") or "SIMPLE") if isinstance(c, dict) else "SIMPLE"
        if ctype not in COMPENSATION_TYPES:
            raise invalid(
                f"{where}.compensateWith[{i}].type ({ref}): a compensation task may be "
                f"{', '.join(COMPENSATION_TYPES)}, not {ctype}"
            )
    start = len(v.expr_places)
    v.in_compensation = True
    try:
        out = [
            _norm_task(c, f"{where}.compensateWith[{i}]", v, depth + 1) for i, c in enumerate(items)
        ]
    finally:
        v.in_compensation = False
    v.compensation_places.extend(v.expr_places[start:])
    del v.expr_places[start:]
    return out


def normalize_workflow_def(raw: JSON, _depth: int = 1) -> dict[str, JSON]:
    """Validate a workflow definition and fill in defaults; raises Rejected naming the field."""
    if not isinstance(raw, dict):
        raise invalid("definition: must be a JSON object")
    raw = {k: v for k, v in raw.items() if v is not None}
    out = dict(raw)
    out["name"] = name_field(raw.get("name"), "name")
    out["version"] = int_field(raw, "version", "version", 1, 2**31 - 1, 1)
    out["inputParameters"] = raw.get("inputParameters") or []
    out["outputParameters"] = _params(raw.get("outputParameters"), "outputParameters")
    out["inputTemplate"] = _params(raw.get("inputTemplate"), "inputTemplate")
    out["variables"] = _params(raw.get("variables"), "variables")
    out["timeoutSeconds"] = int_field(
        raw, "timeoutSeconds", "timeoutSeconds", 0, limits.MAX_DELAY_SECONDS, 0
    )
    out["timeoutPolicy"] = raw.get("timeoutPolicy", "TIME_OUT_WF")
    if out["timeoutPolicy"] not in WORKFLOW_TIMEOUT_POLICIES:
        raise invalid(f"timeoutPolicy: must be one of {', '.join(WORKFLOW_TIMEOUT_POLICIES)}")
    fw = raw.get("failureWorkflow")
    if fw is not None and fw != "":
        if not isinstance(fw, str):
            raise invalid("failureWorkflow: must be a workflow name or a ${workflow.input.x}")
        if not fw.startswith("$"):
            name_field(fw, "failureWorkflow")
        elif not _FAILURE_WF_EXPR.fullmatch(fw):
            raise invalid(
                f"failureWorkflow: {fw!r} must be a workflow name or ${{workflow.input.<name>}}"
            )
        out["failureWorkflow"] = fw
        if "failureWorkflowVersion" in raw:
            out["failureWorkflowVersion"] = int_field(
                raw, "failureWorkflowVersion", "failureWorkflowVersion", 0, 2**31 - 1, 0
            )
    else:
        out.pop("failureWorkflow", None)
    # Absent means true (kept absent: the stored form of older definitions does not change).
    if not isinstance(raw.get("compensateOnFailure", True), bool):
        raise invalid("compensateOnFailure: must be true or false")
    if "limits" in raw:
        out["limits"] = _workflow_limits(raw["limits"])
    schema = raw.get("schemaVersion", 2)
    if schema != 2:
        raise invalid("schemaVersion: only schemaVersion 2 is supported")
    out["schemaVersion"] = 2
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise invalid("tasks: required, a non-empty list")
    if len(tasks) > limits.MAX_TASKS_PER_DEFINITION:
        raise invalid(f"tasks: at most {limits.MAX_TASKS_PER_DEFINITION} tasks per definition")
    v = Validation()
    out["tasks"] = task_list(tasks, "tasks", v, _depth, empty_ok=False)
    for where, ref, join_on in v.joins:
        for r in join_on:
            if r not in v.refs:
                raise invalid(f"{where} ({ref}): joins on unknown task reference {r!r}")
    v.expr_places.insert(0, ("outputParameters", out["outputParameters"]))
    _check_references(v.expr_places, v.refs)
    _check_references(v.compensation_places, {**v.refs, COMPENSATED_REF: "compensateWith"})
    return out


WHEN_LIMITED = ("QUEUE", "REJECT")
_LIMIT_KEYS = ("maxRunning", "maxRunningPerCorrelationId", "whenLimited")


def _workflow_limits(raw: JSON) -> dict[str, JSON]:
    """`limits` (processors/admission.py), every key filled in (0: no limit)."""
    if not isinstance(raw, dict):
        raise invalid("limits: must be a JSON object")
    unknown = [k for k in raw if k not in _LIMIT_KEYS]
    if unknown:
        raise invalid(f"limits.{unknown[0]}: unknown; known are {', '.join(_LIMIT_KEYS)}")
    top = 2**31 - 1
    out: dict[str, JSON] = {
        "maxRunning": int_field(raw, "maxRunning", "limits.maxRunning", 0, top, 0),
        "maxRunningPerCorrelationId": int_field(
            raw, "maxRunningPerCorrelationId", "limits.maxRunningPerCorrelationId", 0, top, 0
        ),
    }
    when = raw.get("whenLimited")
    if when is None:
        when = "QUEUE"
    if when not in WHEN_LIMITED:
        raise invalid(f"limits.whenLimited: must be one of {', '.join(WHEN_LIMITED)}")
    out["whenLimited"] = when
    return out


_FAILURE_WF_EXPR = re.compile(r"\$\{workflow\.input\.[A-Za-z0-9_\-]+\}")
_REF_RE = re.compile(r"\$\{([A-Za-z0-9_\-]+)\.")
_ITER_SUFFIX = re.compile(r"(__\d+)+$")


def _walk_strings(value: JSON) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _walk_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _walk_strings(v)]
    return []


def _check_references(places: list[tuple[str, JSON]], refs: dict[str, str]) -> None:
    """Every `${ref.…}` must name `workflow` or a task reference of this definition."""
    for where, value in places:
        for s in _walk_strings(value):
            for m in _REF_RE.finditer(s):
                name = _ITER_SUFFIX.sub("", m.group(1))
                if (
                    name != "workflow"
                    and name not in refs
                    and not (m.start() > 0 and s[m.start() - 1] == "$")
                ):
                    raise invalid(f"{where}: expression names unknown task reference {name!r}")


def iter_tasks(tasks: list[JSON]) -> list[JSON]:
    """Every task configuration in a task list, depth first, in definition order (not inline
    sub-workflow definitions: those are separate workflows)."""
    out: list[JSON] = []
    for t in tasks:
        out.append(t)
        ttype = t.get("type", "SIMPLE")
        if ttype == "FORK_JOIN":
            for branch in t.get("forkTasks", []):
                out.extend(iter_tasks(branch))
        elif ttype in ("SWITCH", "DECISION"):
            for case in t.get("decisionCases", {}).values():
                out.extend(iter_tasks(case))
            out.extend(iter_tasks(t.get("defaultCase", [])))
        elif ttype == "DO_WHILE":
            out.extend(iter_tasks(t.get("loopOver", [])))
        if t.get("compensateWith"):
            out.extend(iter_tasks(compensations(t)))
    return out


def compensations(t: JSON) -> list[JSON]:
    """A task configuration's compensateWith, as a list (empty when it declares none)."""
    cw = t.get("compensateWith") or []
    return [cw] if isinstance(cw, dict) else list(cw)


def check_task_defs_known(defn: dict[str, JSON], task_defs: dict[str, JSON]) -> None:
    """SIMPLE tasks need a registered or inline task definition (as in Conductor)."""
    for t in iter_tasks(defn["tasks"]):
        if t["type"] == "SIMPLE" and "taskDefinition" not in t and t["name"] not in task_defs:
            raise invalid(
                f"{_where_of(defn, t)}.name ({t['taskReferenceName']}): task definition "
                f"{t['name']!r} is not registered; register it first or give an inline "
                "taskDefinition",
            )
        if t["type"] == "SUB_WORKFLOW":
            inline = t["subWorkflowParam"].get("workflowDefinition")
            if inline is not None:
                check_task_defs_known(inline, task_defs)


def _where_of(defn: dict[str, JSON], target: JSON) -> str:
    def find(tasks: list[JSON], prefix: str) -> str | None:
        for i, t in enumerate(tasks):
            here = f"{prefix}[{i}]"
            if t is target:
                return here
            subs: list[tuple[str, list[JSON]]] = []
            if t["type"] == "FORK_JOIN":
                subs = [(f"{here}.forkTasks[{b}]", br) for b, br in enumerate(t["forkTasks"])]
            elif t["type"] in ("SWITCH", "DECISION"):
                subs = [(f"{here}.decisionCases.{k}", c) for k, c in t["decisionCases"].items()]
                subs.append((f"{here}.defaultCase", t["defaultCase"]))
            elif t["type"] == "DO_WHILE":
                subs = [(f"{here}.loopOver", t["loopOver"])]
            for p, lst in subs:
                found = find(lst, p)
                if found:
                    return found
        return None

    return find(defn["tasks"], "tasks") or "tasks"


def started_workflow_names(defn: dict[str, JSON]) -> list[str]:
    """Names of workflows this definition can start (SUB_WORKFLOW, START_WORKFLOW), literal ones
    only; inline sub-workflow definitions are followed."""
    names: list[str] = []
    for t in iter_tasks(defn["tasks"]):
        if t["type"] == "SUB_WORKFLOW":
            swp = t["subWorkflowParam"]
            inline = swp.get("workflowDefinition")
            if inline is not None:
                names.extend(started_workflow_names(inline))
            elif not is_expr(swp["name"]):
                names.append(swp["name"])
        elif t["type"] == "START_WORKFLOW":
            sw = t["inputParameters"].get("startWorkflow")
            if isinstance(sw, dict) and isinstance(sw.get("name"), str) and not is_expr(sw["name"]):
                names.append(sw["name"])
    return names


def is_restricted_condition(cond: str) -> bool:
    """Whether the core evaluates this loopCondition itself (see conditions.py)."""
    try:
        parse_condition(cond)
    except ConditionError:
        return False
    return True


def script_sources(defn: dict[str, JSON], prefix: str = "") -> list[tuple[str, str, JSON]]:
    """Every literal script of a normalized definition, as (field with the task reference,
    language "js"/"jq", source), inline sub-workflow definitions included. Scripts given as
    `${...}` expressions are resolved at run time and are not listed. Pure: the API compiles
    these in the sandbox before proposing a registration."""
    out: list[tuple[str, str, JSON]] = []

    def add(where: str, lang: str, source: JSON) -> None:
        if isinstance(source, str) and not is_expr(source):
            out.append((where, lang, source))

    def walk(tasks: list[JSON], path: str) -> None:
        for i, t in enumerate(tasks):
            here = f"{path}[{i}]"
            ref = t["taskReferenceName"]
            ttype = t["type"]
            ip = t.get("inputParameters", {})
            if ttype == "INLINE" and ip.get("evaluatorType") in JS_EVALUATORS:
                add(f"{here}.inputParameters.expression ({ref})", "js", ip.get("expression"))
            elif ttype == "JSON_JQ_TRANSFORM":
                add(f"{here}.inputParameters.queryExpression ({ref})", "jq", ip["queryExpression"])
            elif ttype == "SWITCH":
                if t.get("evaluatorType") in JS_EVALUATORS:
                    add(f"{here}.expression ({ref})", "js", t["expression"])
            elif ttype == "DECISION" and t.get("caseExpression") is not None:
                add(f"{here}.caseExpression ({ref})", "js", t["caseExpression"])
            elif ttype == "DO_WHILE":
                cond = t.get("loopCondition")
                if isinstance(cond, str) and not is_restricted_condition(cond):
                    add(f"{here}.loopCondition ({ref})", "js", cond)
            if ttype == "FORK_JOIN":
                for b, branch in enumerate(t["forkTasks"]):
                    walk(branch, f"{here}.forkTasks[{b}]")
            elif ttype in ("SWITCH", "DECISION"):
                for k, case in t["decisionCases"].items():
                    walk(case, f"{here}.decisionCases.{k}")
                walk(t["defaultCase"], f"{here}.defaultCase")
            elif ttype == "DO_WHILE":
                walk(t["loopOver"], f"{here}.loopOver")
            if t.get("compensateWith"):
                walk(compensations(t), f"{here}.compensateWith")
            if ttype == "SUB_WORKFLOW":
                inline = t["subWorkflowParam"].get("workflowDefinition")
                if isinstance(inline, dict):
                    out.extend(
                        script_sources(inline, f"{here}.subWorkflowParam.workflowDefinition.")
                    )

    walk(defn["tasks"], f"{prefix}tasks")
    return out


__all__ = [
    "COMPENSATED_REF",
    "COMPENSATION_TYPES",
    "INLINE_EVALUATORS",
    "JS_EVALUATORS",
    "check_task_defs_known",
    "compensations",
    "is_restricted_condition",
    "iter_tasks",
    "normalize_task_def",
    "normalize_workflow_def",
    "script_sources",
    "started_workflow_names",
]
