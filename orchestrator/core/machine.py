"""apply(state, batch) -> outcomes and events. Pure and deterministic; nothing escapes it.

The replication layer hands every committed batch to `apply_batch` on every replica, in log order.
A command that cannot be applied is rejected with a code and a message, identically everywhere;
an unexpected bug quarantines the workflow it touched as FAILED instead of wedging Raft.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import limits
from .codec import fingerprint
from .commands import (
    CommandDecodeError,
    CompleteTask,
    FailTask,
    HeartbeatTask,
    LeaderEpoch,
    Noop,
    PollTasks,
    RegisterTaskDefs,
    RegisterWorkflowDef,
    StartWorkflow,
    TerminateWorkflow,
    Tick,
    command_from_dict,
)
from .definitions import check_task_defs_known, normalize_task_def, normalize_workflow_def
from .errors import Code, Rejected, already_exists, invalid, not_found, precondition
from .expressions import resolve
from .state import State

JSON = Any

WF_RUNNING = "RUNNING"
WF_COMPLETED = "COMPLETED"
WF_FAILED = "FAILED"
WF_TERMINATED = "TERMINATED"
WF_TIMED_OUT = "TIMED_OUT"
WF_TERMINAL = (WF_COMPLETED, WF_FAILED, WF_TERMINATED, WF_TIMED_OUT)

T_SCHEDULED = "SCHEDULED"
T_IN_PROGRESS = "IN_PROGRESS"
T_COMPLETED = "COMPLETED"
T_COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
T_FAILED = "FAILED"
T_FAILED_TERMINAL = "FAILED_WITH_TERMINAL_ERROR"
T_TIMED_OUT = "TIMED_OUT"
T_CANCELED = "CANCELED"
T_ACTIVE = (T_SCHEDULED, T_IN_PROGRESS)
T_RETRIABLE = (T_FAILED, T_TIMED_OUT)
T_DONE_OK = (T_COMPLETED, T_COMPLETED_WITH_ERRORS)

STRATEGIES = ("FAIL", "RETURN_EXISTING", "FAIL_ON_RUNNING")


@dataclass
class Outcome:
    code: Code = Code.OK
    message: str = ""
    result: dict[str, JSON] = field(default_factory=dict)
    seq: int = 0  # the sequence number this command was applied at (not replicated)

    def to_dict(self) -> dict[str, JSON]:
        return {"code": self.code.value, "message": self.message, "result": self.result}

    @staticmethod
    def from_dict(d: dict[str, JSON]) -> Outcome:
        return Outcome(Code(d["code"]), d.get("message", ""), d.get("result") or {})

    @property
    def ok(self) -> bool:
        return self.code is Code.OK


@dataclass
class Effects:
    """What the shell needs to know after a batch: which queues got work, which workflows ended."""

    ready_types: list[str] = field(default_factory=list)
    ended_workflows: list[str] = field(default_factory=list)
    timers_changed: bool = False

    def ready(self, task_type: str) -> None:
        if task_type not in self.ready_types:
            self.ready_types.append(task_type)


class _Ctx:
    def __init__(self, state: State, effects: Effects) -> None:
        self.st = state
        self.fx = effects

    @property
    def now(self) -> int:
        return self.st.clock_ms


def apply_batch(state: State, now_ms: int, commands: list[JSON]) -> tuple[list[Outcome], Effects]:
    """Apply a committed batch stamped with the leader's cluster time `now_ms`."""
    if isinstance(now_ms, int) and not isinstance(now_ms, bool) and now_ms > state.clock_ms:
        state.clock_ms = now_ms
    fx = Effects()
    ctx = _Ctx(state, fx)
    outcomes = [_apply_one(ctx, raw) for raw in commands]
    return outcomes, fx


def _apply_one(ctx: _Ctx, raw: JSON) -> Outcome:
    st = ctx.st
    st.seq += 1
    outcome = _apply_checked(ctx, raw)
    outcome.seq = st.seq
    return outcome


