"""apply(state, batch) -> outcomes and events. Pure and deterministic; nothing escapes it.

The replication layer hands every committed batch to `apply_batch` on every replica, in log order.
A command that cannot be applied is rejected with a code and a message, identically everywhere;
an unexpected bug quarantines the workflow it touched as FAILED instead of wedging Raft.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
from dataclasses import dataclass, field
from typing import Any

from . import codec, limits
from .codec import fingerprint
from .commands import (
    FP_KEY,
    CancelPoll,
    CommandDecodeError,
    CompleteTask,
    FailTask,
    HeartbeatTask,
    LeaderEpoch,
    Noop,
    PollActivity,
    PollTasks,
    RegisterTaskDefs,
    RegisterWorkflowDef,
    RemoveMember,
    ScriptResult,
    SetMember,
    StartWorkflow,
    TerminateWorkflow,
    Tick,
    command_from_dict,
)
from .conditions import ConditionError, condition_true, parse_duration_ms, parse_until_ms
from .definitions import (
    JS_EVALUATORS,
    check_task_defs_known,
    check_task_to_domain,
    is_restricted_condition,
    iter_tasks,
    normalize_task_def,
    normalize_workflow_def,
    started_workflow_names,
)
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
T_FAILED_STATES = (T_FAILED, T_FAILED_TERMINAL, T_TIMED_OUT, T_CANCELED)

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
    # Task ids that now wait for a script evaluation (the leader's runtime evaluates them in the
    # sandbox and proposes ScriptResult); see pending_scripts() for the full list.
    scripts_ready: list[str] = field(default_factory=list)
    # Request ids of parked polls that left the parked set: filled (their outcome is then in
    # state.requests), expired, cancelled, or dropped by a new leader epoch.
    polls_settled: list[str] = field(default_factory=list)
    # The whole state was replaced (a snapshot was loaded): waiters re-read it.
    reloaded: bool = False

    def ready(self, task_type: str) -> None:
        if task_type not in self.ready_types:
            self.ready_types.append(task_type)


class _Ctx:
    def __init__(self, state: State, effects: Effects) -> None:
        self.st = state
        self.fx = effects
        # Per decide walk: tasks that failed / TERMINATE tasks that ran during the walk.
        self.failed: list[str] = []
        self.terminations: list[str] = []
        # (parent workflow id, parent task id, child id): children that ended, to mirror.
        self.wakes: list[tuple[str, str, str]] = []
        # The fingerprint of the request being applied ("" for commands without request_id).
        self.fp = ""
        # Task types that got a ready task while parked polls exist (filled after the batch).
        self.fill_types: list[str] = []

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
    if ctx.fill_types:
        # Once per entry, not per command: a parked poll then takes every task the entry's
        # commands made ready, up to its count (under load an entry carries many completions).
        _fill_parked(ctx)
    return outcomes, fx


def _apply_one(ctx: _Ctx, raw: JSON) -> Outcome:
    st = ctx.st
    st.seq += 1
    outcome = _apply_checked(ctx, raw)
    outcome.seq = st.seq
    return outcome


def _apply_checked(ctx: _Ctx, raw: JSON) -> Outcome:
    st = ctx.st
    given_fp = None
    if isinstance(raw, dict) and FP_KEY in raw:
        raw = dict(raw)
        given_fp = raw.pop(FP_KEY)
    try:
        cmd = command_from_dict(raw)
    except CommandDecodeError as exc:
        return Outcome(Code.INVALID_ARGUMENT, f"malformed command: {exc}")
    rid = getattr(cmd, "request_id", None)
    fp = ""
    if rid is not None:
        # The proposer's fingerprint (Command.to_log_dict) when the command carries one.
        if isinstance(given_fp, str) and given_fp:
            fp = given_fp
        else:
            fp = fingerprint(cmd.fingerprint_body())
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
        parked = st.parked.get(rid) if st.parked else None
        if parked is not None and parked["fp"] != fp:
            # The id belongs to a parked poll, whose outcome is recorded under it when filled.
            return Outcome(
                Code.INVALID_ARGUMENT,
                f"request_id {rid!r} was already used for a different request",
            )
    ctx.fp = fp
    try:
        handler = _HANDLERS[type(cmd)]
        outcome = Outcome(result=handler(ctx, cmd))
        _drain(ctx)
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
        # A parked poll is recorded when it is filled (see _fill_parked).
        return outcome.ok and bool(outcome.result.get("task_ids"))
    return True


def _fill_parked(ctx: _Ctx) -> None:
    """Lease the tasks this batch made ready to the oldest parked polls of their types.

    Runs at the end of every batch that enqueued a task while polls were parked, so no parked
    poll's type is left with a ready task between entries. A filled poll is recorded as its request's outcome (a retry
    with the same request id returns the same task ids) and leaves the parked set.
    """
    st = ctx.st
    types, ctx.fill_types = ctx.fill_types, []
    try:
        for task_type in types:
            for rid in [r for r, p in st.parked.items() if p["taskType"] == task_type]:
                if not st.queues.get(task_type):
                    break
                entry = st.parked.pop(rid)
                st.clear_timer("poll:" + rid)
                leased = _lease(ctx, task_type, entry["workerId"], entry["count"])
                outcome = Outcome(result={"task_ids": leased})
                st.requests[rid] = {"fp": entry["fp"], "outcome": outcome.to_dict(), "at": ctx.now}
                ctx.fx.polls_settled.append(rid)
                ctx.fx.timers_changed = True
        _evict_requests(st)
    except Exception:  # nothing escapes apply; a poll left parked expires by its timer
        pass


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
        # A task's commands carry workflow_id "" when they name the task by id.
        wf_id = getattr(cmd, "workflow_id", None) or None
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
        wf["endTime"] = ctx.now
        for tid in wf.get("tasks", []):
            t = ctx.st.tasks.get(tid)
            if t is not None and t.get("status") in T_ACTIVE:
                try:  # as any end does: out of its queue, its timers cleared
                    _finish_task(ctx, t, T_CANCELED, reason=reason)
                except Exception:
                    t["status"] = T_CANCELED
        # Retention evicts it like any ended workflow; waiters and a parent hear of its end.
        ctx.st.terminal_order[wf["workflowId"]] = None
        ctx.fx.ended_workflows.append(wf["workflowId"])
        with contextlib.suppress(Exception):
            _mirror_child(ctx, wf)


# ---------------------------------------------------------------- handlers


def _h_leader_epoch(ctx: _Ctx, cmd: LeaderEpoch) -> dict[str, JSON]:
    st = ctx.st
    if cmd.term > st.epoch:
        st.epoch = cmd.term
        # Parked polls were waiting on the old leader's gRPC calls: they must not capture tasks.
        # Their callers get UNAVAILABLE there and retry (same request id) on the new leader.
        for rid in st.parked:
            st.clear_timer("poll:" + rid)
            ctx.fx.polls_settled.append(rid)
        st.parked.clear()
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
    _check_no_cycle(ctx.st, defn)
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
    task_to_domain = check_task_to_domain(cmd.task_to_domain, "task_to_domain")
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
    _create_workflow(
        ctx,
        cmd.workflow_id,
        defn,
        dict(cmd.input),
        correlation_id=cmd.correlation_id,
        priority=cmd.priority,
        idempotency_key=cmd.idempotency_key,
        task_to_domain=task_to_domain,
    )
    if idem_key:
        st.idempotency[idem_key] = cmd.workflow_id
    return {"workflow_id": cmd.workflow_id, "created": True}


def _create_workflow(
    ctx: _Ctx,
    workflow_id: str,
    defn: JSON,
    wf_input: dict[str, JSON],
    correlation_id: str,
    priority: int,
    idempotency_key: str,
    parent: JSON = None,
    parent_task: JSON = None,
    task_to_domain: JSON = None,
    depth: int | None = None,
    extra: JSON = None,
) -> JSON:
    """Create a RUNNING workflow and decide it; raises Rejected before changing anything."""
    st = ctx.st
    for k, v in defn.get("inputTemplate", {}).items():
        wf_input.setdefault(k, v)
    task_defs: dict[str, JSON] = {}
    for t in iter_tasks(defn["tasks"]):
        if t["type"] == "SIMPLE" and "taskDefinition" not in t and t["name"] not in task_defs:
            td = st.task_defs.get(t["name"])
            if td is None:
                raise not_found(
                    f"task definition {t['name']!r} (used by {t['taskReferenceName']}) is not registered"
                )
            task_defs[t["name"]] = td
    wf = {
        "workflowId": workflow_id,
        "workflowName": defn["name"],
        "workflowVersion": defn["version"],
        # A running workflow keeps the definition (and task definitions) it started with. They
        # are stored once per distinct content, shared by every workflow started from them.
        "defHash": _retain_def(st, defn, task_defs),
        "status": WF_RUNNING,
        "input": wf_input,
        "output": {},
        "variables": dict(defn.get("variables", {})),
        "correlationId": correlation_id,
        "priority": priority,
        "idempotencyKey": idempotency_key,
        "createTime": ctx.now,
        "endTime": 0,
        "reasonForIncompletion": "",
        "tasks": [],
        "refIndex": {},  # task reference (with DO_WHILE suffixes) -> latest attempt's task id
        "taskSeq": 0,
        "parentWorkflowId": parent["workflowId"] if parent is not None else "",
        "parentWorkflowTaskId": parent_task["taskId"] if parent_task is not None else "",
        "depth": depth
        if depth is not None
        else (parent.get("depth", 0) + 1 if parent is not None else 0),
        "taskToDomain": task_to_domain or {},
    }
    if extra:
        wf.update(extra)
    st.workflows[workflow_id] = wf
    if defn.get("timeoutSeconds") and defn.get("timeoutPolicy", "TIME_OUT_WF") == "TIME_OUT_WF":
        st.set_timer("wftmo:" + workflow_id, ctx.now + defn["timeoutSeconds"] * 1000)
        ctx.fx.timers_changed = True
    _decide(ctx, wf)
    return wf


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
    if cmd.park_until_ms < 0:
        raise invalid("park_until_ms: must not be negative")
    qkey = queue_key(cmd.task_type, cmd.domain)
    _note_poll(st, qkey, ctx.now)
    leased = _lease(ctx, qkey, cmd.worker_id, cmd.count)
    if leased and st.parked.pop(cmd.request_id, None) is not None:
        # A retry of a parked poll found work first (in the same entry as the command that made
        # it ready): it is answered now and recorded, so it is no longer parked.
        st.clear_timer("poll:" + cmd.request_id)
        ctx.fx.polls_settled.append(cmd.request_id)
    # The parked lifetime is bounded by the longest long poll, whatever the proposer asked.
    expires = min(cmd.park_until_ms, ctx.now + limits.MAX_POLL_TIMEOUT_MS)
    if leased or expires <= ctx.now:
        return {"task_ids": leased}
    if cmd.request_id not in st.parked and len(st.parked) >= limits.MAX_PARKED_POLLS:
        return {"task_ids": []}  # not parked: the dispatcher waits locally instead
    # A retry of a parked poll keeps its place in line and gets the new expiry.
    st.parked[cmd.request_id] = {
        "taskType": qkey,
        "workerId": cmd.worker_id,
        "count": cmd.count,
        "epoch": st.epoch,
        "expires": expires,
        "fp": ctx.fp,
    }
    st.set_timer("poll:" + cmd.request_id, expires)
    ctx.fx.timers_changed = True
    return {"task_ids": [], "parked": True}


def queue_key(task_type: str, domain: str) -> str:
    """The queue a task waits in: its type's, or its domain's ("<type>@<domain>"; neither a
    type nor a domain may contain "@", so keys never collide)."""
    return f"{task_type}@{domain}" if domain else task_type


def _qkey(task: JSON) -> str:
    return queue_key(task["taskType"], task.get("domain", ""))


def _note_poll(st: State, qkey: str, now: int) -> None:
    """Remember when a queue was last polled (an "active worker" for task domains); bounded."""
    st.last_poll.pop(qkey, None)
    st.last_poll[qkey] = now
    while len(st.last_poll) > limits.MAX_POLLED_QUEUES:
        st.last_poll.popitem(last=False)


def _active_domain(st: State, wf: JSON, task_name: str, now: int) -> str:
    """Conductor's task domain choice: the task's entry in taskToDomain (or "*"), a comma list
    tried in order; the first domain polled within ACTIVE_WORKER_MS wins, else the last listed
    ("NO_DOMAIN" = the default queue)."""
    mapping = wf.get("taskToDomain") or {}
    spec = mapping.get(task_name, mapping.get("*"))
    if not spec:
        return ""
    domains = [str(d).strip() for d in str(spec).split(",") if str(d).strip()]
    for d in domains:
        if d == "NO_DOMAIN":
            continue
        seen = st.last_poll.get(queue_key(task_name, d))
        if seen is not None and now - seen <= limits.ACTIVE_WORKER_MS:
            return d
    last = domains[-1] if domains else "NO_DOMAIN"
    return "" if last == "NO_DOMAIN" else last


def _h_poll_activity(ctx: _Ctx, cmd: PollActivity) -> dict[str, JSON]:
    if cmd.epoch < ctx.st.epoch:
        raise precondition(f"stale leader epoch {cmd.epoch} < {ctx.st.epoch}")
    queues = cmd.queues
    if not isinstance(queues, list) or len(queues) > limits.MAX_POLL_COUNT:
        raise invalid(f"queues: a list of at most {limits.MAX_POLL_COUNT} queue names")
    for q in queues:
        if not isinstance(q, str) or not 0 < len(q) <= 2 * limits.MAX_NAME_LENGTH + 1:
            raise invalid(f"queues: {q!r} is not a queue name")
    for q in queues:
        _note_poll(ctx.st, q, ctx.now)
    return {}


def _h_cancel_poll(ctx: _Ctx, cmd: CancelPoll) -> dict[str, JSON]:
    st = ctx.st
    if cmd.epoch < st.epoch:
        raise precondition(f"stale leader epoch {cmd.epoch} < {st.epoch}")
    if st.parked.pop(cmd.poll_request_id, None) is None:
        return {"cancelled": False}
    st.clear_timer("poll:" + cmd.poll_request_id)
    ctx.fx.polls_settled.append(cmd.poll_request_id)
    ctx.fx.timers_changed = True
    return {"cancelled": True}


def _lease(ctx: _Ctx, task_type: str, worker_id: str, count: int) -> list[str]:
    """Lease up to `count` ready tasks of a type to a worker, oldest first."""
    st = ctx.st
    queue = st.queues.get(task_type)
    leased: list[str] = []
    while queue and len(leased) < count:
        task_id, _ = queue.popitem(last=False)
        task = st.tasks.get(task_id)
        if task is None or task["status"] != T_SCHEDULED:
            continue
        task["status"] = T_IN_PROGRESS
        task["workerId"] = worker_id
        task["pollCount"] += 1
        if not task["startTime"]:
            task["startTime"] = ctx.now
            if task.get("timeoutSeconds"):
                st.set_timer("tmo:" + task_id, ctx.now + task["timeoutSeconds"] * 1000)
        st.clear_timer("ptmo:" + task_id)
        _set_lease(ctx, task)
        leased.append(task_id)
    if queue is not None and not queue:
        del st.queues[task_type]
    return leased


def _resolve_task_id(ctx: _Ctx, cmd: CompleteTask | FailTask) -> str:
    """The task a result names: by id, or by workflow id and reference (the latest attempt)."""
    if cmd.task_id:
        return cmd.task_id
    if not (cmd.workflow_id and cmd.reference_task_name):
        raise invalid("task_id, or workflow_id and reference_task_name: required")
    wf = ctx.st.workflows.get(cmd.workflow_id)
    if wf is None:
        raise not_found(f"workflow {cmd.workflow_id} not found")
    task_id = wf["refIndex"].get(cmd.reference_task_name)
    if task_id is None:
        raise not_found(
            f"workflow {cmd.workflow_id} has no task with reference {cmd.reference_task_name!r}"
        )
    return str(task_id)


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


# Tasks a worker or the API may end: worker tasks, and WAIT/HUMAN gates (by task id).
EXTERNAL_TYPES = ("SIMPLE", "WAIT", "HUMAN")


def _check_external(task: JSON, verb: str) -> None:
    if task["type"] not in EXTERNAL_TYPES:
        raise precondition(
            f"task {task['taskId']} is a {task['type']} task run by the orchestrator and cannot "
            f"be {verb} through the API"
        )


def _h_complete_task(ctx: _Ctx, cmd: CompleteTask) -> dict[str, JSON]:
    if not isinstance(cmd.output, dict):
        raise invalid("output_json: must be a JSON object")
    task, wf = _active_task(ctx, _resolve_task_id(ctx, cmd), "completion")
    _check_external(task, "completed")
    _finish_task(ctx, task, T_COMPLETED, output=cmd.output)
    if cmd.worker_id:
        task["workerId"] = cmd.worker_id
    _decide(ctx, wf)
    return {}


def _h_fail_task(ctx: _Ctx, cmd: FailTask) -> dict[str, JSON]:
    if not isinstance(cmd.output, dict):
        raise invalid("output_json: must be a JSON object")
    task, wf = _active_task(ctx, _resolve_task_id(ctx, cmd), "failure")
    _check_external(task, "failed")
    status = T_FAILED_TERMINAL if cmd.terminal else T_FAILED
    _finish_task(
        ctx, task, status, output=cmd.output, reason=cmd.reason[: limits.MAX_REASON_LENGTH]
    )
    _handle_failure(ctx, wf, task)
    return {}


def _h_heartbeat_task(ctx: _Ctx, cmd: HeartbeatTask) -> dict[str, JSON]:
    task, _ = _active_task(ctx, cmd.task_id, "heartbeat")
    if task["status"] != T_IN_PROGRESS or task["type"] != "SIMPLE":
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
        if kind == "poll":  # a parked poll's wait ended with nothing for it
            if st.parked.pop(task_id, None) is not None:
                ctx.fx.polls_settled.append(task_id)
            continue
        if kind == "wftmo":  # the workflow's timeoutSeconds (policy TIME_OUT_WF)
            wf = st.workflows.get(task_id)
            if wf is not None and wf["status"] == WF_RUNNING:
                secs = wf_def(st, wf)["def"].get("timeoutSeconds", 0)
                try:
                    _end_workflow(
                        ctx, wf, WF_TIMED_OUT, f"workflow timeoutSeconds ({secs}s) elapsed"
                    )
                    _drain(ctx)
                except Exception as exc:
                    _quarantine_workflow(
                        ctx, wf, f"internal error firing timer {key}: {type(exc).__name__}: {exc}"
                    )
            continue
        task = st.tasks.get(task_id)
        if task is None:
            continue
        wf = st.workflows.get(task["workflowId"])
        if wf is None or wf["status"] != WF_RUNNING:
            continue
        try:
            _fire_timer(ctx, kind, wf, task)
            _drain(ctx)
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
    elif kind == "wait" and task["status"] == T_IN_PROGRESS and task["type"] == "WAIT":
        _finish_task(ctx, task, T_COMPLETED, output=task["output"])
        _decide(ctx, wf)
    elif kind == "tmo" and task["status"] in T_ACTIVE:
        _timeout_task(ctx, wf, task, f"timeoutSeconds ({task['timeoutSeconds']}s) elapsed")
    elif kind == "ptmo" and task["status"] == T_SCHEDULED:
        _timeout_task(
            ctx,
            wf,
            task,
            f"pollTimeoutSeconds ({task['pollTimeoutSeconds']}s) elapsed without a poll",
        )
    elif kind == "ttmo" and task["status"] in T_ACTIVE:
        _timeout_task(
            ctx,
            wf,
            task,
            f"totalTimeoutSeconds ({task['totalTimeoutSeconds']}s) elapsed",
            stop_retries=True,
        )


def _timeout_task(ctx: _Ctx, wf: JSON, task: JSON, reason: str, stop_retries: bool = False) -> None:
    """A task timeout fired: apply the task's timeoutPolicy, as Conductor's decider does.

    RETRY: the attempt is TIMED_OUT and retried while retries remain (a total timeout stops
    retries). TIME_OUT_WF: the attempt is TIMED_OUT and the workflow ends TIMED_OUT.
    ALERT_ONLY: the task goes on; the timeout is only recorded on it (`timeoutAlerts`).
    """
    policy = task.get("timeoutPolicy", "TIME_OUT_WF")
    if policy == "ALERT_ONLY":
        task["timeoutAlerts"] = task.get("timeoutAlerts", 0) + 1
        return
    _finish_task(ctx, task, T_TIMED_OUT, reason=reason)
    if policy == "TIME_OUT_WF":
        _end_workflow(
            ctx,
            wf,
            WF_TIMED_OUT,
            f"task {task['referenceTaskName']} ({task['taskId']}) TIMED_OUT: {reason}",
            failed_task=task,
        )
        return
    if stop_retries:
        task["retryLimit"] = task["retryCount"]
    _handle_failure(ctx, wf, task)


def _h_set_member(ctx: _Ctx, cmd: SetMember) -> dict[str, JSON]:
    for name, value in (("node_id", cmd.node_id), ("raft", cmd.raft), ("grpc", cmd.grpc)):
        if not value or len(value) > limits.MAX_NAME_LENGTH:
            raise invalid(f"{name}: required, at most {limits.MAX_NAME_LENGTH} characters")
    for nid, m in ctx.st.members.items():
        if nid != cmd.node_id and not m.get("removed") and cmd.raft == m["raft"]:
            raise already_exists(f"raft address {cmd.raft} belongs to member {nid}")
    ctx.st.members[cmd.node_id] = {"raft": cmd.raft, "grpc": cmd.grpc, "removed": False}
    return {}


def _h_remove_member(ctx: _Ctx, cmd: RemoveMember) -> dict[str, JSON]:
    if not cmd.node_id:
        raise invalid("node_id: required")
    # Configured replicas are not in the table until removed: record the removal either way.
    m = ctx.st.members.setdefault(cmd.node_id, {"raft": "", "grpc": "", "removed": True})
    m["removed"] = True
    return {}


def _h_script_result(ctx: _Ctx, cmd: ScriptResult) -> dict[str, JSON]:
    """Commit a script's outcome; the task then goes on as if a worker had answered."""
    st = ctx.st
    if cmd.epoch < st.epoch:
        raise precondition(f"stale leader epoch {cmd.epoch} < {st.epoch}")
    task = st.tasks.get(cmd.task_id)
    marker = task.get("script") if task is not None else None
    if (
        task is None
        or marker is None
        or task["status"] not in T_ACTIVE
        or marker.get("fence") != cmd.fence
        or "outcome" in marker
    ):
        raise precondition(
            f"task {cmd.task_id} has no pending script evaluation with fence {cmd.fence}: a late "
            "or duplicate script result is not applied"
        )
    wf = st.workflows.get(task["workflowId"])
    if wf is None or wf["status"] != WF_RUNNING:
        raise precondition(f"workflow {task['workflowId']} is not RUNNING")
    error = (cmd.error if isinstance(cmd.error, str) else "") or "the script failed"
    error = error[: limits.MAX_REASON_LENGTH - 100]
    ttype = task["type"]
    if ttype == "DO_WHILE":
        # The loop's decide walk reads the outcome (it knows the iteration it asked for).
        marker["outcome"] = {"ok": cmd.ok, "again": js_truthy(cmd.value), "error": error}
        _decide(ctx, wf)
        return {}
    del task["script"]
    if not cmd.ok:
        status = T_FAILED_TERMINAL if ttype in ("SWITCH", "DECISION") else T_FAILED
        _finish_task(
            ctx, task, status, output={"error": error}, reason=f"{ttype} script failed: {error}"
        )
        _handle_failure(ctx, wf, task)
        return {}
    if ttype == "INLINE":
        out: JSON = {"result": cmd.value}
    elif ttype == "JSON_JQ_TRANSFORM":
        results = cmd.value if isinstance(cmd.value, list) else [cmd.value]
        out = {"result": results[0] if results else None, "resultList": results}
    else:  # SWITCH / DECISION
        wt = _wt_of(st, wf, task)
        out = _select_case(task, wt, cmd.value)
    _finish_task(ctx, task, T_COMPLETED, output=out)
    _decide(ctx, wf)
    return {}


