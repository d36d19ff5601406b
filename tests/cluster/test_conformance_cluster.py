"""The conformance cases on a real three-replica cluster, driven through the Python client SDK.

tests/conformance runs every case against the pure core in milliseconds. Here the same cases
(imported from tests/conformance/cases.py, not copied) run against three replica processes: the
definitions are registered through the API, a real ``Worker`` plays each case's scripted workers
(complete with an output, fail n times then complete, fail terminally, echo, never answer), WAIT
and HUMAN tasks are completed or failed through the API by task id, and each case must end with
the same status, output, task sequence (reference names and statuses), variables and child
statuses as on the core.

One cluster serves the whole module; cases run one after another. Workflow names are prefixed
with the case name (``<case>.<name>``) because cases reuse names such as ``parent`` and ``child``
for different definitions; task names are kept (they appear in references such as ``_img_0`` and
in expected outputs), so each case registers its task definitions again just before it starts.

Left out: ``wait_for_a_duration`` waits 2 minutes 10 seconds of cluster time; it runs as
``wait_for_a_short_duration`` (the same definition with "1 seconds"). Core-only timing checks
(``elapsedMsAtLeast``) are not asserted: the cluster runs on the wall clock.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from orchestrator_client import (
    InvalidArgumentError,
    OrchestratorClient,
    Task,
    TaskFailure,
    Worker,
    Workflow,
)

from orchestrator.core.definitions import iter_tasks, normalize_workflow_def, script_sources
from tests.cluster_support import make_cluster, wait_for
from tests.conformance.cases import CASES
from tests.conformance.driver import DEFAULT_TASK_DEF, TERMINAL, _simple_names

pytestmark = pytest.mark.cluster

JSON = Any
CASE_TIMEOUT_S = 30.0
# Operators and system tasks that wait for something else; any other active task (a worker task,
# a script) can still move, so the API is not used yet (as the core driver does).
WAITING_TYPES = frozenset(
    {
        "WAIT",
        "HUMAN",
        "JOIN",
        "EXCLUSIVE_JOIN",
        "DO_WHILE",
        "SUB_WORKFLOW",
        "FORK",
    }
)
ACTIVE = ("SCHEDULED", "IN_PROGRESS")
REQUIRED_TYPES = frozenset(
    {
        "SIMPLE",
        "SWITCH",
        "DECISION",
        "FORK_JOIN",
        "JOIN",
        "FORK_JOIN_DYNAMIC",
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
    }
)
NOT_ON_THE_CLUSTER = {
    "wait_for_a_duration": "2 minutes 10 seconds; runs as wait_for_a_short_duration",
    "workflow_timeout_seconds": "waits 60 s of cluster time; timers are covered on the core",
    "task_poll_timeout": "waits 20 s and needs a task type nobody polls",
}


# ------------------------------------------------------------------------------ case selection


def _case(name: str) -> JSON:
    return next(c for c in CASES if c["name"] == name)


def _short_wait() -> JSON:
    """wait_for_a_duration with "1 seconds" instead of "2 minutes 10 seconds"."""
    case = copy.deepcopy(_case("wait_for_a_duration"))
    case["name"] = "wait_for_a_short_duration"
    (wait,) = [t for t in case["workflow"]["tasks"] if t.get("type") == "WAIT"]
    wait["inputParameters"]["duration"] = "1 seconds"
    return case


CLUSTER_CASES: list[JSON] = [c for c in CASES if c["name"] not in NOT_ON_THE_CLUSTER] + [
    _short_wait()
]


def _definitions(case: JSON) -> list[JSON]:
    return [*case.get("register", []), case["workflow"]]


def _all_tasks(defn: JSON) -> list[JSON]:
    """Every task configuration of a definition, inline sub-workflow definitions included."""
    out: list[JSON] = []
    for t in iter_tasks(defn.get("tasks", [])):
        out.append(t)
        inline = (t.get("subWorkflowParam") or {}).get("workflowDefinition")
        if isinstance(inline, dict):
            out.extend(_all_tasks(inline))
    return out


def _task_types(case: JSON) -> set[str]:
    return {t.get("type", "SIMPLE") for d in _definitions(case) for t in _all_tasks(d)}


def _worker_task_names(case: JSON) -> set[str]:
    """Task types a worker must poll for this case (inline taskDefinitions and dynamic names
    included)."""
    names = set(case.get("extraTaskNames", []))
    names.update(d["name"] for d in case.get("taskDefs", []))
    for d in _definitions(case):
        names.update(t["name"] for t in _all_tasks(d) if t.get("type", "SIMPLE") == "SIMPLE")
    return names


def _task_defs(case: JSON) -> list[JSON]:
    """The task definitions the core driver registers for this case (driver.Run.__init__)."""
    given = {d["name"]: d for d in case.get("taskDefs", [])}
    names: list[str] = list(case.get("extraTaskNames", []))
    for d in _definitions(case):
        names.extend(_simple_names(d))
    defs = list(given.values())
    for n in dict.fromkeys(names):
        if n not in given:
            defs.append({"name": n, **DEFAULT_TASK_DEF})
    return defs


def _uses_scripts(case: JSON) -> bool:
    if _task_types(case) & {"INLINE", "JSON_JQ_TRANSFORM"}:
        return True
    return any(script_sources(normalize_workflow_def(copy.deepcopy(d))) for d in _definitions(case))


def _renamed(case: JSON) -> tuple[list[JSON], JSON]:
    """The case's definitions with every workflow name prefixed by the case name: (register,
    workflow)."""
    prefix = case["name"] + "."
    names: dict[str, str] = {}

    def collect(defn: JSON) -> None:
        names[defn["name"]] = prefix + defn["name"]
        for t in _all_tasks(defn):
            inline = (t.get("subWorkflowParam") or {}).get("workflowDefinition")
            if isinstance(inline, dict):
                names[inline["name"]] = prefix + inline["name"]

    def rename(node: JSON) -> None:
        if isinstance(node, list):
            for x in node:
                rename(x)
            return
        if not isinstance(node, dict):
            return
        if isinstance(node.get("tasks"), list) and node.get("name") in names:
            node["name"] = names[node["name"]]  # a workflow definition (maybe inline)
            if node.get("failureWorkflow") in names:
                node["failureWorkflow"] = names[node["failureWorkflow"]]
        ttype = node.get("type")
        if ttype == "SUB_WORKFLOW":
            param = node.get("subWorkflowParam") or {}
            if param.get("name") in names:
                param["name"] = names[param["name"]]
        elif ttype == "START_WORKFLOW":
            start = (node.get("inputParameters") or {}).get("startWorkflow")
            if isinstance(start, dict) and start.get("name") in names:
                start["name"] = names[start["name"]]
        for value in node.values():
            rename(value)

    for d in _definitions(case):
        collect(d)
    register = copy.deepcopy(case.get("register", []))
    workflow = copy.deepcopy(case["workflow"])
    rename(register)
    rename(workflow)
    return register, workflow


def _base_ref(ref: str) -> str:
    return ref.split("__", 1)[0]


def test_the_cluster_selection_runs_every_task_type() -> None:
    covered = set().union(*(_task_types(c) for c in CLUSTER_CASES))
    assert covered >= REQUIRED_TYPES, sorted(REQUIRED_TYPES - covered)
    (short,) = [c for c in CLUSTER_CASES if c["name"] == "wait_for_a_short_duration"]
    assert short["workflow"]["tasks"][0]["inputParameters"]["duration"] == "1 seconds"
    assert any("api" in c and "HUMAN" in _task_types(c) for c in CLUSTER_CASES)


# ------------------------------------------------------------------------------ scripted workers


class CaseRun:
    """One case on the cluster: the scripted workers' state, and the API actions taken."""

    def __init__(self, case: JSON) -> None:
        self.case = case
        self.root = ""
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}
        self._seq_calls: dict[str, int] = {}
        self.api_done: set[str] = set()
        self.last: Workflow | None = None

    def owns(self, workflow_id: str) -> bool:
        # Task ids are <workflow id>-<n> and child workflow ids <task id>-sub / -start.
        return bool(self.root) and workflow_id.startswith(self.root)

    def behaviour(self, task: Task) -> JSON:
        workers = self.case.get("workers", {})
        ref = task.reference_task_name
        for key in (ref, _base_ref(ref), task.task_type):
            if key in workers:
                return workers[key]
        return {"complete": {}}

    def answer(self, task: Task) -> JSON:
        """The scripted worker of the core driver (driver.Run.answer), as a Worker handler."""
        b = self.behaviour(task)
        key = task.reference_task_name
        with self._lock:
            n = self._calls.get(key, 0)
            self._calls[key] = n + 1
            seq_index = 0
            if "outputs" in b:
                base = _base_ref(key)
                seq_index = self._seq_calls.get(base, 0)
                self._seq_calls[base] = seq_index + 1
        if b.get("never"):
            # Never answer; heartbeats are off, so the lease runs out as on the core. The report
            # after the case is refused (the task ended meanwhile).
            self.finished.wait()
            raise TaskFailure("never answered (the case is over)")
        fail = b.get("fail")
        if fail == "always" or (isinstance(fail, int) and n < fail):
            raise TaskFailure(b.get("reason", "worker failed"))
        if fail == "terminal":
            raise TaskFailure(b.get("reason", "worker failed terminally"), terminal=True)
        if "outputs" in b:
            outs = b["outputs"]
            return dict(outs[min(seq_index, len(outs) - 1)])
        if b.get("echo"):
            return dict(task.input)
        return dict(b.get("then", b.get("complete", {})))

    def step(self, client: OrchestratorClient) -> Workflow | None:
        """The root workflow once it ended; else apply at most one API action, as the core driver
        does once nothing else can move (WAIT/HUMAN completed or failed by task id). Only the
        root's tasks are looked at: no case has an API action inside a child workflow."""
        wf = client.get_workflow(self.root)
        self.last = wf
        if wf.status in TERMINAL:
            return wf
        api = self.case.get("api", {})
        active = [t for t in wf.tasks if t.status in ACTIVE]
        if not api or any(t.task_type not in WAITING_TYPES for t in active):
            return None
        for t in active:
            ref = _base_ref(t.reference_task_name)
            if t.task_type in ("WAIT", "HUMAN") and ref in api and t.task_id not in self.api_done:
                action = api[ref]
                if "fail" in action:
                    client.fail_task(t.task_id, action["fail"])
                else:
                    client.complete_task(t.task_id, action["complete"])
                self.api_done.add(t.task_id)
                return None
        return None

    def describe(self) -> str:
        wf = self.last
        if wf is None:
            return f"case {self.case['name']}: workflow {self.root} never read"
        return (
            f"case {self.case['name']}: workflow {self.root} still {wf.status}, tasks "
            f"{[(t.reference_task_name, t.status) for t in wf.tasks]}"
        )