def _apply_checked(ctx: _Ctx, raw: JSON) -> Outcome:
    st = ctx.st
    try:
        cmd = command_from_dict(raw)
    except CommandDecodeError as exc:
        return Outcome(Code.INVALID_ARGUMENT, f"malformed command: {exc}")
    rid = getattr(cmd, "request_id", None)
    fp = ""
    if rid is not None:
        body = {k: v for k, v in cmd.to_dict().items() if k not in cmd.NON_FINGERPRINT}
        fp = fingerprint(body)
        prev = st.requests.get(rid)
        if prev is not None:
            if prev["fp"] != fp:
                return Outcome(
                    Code.INVALID_ARGUMENT,
                    f"request_id {rid!r} was already used for a different request",
                )
            out = Outcome.from_dict(prev["outcome"])
            out.result = dict(out.result, deduplicated=True)
            return out
    try:
        handler = _HANDLERS[type(cmd)]
        outcome = Outcome(result=handler(ctx, cmd))
    except Rejected as rej:
        outcome = Outcome(rej.code, rej.message)
    except Exception as exc:  # a bug: reject everywhere alike, quarantine what it touched
        outcome = Outcome(
            Code.INTERNAL, f"internal error applying {cmd.NAME}: {type(exc).__name__}: {exc}"
        )
        _quarantine(ctx, cmd, outcome.message)
    if rid is not None and _should_record(cmd, outcome):
        st.requests[rid] = {"fp": fp, "outcome": outcome.to_dict(), "at": st.clock_ms}
        _evict_requests(st)
    return outcome


def _should_record(cmd: Any, outcome: Outcome) -> bool:
    if outcome.code in (Code.INTERNAL, Code.RESOURCE_EXHAUSTED):
        return False
    if isinstance(cmd, PollTasks):
        # An empty poll leased nothing: the dispatcher may retry the same id when work arrives.
        return outcome.ok and bool(outcome.result.get("task_ids"))
    return True


def _evict_requests(st: State) -> None:
    horizon = st.clock_ms - limits.REQUEST_RETENTION_MS
    reqs = st.requests
    while reqs:
        _, oldest = next(iter(reqs.items()))
        if len(reqs) > limits.MAX_REQUEST_ENTRIES or oldest["at"] < horizon:
            reqs.popitem(last=False)
        else:
            break


def _quarantine(ctx: _Ctx, cmd: Any, reason: str) -> None:
    try:
        wf_id = getattr(cmd, "workflow_id", None)
        if wf_id is None and getattr(cmd, "task_id", None):
            task = ctx.st.tasks.get(cmd.task_id)
            wf_id = task["workflowId"] if task else None
        wf = ctx.st.workflows.get(wf_id) if wf_id else None
        if wf is not None:
            _quarantine_workflow(ctx, wf, reason)
    except Exception:  # the quarantine itself must never raise
        pass


def _quarantine_workflow(ctx: _Ctx, wf: JSON, reason: str) -> None:
    """Mark a running workflow FAILED with the reason, identically on every replica."""
    try:
        if wf["status"] == WF_RUNNING:
            _end_workflow(ctx, wf, WF_FAILED, reason)
    except Exception:  # even ending it failed: force the status so nothing waits on it
        wf["status"] = WF_FAILED
        wf["reasonForIncompletion"] = reason
        for tid in wf.get("tasks", []):
            t = ctx.st.tasks.get(tid)
            if t is not None and t.get("status") in T_ACTIVE:
                t["status"] = T_CANCELED
                ctx.st.clear_timer("lease:" + tid)
                ctx.st.clear_timer("ready:" + tid)
                q = ctx.st.queues.get(t.get("taskType", ""))
                if q is not None:
                    q.pop(tid, None)


# ---------------------------------------------------------------- handlers


def _h_leader_epoch(ctx: _Ctx, cmd: LeaderEpoch) -> dict[str, JSON]:
    if cmd.term > ctx.st.epoch:
        ctx.st.epoch = cmd.term
    ctx.fx.timers_changed = True
    return {"epoch": ctx.st.epoch}


def _h_noop(ctx: _Ctx, cmd: Noop) -> dict[str, JSON]:
    return {}


def _h_register_task_defs(ctx: _Ctx, cmd: RegisterTaskDefs) -> dict[str, JSON]:
    if not isinstance(cmd.task_defs, list) or not cmd.task_defs:
        raise invalid("task_def_json: at least one task definition is required")
    defs = [normalize_task_def(d, f"task_def_json[{i}]") for i, d in enumerate(cmd.task_defs)]
    for d in defs:
        ctx.st.task_defs[d["name"]] = d
    return {"names": [d["name"] for d in defs]}