def js_truthy(value: JSON) -> bool:
    """JavaScript truthiness of a JSON value (an empty list or object is true)."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, str):
        return value != ""
    return True


def pending_scripts(st: State) -> list[tuple[str, int]]:
    """(task id, fence) of every script evaluation waiting for a ScriptResult, in workflow and
    task order. The leader's runtime scans this when it takes over."""
    out: list[tuple[str, int]] = []
    for wf in st.workflows.values():
        if wf["status"] != WF_RUNNING:
            continue
        for tid in wf["tasks"]:
            t = st.tasks[tid]
            marker = t.get("script")
            if marker is not None and t["status"] in T_ACTIVE and "outcome" not in marker:
                out.append((tid, marker["fence"]))
    return out


def _await_script(ctx: _Ctx, task: JSON, lang: str, source: str, **extra: JSON) -> None:
    """Phase one of a script: mark the task as waiting for an evaluation outside apply.

    The fence is this command's sequence number: unique per evaluation of a task (a loop asks
    again only in a later command), so a result for an older request is told apart.
    """
    task["status"] = T_IN_PROGRESS
    task["script"] = {"fence": ctx.st.seq, "lang": lang, "source": source, **extra}
    ctx.fx.scripts_ready.append(task["taskId"])


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
    SetMember: _h_set_member,
    RemoveMember: _h_remove_member,
    ScriptResult: _h_script_result,
    CancelPoll: _h_cancel_poll,
    PollActivity: _h_poll_activity,
}


