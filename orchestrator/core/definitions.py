"""Workflow and task definitions in Conductor's JSON (camelCase), validated and normalized.

Pure functions: api/ calls them before proposing (so bad input never reaches Raft) and apply
calls them again (the log is never trusted blindly). Errors name the field, e.g.
``tasks[2].taskReferenceName: duplicate reference 'charge'``.
"""

from __future__ import annotations

import re
from typing import Any

from . import limits
from .conditions import ConditionError, parse_condition, parse_duration_ms, parse_until_ms
from .errors import Rejected, invalid

JSON = Any

NAME_RE = re.compile(r"^[A-Za-z0-9_.\-:]{1,256}$")
RETRY_LOGICS = ("FIXED", "EXPONENTIAL_BACKOFF", "LINEAR_BACKOFF")
TIMEOUT_POLICIES = ("RETRY", "TIME_OUT_WF", "ALERT_ONLY")
WORKFLOW_TIMEOUT_POLICIES = ("TIME_OUT_WF", "ALERT_ONLY")
JOIN_MODES = ("SYNC", "ASYNC")
# Task types this version executes. The others are Conductor types still to come (HTTP/EVENT with
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
)
KNOWN_TASK_TYPES = (*SUPPORTED_TASK_TYPES, "HTTP", "EVENT", "KAFKA_PUBLISH")

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


