"""Definitions: registering task and workflow definitions, finding the one a start names, and
the definition snapshots running workflows keep (shared by content hash)."""

from __future__ import annotations

from typing import Any

from .. import events as E
from ..codec import fingerprint
from ..commands import RegisterTaskDefs, RegisterWorkflowDef
from ..context import Ctx
from ..definitions import (
    check_task_defs_known,
    normalize_task_def,
    normalize_workflow_def,
    started_workflow_names,
)
from ..errors import TaskCannotRun, already_exists, invalid
from ..records import Task, TaskType, Workflow
from ..state import State
from . import flow

JSON = Any

# The task definition of operators and system tasks: never retried, a long lease.
SYSTEM_TASK_DEF: dict[str, JSON] = {
    "retryCount": 0,
    "retryLogic": "FIXED",
    "retryDelaySeconds": 0,
    "backoffScaleFactor": 1,
    "maxRetryDelaySeconds": 0,
    "responseTimeoutSeconds": 3600,
}


def register_task_defs(ctx: Ctx, cmd: RegisterTaskDefs) -> dict[str, JSON]:
    if not isinstance(cmd.task_defs, list) or not cmd.task_defs:
        raise invalid("task_def_json: at least one task definition is required")
    defs = [normalize_task_def(d, f"task_def_json[{i}]") for i, d in enumerate(cmd.task_defs)]
    ctx.emit(E.TaskDefsRegistered(defs))
    names = [d["name"] for d in defs]
    flow.limits_changed(ctx, names)
    return {"names": names}


def register_workflow_def(ctx: Ctx, cmd: RegisterWorkflowDef) -> dict[str, JSON]:
    defn = normalize_workflow_def(cmd.definition)
    check_task_defs_known(defn, ctx.st.task_defs)
    _check_no_cycle(ctx.st, defn)
    existing = ctx.st.workflow_defs.get(defn["name"], {}).get(str(defn["version"]))
    if existing is not None and existing != defn and not cmd.overwrite:
        raise already_exists(
            f"workflow definition {defn['name']!r} version {defn['version']} already exists "
            "with different content (set overwrite, or register a new version)"
        )
    ctx.emit(E.WorkflowDefRegistered(defn))
    return {"name": defn["name"], "version": defn["version"]}


def _check_no_cycle(st: State, defn: JSON) -> None:
    """Reject a definition that can start itself, directly or through registered definitions
    (SUB_WORKFLOW and START_WORKFLOW with literal names; every registered version counts)."""
    target = defn["name"]
    path: dict[str, str] = {}  # name -> the name that reaches it (for the message)
    todo = [(n, target) for n in started_workflow_names(defn)]
    while todo:
        name, via = todo.pop(0)
        if name in path:
            continue
        path[name] = via
        if name == target:
            chain = [name]
            cur = via
            while cur != target:
                chain.append(cur)
                cur = path[cur]
            chain.append(target)
            raise invalid(
                f"tasks: sub-workflow cycle: {' -> '.join(reversed(chain))} (a definition must "
                "not be able to start itself)"
            )
        for version in st.workflow_defs.get(name, {}).values():
            todo.extend((n, name) for n in started_workflow_names(version))


def latest_version(versions: dict[str, JSON]) -> int:
    return max(int(v) for v in versions)


def lookup_def(st: State, name: str, version: int) -> JSON:
    """A definition a running workflow starts (a child, a failure workflow): a missing one
    fails the task that asked."""
    versions = st.workflow_defs.get(name)
    if not versions:
        raise TaskCannotRun(f"workflow definition {name!r} is not registered")
    defn = versions.get(str(version or latest_version(versions)))
    if defn is None:
        raise TaskCannotRun(f"workflow definition {name!r} has no version {version}")
    return defn


# ---------------------------------------------------------------- definition snapshots

# The content hash of (definition, task definitions) by the identity of those objects, holding
# them so an id cannot be reused while its entry exists. Registered definitions are replaced,
# never changed in place, so the same objects always hash alike: a memo of a pure function,
# which keeps apply deterministic while saving a canonical encoding of the whole definition on
# every start.
_DEF_HASHES: dict[int, tuple[JSON, tuple[tuple[str, JSON], ...], str]] = {}
_DEF_HASHES_MAX = 256


def def_hash(defn: JSON, task_defs: dict[str, JSON]) -> str:
    tds = tuple(task_defs.items())
    memo = _DEF_HASHES.get(id(defn))
    if (
        memo is not None
        and memo[0] is defn
        and len(memo[1]) == len(tds)
        and all(a[0] == b[0] and a[1] is b[1] for a, b in zip(memo[1], tds, strict=True))
    ):
        return memo[2]
    key = fingerprint({"def": defn, "taskDefs": task_defs})
    if len(_DEF_HASHES) >= _DEF_HASHES_MAX:
        _DEF_HASHES.clear()
    _DEF_HASHES[id(defn)] = (defn, tds, key)
    return key


def wf_def(st: State, wf: Workflow) -> JSON:
    """The definition a workflow runs (the one it started with)."""
    return st.def_snapshots[wf.def_hash].definition


def wt_of(st: State, wf: Workflow, task: Task) -> JSON:
    """The task configuration a task record was scheduled from."""
    if task.dynamic_task is not None:
        return task.dynamic_task
    cur: JSON = wf_def(st, wf)
    for key in task.path or ():
        cur = cur[key]
    return cur


# Task types a task definition of their name configures (retries, timeouts); optional for the
# system tasks among them.
_OPTIONAL_TASK_DEF = (TaskType.HTTP, TaskType.WAIT_FOR_EVENT)
_WITH_TASK_DEF = (TaskType.SIMPLE, *_OPTIONAL_TASK_DEF)


def effective_task_def(st: State, wf: Workflow, wt: JSON) -> JSON:
    """The task definition a task configuration runs with: an inline taskDefinition, the one
    the workflow started with, or the registered one; retryCount may be overridden."""
    ttype = wt["type"]
    if ttype not in _WITH_TASK_DEF:
        td = dict(SYSTEM_TASK_DEF)
    elif wt.get("taskDefinition"):
        td = dict(wt["taskDefinition"])
    else:
        known = st.def_snapshots[wf.def_hash].task_defs.get(wt["name"]) or st.task_defs.get(
            wt["name"]
        )
        if known is None and ttype in _OPTIONAL_TASK_DEF:  # as Conductor's HTTP
            known = SYSTEM_TASK_DEF
        if known is None:
            raise TaskCannotRun(f"task definition {wt['name']!r} is not registered")
        td = dict(known)
    if "retryCount" in wt:
        td["retryCount"] = wt["retryCount"]
    return td