# ---------------------------------------------------------------- the decider
#
# A workflow's progress is recomputed from its definition on every decide: `_run_list` walks a
# task list in order, scheduling the first configuration that has no task yet and descending
# into forks, switch cases and loops. Tasks are found by reference name (with DO_WHILE's `__N`
# suffixes) in wf["refIndex"], which always points at the latest attempt. The walk is a pure
# function of the state, so it is re-run after every change instead of tracking cursors.

# Task types whose work happens outside the core's decide (a worker, the API, a timer, a child).
LIVE_TYPES = ("SIMPLE", "WAIT", "HUMAN", "SUB_WORKFLOW")
# Operators: never retried, never completed through the API.
OPERATORS = (
    "SWITCH",
    "DECISION",
    "FORK_JOIN",
    "FORK_JOIN_DYNAMIC",
    "JOIN",
    "EXCLUSIVE_JOIN",
    "DO_WHILE",
)
_SYSTEM_TASK_DEF: dict[str, JSON] = {
    "retryCount": 0,
    "retryLogic": "FIXED",
    "retryDelaySeconds": 0,
    "backoffScaleFactor": 1,
    "maxRetryDelaySeconds": 0,
    "responseTimeoutSeconds": 3600,
}


class _Fail(Exception):
    """Scheduling a task is impossible (bad runtime input): the task fails terminally."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _set_lease(ctx: _Ctx, task: JSON) -> None:
    task["leaseExpiresTime"] = ctx.now + task["responseTimeoutSeconds"] * 1000
    ctx.st.set_timer("lease:" + task["taskId"], task["leaseExpiresTime"])
    ctx.fx.timers_changed = True


# Timers a task may hold, by key prefix: lease (responseTimeoutSeconds), delayed start, WAIT,
# timeoutSeconds from the first poll, pollTimeoutSeconds, totalTimeoutSeconds.
_TASK_TIMERS = ("lease:", "ready:", "wait:", "tmo:", "ptmo:", "ttmo:")


def _enqueue(ctx: _Ctx, task: JSON) -> None:
    ttype = _qkey(task)
    ctx.st.queues.setdefault(ttype, _new_queue())[task["taskId"]] = None
    ctx.fx.ready(ttype)
    if ctx.st.parked and ttype not in ctx.fill_types:
        ctx.fill_types.append(ttype)


def _new_queue() -> Any:
    from collections import OrderedDict

    return OrderedDict()


def _finish_task(ctx: _Ctx, task: JSON, status: str, output: JSON = None, reason: str = "") -> None:
    st = ctx.st
    tid = task["taskId"]
    if task["status"] == T_SCHEDULED:
        qkey = _qkey(task)
        q = st.queues.get(qkey)
        if q is not None:
            q.pop(tid, None)
            if not q:
                del st.queues[qkey]
    for kind in _TASK_TIMERS:
        st.clear_timer(kind + tid)
    task.pop("script", None)
    task["status"] = status
    task["endTime"] = ctx.now
    task["leaseExpiresTime"] = 0
    if output is not None:
        task["output"] = output
    if reason:
        task["reasonForIncompletion"] = reason[: limits.MAX_REASON_LENGTH]


def _task_view(t: JSON, wf_id: str) -> dict[str, JSON]:
    return {
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
        "workflowInstanceId": wf_id,
        "iteration": t.get("iteration", 0),
        "domain": t.get("domain", ""),
    }


def task_doc(wf: JSON, tasks: dict[str, JSON]) -> dict[str, JSON]:
    """The document `${...}` expressions are resolved against (latest attempt per reference;
    a task inside a DO_WHILE also answers to its reference without the `__N` suffix)."""
    doc: dict[str, JSON] = {
        "workflow": {
            "input": wf["input"],
            "output": wf["output"],
            "status": wf["status"],
            "workflowId": wf["workflowId"],
            "parentWorkflowId": wf.get("parentWorkflowId", ""),
            "parentWorkflowTaskId": wf.get("parentWorkflowTaskId", ""),
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
        view = _task_view(t, wf["workflowId"])
        doc[t["referenceTaskName"]] = view
        base = t.get("baseRef")
        if base:
            doc[base] = view
    return doc


# The content hash of (definition, task definitions) by the identity of those objects, holding
# them so an id cannot be reused while its entry exists. Registered definitions are replaced,
# never changed in place, so the same objects always hash alike: a memo of a pure function,
# which keeps apply deterministic while saving a canonical encoding of the whole definition on
# every start.
_DEF_HASHES: dict[int, tuple[JSON, tuple[tuple[str, JSON], ...], str]] = {}
_DEF_HASHES_MAX = 256


def _def_hash(defn: JSON, task_defs: dict[str, JSON]) -> str:
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


def _retain_def(st: State, defn: JSON, task_defs: JSON) -> str:
    key = _def_hash(defn, task_defs)
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


def _wt_of(st: State, wf: JSON, task: JSON) -> JSON:
    """The task configuration a task record was scheduled from."""
    dyn = task.get("dynamicTask")
    if dyn is not None:
        return dyn
    cur: JSON = wf_def(st, wf)["def"]
    for key in task["path"]:
        cur = cur[key]
    return cur


def _effective_task_def(st: State, wf: JSON, wt: JSON) -> JSON:
    if wt["type"] != "SIMPLE":
        td = dict(_SYSTEM_TASK_DEF)
    elif wt.get("taskDefinition"):
        td = dict(wt["taskDefinition"])
    else:
        known = wf_def(st, wf)["taskDefs"].get(wt["name"]) or st.task_defs.get(wt["name"])
        if known is None:
            raise _Fail(f"task definition {wt['name']!r} is not registered")
        td = dict(known)
    if "retryCount" in wt:
        td["retryCount"] = wt["retryCount"]
    return td


def _new_task(
    ctx: _Ctx,
    wf: JSON,
    wt: JSON,
    path: list[JSON] | None,
    suffix: str,
    retry_of: JSON = None,
) -> JSON:
    """Create the task record (SCHEDULED, input resolved); the caller starts it."""
    st = ctx.st
    task_id = f"{wf['workflowId']}-{wf['taskSeq']}"
    wf["taskSeq"] += 1
    ref = wt["taskReferenceName"] + suffix
    task: dict[str, JSON] = {
        "taskId": task_id,
        "taskType": wt["name"] if wt["type"] == "SIMPLE" else wt["type"],
        "type": wt["type"],
        "referenceTaskName": ref,
        "workflowId": wf["workflowId"],
        "workflowType": wf["workflowName"],
        "correlationId": wf["correlationId"],
        "path": path,
        "seq": len(wf["tasks"]),
        "status": T_SCHEDULED,
        "input": {},
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
        "responseTimeoutSeconds": 3600,
        "retryLimit": 0,
        "retryLogic": "FIXED",
        "retryDelaySeconds": 0,
        "backoffScaleFactor": 1,
        "maxRetryDelaySeconds": 0,
        "optional": bool(wt.get("optional", False)),
    }
    if wt.get("permissive"):
        task["permissive"] = True
    if path is None:
        task["dynamicTask"] = wt
    elif retry_of is not None and "dynamicTask" in retry_of:
        task["dynamicTask"] = retry_of["dynamicTask"]
    if suffix:
        task["baseRef"] = wt["taskReferenceName"]
        task["iteration"] = int(suffix.rsplit("__", 1)[1])
    st.tasks[task_id] = task
    wf["tasks"].append(task_id)
    wf["refIndex"][ref] = task_id
    return task


def _resolve_input(ctx: _Ctx, wf: JSON, wt: JSON, task_id: str) -> dict[str, JSON]:
    doc = task_doc(wf, ctx.st.tasks)
    task_input = resolve(wt["inputParameters"], doc, {"CPEWF_TASK_ID": task_id})
    return task_input if isinstance(task_input, dict) else {}


def _schedule(
    ctx: _Ctx,
    wf: JSON,
    wt: JSON,
    path: list[JSON] | None,
    suffix: str,
    retry_of: JSON = None,
    delay_s: int = 0,
) -> JSON:
    """Schedule one task configuration and start it; synchronous operators finish at once.

    Returns the task record (possibly already terminal). Never raises for bad runtime input:
    such a task fails terminally and the usual failure handling follows.
    """
    if len(wf["tasks"]) >= limits.MAX_TASKS_PER_WORKFLOW:
        _end_workflow(
            ctx,
            wf,
            WF_FAILED,
            f"the workflow created {limits.MAX_TASKS_PER_WORKFLOW} tasks (MAX_TASKS_PER_WORKFLOW)",
        )
        return None
    st = ctx.st
    if wt["type"] == "DYNAMIC":
        name = _resolve_input(ctx, wf, wt, "").get(wt["dynamicTaskNameParam"])
        task = _new_task(ctx, wf, wt, path, suffix, retry_of)
        if not isinstance(name, str) or not name:
            _fail_now(
                ctx,
                wf,
                task,
                f"DYNAMIC: input parameter {wt['dynamicTaskNameParam']!r} must name a task, "
                f"got {name!r}",
            )
            return task
        # From here on it is the SIMPLE task it names (as in Conductor), kept on the record so a
        # retry runs the same task.
        dyn = dict(wt, type="SIMPLE", name=name)
        dyn.pop("dynamicTaskNameParam", None)
        task["dynamicTask"] = dyn
        task["type"] = "SIMPLE"
        task["taskType"] = name
        wt = dyn
    else:
        task = _new_task(ctx, wf, wt, path, suffix, retry_of)
    try:
        td = _effective_task_def(st, wf, wt)
        task["responseTimeoutSeconds"] = td["responseTimeoutSeconds"]
        task["retryLimit"] = td["retryCount"]
        task["retryLogic"] = td["retryLogic"]
        task["retryDelaySeconds"] = td["retryDelaySeconds"]
        task["backoffScaleFactor"] = td["backoffScaleFactor"]
        task["maxRetryDelaySeconds"] = td["maxRetryDelaySeconds"]
        if wt["type"] == "SIMPLE":
            task["timeoutPolicy"] = td.get("timeoutPolicy", "TIME_OUT_WF")
            for key in ("timeoutSeconds", "pollTimeoutSeconds", "totalTimeoutSeconds"):
                if td.get(key):
                    task[key] = td[key]
            task["firstScheduledTime"] = (
                retry_of.get("firstScheduledTime", retry_of["scheduledTime"])
                if retry_of
                else ctx.now
            )
            domain = _active_domain(st, wf, task["taskType"], ctx.now)
            if domain:
                task["domain"] = domain
        task_input = _resolve_input(ctx, wf, wt, task["taskId"])
        for k, v in (td.get("inputTemplate") or {}).items():
            if task_input.get(k) is None:
                task_input[k] = v
        if codec.deeper_than(task_input, limits.MAX_TASK_INPUT_DEPTH):
            raise _Fail(
                f"the task input is nested more than {limits.MAX_TASK_INPUT_DEPTH} levels deep"
            )
        task["input"] = task_input
        _start(ctx, wf, wt, task, delay_s)
    except _Fail as exc:
        _fail_now(ctx, wf, task, exc.reason)
    return task


def _fail_now(ctx: _Ctx, wf: JSON, task: JSON, reason: str) -> None:
    _finish_task(ctx, task, T_FAILED_TERMINAL, reason=reason)
    if task["taskId"] not in ctx.failed:
        ctx.failed.append(task["taskId"])


def _start(ctx: _Ctx, wf: JSON, wt: JSON, task: JSON, delay_s: int) -> None:
    st = ctx.st
    ttype = wt["type"]
    inp = task["input"]
    if ttype == "SIMPLE":
        delay_s = max(delay_s, int(wt.get("startDelay", 0)) if not task["retryCount"] else 0)
        tid = task["taskId"]
        if task.get("pollTimeoutSeconds"):
            st.set_timer("ptmo:" + tid, ctx.now + (delay_s + task["pollTimeoutSeconds"]) * 1000)
            ctx.fx.timers_changed = True
        if task.get("totalTimeoutSeconds"):
            st.set_timer(
                "ttmo:" + tid, task["firstScheduledTime"] + task["totalTimeoutSeconds"] * 1000
            )
            ctx.fx.timers_changed = True
        if delay_s > 0:
            st.set_timer("ready:" + task["taskId"], ctx.now + delay_s * 1000)
            ctx.fx.timers_changed = True
        else:
            _enqueue(ctx, task)
        return
    task["startTime"] = ctx.now
    if ttype in ("SWITCH", "DECISION"):
        if ttype == "SWITCH" and wt.get("evaluatorType") in JS_EVALUATORS:
            _await_script(ctx, task, "js", wt["expression"])
            return
        if ttype == "DECISION" and wt.get("caseExpression") is not None:
            _await_script(ctx, task, "js", wt["caseExpression"])
            return
        param = wt["expression"] if ttype == "SWITCH" else wt["caseValueParam"]
        _finish_task(ctx, task, T_COMPLETED, output=_select_case(task, wt, inp.get(param)))
    elif ttype == "INLINE":
        ev, expr = inp.get("evaluatorType"), inp.get("expression")
        if ev == "value-param":
            if not isinstance(expr, str):
                raise _Fail("INLINE: expression must name an input parameter")
            _finish_task(ctx, task, T_COMPLETED, output={"result": inp.get(expr)})
        elif ev in JS_EVALUATORS:
            if not isinstance(expr, str) or not expr.strip():
                raise _Fail("INLINE: expression must be a non-empty JavaScript string")
            _await_script(ctx, task, "js", expr)
        else:
            raise _Fail(
                f"INLINE: evaluatorType {ev!r} is not supported (javascript, graaljs, value-param)"
            )
    elif ttype == "JSON_JQ_TRANSFORM":
        query = inp.get("queryExpression")
        if not isinstance(query, str) or not query.strip():
            raise _Fail("JSON_JQ_TRANSFORM: queryExpression must be a non-empty jq program")
        _await_script(ctx, task, "jq", query)
    elif ttype == "FORK_JOIN":
        task["input"] = {"forkedTasks": [b[0]["taskReferenceName"] for b in wt["forkTasks"]]}
        _finish_task(ctx, task, T_COMPLETED, output={})
    elif ttype == "FORK_JOIN_DYNAMIC":
        dyn = _dynamic_fork_tasks(ctx, wf, wt, inp, task)
        task["dynamicForkTasks"] = dyn
        task["input"] = {"forkedTasks": [d["taskReferenceName"] for d in dyn]}
        _finish_task(ctx, task, T_COMPLETED, output={})
    elif ttype in ("JOIN", "EXCLUSIVE_JOIN"):
        task["status"] = T_IN_PROGRESS
        task["input"] = {"joinOn": _join_on(ctx, wf, wt, task)}
    elif ttype == "DO_WHILE":
        task["status"] = T_IN_PROGRESS
        task["output"] = {"iteration": 1}
        items = wt.get("items", inp.get("items"))
        if "items" in wt:
            items = resolve(items, task_doc(wf, st.tasks))
        if items is not None:
            if not isinstance(items, list):
                raise _Fail(f"DO_WHILE items must resolve to a list, got {_stringify(items)}")
            task["items"] = items
            if not items:
                _finish_task(ctx, task, T_COMPLETED, output={"iteration": 0})
                return
            task["output"].update(loopItem=items[0], loopIndex=0)
        task["loopIteration"] = 1
    elif ttype == "SUB_WORKFLOW":
        _start_sub_workflow(ctx, wf, wt, task)
    elif ttype == "START_WORKFLOW":
        sw = inp.get("startWorkflow")
        if not isinstance(sw, dict) or not isinstance(sw.get("name"), str):
            raise _Fail("START_WORKFLOW: input startWorkflow must be an object with a name")
        child_id = f"{task['taskId']}-start"
        child_input = sw.get("input") or {}
        if not isinstance(child_input, dict):
            raise _Fail("START_WORKFLOW: startWorkflow.input must be an object")
        defn = _lookup_def(ctx, sw["name"], sw.get("version") or 0)
        try:
            domains = check_task_to_domain(sw.get("taskToDomain"), "startWorkflow.taskToDomain")
        except Rejected as rej:
            raise _Fail(f"START_WORKFLOW: {rej.message}") from None
        _launch(
            ctx, wf, child_id, defn, child_input, str(sw.get("correlationId") or ""), None, domains
        )
        _finish_task(ctx, task, T_COMPLETED, output={"workflowId": child_id})
    elif ttype == "SET_VARIABLE":
        wf["variables"].update(inp)
        _finish_task(ctx, task, T_COMPLETED, output={})
    elif ttype == "NOOP":
        _finish_task(ctx, task, T_COMPLETED, output={})
    elif ttype == "TERMINATE":
        status = inp.get("terminationStatus")
        if status not in ("COMPLETED", "FAILED", "TERMINATED"):
            raise _Fail(
                f"TERMINATE: terminationStatus {status!r} is not COMPLETED/FAILED/TERMINATED"
            )
        out = inp.get("workflowOutput")
        _finish_task(ctx, task, T_COMPLETED, output={"output": out} if out is not None else {})
        ctx.terminations.append(task["taskId"])
    elif ttype == "WAIT":
        task["status"] = T_IN_PROGRESS
        try:
            due: int | None = None
            if inp.get("duration") is not None and inp.get("until") is not None:
                raise _Fail("WAIT: give either duration or until, not both")
            if inp.get("duration") is not None:
                due = ctx.now + parse_duration_ms(inp["duration"])
            elif inp.get("until") is not None:
                due = parse_until_ms(inp["until"])
        except ConditionError as exc:
            raise _Fail(f"WAIT: {exc}") from None
        if due is not None:
            task["waitUntil"] = due
            st.set_timer("wait:" + task["taskId"], max(due, ctx.now))
            ctx.fx.timers_changed = True
    elif ttype == "HUMAN":
        task["status"] = T_IN_PROGRESS
    else:  # pragma: no cover - registration rejects every other type
        raise _Fail(f"task type {ttype} is not supported")


def _select_case(task: JSON, wt: JSON, value: JSON) -> dict[str, JSON]:
    """SWITCH/DECISION: the case a value selects (matched as a string), recorded on the task."""
    key = value if isinstance(value, str) else _stringify(value)
    case = key if key in wt["decisionCases"] else None
    task["selectedCase"] = case
    return {"evaluationResult": [value], "selectedCase": key if case is not None else "default"}


def _stringify(value: JSON) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _dynamic_fork_tasks(ctx: _Ctx, wf: JSON, wt: JSON, inp: JSON, task: JSON) -> list[JSON]:
    """The task configurations a FORK_JOIN_DYNAMIC fans out to, validated like a definition."""
    raw: list[JSON] = []
    if wt.get("dynamicForkTasksParam"):
        tasks = inp.get(wt["dynamicForkTasksParam"])
        inputs = inp.get(wt["dynamicForkTasksInputParamName"])
        if not isinstance(tasks, list):
            raise _Fail(
                f"FORK_JOIN_DYNAMIC: input {wt['dynamicForkTasksParam']!r} must be a list of tasks"
            )
        if not isinstance(inputs, dict):
            raise _Fail(
                f"FORK_JOIN_DYNAMIC: input {wt['dynamicForkTasksInputParamName']!r} must be a "
                "map of reference -> input"
            )
        for t in tasks:
            if not isinstance(t, dict):
                raise _Fail("FORK_JOIN_DYNAMIC: every dynamic task must be an object")
            one = dict(t)
            ti = inputs.get(one.get("taskReferenceName"))
            one["inputParameters"] = dict(one.get("inputParameters") or {}, **(ti or {}))
            raw.append(one)
    else:
        inputs = inp.get("forkTaskInputs")
        if not isinstance(inputs, list):
            raise _Fail("FORK_JOIN_DYNAMIC: input forkTaskInputs must be a list")
        sub = inp.get("forkTaskWorkflow")
        ftype = inp.get("forkTaskType") or "SIMPLE"
        name = inp.get("forkTaskName") or (ftype if ftype != "SIMPLE" else wt["taskReferenceName"])
        for i, item in enumerate(inputs):
            params = dict(item) if isinstance(item, dict) else {"input": item}
            params["__index"] = i
            ref = f"_{sub or name}_{i}"
            if sub:
                swp: dict[str, JSON] = {"name": sub}
                ver = inp.get("forkTaskWorkflowVersion")
                if isinstance(ver, str) and ver.isdigit():
                    ver = int(ver)
                if isinstance(ver, int) and not isinstance(ver, bool):
                    swp["version"] = ver
                t = {
                    "name": sub,
                    "taskReferenceName": ref,
                    "type": "SUB_WORKFLOW",
                    "subWorkflowParam": swp,
                }
            else:
                t = {"name": name, "taskReferenceName": ref, "type": ftype}
            t["inputParameters"] = params
            if wt.get("optional"):
                t["optional"] = True
            raw.append(t)
    if len(raw) > limits.MAX_DYNAMIC_FORK_TASKS:
        raise _Fail(
            f"FORK_JOIN_DYNAMIC: {len(raw)} tasks exceed MAX_DYNAMIC_FORK_TASKS "
            f"({limits.MAX_DYNAMIC_FORK_TASKS})"
        )
    out: list[JSON] = []
    suffix = task["referenceTaskName"][len(wt["taskReferenceName"]) :]
    for i, given in enumerate(raw):
        t = {k: v for k, v in given.items() if v is not None}
        params = t.get("inputParameters", {})
        # Inputs were resolved already: keep them literal (a `${` in data is not an expression).
        t["inputParameters"] = {}
        try:
            norm = normalize_workflow_def({"name": "dynamic", "tasks": [t]})["tasks"][0]
        except Rejected as rej:
            raise _Fail(f"FORK_JOIN_DYNAMIC: dynamic task {i}: {rej.message}") from None
        if norm["type"] not in DYNAMIC_FORKABLE:
            raise _Fail(
                f"FORK_JOIN_DYNAMIC: dynamic task {i} ({norm['taskReferenceName']}): type "
                f"{norm['type']} cannot be forked dynamically (use a SUB_WORKFLOW)"
            )
        norm["inputParameters"] = _escape(params)
        if norm["taskReferenceName"] + suffix in wf["refIndex"]:
            raise _Fail(
                f"FORK_JOIN_DYNAMIC: duplicate task reference {norm['taskReferenceName']!r}"
            )
        if any(o["taskReferenceName"] == norm["taskReferenceName"] for o in out):
            raise _Fail(
                f"FORK_JOIN_DYNAMIC: duplicate task reference {norm['taskReferenceName']!r}"
            )
        out.append(norm)
    return out


DYNAMIC_FORKABLE = (
    "SIMPLE",
    "SUB_WORKFLOW",
    "START_WORKFLOW",
    "WAIT",
    "HUMAN",
    "NOOP",
    "SET_VARIABLE",
)


def _escape(value: JSON) -> JSON:
    """Make resolved data inert for a second resolution: `${` becomes `$${`."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