def _h_register_workflow_def(ctx: _Ctx, cmd: RegisterWorkflowDef) -> dict[str, JSON]:
    defn = normalize_workflow_def(cmd.definition)
    check_task_defs_known(defn, ctx.st.task_defs)
    versions = ctx.st.workflow_defs.setdefault(defn["name"], {})
    key = str(defn["version"])
    existing = versions.get(key)
    if existing is not None and existing != defn and not cmd.overwrite:
        raise already_exists(
            f"workflow definition {defn['name']!r} version {defn['version']} already exists "
            "with different content (set overwrite, or register a new version)"
        )
    versions[key] = defn
    return {"name": defn["name"], "version": defn["version"]}


def latest_version(versions: dict[str, JSON]) -> int:
    return max(int(v) for v in versions)


def _h_start_workflow(ctx: _Ctx, cmd: StartWorkflow) -> dict[str, JSON]:
    st = ctx.st
    versions = st.workflow_defs.get(cmd.name)
    if not versions:
        raise not_found(f"workflow definition {cmd.name!r} is not registered")
    version = cmd.version or latest_version(versions)
    defn = versions.get(str(version))
    if defn is None:
        raise not_found(f"workflow definition {cmd.name!r} has no version {version}")
    if not isinstance(cmd.input, dict):
        raise invalid("input_json: must be a JSON object")
    if cmd.idempotency_strategy not in STRATEGIES:
        raise invalid(f"idempotency_strategy: must be one of {', '.join(STRATEGIES)}")
    if not cmd.workflow_id:
        raise invalid("workflow_id: required")
    idem_key = f"{cmd.name}\x00{cmd.idempotency_key}" if cmd.idempotency_key else ""
    if idem_key:
        existing_id = st.idempotency.get(idem_key)
        existing = st.workflows.get(existing_id) if existing_id else None
        if existing is not None:
            if cmd.idempotency_strategy == "RETURN_EXISTING":
                return {"workflow_id": existing["workflowId"], "created": False}
            if cmd.idempotency_strategy == "FAIL" or existing["status"] == WF_RUNNING:
                raise already_exists(
                    f"a workflow with idempotency_key {cmd.idempotency_key!r} exists: "
                    f"{existing['workflowId']} ({existing['status']})"
                )
    if cmd.workflow_id in st.workflows:
        raise already_exists(f"workflow {cmd.workflow_id} already exists")
    wf_input = dict(cmd.input)
    for k, v in defn.get("inputTemplate", {}).items():
        wf_input.setdefault(k, v)
    task_defs: dict[str, JSON] = {}
    for t in defn["tasks"]:
        if t["type"] == "SIMPLE" and "taskDefinition" not in t:
            td = st.task_defs.get(t["name"])
            if td is None:
                raise not_found(
                    f"task definition {t['name']!r} (used by {t['taskReferenceName']}) is not registered"
                )
            task_defs[t["name"]] = td
    wf = {
        "workflowId": cmd.workflow_id,
        "workflowName": defn["name"],
        "workflowVersion": defn["version"],
        # A running workflow keeps the definition (and task definitions) it started with. They
        # are stored once per distinct content, shared by every workflow started from them.
        "defHash": _retain_def(st, defn, task_defs),
        "status": WF_RUNNING,
        "input": wf_input,
        "output": {},
        "variables": dict(defn.get("variables", {})),
        "correlationId": cmd.correlation_id,
        "priority": cmd.priority,
        "idempotencyKey": cmd.idempotency_key,
        "createTime": ctx.now,
        "endTime": 0,
        "reasonForIncompletion": "",
        "tasks": [],
    }
    st.workflows[cmd.workflow_id] = wf
    if idem_key:
        st.idempotency[idem_key] = cmd.workflow_id
    _decide(ctx, wf)
    return {"workflow_id": cmd.workflow_id, "created": True}