class Dispatcher:
    """Routes every polled task to the case that owns its workflow (cases run one at a time)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._current: CaseRun | None = None
        self._runs: list[CaseRun] = []

    def begin(self, run: CaseRun) -> None:
        with self._cond:
            self._current = run
            self._runs.append(run)

    def started(self, run: CaseRun, workflow_id: str) -> None:
        with self._cond:
            run.root = workflow_id
            self._cond.notify_all()

    def end(self, run: CaseRun) -> None:
        run.finished.set()
        with self._cond:
            if self._current is run:
                self._current = None

    def close(self) -> None:
        with self._cond:
            for run in self._runs:
                run.finished.set()
            self._current = None
            self._cond.notify_all()

    def handle(self, task: Task) -> JSON:
        # A task can be polled before start_workflow has returned its id: wait for it.
        with self._cond:
            found = self._cond.wait_for(
                lambda: self._current is not None and self._current.owns(task.workflow_id),
                timeout=10.0,
            )
            run = self._current
        if not found or run is None:
            raise TaskFailure(f"no running conformance case owns workflow {task.workflow_id}")
        return run.answer(task)


# ------------------------------------------------------------------------------ the cluster


@dataclass
class Env:
    client: OrchestratorClient
    dispatcher: Dispatcher


@pytest.fixture(scope="module")
def env(tmp_path_factory: Any) -> Iterator[Env]:
    cluster = make_cluster(tmp_path_factory.mktemp("conformance-cluster"))
    # The core suite's sandbox has a 1 s time limit (driver.sandbox()); so do the replicas'.
    cluster.env["ORCHESTRATOR_SCRIPT_TIME_LIMIT_MS"] = "1000"
    dispatcher = Dispatcher()
    clients: list[OrchestratorClient] = []
    worker: Worker | None = None
    try:
        cluster.start_all()
        cluster.wait_healthy(timeout_s=60)
        client = cluster.client(timeout_s=5.0, retry_budget_s=30.0)
        clients.append(client)
        # Every polled type exists before the worker polls it; each case registers its own
        # definitions again before it starts.
        defaults: dict[str, JSON] = {}
        for case in CLUSTER_CASES:
            for d in _task_defs(case):
                defaults.setdefault(d["name"], d)
        client.register_task_defs(list(defaults.values()))
        worker_client = cluster.client(timeout_s=5.0, retry_budget_s=30.0)
        clients.append(worker_client)
        # Heartbeats effectively off: a worker that never answers lets the lease run out.
        worker = Worker(worker_client, concurrency=4, heartbeat_interval_s=3600.0)
        for name in sorted(set().union(*(_worker_task_names(c) for c in CLUSTER_CASES))):
            worker.register(name, dispatcher.handle)
        worker.start()
        yield Env(client, dispatcher)
    finally:
        dispatcher.close()
        if worker is not None:
            worker.stop(timeout_s=10.0)
        for c in clients:
            c.close()
        cluster.kill_all()


def _children(client: OrchestratorClient, root: str, names: list[str]) -> list[Workflow]:
    """Child workflows of the root, in creation order (ids are <root>-<task seq>-sub|start)."""
    found = [
        w
        for n in names
        for w in client.list_workflows(name=n, limit=1000)
        if w.workflow_id != root and w.workflow_id.startswith(root)
    ]

    def order(w: Workflow) -> tuple[int, int]:
        seq = w.workflow_id[len(root) + 1 :].split("-", 1)[0]
        return (int(seq) if seq.isdigit() else 0, w.create_time_ms)

    return sorted(found, key=order)


@pytest.mark.parametrize("case", CLUSTER_CASES, ids=[c["name"] for c in CLUSTER_CASES])
def test_case_on_the_cluster(env: Env, case: JSON) -> None:
    client = env.client
    register, workflow = _renamed(case)
    try:
        task_defs = _task_defs(case)
        if task_defs:
            client.register_task_defs(task_defs)
        for d in [*register, workflow]:
            client.register_workflow_def(d)
    except InvalidArgumentError as exc:
        if _uses_scripts(case):
            pytest.skip(f"the cluster does not accept scripts yet: {exc}")
        raise

    run = CaseRun(case)
    env.dispatcher.begin(run)
    try:
        wf_id = client.start_workflow(
            workflow["name"], case.get("input", {}), version=workflow.get("version", 0)
        )
        env.dispatcher.started(run, wf_id)
        wf: Workflow = wait_for(lambda: run.step(client), CASE_TIMEOUT_S, run.describe, 0.05)
    finally:
        env.dispatcher.end(run)

    exp = case["expect"]
    sequence = [[t.reference_task_name, t.status] for t in wf.tasks]
    assert wf.status == exp["status"], (wf.status, wf.reason_for_incompletion, sequence)
    if "tasks" in exp:
        assert sequence == exp["tasks"]
    if "output" in exp:
        assert wf.output == exp["output"]
    for k, v in exp.get("outputIncludes", {}).items():
        assert wf.output.get(k) == v, (k, wf.output)
    for k in exp.get("outputHasKeys", ()):
        assert k in wf.output, (k, wf.output)
    if "outputKeysEqual" in exp:
        a, b = exp["outputKeysEqual"]
        assert wf.output[a] == wf.output[b], wf.output
    if "reasonIncludes" in exp:
        assert exp["reasonIncludes"] in wf.reason_for_incompletion
    if "variables" in exp:
        assert wf.variables == exp["variables"]
    if "children" in exp:
        child_names = [d["name"] for d in register]
        child_names += [
            t["subWorkflowParam"]["workflowDefinition"]["name"]
            for t in _all_tasks(workflow)
            if isinstance((t.get("subWorkflowParam") or {}).get("workflowDefinition"), dict)
        ]
        seen: list[str] = []

        def children_match() -> bool:
            seen[:] = [w.status for w in _children(client, wf_id, child_names)]
            return seen == exp["children"]

        # A child ends in the same applied command as its parent's task; reads may lag.
        with contextlib.suppress(AssertionError):
            wait_for(children_match, 10.0, "the child workflows' statuses")
        assert seen == exp["children"]