def _join_on(ctx: _Ctx, wf: JSON, wt: JSON, join_task: JSON) -> list[str]:
    """The references a JOIN waits for: its joinOn, or every task of the dynamic fork before it."""
    suffix = join_task["referenceTaskName"][len(wt["taskReferenceName"]) :]
    path = join_task.get("path")
    if path and isinstance(path[-1], int) and path[-1] > 0:
        prev_path = [*path[:-1], path[-1] - 1]
        cur: JSON = wf_def(ctx.st, wf)["def"]
        for key in prev_path:
            cur = cur[key]
        if cur.get("type") == "FORK_JOIN_DYNAMIC":
            fork_id = wf["refIndex"].get(cur["taskReferenceName"] + suffix)
            fork = ctx.st.tasks.get(fork_id) if fork_id else None
            if fork is not None:
                return [d["taskReferenceName"] + suffix for d in fork.get("dynamicForkTasks", [])]
    return [r + suffix for r in wt.get("joinOn", [])]


def _evaluate_join(ctx: _Ctx, wf: JSON, wt: JSON, task: JSON) -> None:
    """Complete an IN_PROGRESS JOIN / EXCLUSIVE_JOIN if what it waits for has ended."""
    st = ctx.st
    if wt["type"] == "JOIN":
        output: dict[str, JSON] = {}
        with_errors = False
        for ref in task["input"]["joinOn"]:
            tid = wf["refIndex"].get(ref)
            joined = st.tasks.get(tid) if tid else None
            if joined is None or (
                joined["status"] not in T_DONE_OK and not joined.get("permissiveFailed")
            ):
                return
            with_errors = with_errors or joined["status"] == T_COMPLETED_WITH_ERRORS
            output[ref] = joined["output"]
        _finish_task(ctx, task, T_COMPLETED_WITH_ERRORS if with_errors else T_COMPLETED, output)
        return
    # EXCLUSIVE_JOIN: the first joinOn reference that was scheduled (Conductor's ExclusiveJoin),
    # else the first scheduled defaultExclusiveJoinTask; it waits for that one to end.
    suffix = task["referenceTaskName"][len(wt["taskReferenceName"]) :]
    chosen = None
    for ref in [*wt.get("joinOn", []), *wt.get("defaultExclusiveJoinTask", [])]:
        tid = wf["refIndex"].get(ref + suffix)
        if tid is not None:
            chosen = st.tasks[tid]
            break
    if chosen is None:
        _finish_task(ctx, task, T_COMPLETED, output={})
    elif chosen["status"] in T_DONE_OK:
        _finish_task(ctx, task, T_COMPLETED, output=chosen["output"])


