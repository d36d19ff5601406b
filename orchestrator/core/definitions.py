"""Workflow and task definitions in Conductor's JSON (camelCase), validated and normalized.

Pure functions: api/ calls them before proposing (so bad input never reaches Raft) and apply
calls them again (the log is never trusted blindly). Errors name the field, e.g.
``tasks[2].taskReferenceName: duplicate reference 'charge'``.
"""

from __future__ import annotations

import re
from typing import Any

from . import limits
from .errors import invalid

JSON = Any

NAME_RE = re.compile(r"^[A-Za-z0-9_.\-:]{1,256}$")
RETRY_LOGICS = ("FIXED", "EXPONENTIAL_BACKOFF", "LINEAR_BACKOFF")
TIMEOUT_POLICIES = ("RETRY", "TIME_OUT_WF", "ALERT_ONLY")
# Task types this version executes. The others are Conductor types still to come; a definition
# using one is rejected with a clear message rather than accepted and left hanging.
SUPPORTED_TASK_TYPES = ("SIMPLE",)
KNOWN_TASK_TYPES = (
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
    "KAFKA_PUBLISH",
)

TASK_DEF_DEFAULTS: dict[str, JSON] = {
    "retryCount": 3,
    "retryLogic": "FIXED",
    "retryDelaySeconds": 60,
    "backoffScaleFactor": 1,
    "maxRetryDelaySeconds": 0,
    "responseTimeoutSeconds": 3600,
    "timeoutSeconds": 0,
    "timeoutPolicy": "TIME_OUT_WF",
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
    if out["retryLogic"] not in RETRY_LOGICS:
        raise invalid(f"{where}.retryLogic: must be one of {', '.join(RETRY_LOGICS)}")
    if out["timeoutPolicy"] not in TIMEOUT_POLICIES:
        raise invalid(f"{where}.timeoutPolicy: must be one of {', '.join(TIMEOUT_POLICIES)}")
    if out["timeoutSeconds"] and out["responseTimeoutSeconds"] > out["timeoutSeconds"]:
        raise invalid(f"{where}.responseTimeoutSeconds: must not exceed timeoutSeconds")
    return out


def _params(value: JSON, field: str) -> dict[str, JSON]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"{field}: must be a JSON object")
    return value


def normalize_workflow_def(raw: JSON) -> dict[str, JSON]:
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
    schema = raw.get("schemaVersion", 2)
    if schema != 2:
        raise invalid("schemaVersion: only schemaVersion 2 is supported")
    out["schemaVersion"] = 2
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise invalid("tasks: required, a non-empty list")
    if len(tasks) > limits.MAX_TASKS_PER_DEFINITION:
        raise invalid(f"tasks: at most {limits.MAX_TASKS_PER_DEFINITION} tasks per definition")
    seen: set[str] = set()
    norm_tasks = []
    for i, task in enumerate(tasks):
        where = f"tasks[{i}]"
        if not isinstance(task, dict):
            raise invalid(f"{where}: must be a JSON object")
        t = {k: v for k, v in task.items() if v is not None}
        task = t.copy()  # noqa: PLW2901 - the null-free copy is what every check below reads
        t["name"] = _name(task.get("name"), f"{where}.name")
        ref = task.get("taskReferenceName")
        if not isinstance(ref, str) or not ref:
            raise invalid(f"{where}.taskReferenceName: required, a non-empty string")
        _name(ref, f"{where}.taskReferenceName")
        if ref in seen:
            raise invalid(f"{where}.taskReferenceName: duplicate reference {ref!r}")
        seen.add(ref)
        ttype = task.get("type", "SIMPLE")
        if ttype not in KNOWN_TASK_TYPES:
            raise invalid(f"{where}.type ({ref}): unknown task type {ttype!r}")
        if ttype not in SUPPORTED_TASK_TYPES:
            raise invalid(
                f"{where}.type ({ref}): task type {ttype} is not supported yet "
                f"(supported: {', '.join(SUPPORTED_TASK_TYPES)})"
            )
        t["type"] = ttype
        t["inputParameters"] = _params(task.get("inputParameters"), f"{where}.inputParameters")
        t["optional"] = bool(task.get("optional", False))
        if "retryCount" in task and task["retryCount"] is not None:
            t["retryCount"] = _int(
                task, "retryCount", f"{where}.retryCount", 0, limits.MAX_RETRY_COUNT, 0
            )
        if task.get("taskDefinition") is not None:
            t["taskDefinition"] = normalize_task_def(
                task["taskDefinition"], f"{where}.taskDefinition"
            )
            if t["taskDefinition"]["name"] != t["name"]:
                raise invalid(
                    f"{where}.taskDefinition.name: must equal the task name {t['name']!r}"
                )
        norm_tasks.append(t)
    out["tasks"] = norm_tasks
    _check_references(out, seen)
    return out


_REF_RE = re.compile(r"\$\{([A-Za-z0-9_\-]+)\.")


def _walk_strings(value: JSON) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _walk_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _walk_strings(v)]
    return []


def _check_references(defn: dict[str, JSON], refs: set[str]) -> None:
    """Every `${ref.…}` must name `workflow` or a task reference of this definition."""
    places: list[tuple[str, JSON]] = [("outputParameters", defn["outputParameters"])]
    for i, t in enumerate(defn["tasks"]):
        places.append(
            (f"tasks[{i}].inputParameters ({t['taskReferenceName']})", t["inputParameters"])
        )
    for where, value in places:
        for s in _walk_strings(value):
            for m in _REF_RE.finditer(s):
                name = m.group(1)
                if (
                    name != "workflow"
                    and name not in refs
                    and not (m.start() > 0 and s[m.start() - 1] == "$")
                ):
                    raise invalid(f"{where}: expression names unknown task reference {name!r}")


def check_task_defs_known(defn: dict[str, JSON], task_defs: dict[str, JSON]) -> None:
    """SIMPLE tasks need a registered or inline task definition (as in Conductor)."""
    for i, t in enumerate(defn["tasks"]):
        if t["type"] == "SIMPLE" and "taskDefinition" not in t and t["name"] not in task_defs:
            raise invalid(
                f"tasks[{i}].name ({t['taskReferenceName']}): task definition {t['name']!r} is not "
                "registered; register it first or give an inline taskDefinition",
            )


__all__ = ["check_task_defs_known", "normalize_task_def", "normalize_workflow_def"]