def _h_terminate_workflow(ctx: _Ctx, cmd: TerminateWorkflow) -> dict[str, JSON]:
    wf = ctx.st.workflows.get(cmd.workflow_id)
    if wf is None:
        raise not_found(f"workflow {cmd.workflow_id} not found")
    if wf["status"] == WF_COMPLETED:
        raise precondition(f"workflow {cmd.workflow_id} is COMPLETED and cannot be terminated")
    if wf["status"] == WF_TERMINATED:
        return {}
    reason = cmd.reason or "terminated through the API"
    if wf["status"] == WF_RUNNING:
        _end_workflow(ctx, wf, WF_TERMINATED, reason)
    else:  # FAILED / TIMED_OUT may be re-marked TERMINATED, as in Conductor
        wf["status"] = WF_TERMINATED
        wf["reasonForIncompletion"] = reason
    return {}


def _h_poll_tasks(ctx: _Ctx, cmd: PollTasks) -> dict[str, JSON]:
    st = ctx.st
    if cmd.epoch < st.epoch:
        raise precondition(f"stale leader epoch {cmd.epoch} < {st.epoch}")
    if not 1 <= cmd.count <= limits.MAX_POLL_COUNT:
        raise invalid(f"count: must be between 1 and {limits.MAX_POLL_COUNT}")
    queue = st.queues.get(cmd.task_type)
    leased: list[str] = []
    while queue and len(leased) < cmd.count:
        task_id, _ = queue.popitem(last=False)
        task = st.tasks.get(task_id)
        if task is None or task["status"] != T_SCHEDULED:
            continue
        task["status"] = T_IN_PROGRESS
        task["workerId"] = cmd.worker_id
        task["pollCount"] += 1
        if not task["startTime"]:
            task["startTime"] = ctx.now
        _set_lease(ctx, task)
        leased.append(task_id)
    if queue is not None and not queue:
        del st.queues[cmd.task_type]
    return {"task_ids": leased}


def _active_task(ctx: _Ctx, task_id: str, verb: str) -> tuple[JSON, JSON]:
    task = ctx.st.tasks.get(task_id)
    if task is None:
        raise not_found(f"task {task_id} not found")
    if task["status"] not in T_ACTIVE:
        raise precondition(
            f"task {task_id} is {task['status']}: a late or duplicate {verb} is not applied"
        )
    wf = ctx.st.workflows[task["workflowId"]]
    if wf["status"] != WF_RUNNING:
        raise precondition(f"workflow {wf['workflowId']} is {wf['status']}")
    return task, wf


def _h_complete_task(ctx: _Ctx, cmd: CompleteTask) -> dict[str, JSON]:
    if not isinstance(cmd.output, dict):
        raise invalid("output_json: must be a JSON object")
    task, wf = _active_task(ctx, cmd.task_id, "completion")
    _finish_task(ctx, task, T_COMPLETED, output=cmd.output)
    if cmd.worker_id:
        task["workerId"] = cmd.worker_id
    _decide(ctx, wf)
    return {}


def _h_fail_task(ctx: _Ctx, cmd: FailTask) -> dict[str, JSON]:
    if not isinstance(cmd.output, dict):
        raise invalid("output_json: must be a JSON object")
    task, wf = _active_task(ctx, cmd.task_id, "failure")
    status = T_FAILED_TERMINAL if cmd.terminal else T_FAILED
    _finish_task(
        ctx, task, status, output=cmd.output, reason=cmd.reason[: limits.MAX_REASON_LENGTH]
    )
    _handle_failure(ctx, wf, task)
    return {}


def _h_heartbeat_task(ctx: _Ctx, cmd: HeartbeatTask) -> dict[str, JSON]:
    task, _ = _active_task(ctx, cmd.task_id, "heartbeat")
    if task["status"] != T_IN_PROGRESS:
        raise precondition(f"task {cmd.task_id} is {task['status']}, not leased to a worker")
    _set_lease(ctx, task)
    return {"lease_expires_ms": task["leaseExpiresTime"]}


def _h_tick(ctx: _Ctx, cmd: Tick) -> dict[str, JSON]:
    st = ctx.st
    if cmd.epoch < st.epoch:
        raise precondition(f"stale leader epoch {cmd.epoch} < {st.epoch}")
    fired = 0
    for key in st.pop_due(ctx.now):
        fired += 1
        kind, _, task_id = key.partition(":")
        task = st.tasks.get(task_id)
        if task is None:
            continue
        wf = st.workflows.get(task["workflowId"])
        if wf is None or wf["status"] != WF_RUNNING:
            continue
        try:
            _fire_timer(ctx, kind, wf, task)
        except Exception as exc:  # one bad timer must not lose the others: quarantine its workflow
            _quarantine_workflow(
                ctx, wf, f"internal error firing timer {key}: {type(exc).__name__}: {exc}"
            )
    ctx.fx.timers_changed = True
    return {"fired": fired}