def _lookup_def(ctx: _Ctx, name: str, version: int) -> JSON:
    versions = ctx.st.workflow_defs.get(name)
    if not versions:
        raise _Fail(f"workflow definition {name!r} is not registered")
    defn = versions.get(str(version or latest_version(versions)))
    if defn is None:
        raise _Fail(f"workflow definition {name!r} has no version {version}")
    return defn


def _start_sub_workflow(ctx: _Ctx, wf: JSON, wt: JSON, task: JSON) -> None:
    swp = wt["subWorkflowParam"]
    if wf.get("depth", 0) + 1 > limits.MAX_SUBWORKFLOW_DEPTH:
        raise _Fail(f"SUB_WORKFLOW: nesting deeper than {limits.MAX_SUBWORKFLOW_DEPTH} levels")
    defn = swp.get("workflowDefinition") or _lookup_def(ctx, swp["name"], swp.get("version", 0))
    # Deterministic from the attempt's task id: re-applying never launches a second child, and a
    # retry (a new attempt, a new task id) launches a new one, as Conductor does.
    child_id = f"{task['taskId']}-sub"
    task["status"] = T_IN_PROGRESS
    task["subWorkflowId"] = child_id
    task["output"] = {"subWorkflowId": child_id}
    domains = dict(wf.get("taskToDomain") or {})
    try:
        domains.update(check_task_to_domain(swp.get("taskToDomain"), "taskToDomain"))
    except Rejected as rej:  # checked at registration; kept for definitions stored before
        raise _Fail(f"SUB_WORKFLOW: subWorkflowParam.{rej.message}") from None
    _launch(ctx, wf, child_id, defn, dict(task["input"]), wf["correlationId"], task, domains)


