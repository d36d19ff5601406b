"""Write the checked-in schema-1 snapshot and its continuation (tests/core/test_snapshot_compat.py).

Run once, against the core as it was when snapshots had schema 1 (commit 7a3b484, before the
core was split into processors and typed state):

    .venv/bin/python -m tests.core.data.make_snapshot_v1

It drives a representative workload (running and finished workflows, tasks in every status,
queues, parked polls, timers of every kind, members, definitions and the definition snapshots
running workflows keep, recorded requests, idempotency keys, pending scripts, a sub-workflow, a
fork, a loop, task domains), saves the state as `snapshot_v1.json`, then goes on with further
commands from that snapshot and records them with what the code of that day answered and showed
(`continuation_v1.json`). A later core must load the snapshot and give the same answers.

The continuation is chosen by reading the state, so this script needs the old core; it is kept
to show how the data was made, not to be re-run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from orchestrator.api import views
from orchestrator.core import queries
from orchestrator.core.commands import (
    Command,
    CompleteTask,
    FailTask,
    LeaderEpoch,
    Noop,
    PollActivity,
    PollTasks,
    RemoveMember,
    ScriptResult,
    SetMember,
    StartWorkflow,
    Tick,
)
from orchestrator.core.machine import Outcome
from orchestrator.core.state import State
from tests.core_helpers import Harness, check_invariants

JSON = Any
HERE = Path(__file__).resolve().parent
SNAPSHOT = HERE / "snapshot_v1.json"
CONTINUATION = HERE / "continuation_v1.json"
S_ = 1000

TASK_DEFS: list[JSON] = [
    {"name": "work", "retryCount": 2, "retryDelaySeconds": 0, "responseTimeoutSeconds": 10},
    {
        "name": "slow",
        "retryCount": 2,
        "retryLogic": "EXPONENTIAL_BACKOFF",
        "retryDelaySeconds": 30,
        "responseTimeoutSeconds": 20,
    },
    {
        "name": "timed",
        "retryCount": 1,
        "retryDelaySeconds": 0,
        "responseTimeoutSeconds": 15,
        "timeoutSeconds": 40,
        "timeoutPolicy": "RETRY",
    },
    {
        "name": "polltimed",
        "retryCount": 0,
        "retryDelaySeconds": 0,
        "pollTimeoutSeconds": 50,
        "timeoutPolicy": "TIME_OUT_WF",
    },
    {
        "name": "total",
        "retryCount": 3,
        "retryDelaySeconds": 5,
        "responseTimeoutSeconds": 10,
        "totalTimeoutSeconds": 70,
        "timeoutPolicy": "RETRY",
    },
    {
        "name": "alert",
        "retryCount": 0,
        "retryDelaySeconds": 0,
        "responseTimeoutSeconds": 25,
        "timeoutSeconds": 25,
        "timeoutPolicy": "ALERT_ONLY",
    },
    {"name": "idle", "retryCount": 0, "retryDelaySeconds": 0, "responseTimeoutSeconds": 30},
    {"name": "rare", "retryCount": 0, "retryDelaySeconds": 0, "responseTimeoutSeconds": 30},
    {
        "name": "dom",
        "retryCount": 0,
        "retryDelaySeconds": 0,
        "responseTimeoutSeconds": 30,
        "inputTemplate": {"mode": "fast"},
    },
]


def S(ref: str, name: str = "work", **kw: JSON) -> JSON:
    return {"name": name, "taskReferenceName": ref, **kw}


def T(ttype: str, ref: str, **kw: JSON) -> JSON:
    return {"name": ref, "taskReferenceName": ref, "type": ttype, **kw}


def W(name: str, *tasks: JSON, **kw: JSON) -> JSON:
    return {"name": name, "version": kw.pop("version", 1), "tasks": list(tasks), **kw}


WORKFLOW_DEFS: list[JSON] = [
    W(
        "pipeline",
        S("a", inputParameters={"x": "${workflow.input.x}"}),
        S("b", inputParameters={"y": "${a.output.y}", "all": "${a.output}"}),
        outputParameters={"b": "${b.output}", "id": "${workflow.workflowId}"},
        inputTemplate={"region": "eu"},
    ),
    W("compensate", T("HUMAN", "undo")),
    W(
        "fragile",
        S("a", inputParameters={"x": "${workflow.input.x}"}),
        failureWorkflow="compensate",
    ),
    W(
        "timeouts",
        T(
            "FORK_JOIN",
            "fk",
            forkTasks=[[S("t1", "timed")], [S("t2", "polltimed")], [S("t3", "total")]],
        ),
        T("JOIN", "jn", joinOn=["t1", "t2", "t3"]),
        timeoutSeconds=900,
    ),
    W("short", T("HUMAN", "h"), timeoutSeconds=60),
    W("alerting", S("al", "alert"), S("after", "work")),
    W("retrying", S("s", "slow")),
    W(
        "fork",
        T("FORK_JOIN", "fk", forkTasks=[[S("l1"), S("l2")], [T("HUMAN", "gate")]]),
        T("JOIN", "jn", joinOn=["l2", "gate"]),
        S("after", inputParameters={"joined": "${jn.output}"}),
    ),
    W(
        "parent",
        S("pre"),
        T("SUB_WORKFLOW", "sub", subWorkflowParam={"name": "pipeline"}, inputParameters={"x": 7}),
        S("post", inputParameters={"child": "${sub.output}"}),
    ),
    W(
        "scripts",
        T(
            "INLINE",
            "js",
            inputParameters={
                "evaluatorType": "javascript",
                "expression": "$.v * 2",
                "v": "${workflow.input.v}",
            },
        ),
        T(
            "JSON_JQ_TRANSFORM",
            "jq",
            inputParameters={"queryExpression": "{y: .x}", "x": "${js.output.result}"},
        ),
        T(
            "SWITCH",
            "sw",
            evaluatorType="javascript",
            expression="$.k",
            inputParameters={"k": "${workflow.input.k}"},
            decisionCases={
                "left": [S("left")],
                "right": [T("SET_VARIABLE", "setv", inputParameters={"side": "r"})],
            },
            defaultCase=[T("NOOP", "nop")],
        ),
        S("end", inputParameters={"vars": "${workflow.variables}"}),
    ),
    W(
        "loop",
        T(
            "DO_WHILE",
            "lp",
            loopCondition="Math.min($.lp['iteration'], 9) < 3",
            loopOver=[S("body", inputParameters={"i": "${lp.output.iteration}"})],
            inputParameters={"keepLastN": 2},
        ),
        S("done"),
    ),
    W(
        "items",
        T("DO_WHILE", "it", items=["x", "y", "z"], loopOver=[S("each")]),
    ),
    W(
        "dynfork",
        T(
            "FORK_JOIN_DYNAMIC",
            "df",
            inputParameters={"forkTaskName": "work", "forkTaskInputs": [{"n": 1}, {"n": 2}]},
        ),
        T("JOIN", "dj"),
        T("DYNAMIC", "dyn", dynamicTaskNameParam="which", inputParameters={"which": "idle"}),
    ),
    W("waits", T("WAIT", "w", inputParameters={"duration": "45 seconds"}), S("after")),
    W(
        "choices",
        T("FORK_JOIN", "fk", forkTasks=[[S("opt", optional=True)], [S("perm", permissive=True)]]),
        T("JOIN", "jn", joinOn=["opt", "perm"]),
    ),
    W(
        "domains",
        S("d", "dom"),
        T(
            "START_WORKFLOW",
            "st",
            inputParameters={"startWorkflow": {"name": "pipeline", "input": {"x": "started"}}},
        ),
        T(
            "TERMINATE",
            "tm",
            inputParameters={"terminationStatus": "COMPLETED", "workflowOutput": {"k": 1}},
        ),
    ),
    W("evolving", S("first"), S("second")),
]
EVOLVED = W("evolving", S("only", "rare"))


class Recorder:
    """A Harness whose batches and outcomes are recorded for the continuation."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.batches: list[tuple[int, list[JSON]]] = []
        self.outcomes: list[JSON] = []

    def apply(self, *cmds: Command | JSON) -> list[Outcome]:
        start = len(self.h.log)
        outs = self.h.apply(*cmds)
        self.batches.extend(self.h.log[start:])
        self.outcomes.extend(outcome_json(o) for o in outs)
        check_invariants(self.h.state)
        return outs