def _fire_timer(ctx: _Ctx, kind: str, wf: JSON, task: JSON) -> None:
    if kind == "lease" and task["status"] == T_IN_PROGRESS:
        _finish_task(
            ctx,
            task,
            T_TIMED_OUT,
            reason=f"responseTimeoutSeconds ({task['responseTimeoutSeconds']}s) elapsed "
            "without a result or heartbeat",
        )
        _handle_failure(ctx, wf, task)
    elif kind == "ready" and task["status"] == T_SCHEDULED:
        _enqueue(ctx, task)


_HANDLERS: dict[type, Any] = {
    LeaderEpoch: _h_leader_epoch,
    Noop: _h_noop,
    RegisterTaskDefs: _h_register_task_defs,
    RegisterWorkflowDef: _h_register_workflow_def,
    StartWorkflow: _h_start_workflow,
    TerminateWorkflow: _h_terminate_workflow,
    PollTasks: _h_poll_tasks,
    CompleteTask: _h_complete_task,
    FailTask: _h_fail_task,
    HeartbeatTask: _h_heartbeat_task,
    Tick: _h_tick,
}


# ---------------------------------------------------------------- the decider


def _set_lease(ctx: _Ctx, task: JSON) -> None:
    task["leaseExpiresTime"] = ctx.now + task["responseTimeoutSeconds"] * 1000
    ctx.st.set_timer("lease:" + task["taskId"], task["leaseExpiresTime"])
    ctx.fx.timers_changed = True


def _enqueue(ctx: _Ctx, task: JSON) -> None:
    ctx.st.queues.setdefault(task["taskType"], _new_queue())[task["taskId"]] = None
    ctx.fx.ready(task["taskType"])


def _new_queue() -> Any:
    from collections import OrderedDict

    return OrderedDict()


def _finish_task(ctx: _Ctx, task: JSON, status: str, output: JSON = None, reason: str = "") -> None:
    st = ctx.st
    tid = task["taskId"]
    if task["status"] == T_SCHEDULED:
        q = st.queues.get(task["taskType"])
        if q is not None:
            q.pop(tid, None)
            if not q:
                del st.queues[task["taskType"]]
    st.clear_timer("lease:" + tid)
    st.clear_timer("ready:" + tid)
    task["status"] = status
    task["endTime"] = ctx.now
    task["leaseExpiresTime"] = 0
    if output is not None:
        task["output"] = output
    if reason:
        task["reasonForIncompletion"] = reason


def task_doc(wf: JSON, tasks: dict[str, JSON]) -> dict[str, JSON]:
    """The document `${...}` expressions are resolved against (latest attempt per reference)."""
    doc: dict[str, JSON] = {
        "workflow": {
            "input": wf["input"],
            "output": wf["output"],
            "status": wf["status"],
            "workflowId": wf["workflowId"],
            "workflowType": wf["workflowName"],
            "version": wf["workflowVersion"],
            "correlationId": wf["correlationId"],
            "variables": wf["variables"],
            "reasonForIncompletion": wf["reasonForIncompletion"],
            "schemaVersion": 2,
        }
    }
    for tid in wf["tasks"]:
        t = tasks[tid]
        doc[t["referenceTaskName"]] = {
            "input": t["input"],
            "output": t["output"],
            "status": t["status"],
            "taskId": t["taskId"],
            "taskType": t["taskType"],
            "referenceTaskName": t["referenceTaskName"],
            "retryCount": t["retryCount"],
            "pollCount": t["pollCount"],
            "scheduledTime": t["scheduledTime"],
            "startTime": t["startTime"],
            "endTime": t["endTime"],
            "workerId": t["workerId"],
            "reasonForIncompletion": t["reasonForIncompletion"],
            "workflowInstanceId": wf["workflowId"],
        }
    return doc


def _retain_def(st: State, defn: JSON, task_defs: JSON) -> str:
    key = fingerprint({"def": defn, "taskDefs": task_defs})
    entry = st.def_snapshots.get(key)
    if entry is None:
        entry = st.def_snapshots[key] = {"def": defn, "taskDefs": task_defs, "refs": 0}
    entry["refs"] += 1
    return key