def _launch(
    ctx: _Ctx,
    parent: JSON,
    child_id: str,
    defn: JSON,
    child_input: JSON,
    correlation_id: str,
    parent_task: JSON,
    task_to_domain: JSON = None,
) -> None:
    if child_id in ctx.st.workflows:
        return
    try:
        _create_workflow(
            ctx,
            child_id,
            defn,
            child_input,
            correlation_id=correlation_id,
            priority=parent["priority"],
            idempotency_key="",
            parent=parent if parent_task is not None else None,
            parent_task=parent_task,
            task_to_domain=task_to_domain,
        )
    except Rejected as rej:
        raise _Fail(f"{defn['name']}: {rej.message}") from None


def _mirror_child(ctx: _Ctx, child: JSON) -> None:
    """A child workflow ended: its SUB_WORKFLOW task in the parent mirrors the end (later, in
    `_drain`, so a parent is never decided from inside its own decide)."""
    parent_id = child.get("parentWorkflowId")
    if parent_id:
        ctx.wakes.append((parent_id, child["parentWorkflowTaskId"], child["workflowId"]))


def _drain(ctx: _Ctx) -> None:
    st = ctx.st
    while ctx.wakes:
        parent_id, task_id, child_id = ctx.wakes.pop(0)
        parent = st.workflows.get(parent_id)
        task = st.tasks.get(task_id)
        child = st.workflows.get(child_id)
        if parent is None or task is None or child is None or parent["status"] != WF_RUNNING:
            continue
        if task["status"] not in T_ACTIVE or task.get("subWorkflowId") != child_id:
            continue
        status = child["status"]
        if status == WF_COMPLETED:
            _finish_task(ctx, task, T_COMPLETED, dict(child["output"], subWorkflowId=child_id))
            _decide(ctx, parent)
            continue
        mapped = {WF_TIMED_OUT: T_TIMED_OUT, WF_TERMINATED: T_CANCELED}.get(status, T_FAILED)
        _finish_task(
            ctx,
            task,
            mapped,
            output={"subWorkflowId": child_id},
            reason=f"sub-workflow {child_id} {status}: {child['reasonForIncompletion']}",
        )
        _handle_failure(ctx, parent, task)


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
    if wf["status"] != WF_RUNNING:
        return
    if task["status"] in T_RETRIABLE and task["retryCount"] < task["retryLimit"]:
        task["retried"] = True
        wt = _wt_of(ctx.st, wf, task)
        suffix = task["referenceTaskName"][len(wt["taskReferenceName"]) :]
        _schedule(
            ctx,
            wf,
            wt,
            task["path"],
            suffix,
            retry_of=task,
            delay_s=retry_delay_seconds(task),
        )
        _decide(ctx, wf)
        return
    if task["optional"]:
        task["status"] = T_COMPLETED_WITH_ERRORS
        _decide(ctx, wf)
        return
    if task.get("permissive"):
        # Conductor's permissive task: its failure stops neither its siblings nor the tasks
        # after it; the workflow fails when it would otherwise complete.
        task["permissiveFailed"] = True
        wf.setdefault("permissiveFailures", []).append(task["taskId"])
        _decide(ctx, wf)
        return
    wf_status = {T_TIMED_OUT: WF_TIMED_OUT, T_CANCELED: WF_TERMINATED}.get(
        task["status"], WF_FAILED
    )
    _end_workflow(
        ctx,
        wf,
        wf_status,
        f"task {task['referenceTaskName']} ({task['taskId']}) {task['status']}: "
        f"{task['reasonForIncompletion']}",
    )