def outcome_json(o: Outcome) -> JSON:
    return {"seq": o.seq, "code": o.code.value, "message": o.message, "result": o.result}


def observe(st: State) -> JSON:
    """What a client and the runtime can see of a state: every workflow with its tasks as the
    API renders them, definitions, members, pending scripts, the applied seq and the next due
    timer. Read through core.queries only, so any state layout can be observed alike."""
    wfs = queries.list_workflows(st, "", "", 10**9)
    return {
        "seq": queries.applied_seq(st),
        "next_due_ms": queries.next_due_ms(st),
        "workflows": [
            json_format.MessageToDict(
                views.workflow_pb(wf, queries.workflow_tasks(st, wf)),
                preserving_proto_field_name=True,
            )
            for wf in wfs
        ],
        "workflow_defs": [list(d) for d in queries.workflow_defs(st)],
        "task_defs": queries.task_defs(st),
        "members": [[m.node_id, m.raft, m.grpc, m.removed] for m in queries.members(st)],
        "pending_scripts": [list(p) for p in queries.pending_scripts(st)],
    }


# ---------------------------------------------------------------- the workload before the snapshot


def build() -> Harness:
    h = Harness()
    h.leader_epoch(1)
    h.ok(SetMember(request_id="m-4", node_id="n4", raft="127.0.0.1:4004", grpc="127.0.0.1:5004"))
    h.ok(SetMember(request_id="m-5", node_id="n5", raft="127.0.0.1:4005", grpc="127.0.0.1:5005"))
    h.ok(RemoveMember(request_id="m-rm5", node_id="n5"))
    h.ok(RemoveMember(request_id="m-rm2", node_id="n2"))
    h.register_task_defs(*TASK_DEFS)
    for d in WORKFLOW_DEFS:
        h.register_workflow(d)

    # pipeline: one COMPLETED, one with a leased task, one queued, one retried, one TERMINATED
    done = h.start("pipeline", {"x": 1}, workflow_id="pipe-done", request_id="start-done")
    h.complete(h.poll_one("work"), {"y": "é"})
    h.complete(h.poll_one("work"), {"z": [1, 2**63]})
    assert h.wf(done)["status"] == "COMPLETED"
    h.start("pipeline", {"x": 2}, workflow_id="pipe-leased", correlation_id="c-2", priority=3)
    h.poll_one("work")
    h.start("pipeline", {"x": 3}, workflow_id="pipe-retried", idempotency_key="k-3")
    h.fail(h.poll_one("work"), reason="flaky")
    h.start("pipeline", {"x": 4}, workflow_id="pipe-queued")
    h.start("pipeline", {"x": 5}, workflow_id="pipe-term", idempotency_key="k-5")
    h.terminate("pipe-term", reason="operator said so")

    # fragile: FAILED terminally, its failure workflow waits on a HUMAN task
    h.start("fragile", {"x": "f"}, workflow_id="frag")
    h.fail(h.last_task("frag")["taskId"], reason="fatal", terminal=True)
    assert h.wf("frag")["status"] == "FAILED"

    # short: a workflow timeout that fires before the snapshot (TIMED_OUT), and one pending
    h.start("short", workflow_id="short-old")
    h.tick(61 * S_)
    assert h.wf("short-old")["status"] == "TIMED_OUT"
    h.start("short", workflow_id="short-new")
    h.start("alerting", workflow_id="alerting")
    h.poll("alert")

    # retrying: an attempt timed out by its lease, its retry delayed (ready timer)
    h.start("retrying", workflow_id="retry")
    h.poll_one("slow")
    h.tick(21 * S_)

    # timeouts: tmo / ptmo / ttmo / wftmo timers
    h.start("timeouts", workflow_id="tmo")
    h.poll("timed")
    h.poll("total")
    h.start("fork", workflow_id="fork")
    h.complete(h.poll_one("work"), {"l": 1})
    h.start("parent", workflow_id="parent")
    h.complete(h.poll_one("work"), {"pre": True})
    h.start("scripts", {"v": 21, "k": "right"}, workflow_id="scripts")
    h.start("loop", workflow_id="loop")
    h.start("items", workflow_id="items")
    h.start("dynfork", workflow_id="dynfork")
    h.start("waits", workflow_id="waits")
    h.start("choices", workflow_id="choices")
    h.start("domains", workflow_id="doms", task_to_domain={"dom": "blue,NO_DOMAIN"})
    h.ok(PollActivity(epoch=1, queues=["dom@blue"]))
    h.start("domains", workflow_id="doms-blue", task_to_domain={"dom": "blue,NO_DOMAIN"})
    h.start("evolving", workflow_id="evolve-old")
    h.register_workflow(EVOLVED, overwrite=True)

    # Drain what is ready once, so loops iterate and forks and children move.
    for _ in range(3):
        for tid in h.poll("work", 20):
            ref = h.task(tid)["referenceTaskName"]
            if ref == "opt":
                h.fail(tid, reason="optional fails")
            elif ref == "perm":
                h.fail(tid, reason="permissive fails", terminal=True)
            elif ref.startswith("a") and h.task(tid)["workflowId"] == "pipe-queued":
                continue  # left IN_PROGRESS
            else:
                h.complete(tid, {"ref": ref, "n": 1})
        for tid, fence in queries.pending_scripts(h.state):
            task = h.task(tid)
            if task["type"] == "INLINE":
                value: JSON = 42
            elif task["type"] == "JSON_JQ_TRANSFORM":
                value = [{"y": 42}]
            elif task["type"] == "SWITCH":
                value = "right"
            else:
                continue  # DO_WHILE conditions stay pending into the snapshot
            h.ok(ScriptResult(task_id=tid, fence=fence, epoch=1, ok=True, value=value))

    # Scripts waiting for their evaluation: an INLINE, and a jq after an INLINE answered.
    h.start("scripts", {"v": 1, "k": "left"}, workflow_id="scripts-inline")
    h.start("scripts", {"v": 2, "k": "none"}, workflow_id="scripts-jq")
    tid, fence = queries.pending_scripts(h.state)[-1]
    h.ok(ScriptResult(task_id=tid, fence=fence, epoch=1, ok=True, value=4))

    # Parked polls (lease at schedule time) and a queue polled in a domain.
    h.ok(
        PollTasks(
            request_id="park-1",
            task_type="rare",
            worker_id="pw",
            count=1,
            epoch=1,
            park_until_ms=h.clock_ms + 20 * S_,
        )
    )
    h.ok(
        PollTasks(
            request_id="park-2",
            task_type="rare",
            worker_id="pw",
            count=2,
            epoch=1,
            park_until_ms=h.clock_ms + 25 * S_,
        )
    )
    h.ok(
        PollTasks(
            request_id="park-3",
            task_type="dom",
            worker_id="pw",
            count=1,
            epoch=1,
            domain="green",
            park_until_ms=h.clock_ms + 25 * S_,
        )
    )
    h.ok(Noop(pad="x" * 10))
    check_invariants(h.state)
    return h