def _release_def(st: State, key: str) -> None:
    entry = st.def_snapshots.get(key)
    if entry is not None:
        entry["refs"] -= 1
        if entry["refs"] <= 0:
            del st.def_snapshots[key]


def wf_def(st: State, wf: JSON) -> JSON:
    """The definition snapshot a workflow runs: {"def": ..., "taskDefs": ...}."""
    return st.def_snapshots[wf["defHash"]]


def _effective_task_def(st: State, wf: JSON, wt: JSON) -> JSON:
    td = dict(wt.get("taskDefinition") or wf_def(st, wf)["taskDefs"][wt["name"]])
    if "retryCount" in wt:
        td["retryCount"] = wt["retryCount"]
    return td


def _schedule(ctx: _Ctx, wf: JSON, pos: int, retry_of: JSON = None, delay_s: int = 0) -> None:
    st = ctx.st
    wt = wf_def(st, wf)["def"]["tasks"][pos]
    td = _effective_task_def(st, wf, wt)
    task_id = f"{wf['workflowId']}-{len(wf['tasks'])}"
    doc = task_doc(wf, st.tasks)
    task_input = resolve(wt["inputParameters"], doc, {"CPEWF_TASK_ID": task_id})
    if not isinstance(task_input, dict):
        task_input = {}
    for k, v in (td.get("inputTemplate") or {}).items():
        if task_input.get(k) is None:
            task_input[k] = v
    task = {
        "taskId": task_id,
        "taskType": wt["name"],
        "referenceTaskName": wt["taskReferenceName"],
        "workflowId": wf["workflowId"],
        "workflowType": wf["workflowName"],
        "correlationId": wf["correlationId"],
        "position": pos,
        "seq": len(wf["tasks"]),
        "status": T_SCHEDULED,
        "input": task_input,
        "output": {},
        "retryCount": retry_of["retryCount"] + 1 if retry_of else 0,
        "retriedTaskId": retry_of["taskId"] if retry_of else "",
        "pollCount": 0,
        "scheduledTime": ctx.now,
        "startTime": 0,
        "endTime": 0,
        "leaseExpiresTime": 0,
        "reasonForIncompletion": "",
        "workerId": "",
        "responseTimeoutSeconds": td["responseTimeoutSeconds"],
        "retryLimit": td["retryCount"],
        "retryLogic": td["retryLogic"],
        "retryDelaySeconds": td["retryDelaySeconds"],
        "backoffScaleFactor": td["backoffScaleFactor"],
        "maxRetryDelaySeconds": td["maxRetryDelaySeconds"],
        "optional": bool(wt.get("optional", False)),
    }
    st.tasks[task_id] = task
    wf["tasks"].append(task_id)
    if delay_s > 0:
        st.set_timer("ready:" + task_id, ctx.now + delay_s * 1000)
        ctx.fx.timers_changed = True
    else:
        _enqueue(ctx, task)


def retry_delay_seconds(task: JSON) -> int:
    """Conductor's backoff, from the failed attempt's retryCount."""
    base = task["retryDelaySeconds"]
    n = task["retryCount"]
    logic = task["retryLogic"]
    if logic == "EXPONENTIAL_BACKOFF":
        delay = base * (2 ** min(n, 30))
    elif logic == "LINEAR_BACKOFF":
        delay = base * task["backoffScaleFactor"] * (n + 1)
    else:
        delay = base
    cap = task["maxRetryDelaySeconds"] or limits.MAX_DELAY_SECONDS
    return int(min(delay, cap))


def _handle_failure(ctx: _Ctx, wf: JSON, task: JSON) -> None:
    if task["status"] in T_RETRIABLE and task["retryCount"] < task["retryLimit"]:
        task["retried"] = True
        _schedule(ctx, wf, task["position"], retry_of=task, delay_s=retry_delay_seconds(task))
        return
    if task["optional"]:
        task["status"] = T_COMPLETED_WITH_ERRORS
        _decide(ctx, wf)
        return
    wf_status = WF_TIMED_OUT if task["status"] == T_TIMED_OUT else WF_FAILED
    _end_workflow(
        ctx,
        wf,
        wf_status,
        f"task {task['referenceTaskName']} ({task['taskId']}) {task['status']}: "
        f"{task['reasonForIncompletion']}",
    )