# Results of walking one task configuration.
_DONE = 0  # ended successfully, and everything under it too
_PENDING = 1  # not finished: nothing after it in the same list may start
_FORKED = 2  # a fork whose branches still run: what follows (its JOIN) may start


def _decide(ctx: _Ctx, wf: JSON) -> None:
    """Schedule whatever can run now; complete the workflow when nothing is left."""
    if wf["status"] != WF_RUNNING:
        return
    # A decide may start a child workflow, which decides the child: each walk has its own lists.
    saved = (ctx.failed, ctx.terminations)
    ctx.failed, ctx.terminations = [], []
    try:
        complete = _run_list(ctx, wf, wf_def(ctx.st, wf)["def"]["tasks"], ["tasks"], "")
        failed, terminations = ctx.failed, ctx.terminations
    finally:
        ctx.failed, ctx.terminations = saved
    if wf["status"] != WF_RUNNING:
        return
    if terminations:
        _terminate_from_task(ctx, wf, ctx.st.tasks[terminations[0]])
    elif failed:
        _handle_failure(ctx, wf, ctx.st.tasks[failed[0]])
    elif complete and wf.get("permissiveFailures"):
        first = ctx.st.tasks[wf["permissiveFailures"][0]]
        _end_workflow(
            ctx,
            wf,
            WF_FAILED,
            f"permissive task {first['referenceTaskName']} ({first['taskId']}) "
            f"{first['status']}: {first['reasonForIncompletion']}",
            failed_task=first,
        )
    elif complete:
        _end_workflow(ctx, wf, WF_COMPLETED, "")
    elif not _has_live_task(ctx, wf):
        _end_workflow(
            ctx,
            wf,
            WF_FAILED,
            "the workflow can make no progress: a JOIN waits for tasks that were never scheduled",
        )


def _has_live_task(ctx: _Ctx, wf: JSON) -> bool:
    for tid in wf["tasks"]:
        t = ctx.st.tasks[tid]
        if t["status"] in T_ACTIVE and (t["type"] in LIVE_TYPES or "script" in t):
            return True
    return False


def _terminate_from_task(ctx: _Ctx, wf: JSON, task: JSON) -> None:
    status = task["input"].get("terminationStatus", WF_COMPLETED)
    reason = task["input"].get("terminationReason") or ""
    _end_workflow(ctx, wf, status, str(reason))
    out = task["input"].get("workflowOutput")
    if out is not None:
        wf["output"] = out if isinstance(out, dict) else {"result": out}


def _run_list(ctx: _Ctx, wf: JSON, wts: list[JSON], path: list[JSON] | None, suffix: str) -> bool:
    """Walk a task list in order; True when every task in it (and under it) has ended."""
    complete = True
    for j, wt in enumerate(wts):
        r = _run_task(ctx, wf, wt, None if path is None else [*path, j], suffix)
        if r == _PENDING or wf["status"] != WF_RUNNING or ctx.failed or ctx.terminations:
            return False
        if r == _FORKED:
            complete = False
    return complete


def _run_task(ctx: _Ctx, wf: JSON, wt: JSON, path: list[JSON] | None, suffix: str) -> int:
    st = ctx.st
    tid = wf["refIndex"].get(wt["taskReferenceName"] + suffix)
    if tid is None:
        task = _schedule(ctx, wf, wt, path, suffix)
        if task is None or wf["status"] != WF_RUNNING or ctx.failed:
            return _PENDING
    else:
        task = st.tasks[tid]
    ttype = wt["type"]
    status = task["status"]
    if status in T_FAILED_STATES:
        if task.get("permissiveFailed"):
            return _DONE
        # Only a failure not handled yet is still the latest attempt of its reference.
        if task["taskId"] not in ctx.failed:
            ctx.failed.append(task["taskId"])
        return _PENDING
    if ttype in ("FORK_JOIN", "FORK_JOIN_DYNAMIC"):
        if status not in T_DONE_OK:
            return _PENDING
        complete = True
        if ttype == "FORK_JOIN":
            for b, branch in enumerate(wt["forkTasks"]):
                bpath = None if path is None else [*path, "forkTasks", b]
                if not _run_list(ctx, wf, branch, bpath, suffix):
                    complete = False
                if wf["status"] != WF_RUNNING or ctx.failed or ctx.terminations:
                    return _PENDING
        else:
            for dyn in task.get("dynamicForkTasks", []):
                if not _run_list(ctx, wf, [dyn], None, suffix):
                    complete = False
                if wf["status"] != WF_RUNNING or ctx.failed or ctx.terminations:
                    return _PENDING
        return _DONE if complete else _FORKED
    if ttype in ("SWITCH", "DECISION"):
        if status not in T_DONE_OK:
            return _PENDING
        case = task.get("selectedCase")
        if case is None:
            branch, bkey = wt["defaultCase"], ["defaultCase"]
        else:
            branch, bkey = wt["decisionCases"][case], ["decisionCases", case]
        bpath = None if path is None else [*path, *bkey]
        return _DONE if _run_list(ctx, wf, branch, bpath, suffix) else _PENDING
    if ttype in ("JOIN", "EXCLUSIVE_JOIN") and status == T_IN_PROGRESS:
        _evaluate_join(ctx, wf, wt, task)
        status = task["status"]
    if ttype == "DO_WHILE" and status == T_IN_PROGRESS:
        return _run_loop(ctx, wf, wt, task, path, suffix)
    if status in T_DONE_OK:
        return _DONE
    return _PENDING