def coverage(st: State) -> JSON:
    """What the snapshot holds, to check the workload reached every part of the state."""
    return {
        "wf_status": sorted({w["status"] for w in st.workflows.values()}),
        "task_status": sorted({t["status"] for t in st.tasks.values()}),
        "task_types": sorted({t["type"] for t in st.tasks.values()}),
        "timers": sorted({k.partition(":")[0] for k in st.timers}),
        "queues": sorted(st.queues),
        "parked": sorted(st.parked),
        "members": sorted(st.members),
        "def_snapshots": len(st.def_snapshots),
        "requests": len(st.requests),
        "idempotency": len(st.idempotency),
        "pending_scripts": len(queries.pending_scripts(st)),
        "last_poll": sorted(st.last_poll),
    }


# ---------------------------------------------------------------- the continuation


def drive(r: Recorder, rounds: int) -> None:
    """Work like a fleet of workers, an operator and the leader's runtime, round after round."""
    h = r.h
    for _ in range(rounds):
        for qkey in sorted(h.state.queues):
            ttype, _, domain = qkey.partition("@")
            (out,) = r.apply(
                PollTasks(
                    request_id=h.new_id("cpoll"),
                    task_type=ttype,
                    worker_id="cw",
                    count=50,
                    epoch=h.state.epoch,
                    domain=domain,
                )
            )
            for i, tid in enumerate(out.result.get("task_ids", [])):
                if i % 5 == 4:
                    r.apply(_fail(h, tid))
                else:
                    r.apply(_complete(h, tid, {"by": "cw", "i": i}))
        for wf in list(h.state.workflows.values()):
            if wf["status"] != "RUNNING":
                continue
            for tid in wf["tasks"]:
                t = h.task(tid)
                if t["type"] == "HUMAN" and t["status"] == "IN_PROGRESS":
                    r.apply(
                        _complete(
                            h,
                            "",
                            {"approved": True},
                            workflow_id=wf["workflowId"],
                            reference_task_name=t["referenceTaskName"],
                        )
                    )
        for tid, fence in queries.pending_scripts(h.state):
            t = h.task(tid)
            value: JSON = {"DO_WHILE": True, "INLINE": 1, "SWITCH": "left"}.get(t["type"])
            if t["type"] == "DO_WHILE":
                value = t["script"]["iteration"] < 3
            r.apply(
                ScriptResult(task_id=tid, fence=fence, epoch=h.state.epoch, ok=True, value=value)
            )
        h.advance(17 * S_)
        r.apply(_tick(h, h.state.epoch))


