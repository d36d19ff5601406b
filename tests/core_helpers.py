"""Helpers for testing the pure core state machine (orchestrator/core) without sockets.

`Harness` wraps a `State` and a cluster clock that only moves when a test moves it. Every batch
goes through a JSON round trip before `apply_batch`, as it would through the replicated log, and is
recorded in `Harness.log` as `(now_ms, [command dicts])` so a test can replay it on a fresh state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from orchestrator.core.commands import (
    Command,
    CompleteTask,
    FailTask,
    HeartbeatTask,
    LeaderEpoch,
    PollTasks,
    RegisterTaskDefs,
    RegisterWorkflowDef,
    StartWorkflow,
    TerminateWorkflow,
    Tick,
)
from orchestrator.core.errors import Code
from orchestrator.core.machine import Outcome, apply_batch, queue_key
from orchestrator.core.processors import flow
from orchestrator.core.state import State

JSON = Any
Batch = tuple[int, list[dict[str, JSON]]]

START_MS = 1_000_000  # an arbitrary, non-zero cluster time to start from

# Task definitions registered by Harness.register_defaults(). Retries are immediate (delay 0) so
# tests that are not about backoff need no ticks; the lease is short and easy to reason about.
DEFAULT_TASK_DEFS: list[dict[str, JSON]] = [
    {"name": "task_a", "retryCount": 2, "retryDelaySeconds": 0, "responseTimeoutSeconds": 10},
    {"name": "task_b", "retryCount": 2, "retryDelaySeconds": 0, "responseTimeoutSeconds": 10},
    {"name": "task_c", "retryCount": 0, "retryDelaySeconds": 0, "responseTimeoutSeconds": 10},
]

# `two_step`: task_a (ref a) then task_b (ref b), b wired from a's output.
TWO_STEP: dict[str, JSON] = {
    "name": "two_step",
    "version": 1,
    "tasks": [
        {
            "name": "task_a",
            "taskReferenceName": "a",
            "inputParameters": {"x": "${workflow.input.x}"},
        },
        {
            "name": "task_b",
            "taskReferenceName": "b",
            "inputParameters": {"y": "${a.output.y}"},
        },
    ],
}

# `one_step`: just task_c (no retries).
ONE_STEP: dict[str, JSON] = {
    "name": "one_step",
    "version": 1,
    "tasks": [{"name": "task_c", "taskReferenceName": "c"}],
}


def wire(cmds: Iterable[Command | dict[str, JSON]]) -> list[dict[str, JSON]]:
    """Commands as they come out of the log: plain JSON dicts (a fresh copy)."""
    dicts = [c.to_dict() if isinstance(c, Command) else c for c in cmds]
    return json.loads(json.dumps(dicts))


def replay(log: Iterable[Batch], state: State | None = None) -> tuple[State, list[Outcome]]:
    """Apply a recorded log to a fresh (or given) state; returns the state and every outcome."""
    st = state if state is not None else State()
    outcomes: list[Outcome] = []
    for now_ms, cmds in log:
        outs, _ = apply_batch(st, now_ms, json.loads(json.dumps(cmds)))
        outcomes.extend(outs)
    return st, outcomes


def outcome_key(o: Outcome) -> tuple[int, str, str, str]:
    """Everything about an outcome that must be identical on every replica."""
    return (o.seq, o.code.value, o.message, json.dumps(o.result, sort_keys=True))


def state_without(st: State, *keys: str) -> bytes:
    """Snapshot bytes with some top-level parts blanked out."""
    snap = json.loads(st.snapshot_bytes())
    for key in keys:
        snap[key] = None
    return json.dumps(snap, separators=(",", ":"), ensure_ascii=False).encode()


def state_without_seq(st: State) -> bytes:
    """'Nothing changed, except that one more command was applied'."""
    return state_without(st, "seq")


def state_without_requests(st: State) -> bytes:
    """'Nothing changed but the sequence number and the dedup table' (a recorded rejection)."""
    return state_without(st, "seq", "requests")


class ApplyError(AssertionError):
    pass


class Harness:
    """A State, a cluster clock the test advances explicitly, and a log of every batch applied."""

    def __init__(self, state: State | None = None, clock_ms: int = START_MS) -> None:
        self.state = state if state is not None else State()
        self.clock_ms = clock_ms
        self.log: list[Batch] = []
        self.effects: Any = None  # Effects of the last batch
        self._counter = 0

    # ---- plumbing ----
    def new_id(self, prefix: str = "req") -> str:
        self._counter += 1
        return f"{prefix}-{self._counter}"

    def apply(self, *cmds: Command | dict[str, JSON], now_ms: int | None = None) -> list[Outcome]:
        """Apply one batch at `now_ms` (default: the harness clock); never advances the clock."""
        now = self.clock_ms if now_ms is None else now_ms
        dicts = wire(cmds)
        self.log.append((now, json.loads(json.dumps(dicts))))
        outcomes, self.effects = apply_batch(self.state, now, dicts)
        return outcomes

    def apply_one(self, cmd: Command | dict[str, JSON], now_ms: int | None = None) -> Outcome:
        (outcome,) = self.apply(cmd, now_ms=now_ms)
        return outcome

    def ok(self, cmd: Command | dict[str, JSON], now_ms: int | None = None) -> Outcome:
        outcome = self.apply_one(cmd, now_ms=now_ms)
        if outcome.code is not Code.OK:
            raise ApplyError(f"{type(cmd).__name__}: {outcome.code.value}: {outcome.message}")
        return outcome

    @property
    def epoch(self) -> int:
        return self.state.epoch

    # ---- definitions ----
    def register_task_defs(self, *defs: dict[str, JSON], check: bool = True) -> Outcome:
        cmd = RegisterTaskDefs(request_id=self.new_id("taskdefs"), task_defs=list(defs))
        return self.ok(cmd) if check else self.apply_one(cmd)

    def register_workflow(
        self, definition: dict[str, JSON], overwrite: bool = False, check: bool = True
    ) -> Outcome:
        cmd = RegisterWorkflowDef(
            request_id=self.new_id("wfdef"), definition=definition, overwrite=overwrite
        )
        return self.ok(cmd) if check else self.apply_one(cmd)

    def register_defaults(self) -> None:
        self.register_task_defs(*DEFAULT_TASK_DEFS)
        self.register_workflow(TWO_STEP)
        self.register_workflow(ONE_STEP)

    # ---- workflows ----
    def start_cmd(self, name: str, input: JSON = None, **kw: Any) -> StartWorkflow:
        kw.setdefault("request_id", self.new_id("start"))
        kw.setdefault("workflow_id", self.new_id("wf"))
        return StartWorkflow(name=name, input={} if input is None else input, **kw)

    def start(self, name: str, input: JSON = None, **kw: Any) -> str:
        """Start a workflow; returns its id (the one in the outcome)."""
        outcome = self.ok(self.start_cmd(name, input, **kw))
        return str(outcome.result["workflow_id"])

    def terminate(self, workflow_id: str, reason: str = "", check: bool = True) -> Outcome:
        cmd = TerminateWorkflow(
            request_id=self.new_id("terminate"), workflow_id=workflow_id, reason=reason
        )
        return self.ok(cmd) if check else self.apply_one(cmd)

    # ---- tasks ----
    def poll_cmd(self, task_type: str, n: int = 1, worker: str = "w", **kw: Any) -> PollTasks:
        kw.setdefault("request_id", self.new_id("poll"))
        kw.setdefault("epoch", self.state.epoch)
        return PollTasks(task_type=task_type, worker_id=worker, count=n, **kw)

    def poll(self, task_type: str, n: int = 1, worker: str = "w", **kw: Any) -> list[str]:
        outcome = self.ok(self.poll_cmd(task_type, n, worker, **kw))
        return list(outcome.result["task_ids"])

    def poll_one(self, task_type: str, worker: str = "w") -> str:
        ids = self.poll(task_type, 1, worker)
        assert len(ids) == 1, f"expected one {task_type} task to be pollable, got {ids}"
        return ids[0]

    def complete(self, task_id: str, output: JSON = None, check: bool = True, **kw: Any) -> Outcome:
        kw.setdefault("request_id", self.new_id("complete"))
        cmd = CompleteTask(task_id=task_id, output={} if output is None else output, **kw)
        return self.ok(cmd) if check else self.apply_one(cmd)

    def fail(
        self,
        task_id: str,
        reason: str = "boom",
        terminal: bool = False,
        check: bool = True,
        **kw: Any,
    ) -> Outcome:
        kw.setdefault("request_id", self.new_id("fail"))
        cmd = FailTask(task_id=task_id, reason=reason, terminal=terminal, **kw)
        return self.ok(cmd) if check else self.apply_one(cmd)

    def heartbeat(self, task_id: str, check: bool = True) -> Outcome:
        cmd = HeartbeatTask(request_id=self.new_id("heartbeat"), task_id=task_id)
        return self.ok(cmd) if check else self.apply_one(cmd)

    # ---- time and leadership ----
    def advance(self, ms: int) -> int:
        self.clock_ms += ms
        return self.clock_ms

    def tick(self, advance_ms: int = 0, epoch: int | None = None) -> Outcome:
        """Advance the clock by `advance_ms`, then apply a Tick at the new time."""
        self.advance(advance_ms)
        return self.apply_one(Tick(epoch=self.state.epoch if epoch is None else epoch))

    def tick_at(self, at_ms: int) -> Outcome:
        assert at_ms >= self.clock_ms, "the harness clock never goes back; use apply(now_ms=...)"
        return self.tick(at_ms - self.clock_ms)

    def leader_epoch(self, term: int) -> Outcome:
        return self.ok(LeaderEpoch(term=term))

    # ---- reading state ----
    def wf(self, workflow_id: str) -> dict[str, JSON]:
        return self.state.workflows[workflow_id]

    def task(self, task_id: str) -> dict[str, JSON]:
        return self.state.tasks[task_id]

    def tasks_of(self, workflow_id: str) -> list[dict[str, JSON]]:
        return [self.state.tasks[t] for t in self.state.workflows[workflow_id].tasks]

    def last_task(self, workflow_id: str) -> dict[str, JSON]:
        return self.tasks_of(workflow_id)[-1]

    def queued(self, task_type: str) -> list[str]:
        return list(self.state.queues.get(task_type, {}))

    def digest(self) -> str:
        return self.state.digest()


# ---------------------------------------------------------------- invariants


def _check_admission_counts(st: State) -> None:
    """The workflow-level limits' counts (derived, kept by the appliers) are the workflows'."""
    if not hasattr(st, "rebuild_admission"):
        return
    fresh = State()
    fresh.workflows = st.workflows
    fresh.rebuild_admission()
    assert st.running == fresh.running, f"running {st.running} != {fresh.running}"
    assert st.running_by_correlation == fresh.running_by_correlation, "per correlation id"
    got = {name: list(q.items()) for name, q in st.queued.items()}
    want = {name: list(q.items()) for name, q in fresh.queued.items()}
    assert got == want, f"queued {got} != {want}"


ACTIVE = ("SCHEDULED", "IN_PROGRESS")
# WAIT_FOR_EVENT waits for an event or a signal; EVENT and HTTP (asyncComplete) for a signal.
LIVE_TYPES = ("SIMPLE", "WAIT", "HUMAN", "SUB_WORKFLOW", "WAIT_FOR_EVENT", "EVENT", "HTTP")
WF_TERMINAL = ("COMPLETED", "FAILED", "TERMINATED", "TIMED_OUT", "COMPENSATED")
LIVE = ("RUNNING", "PAUSED", "QUEUED", "COMPENSATING")


def _check_flow(st: State) -> None:
    """The flow limits' bookkeeping: leased counts are the tasks IN_PROGRESS per queue (kept by
    the appliers, rebuilt on load), rate windows are in time order."""
    fresh = State()
    fresh.tasks = st.tasks
    fresh.rebuild_leased()
    assert st.leased == fresh.leased, f"leased {st.leased} != {fresh.leased}"
    for queue, times in st.lease_times.items():
        assert times and times == sorted(times), f"lease times of {queue}: {times}"
    for queue, ready in st.queues.items():
        for sub in ready.by_priority.values():
            assert sub, f"queue {queue} keeps an empty priority"
            assert list(sub.values()) == sorted(sub.values()), f"queue {queue} out of order"


def check_invariants(st: State) -> None:
    """Structural invariants of any reachable state; raises AssertionError."""
    queued: dict[str, str] = {}
    for task_type, queue in st.queues.items():
        assert queue, f"empty queue {task_type!r} left behind"
        for tid in queue:
            task = st.tasks.get(tid)
            assert task is not None, f"queue {task_type!r} holds unknown task {tid}"
            assert task.status == "SCHEDULED", f"queued task {tid} is {task.status}"
            expected = queue_key(task.task_type, task.domain)
            assert expected == task_type, f"task {tid} queued under {task_type!r}"
            assert tid not in queued, f"task {tid} queued twice"
            queued[tid] = task_type
    for rid, poll in st.parked.items():
        # Lease at schedule time: a poll stays parked only while its queue has nothing it may
        # lease (nothing ready, or no capacity under its task definition's limits).
        assert not flow.can_lease(st, poll.queue), (
            f"parked poll {rid} waits for {poll.queue!r} while tasks of it are ready"
        )
        assert poll.epoch == st.epoch, f"parked poll {rid} of old epoch {poll.epoch}"
        assert st.timers.get("poll:" + rid) == poll.expires_ms, f"parked poll {rid} has no timer"
        assert rid not in st.requests, f"parked poll {rid} already has a recorded outcome"
        assert poll.count >= 1, f"parked poll {rid} count {poll.count}"
    for key, due in st.timers.items():
        kind, _, tid = key.partition(":")
        assert isinstance(due, int), f"timer {key} due {due!r}"
        if kind == "poll":
            assert tid in st.parked, f"timer {key} for a poll that is not parked"
            continue
        if kind == "rate":  # a queue's rate window moves on (processors/flow.py)
            continue
        if kind == "hist":  # the durable history's retention, armed by the first archive
            assert key == "hist:retention", f"unknown history timer {key}"
            continue
        if kind == "wftmo":
            wf = st.workflows.get(tid)
            assert wf is not None and wf.status in LIVE, (
                f"timer {key} on a {wf and wf.status} workflow"
            )
            continue
        task = st.tasks.get(tid)
        assert task is not None, f"timer {key} for unknown task"
        if kind == "lease":
            assert task.status == "IN_PROGRESS", f"lease timer on {task.status} task {tid}"
            assert task.type == "SIMPLE", f"lease timer on a {task.type} task"
            assert due == task.lease_expires_ms, f"lease timer {key} != leaseExpiresTime"
        elif kind == "wait":
            assert task.status == "IN_PROGRESS", f"wait timer on {task.status} task {tid}"
            assert task.type == "WAIT", f"wait timer on a {task.type} task {tid}"
        elif kind in ("tmo", "ttmo"):
            assert task.status in ("SCHEDULED", "IN_PROGRESS"), f"{key} on {task.status} task"
        elif kind == "ptmo":
            assert task.status == "SCHEDULED", f"poll timeout timer on {task.status} task"
        elif kind == "ready":
            assert task.status == "SCHEDULED", f"ready timer on {task.status} task {tid}"
            assert tid not in queued, f"task {tid} both queued and waiting for its ready timer"
        else:
            raise AssertionError(f"unknown timer kind {key}")
    for tid, task in st.tasks.items():
        status = task.status
        ttype = task.type
        if task.script is not None:
            assert status == "IN_PROGRESS", f"script marker on {status} task {tid}"
        if status == "IN_PROGRESS" and ttype == "SIMPLE":
            assert "lease:" + tid in st.timers, f"IN_PROGRESS task {tid} has no lease timer"
        if status == "IN_PROGRESS":
            assert tid not in queued, f"IN_PROGRESS task {tid} is still queued"
        if status == "SCHEDULED":
            assert ttype == "SIMPLE", f"only worker tasks wait SCHEDULED, not {ttype} task {tid}"
        if status == "SCHEDULED":
            waiting = "ready:" + tid in st.timers
            assert (tid in queued) != waiting, (
                f"SCHEDULED task {tid} must be queued xor delayed (queued={tid in queued}, "
                f"delayed={waiting})"
            )
        wf = st.workflows.get(task.workflow_id)
        assert wf is not None, f"task {tid} of unknown (evicted?) workflow {task.workflow_id}"
        assert tid in wf.tasks, f"task {tid} not listed by its workflow"
    # The WAIT_FOR_EVENT index (derived) is exactly what a snapshot load rebuilds.
    live = st.event_waits
    st.rebuild_event_waits()
    rebuilt, st.event_waits = st.event_waits, live
    assert {k: sorted(v) for k, v in live.items()} == {k: sorted(v) for k, v in rebuilt.items()}
    for wf_id, wf in st.workflows.items():
        for tid in wf.tasks:
            assert tid in st.tasks, f"workflow {wf_id} lists unknown task {tid}"
        active = [t for t in wf.tasks if st.tasks[t].status in ACTIVE]
        for ref, tid in wf.ref_index.items():
            assert tid in wf.tasks, f"workflow {wf_id} refIndex {ref} -> unlisted task {tid}"
            assert st.tasks[tid].reference_task_name == ref, f"refIndex {ref} -> {tid}"
        for tid in active:
            t = st.tasks[tid]
            assert wf.ref_index.get(t.reference_task_name) == tid, (
                f"active task {tid} is not the latest attempt of {t.reference_task_name}"
            )
            if t.sub_workflow_id:
                child = st.workflows.get(t.sub_workflow_id)
                assert child is not None and child.status in LIVE, (
                    f"active SUB_WORKFLOW task {tid} but its child is "
                    f"{child.status if child else 'missing'}"
                )
        if wf.status == "RUNNING":
            # Liveness: something outside the decider (a worker, the API, a timer or a child
            # workflow) can still move the workflow; forks may run several tasks at once.
            # A task waiting for a script evaluation is moved by the runtime's ScriptResult.
            live = [
                t
                for t in active
                if st.tasks[t].type in LIVE_TYPES or st.tasks[t].script is not None
            ]
            assert live, f"RUNNING workflow {wf_id} has no live task (active: {active}): stuck"
        elif wf.status == "QUEUED":  # waits for its definition's limits: nothing ran yet
            assert not wf.tasks, f"QUEUED workflow {wf_id} has tasks"
            assert "wftmo:" + wf_id not in st.timers, f"QUEUED workflow {wf_id} has a timeout"
        elif wf.status == "COMPENSATING":  # a saga runs one compensation at a time
            assert len(active) == 1, f"COMPENSATING workflow {wf_id} has active tasks {active}"
            assert st.tasks[active[0]].compensates, f"{active[0]} of {wf_id} compensates nothing"
            assert "wftmo:" + wf_id not in st.timers, f"COMPENSATING {wf_id} has a timeout"
        elif wf.status != "PAUSED":  # paused: its tasks may all have ended meanwhile
            assert wf.status in WF_TERMINAL, f"workflow {wf_id} status {wf.status}"
            assert not active, f"{wf.status} workflow {wf_id} has active tasks {active}"
            assert wf_id in st.terminal_order, f"terminal workflow {wf_id} not in terminal_order"
        parent = st.workflows.get(wf.parent_workflow_id or "")
        if parent is not None and wf.status in LIVE:
            assert parent.status in LIVE, (
                f"child {wf_id} RUNNING under a {parent.status} parent"
            )
    for wf_id in st.terminal_order:
        assert wf_id in st.workflows, f"terminal_order names evicted workflow {wf_id}"
        assert st.workflows[wf_id].status not in LIVE, f"terminal_order names live {wf_id}"
    for root, (_, running) in st.chains.items():
        live = sum(
            1
            for wf in st.workflows.values()
            if wf.status in LIVE and root in (wf.chain_root, wf.workflow_id)
        )
        assert running == live, f"chain {root} counts {running} running, {live} are"
    for key, wf_id in st.idempotency.items():
        assert wf_id in st.workflows, f"idempotency key {key!r} names unknown workflow {wf_id}"
    _check_flow(st)
    _check_admission_counts(st)
    # Definitions shared by content (if the state keeps them that way): reference counts are exact.
    shared = getattr(st, "def_snapshots", None)
    if shared is not None:
        refs: dict[str, int] = {}
        for wf_id, wf in st.workflows.items():
            key = wf.def_hash
            assert key in shared, f"workflow {wf_id} runs an unknown definition {key!r}"
            refs[key] = refs.get(key, 0) + 1
        for key, entry in shared.items():
            assert entry.refs == refs.get(key, 0), (
                f"definition {key} has refs={entry.refs} but {refs.get(key, 0)} workflows"
            )
