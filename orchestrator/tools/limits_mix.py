"""The part of `orchestrator chaos`'s load that runs into issue 17's limits, and its audit.

Beside the steady `fault_flow` load, a starter thread starts, in bursts that exceed each limit
(so the limits bind, not just hold): a fork whose branches each run a task of a type limited to
2 IN_PROGRESS at once and then one of a type limited to 4 leases a second; workflows of a
definition limited to 2 running, and of one limited to 1 running per correlation id (QUEUE);
and a saga whose last task fails, so its two completed steps are compensated. Each part is in
the mix only once the server has its feature (the core module that implements it exists), and
`features` says which ran. The audit reads every workflow the load's auditor saw end.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from orchestrator_client import TaskFailure

from .limits_audit import (
    TaskLimit,
    WorkflowLimit,
    audit_compensations,
    audit_task_limits,
    audit_workflow_limits,
    violations_of,
)

CONC, RATE, HOLD = "chaos_conc", "chaos_rate", "chaos_hold"
STEP, UNDO, FAIL = "chaos_step", "chaos_undo", "chaos_fail"
TASK_LIMITS = {CONC: TaskLimit(concurrent=2), RATE: TaskLimit(rate=4, per_seconds=1)}
CAPPED, CUSTOMER, FORKED, SAGA = "chaos_capped", "chaos_customer", "chaos_limits", "chaos_saga"
WORKFLOW_LIMITS = {
    CAPPED: WorkflowLimit(max_running=2),
    CUSTOMER: WorkflowLimit(per_correlation_id=1),
}
BRANCHES = 6
CYCLE_S = 1.5  # one burst of starts per cycle


def server_features() -> dict[str, bool]:
    """Which of issue 17's parts this tree's server has (the core module each one adds)."""

    def has(module: str) -> bool:
        return importlib.util.find_spec(f"orchestrator.core.processors.{module}") is not None

    return {
        "task_limits": has("flow"),
        "workflow_limits": has("admission"),
        "sagas": has("compensation"),
    }


def _task(name: str, ref: str, **inputs: str) -> dict[str, Any]:
    return {"name": name, "taskReferenceName": ref, "inputParameters": dict(inputs)}


def _one_task(name: str, limits: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "limits": limits, "tasks": [_task(HOLD, "hold", n="${workflow.input.n}")]}


def definitions(features: dict[str, bool]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The mix's task and workflow definitions, for the features the server has."""
    base = {"retryCount": 5, "retryDelaySeconds": 0, "responseTimeoutSeconds": 10}
    tds = [{"name": n, **base} for n in (HOLD, STEP, UNDO)]
    tds.append({"name": FAIL, **base, "retryCount": 0})
    wfs: list[dict[str, Any]] = []
    if features["task_limits"]:
        tds.append({"name": CONC, **base, "concurrentExecLimit": TASK_LIMITS[CONC].concurrent})
        rate = TASK_LIMITS[RATE]
        tds.append(
            {
                "name": RATE,
                **base,
                "rateLimitPerFrequency": rate.rate,
                "rateLimitFrequencyInSeconds": rate.per_seconds,
            }
        )
        branches = [[_task(CONC, f"c{i}"), _task(RATE, f"r{i}")] for i in range(BRANCHES)]
        fork: dict[str, Any] = {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN"}
        join: dict[str, Any] = {"name": "join", "taskReferenceName": "join", "type": "JOIN"}
        fork["forkTasks"] = branches
        join["joinOn"] = [f"r{i}" for i in range(BRANCHES)]
        wfs.append({"name": FORKED, "tasks": [fork, join]})
    if features["workflow_limits"]:
        wfs.append(_one_task(CAPPED, {"maxRunning": WORKFLOW_LIMITS[CAPPED].max_running}))
        per = WORKFLOW_LIMITS[CUSTOMER].per_correlation_id
        wfs.append(_one_task(CUSTOMER, {"maxRunningPerCorrelationId": per}))
    if features["sagas"]:
        steps = []
        for i in (1, 2):
            step = _task(STEP, f"s{i}", n="${workflow.input.n}")
            step["compensateWith"] = _task(UNDO, f"u{i}", step="${compensated.taskId}")
            steps.append(step)
        wfs.append({"name": SAGA, "tasks": [*steps, _task(FAIL, "boom")]})
    return tds, wfs


def handlers() -> dict[str, Callable[[Any], dict[str, Any]]]:
    """The workers' bodies: the limited and held ones take a while, so their runs overlap."""

    def sleeper(seconds: float) -> Callable[[Any], dict[str, Any]]:
        def fn(task: Any) -> dict[str, Any]:
            time.sleep(seconds)
            return {"done": task.task_id}

        return fn

    def fail(task: Any) -> dict[str, Any]:
        # TaskFailure: the worker reports it without logging a traceback each time.
        raise TaskFailure("chaos_fail fails on purpose (the saga compensates)", terminal=True)

    return {
        CONC: sleeper(0.05),
        RATE: sleeper(0.0),
        HOLD: sleeper(0.1),
        STEP: sleeper(0.0),
        UNDO: sleeper(0.0),
        FAIL: fail,
    }


class Mix:
    """The starter of the mix's workflows, in bursts, through the load's recorded client."""

    def __init__(self, features: dict[str, bool] | None = None) -> None:
        self.features = server_features() if features is None else features
        self.task_defs, self.workflow_defs = definitions(self.features)
        self.names = [str(w["name"]) for w in self.workflow_defs]
        self.errors: list[BaseException] = []

    def handlers(self) -> dict[str, Callable[[Any], dict[str, Any]]]:
        """The bodies of the types the mix's workflows use."""
        used = {t["name"] for t in self.task_defs}
        return {k: fn for k, fn in handlers().items() if k in used}

    def register(self, client: Any) -> None:
        client.register_task_defs(self.task_defs)
        for wf in self.workflow_defs:
            client.register_workflow_def(wf, overwrite=True)

    def _burst(self, cycle: int) -> list[tuple[str, str]]:
        """(definition, correlation id) of one cycle's starts."""
        out: list[tuple[str, str]] = []
        if FORKED in self.names and cycle % 2 == 0:
            out.append((FORKED, ""))
        if CAPPED in self.names:
            out += [(CAPPED, "")] * 3
        if CUSTOMER in self.names:
            out += [(CUSTOMER, f"c{cycle % 3}")] * 2 + [(CUSTOMER, f"c{(cycle + 1) % 3}")]
        if SAGA in self.names:
            out.append((SAGA, ""))
        return out

    def run(self, stop: threading.Event, start: Callable[[str, dict[str, Any], str], Any]) -> None:
        """Start a burst every CYCLE_S until `stop`; `start(name, input, correlation_id)`."""
        cycle = 0
        i = 0
        while not stop.is_set():
            for name, corr in self._burst(cycle):
                try:
                    start(name, {"n": f"m{i}"}, corr)
                except Exception as exc:  # recorded as fail/unknown; the checker decides
                    self.errors.append(exc)
                i += 1
            cycle += 1
            stop.wait(CYCLE_S)

    def audit(self, workflows: Iterable[Any]) -> dict[str, Any]:
        """The limit audits over the workflows' final views; `violations` lists what broke."""
        wfs = list(workflows)
        out: dict[str, Any] = {"features": dict(self.features)}
        parts: list[tuple[str, dict[str, Any]]] = []
        if self.features["task_limits"]:
            tasks = [t for w in wfs for t in w.tasks]
            parts.append(("task_limits", audit_task_limits(tasks, TASK_LIMITS)))
        if self.features["workflow_limits"] and any(hasattr(w, "start_time_ms") for w in wfs):
            parts.append(("workflow_limits", audit_workflow_limits(wfs, WORKFLOW_LIMITS)))
        elif self.features["workflow_limits"]:
            # Without the time each started running, the records cannot show maxRunning held.
            out["workflow_limits"] = {"not_audited": "the Workflow view has no start_time_ms"}
        if self.features["sagas"]:
            sagas = [w for w in wfs if w.workflow_name == SAGA]
            parts.append(("compensations", audit_compensations(sagas, [UNDO])))
        out["violations"] = [line for _, p in parts for line in violations_of(p)]
        out.update(parts)
        return out