def _complete(h: Harness, tid: str, output: JSON, **kw: JSON) -> Command:
    return CompleteTask(request_id=h.new_id("ccomplete"), task_id=tid, output=output, **kw)


def _fail(h: Harness, tid: str) -> Command:
    return FailTask(request_id=h.new_id("cfail"), task_id=tid, reason="continuation fails it")


def _tick(h: Harness, epoch: int) -> Command:
    return Tick(epoch=epoch)


def continuation(snapshot: bytes, clock_ms: int, counter: int) -> tuple[Recorder, JSON]:
    h = Harness(State.from_snapshot_bytes(snapshot), clock_ms=clock_ms)
    h._counter = counter
    r = Recorder(h)
    first = observe(h.state)
    # Retries of requests recorded before the snapshot, a reused id, idempotent starts.
    r.apply(h.start_cmd("pipeline", {"x": 1}, request_id="start-done", workflow_id="pipe-done"))
    r.apply(h.start_cmd("pipeline", {"x": 99}, request_id="start-done", workflow_id="pipe-done"))
    r.apply(
        StartWorkflow(
            request_id="again-1",
            workflow_id="pipe-again",
            name="pipeline",
            input={"x": 3},
            idempotency_key="k-3",
            idempotency_strategy="RETURN_EXISTING",
        )
    )
    r.apply(
        StartWorkflow(
            request_id="again-2",
            workflow_id="pipe-again",
            name="pipeline",
            input={"x": 3},
            idempotency_key="k-3",
            idempotency_strategy="FAIL",
        )
    )
    r.apply(
        StartWorkflow(
            request_id="again-3",
            workflow_id="pipe-again5",
            name="pipeline",
            input={"x": 5},
            idempotency_key="k-5",
            idempotency_strategy="FAIL_ON_RUNNING",
        )
    )
    r.apply(_tick(h, 0))  # a deposed leader's tick
    # A task of a parked poll's type becomes ready: the oldest parked poll takes it.
    r.apply(h.start_cmd("evolving", {}, workflow_id="evolve-new"))
    r.apply(
        PollTasks(
            request_id="park-1",
            task_type="rare",
            worker_id="pw",
            count=1,
            epoch=1,
            park_until_ms=0,
        )
    )
    r.apply(SetMember(request_id="m-6", node_id="n6", raft="127.0.0.1:4006", grpc="127.0.0.1:5006"))
    drive(r, 3)
    r.apply(LeaderEpoch(term=2))  # drops what is still parked
    r.apply(
        PollTasks(
            request_id="park-late",
            task_type="idle",
            worker_id="pw",
            count=3,
            epoch=2,
            park_until_ms=h.clock_ms + 5 * S_,
        )
    )
    drive(r, 8)
    h.advance(1000 * S_)
    r.apply(_tick(h, h.state.epoch))
    drive(r, 4)
    last = observe(h.state)
    return r, {"at_load": first, "at_end": last}


def main() -> None:
    h = build()
    snap = h.state.snapshot_bytes()
    print(json.dumps(coverage(h.state), indent=1))
    r, seen = continuation(snap, h.clock_ms, h._counter)
    SNAPSHOT.write_bytes(snap)
    data = {
        "clock_ms": h.clock_ms,
        "counter": h._counter,
        "batches": r.batches,
        "outcomes": r.outcomes,
        **seen,
    }
    CONTINUATION.write_text(json.dumps(data, ensure_ascii=False, indent=0) + "\n")
    print(len(snap), "snapshot bytes;", len(r.batches), "batches,", len(r.outcomes), "outcomes")
    print("at end:", json.dumps(coverage(r.h.state)))


if __name__ == "__main__":
    main()