def _run_loop(
    ctx: _Ctx, wf: JSON, wt: JSON, task: JSON, path: list[JSON] | None, suffix: str
) -> int:
    st = ctx.st
    body_path = None if path is None else [*path, "loopOver"]
    body_refs = [t["taskReferenceName"] for t in iter_tasks(wt["loopOver"])]
    while True:
        it = task["loopIteration"]
        body_suffix = f"{suffix}__{it}"
        if not _run_list(ctx, wf, wt["loopOver"], body_path, body_suffix):
            return _PENDING
        # The iteration ended: record its outputs, then decide whether to go round again.
        outputs = {}
        for ref in body_refs:
            tid = wf["refIndex"].get(ref + body_suffix)
            if tid is not None:
                outputs[ref] = st.tasks[tid]["output"]
        task["output"][str(it)] = outputs
        task["output"]["iteration"] = it
        items = task.get("items")
        again = True
        if items is not None:
            again = it < len(items)
        cond = wt.get("loopCondition")
        if again and cond is not None:
            doc = _resolve_input(ctx, wf, wt, task["taskId"])
            for ref, out in outputs.items():
                doc[ref] = out
            doc[wt["taskReferenceName"]] = task["output"]
            if _restricted(cond):
                try:
                    again = condition_true(cond, doc)
                except ConditionError as exc:
                    _fail_now(ctx, wf, task, f"DO_WHILE loopCondition: {exc}")
                    return _PENDING
            else:
                # Full JavaScript: ask the sandbox once per iteration, then read its outcome.
                marker = task.get("script")
                if marker is None or marker.get("iteration") != it:
                    # A copy: the marker must not alias live parts of the state.
                    _await_script(ctx, task, "js", cond, input=copy.deepcopy(doc), iteration=it)
                    return _PENDING
                outcome = marker.get("outcome")
                if outcome is None:
                    return _PENDING
                del task["script"]
                if not outcome["ok"]:
                    _fail_now(ctx, wf, task, f"DO_WHILE loopCondition failed: {outcome['error']}")
                    return _PENDING
                again = bool(outcome["again"])
        keep = task["input"].get("keepLastN")
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            keep = 0
        if not again:
            if keep:
                _prune_iterations(ctx, wf, task, body_refs, suffix, it + 1 - keep)
            _finish_task(ctx, task, T_COMPLETED)
            return _DONE
        if it >= limits.MAX_LOOP_ITERATIONS:
            _fail_now(ctx, wf, task, f"DO_WHILE ran {it} iterations (MAX_LOOP_ITERATIONS)")
            return _PENDING
        task["loopIteration"] = it + 1
        task["output"]["iteration"] = it + 1
        if items is not None:
            task["output"].update(loopItem=items[it], loopIndex=it)
        if keep:
            # Before the next iteration starts: keep the last N finished ones.
            _prune_iterations(ctx, wf, task, body_refs, suffix, it + 1 - keep)


def _prune_iterations(
    ctx: _Ctx, wf: JSON, loop: JSON, body_refs: list[str], suffix: str, upto: int
) -> None:
    """keepLastN: forget the task records and outputs of iterations before `upto`."""
    st = ctx.st
    drop: dict[str, None] = {}
    for n in range(1, upto):
        if str(n) not in loop["output"] and not any(
            f"{r}{suffix}__{n}" in wf["refIndex"] for r in body_refs
        ):
            continue
        loop["output"].pop(str(n), None)
        prefix = f"{suffix}__{n}"
        for ref in list(wf["refIndex"]):
            base, _, rest = ref.partition("__")
            if _under(f"__{rest}", prefix) and base in body_refs:
                del wf["refIndex"][ref]
        for tid in wf["tasks"]:
            t = st.tasks[tid]
            ref = t["referenceTaskName"]
            base, _, rest = ref.partition("__")
            if base in body_refs and _under(f"__{rest}", prefix) and t["status"] not in T_ACTIVE:
                drop[tid] = None
    if drop:
        wf["tasks"] = [t for t in wf["tasks"] if t not in drop]
        for tid in drop:
            del st.tasks[tid]


@functools.lru_cache(maxsize=1024)
def _restricted(cond: str) -> bool:
    return is_restricted_condition(cond)


def _under(suffix: str, prefix: str) -> bool:
    return suffix == prefix or suffix.startswith(prefix + "__")


def _end_workflow(ctx: _Ctx, wf: JSON, status: str, reason: str, failed_task: JSON = None) -> None:
    st = ctx.st
    st.clear_timer("wftmo:" + wf["workflowId"])
    children: list[str] = []
    for tid in wf["tasks"]:
        t = st.tasks[tid]
        if t["status"] in T_ACTIVE:
            _finish_task(ctx, t, T_CANCELED, reason=f"workflow {status}")
            if t.get("subWorkflowId"):
                children.append(t["subWorkflowId"])
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
    # Ending a parent ends its running children (Conductor cancels a SUB_WORKFLOW by terminating
    # the child); a child's end wakes its parent.
    for child_id in children:
        child = st.workflows.get(child_id)
        if child is not None and child["status"] == WF_RUNNING:
            _end_workflow(ctx, child, WF_TERMINATED, f"parent workflow {wf['workflowId']} {status}")
    if status in (WF_FAILED, WF_TIMED_OUT):
        _start_failure_workflow(ctx, wf, failed_task)
    _mirror_child(ctx, wf)
    st.terminal_order[wf["workflowId"]] = None
    while len(st.terminal_order) > limits.MAX_TERMINAL_WORKFLOWS:
        old_id, _ = st.terminal_order.popitem(last=False)
        _evict_workflow(st, old_id)


def _start_failure_workflow(ctx: _Ctx, wf: JSON, failed_task: JSON) -> None:
    """Conductor's failureWorkflow: started when a workflow ends FAILED or TIMED_OUT through
    the decider (never by the terminate API, which ends it TERMINATED). Its id is derived from
    the failed workflow's, so re-applying never starts two; its input is the failed workflow's
    input plus workflowId, reason, failureStatus, failureTaskId and failedWorkflow; the failed
    workflow's output names it under `conductor.failure_workflow` (or says why it did not
    start)."""
    st = ctx.st
    defn = wf_def(st, wf)["def"]
    name = defn.get("failureWorkflow")
    if not name:
        return
    # The output may be the last task's output object: never mark that one.
    wf["output"] = dict(wf["output"])
    if name.startswith("$"):
        key = name[len("${workflow.input.") : -1]
        resolved = wf["input"].get(key)
        if not isinstance(resolved, str) or not resolved:
            wf["output"]["conductor.failure_workflow"] = (
                f"error: failureWorkflow {name} resolved to {_stringify(resolved)}"
            )
            return
        name = resolved
    child_id = f"{wf['workflowId']}-failure"
    if wf.get("depth", 0) + 1 > limits.MAX_SUBWORKFLOW_DEPTH:
        wf["output"]["conductor.failure_workflow"] = (
            f"error: not started, failure workflows nested deeper than "
            f"{limits.MAX_SUBWORKFLOW_DEPTH} levels"
        )
        return
    failed_view = {
        "workflowId": wf["workflowId"],
        "workflowName": wf["workflowName"],
        "workflowVersion": wf["workflowVersion"],
        "status": wf["status"],
        "input": wf["input"],
        "output": wf["output"],
        "reasonForIncompletion": wf["reasonForIncompletion"],
        "correlationId": wf["correlationId"],
        "createTime": wf["createTime"],
        "endTime": wf["endTime"],
        "variables": wf["variables"],
        "tasks": [_task_view(st.tasks[t], wf["workflowId"]) for t in wf["tasks"]],
    }
    if json_size(failed_view) > limits.MAX_JSON_BYTES:
        failed_view["tasks"] = []
        failed_view["tasksOmitted"] = "the failed workflow's tasks exceed MAX_JSON_BYTES"
    if failed_task is None:
        failed = [st.tasks[t] for t in wf["tasks"] if st.tasks[t]["status"] in T_FAILED_STATES]
        failed_task = failed[-1] if failed else None
    # Its own copy: in memory nothing may be shared between workflows (a snapshot would split
    # what a later in-place change relies on).
    failed_view = copy.deepcopy(failed_view)
    child_input = copy.deepcopy(wf["input"])
    child_input.update(
        workflowId=wf["workflowId"],
        reason=wf["reasonForIncompletion"],
        failureStatus=wf["status"],
        failureTaskId=failed_task["taskId"] if failed_task is not None else "",
        failedWorkflow=failed_view,
    )
    try:
        fdef = _lookup_def(ctx, name, defn.get("failureWorkflowVersion") or 0)
        if child_id not in st.workflows:
            _create_workflow(
                ctx,
                child_id,
                fdef,
                child_input,
                correlation_id=wf["correlationId"],
                priority=wf["priority"],
                idempotency_key="",
                task_to_domain=wf.get("taskToDomain"),
                depth=wf.get("depth", 0) + 1,
                extra={"triggeringWorkflowId": wf["workflowId"]},
            )
        wf["output"]["conductor.failure_workflow"] = child_id
    except (Rejected, _Fail) as exc:
        msg = exc.message if isinstance(exc, Rejected) else exc.reason
        wf["output"]["conductor.failure_workflow"] = f"error: {msg}"


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
            if prev["fp"] != fingerprint(cmd.fingerprint_body()):
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
    if (
        isinstance(cmd, (CompleteTask, FailTask, HeartbeatTask))
        and cmd.task_id
        and cmd.task_id not in state.tasks
    ):
        return Outcome(Code.NOT_FOUND, f"task {cmd.task_id} not found", seq=state.seq)
    if isinstance(cmd, TerminateWorkflow) and cmd.workflow_id not in state.workflows:
        return Outcome(Code.NOT_FOUND, f"workflow {cmd.workflow_id} not found", seq=state.seq)
    return None