def _decide(ctx: _Ctx, wf: JSON) -> None:
    """Sequential SIMPLE tasks: schedule the next one, or complete the workflow."""
    if wf["status"] != WF_RUNNING:
        return
    defn_tasks = wf_def(ctx.st, wf)["def"]["tasks"]
    if not wf["tasks"]:
        _schedule(ctx, wf, 0)
        return
    last = ctx.st.tasks[wf["tasks"][-1]]
    if last["status"] not in T_DONE_OK:
        return
    nxt = last["position"] + 1
    if nxt < len(defn_tasks):
        _schedule(ctx, wf, nxt)
        return
    _end_workflow(ctx, wf, WF_COMPLETED, "")


def _end_workflow(ctx: _Ctx, wf: JSON, status: str, reason: str) -> None:
    st = ctx.st
    for tid in wf["tasks"]:
        t = st.tasks[tid]
        if t["status"] in T_ACTIVE:
            _finish_task(ctx, t, T_CANCELED, reason=f"workflow {status}")
    wf["status"] = status
    wf["endTime"] = ctx.now
    wf["reasonForIncompletion"] = reason
    doc = task_doc(wf, st.tasks)
    out_params = wf_def(st, wf)["def"].get("outputParameters") or {}
    if out_params:
        output = resolve(out_params, doc)
    elif wf["tasks"]:
        output = st.tasks[wf["tasks"][-1]]["output"]
    else:
        output = {}
    wf["output"] = output if isinstance(output, dict) else {"result": output}
    ctx.fx.ended_workflows.append(wf["workflowId"])
    st.terminal_order[wf["workflowId"]] = None
    while len(st.terminal_order) > limits.MAX_TERMINAL_WORKFLOWS:
        old_id, _ = st.terminal_order.popitem(last=False)
        _evict_workflow(st, old_id)


def _evict_workflow(st: State, wf_id: str) -> None:
    wf = st.workflows.pop(wf_id, None)
    if wf is None:
        return
    for tid in wf["tasks"]:
        st.tasks.pop(tid, None)
    _release_def(st, wf["defHash"])
    if wf["idempotencyKey"]:
        key = f"{wf['workflowName']}\x00{wf['idempotencyKey']}"
        if st.idempotency.get(key) == wf_id:
            del st.idempotency[key]


def json_size(value: JSON) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def precheck(state: State, raw: JSON) -> Outcome | None:
    """A read-only answer the leader can give without proposing, or None to propose.

    Safe because it reads the leader's applied state, a prefix of the log that includes every
    write the caller has observed: a retried request returns its recorded outcome, a reused
    request id with a different request and a start of an unknown definition are rejected.
    """
    try:
        cmd = command_from_dict(raw)
    except CommandDecodeError as exc:
        return Outcome(Code.INVALID_ARGUMENT, f"malformed command: {exc}")
    rid = getattr(cmd, "request_id", None)
    if rid is not None:
        prev = state.requests.get(rid)
        if prev is not None:
            body = {k: v for k, v in cmd.to_dict().items() if k not in cmd.NON_FINGERPRINT}
            if prev["fp"] != fingerprint(body):
                return Outcome(
                    Code.INVALID_ARGUMENT,
                    f"request_id {rid!r} was already used for a different request",
                )
            out = Outcome.from_dict(prev["outcome"])
            out.result = dict(out.result, deduplicated=True)
            out.seq = state.seq
            return out
    if isinstance(cmd, StartWorkflow) and cmd.name not in state.workflow_defs:
        return Outcome(
            Code.NOT_FOUND, f"workflow definition {cmd.name!r} is not registered", seq=state.seq
        )
    if isinstance(cmd, (CompleteTask, FailTask, HeartbeatTask)) and cmd.task_id not in state.tasks:
        return Outcome(Code.NOT_FOUND, f"task {cmd.task_id} not found", seq=state.seq)
    if isinstance(cmd, TerminateWorkflow) and cmd.workflow_id not in state.workflows:
        return Outcome(Code.NOT_FOUND, f"workflow {cmd.workflow_id} not found", seq=state.seq)
    return None