def _name(value: JSON, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(f"{field}: required, a non-empty string")
    if not NAME_RE.match(value):
        raise invalid(f"{field}: {value!r} may only contain letters, digits and _ . - : (max 256)")
    return value


def _int(obj: dict[str, JSON], key: str, field: str, lo: int, hi: int, default: int) -> int:
    value = obj.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{field}: must be an integer")
    if not lo <= value <= hi:
        raise invalid(f"{field}: must be between {lo} and {hi}, got {value}")
    return value


def normalize_task_def(raw: JSON, where: str = "taskDef") -> dict[str, JSON]:
    if not isinstance(raw, dict):
        raise invalid(f"{where}: must be a JSON object")
    # Conductor exports carry explicit nulls for unset fields: null means "not given".
    out = {k: v for k, v in raw.items() if v is not None}
    out["name"] = _name(raw.get("name"), f"{where}.name")
    for key, default in TASK_DEF_DEFAULTS.items():
        out.setdefault(key, default)
    out["retryCount"] = _int(out, "retryCount", f"{where}.retryCount", 0, limits.MAX_RETRY_COUNT, 3)
    out["retryDelaySeconds"] = _int(
        out, "retryDelaySeconds", f"{where}.retryDelaySeconds", 0, limits.MAX_DELAY_SECONDS, 60
    )
    out["backoffScaleFactor"] = _int(
        out, "backoffScaleFactor", f"{where}.backoffScaleFactor", 1, 1000, 1
    )
    out["maxRetryDelaySeconds"] = _int(
        out, "maxRetryDelaySeconds", f"{where}.maxRetryDelaySeconds", 0, limits.MAX_DELAY_SECONDS, 0
    )
    out["responseTimeoutSeconds"] = _int(
        out,
        "responseTimeoutSeconds",
        f"{where}.responseTimeoutSeconds",
        1,
        limits.MAX_DELAY_SECONDS,
        3600,
    )
    out["timeoutSeconds"] = _int(
        out, "timeoutSeconds", f"{where}.timeoutSeconds", 0, limits.MAX_DELAY_SECONDS, 0
    )
    out["pollTimeoutSeconds"] = _int(
        out, "pollTimeoutSeconds", f"{where}.pollTimeoutSeconds", 0, limits.MAX_DELAY_SECONDS, 0
    )
    out["totalTimeoutSeconds"] = _int(
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


class _Validation:
    """Collects what whole-definition checks need while the task tree is walked."""

    def __init__(self) -> None:
        self.refs: dict[str, str] = {}  # reference -> where it is defined
        self.count = 0
        self.joins: list[tuple[str, str, list[str]]] = []  # (where, ref, joinOn refs)
        self.expr_places: list[tuple[str, JSON]] = []


def _is_expr(value: JSON) -> bool:
    return isinstance(value, str) and "${" in value


def _task_list(value: JSON, field: str, v: _Validation, depth: int, empty_ok: bool) -> list[JSON]:
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
    "HTTP": "comes with the events work",
    "EVENT": "comes with the events work",
    "KAFKA_PUBLISH": "comes with the events work",
}
# INLINE evaluatorTypes: JavaScript runs in the sandbox (two phases), value-param in the core.
JS_EVALUATORS = ("javascript", "graaljs")
INLINE_EVALUATORS = (*JS_EVALUATORS, "value-param")


def _norm_task(task: JSON, where: str, v: _Validation, depth: int) -> dict[str, JSON]:
    if not isinstance(task, dict):
        raise invalid(f"{where}: must be a JSON object")
    t = {k: val for k, val in task.items() if val is not None}
    ref = t.get("taskReferenceName")
    if not isinstance(ref, str) or not ref:
        raise invalid(f"{where}.taskReferenceName: required, a non-empty string")
    _name(ref, f"{where}.taskReferenceName")
    if "__" in ref:
        raise invalid(
            f"{where}.taskReferenceName: {ref!r} must not contain '__' (reserved for DO_WHILE "
            "iteration suffixes)"
        )
    t["name"] = _name(t.get("name"), f"{where}.name ({ref})")
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
        t["retryCount"] = _int(
            t, "retryCount", f"{where}.retryCount ({ref})", 0, limits.MAX_RETRY_COUNT, 0
        )
    if "startDelay" in t:
        t["startDelay"] = _int(
            t, "startDelay", f"{where}.startDelay ({ref})", 0, limits.MAX_DELAY_SECONDS, 0
        )
    if t.get("taskDefinition") is not None:
        t["taskDefinition"] = normalize_task_def(
            t["taskDefinition"], f"{where}.taskDefinition ({ref})"
        )
        if t["taskDefinition"]["name"] != t["name"]:
            raise invalid(f"{where}.taskDefinition.name: must equal the task name {t['name']!r}")
    v.expr_places.append((f"{where}.inputParameters ({ref})", ip))
    w = f"{where}"
    if ttype in ("SWITCH", "DECISION"):
        _norm_switch(t, w, ref, v, depth)
    elif ttype == "FORK_JOIN":
        forks = t.get("forkTasks")
        if not isinstance(forks, list) or not forks:
            raise invalid(f"{w}.forkTasks ({ref}): required, a non-empty list of task lists")
        if len(forks) > limits.MAX_FORK_BRANCHES:
            raise invalid(
                f"{w}.forkTasks ({ref}): at most {limits.MAX_FORK_BRANCHES} branches, "
                f"got {len(forks)}"
            )
        t["forkTasks"] = [
            _task_list(b, f"{w}.forkTasks[{i}]", v, depth + 1, empty_ok=False)
            for i, b in enumerate(forks)
        ]
    elif ttype == "FORK_JOIN_DYNAMIC":
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
    elif ttype in ("JOIN", "EXCLUSIVE_JOIN"):
        for key in ("joinOn", "defaultExclusiveJoinTask"):
            val = t.get(key, [])
            if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
                raise invalid(f"{w}.{key} ({ref}): must be a list of task references")
            t[key] = val
            v.joins.append((f"{w}.{key}", ref, val))
    elif ttype == "DO_WHILE":
        _norm_loop(t, w, ref, v, depth)
    elif ttype == "SUB_WORKFLOW":
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
                swp["workflowDefinition"] = normalize_workflow_def(inline, _depth=depth + 1)
            except Rejected as rej:
                raise invalid(
                    f"{w}.subWorkflowParam.workflowDefinition ({ref}): {rej.message}"
                ) from None
            swp.setdefault("name", swp["workflowDefinition"]["name"])
        swp["name"] = _name(swp.get("name"), f"{w}.subWorkflowParam.name ({ref})")
        if "version" in swp:
            swp["version"] = _int(
                swp, "version", f"{w}.subWorkflowParam.version ({ref})", 0, 2**31 - 1, 0
            )
        if swp.get("taskToDomain") is not None:
            swp["taskToDomain"] = check_task_to_domain(
                swp["taskToDomain"], f"{w}.subWorkflowParam.taskToDomain ({ref})"
            )
        t["subWorkflowParam"] = swp
    elif ttype == "START_WORKFLOW":
        sw = ip.get("startWorkflow")
        if not (isinstance(sw, dict) and isinstance(sw.get("name"), str)) and not _is_expr(sw):
            raise invalid(
                f"{w}.inputParameters.startWorkflow ({ref}): required, an object with a "
                "workflow name (and optional version, input, correlationId)"
            )
        if isinstance(sw, dict) and not _is_expr(sw["name"]):
            _name(sw["name"], f"{w}.inputParameters.startWorkflow.name ({ref})")
    elif ttype == "DYNAMIC":
        p = t.get("dynamicTaskNameParam")
        if not isinstance(p, str) or not p:
            raise invalid(f"{w}.dynamicTaskNameParam ({ref}): required, an input parameter name")
    elif ttype == "TERMINATE":
        status = ip.get("terminationStatus")
        if not _is_expr(status) and status not in TERMINATION_STATUSES:
            raise invalid(
                f"{w}.inputParameters.terminationStatus ({ref}): must be one of "
                f"{', '.join(TERMINATION_STATUSES)}"
            )
    elif ttype == "INLINE":
        ev = ip.get("evaluatorType")
        if not _is_expr(ev) and ev not in INLINE_EVALUATORS:
            raise invalid(
                f"{w}.inputParameters.evaluatorType ({ref}): must be one of "
                f"{', '.join(INLINE_EVALUATORS)}, got {ev!r}"
                + (" (python is not supported)" if ev == "python" else "")
            )
        _script_field(ip.get("expression"), f"{w}.inputParameters.expression ({ref})")
    elif ttype == "JSON_JQ_TRANSFORM":
        _script_field(ip.get("queryExpression"), f"{w}.inputParameters.queryExpression ({ref})")
    elif ttype == "WAIT":
        dur, until = ip.get("duration"), ip.get("until")
        if dur is not None and until is not None:
            raise invalid(f"{w}.inputParameters ({ref}): give either duration or until, not both")
        try:
            if dur is not None and not _is_expr(dur):
                parse_duration_ms(dur)
            if until is not None and not _is_expr(until):
                parse_until_ms(until)
        except ConditionError as exc:
            key = "duration" if dur is not None else "until"
            raise invalid(f"{w}.inputParameters.{key} ({ref}): {exc}") from None
    return t


TERMINATION_STATUSES = ("COMPLETED", "FAILED", "TERMINATED")
MAX_SCRIPT_CHARS = 64 * 1024


def _script_field(value: JSON, field: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{field}: required, a non-empty script")
    if len(value) > MAX_SCRIPT_CHARS:
        raise invalid(f"{field}: a script may have at most {MAX_SCRIPT_CHARS} characters")


def _norm_switch(t: JSON, w: str, ref: str, v: _Validation, depth: int) -> None:
    if t["type"] == "SWITCH":
        ev = t.get("evaluatorType", "value-param")
        if ev not in ("value-param", *JS_EVALUATORS):
            raise invalid(
                f"{w}.evaluatorType ({ref}): must be value-param, javascript or graaljs, got {ev!r}"
                + (" (python is not supported)" if ev == "python" else "")
            )
        t["evaluatorType"] = ev
        expr = t.get("expression")
        if ev in JS_EVALUATORS:
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
        str(k): _task_list(val, f"{w}.decisionCases.{k}", v, depth + 1, empty_ok=True)
        for k, val in cases.items()
    }
    t["defaultCase"] = _task_list(
        t.get("defaultCase", []), f"{w}.defaultCase", v, depth + 1, empty_ok=True
    )


def _norm_loop(t: JSON, w: str, ref: str, v: _Validation, depth: int) -> None:
    t["loopOver"] = _task_list(t.get("loopOver"), f"{w}.loopOver", v, depth + 1, empty_ok=False)
    cond = t.get("loopCondition")
    items = t.get("items", t["inputParameters"].get("items"))
    if cond is None and items is None:
        raise invalid(f"{w}.loopCondition ({ref}): required (or items to iterate over)")
    if cond is not None:
        # The restricted forms are evaluated by the core itself; anything else is JavaScript,
        # evaluated in the sandbox (compiled at registration by the API).
        _script_field(cond, f"{w}.loopCondition ({ref})")
    if items is not None and not isinstance(items, list) and not _is_expr(items):
        raise invalid(f"{w}.items ({ref}): must be a list or a ${{...}} expression")
    keep = t["inputParameters"].get("keepLastN")
    if keep is not None and not _is_expr(keep):
        _int(
            t["inputParameters"],
            "keepLastN",
            f"{w}.inputParameters.keepLastN ({ref})",
            1,
            limits.MAX_LOOP_ITERATIONS,
            1,
        )
    if "items" in t:
        v.expr_places.append((f"{w}.items ({ref})", t["items"]))


def normalize_workflow_def(raw: JSON, _depth: int = 1) -> dict[str, JSON]:
    """Validate a workflow definition and fill in defaults; raises Rejected naming the field."""
    if not isinstance(raw, dict):
        raise invalid("definition: must be a JSON object")
    raw = {k: v for k, v in raw.items() if v is not None}
    out = dict(raw)
    out["name"] = _name(raw.get("name"), "name")
    out["version"] = _int(raw, "version", "version", 1, 2**31 - 1, 1)
    out["inputParameters"] = raw.get("inputParameters") or []
    out["outputParameters"] = _params(raw.get("outputParameters"), "outputParameters")
    out["inputTemplate"] = _params(raw.get("inputTemplate"), "inputTemplate")
    out["variables"] = _params(raw.get("variables"), "variables")
    out["timeoutSeconds"] = _int(
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
            _name(fw, "failureWorkflow")
        elif not _FAILURE_WF_EXPR.fullmatch(fw):
            raise invalid(
                f"failureWorkflow: {fw!r} must be a workflow name or ${{workflow.input.<name>}}"
            )
        out["failureWorkflow"] = fw
        if "failureWorkflowVersion" in raw:
            out["failureWorkflowVersion"] = _int(
                raw, "failureWorkflowVersion", "failureWorkflowVersion", 0, 2**31 - 1, 0
            )
    else:
        out.pop("failureWorkflow", None)
    schema = raw.get("schemaVersion", 2)
    if schema != 2:
        raise invalid("schemaVersion: only schemaVersion 2 is supported")
    out["schemaVersion"] = 2
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise invalid("tasks: required, a non-empty list")
    if len(tasks) > limits.MAX_TASKS_PER_DEFINITION:
        raise invalid(f"tasks: at most {limits.MAX_TASKS_PER_DEFINITION} tasks per definition")
    v = _Validation()
    out["tasks"] = _task_list(tasks, "tasks", v, _depth, empty_ok=False)
    for where, ref, join_on in v.joins:
        for r in join_on:
            if r not in v.refs:
                raise invalid(f"{where} ({ref}): joins on unknown task reference {r!r}")
    v.expr_places.insert(0, ("outputParameters", out["outputParameters"]))
    _check_references(v.expr_places, v.refs)
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
    return out


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
            elif not _is_expr(swp["name"]):
                names.append(swp["name"])
        elif t["type"] == "START_WORKFLOW":
            sw = t["inputParameters"].get("startWorkflow")
            if (
                isinstance(sw, dict)
                and isinstance(sw.get("name"), str)
                and not _is_expr(sw["name"])
            ):
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
        if isinstance(source, str) and not _is_expr(source):
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
            elif ttype == "SUB_WORKFLOW":
                inline = t["subWorkflowParam"].get("workflowDefinition")
                if isinstance(inline, dict):
                    out.extend(
                        script_sources(inline, f"{here}.subWorkflowParam.workflowDefinition.")
                    )

    walk(defn["tasks"], f"{prefix}tasks")
    return out


__all__ = [
    "check_task_defs_known",
    "is_restricted_condition",
    "iter_tasks",
    "normalize_task_def",
    "normalize_workflow_def",
    "script_sources",
    "started_workflow_names",
]
