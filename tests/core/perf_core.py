"""Measure the core's per-entry apply cost and snapshot save/load time (a script, not a test).

    .venv/bin/python -m tests.core.perf_core [--rounds N]

apply: workflows of two worker tasks (the shape of the benchmark), driven as the leader drives
them under load: entries of 64 commands (starts, polls of 64, completions), in the logged form
(with the proposer's fingerprint). Only apply_batch is timed. Reported per task lifecycle
(schedule, lease, complete) and per command.

snapshot: the retention cap of finished workflows (limits.MAX_TERMINAL_WORKFLOWS) plus a
running working set of 2 000 workflows with leased and queued tasks; save is
State.snapshot_bytes(), load is State.from_snapshot_bytes(). Best of several runs. Times are CPU time of this process
(time.process_time), so other processes on a shared machine inflate them less.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from orchestrator.core import limits
from orchestrator.core.commands import (
    Command,
    CompleteTask,
    LeaderEpoch,
    PollTasks,
    RegisterTaskDefs,
    RegisterWorkflowDef,
    StartWorkflow,
)
from orchestrator.core.machine import apply_batch
from orchestrator.core.state import State

JSON = Any
BATCH = 64
FLOW: JSON = {
    "name": "flow",
    "version": 1,
    "tasks": [
        {"name": "t1", "taskReferenceName": "a", "inputParameters": {"x": "${workflow.input.x}"}},
        {"name": "t2", "taskReferenceName": "b", "inputParameters": {"y": "${a.output.y}"}},
    ],
    "outputParameters": {"b": "${b.output}"},
}
TASK_DEFS: JSON = [
    {"name": n, "retryCount": 1, "retryDelaySeconds": 0, "responseTimeoutSeconds": 300}
    for n in ("t1", "t2")
]


class Driver:
    def __init__(self) -> None:
        self.st = State()
        self.now = 1_000_000
        self.n = 0
        self.apply_s = 0.0
        self.commands = 0
        self.apply([LeaderEpoch(term=1)])
        self.apply([RegisterTaskDefs(request_id="td", task_defs=TASK_DEFS)])
        self.apply([RegisterWorkflowDef(request_id="wd", definition=FLOW)])

    def rid(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"

    def apply(self, cmds: list[Command]) -> list[JSON]:
        # As from the log: decoded JSON of the logged form (outside the timed part).
        raw = json.loads(json.dumps([c.to_log_dict() for c in cmds]))
        self.now += 1
        t0 = time.process_time()
        outs, _ = apply_batch(self.st, self.now, raw)
        self.apply_s += time.process_time() - t0
        self.commands += len(cmds)
        return [o.result for o in outs]

    def start(self, count: int) -> None:
        for i in range(0, count, BATCH):
            self.apply(
                [
                    StartWorkflow(
                        request_id=self.rid("s"),
                        workflow_id=self.rid("wf"),
                        name="flow",
                        input={"x": {"k": j, "pad": "x" * 64}},
                    )
                    for j in range(min(BATCH, count - i))
                ]
            )

    def poll(self, task_type: str, count: int) -> list[str]:
        ids: list[str] = []
        while len(ids) < count:
            (res,) = self.apply(
                [
                    PollTasks(
                        request_id=self.rid("p"),
                        task_type=task_type,
                        worker_id="w",
                        count=min(100, count - len(ids)),
                        epoch=1,
                    )
                ]
            )
            got = res.get("task_ids", [])
            if not got:
                break
            ids.extend(got)
        return ids

    def complete(self, ids: list[str]) -> None:
        for i in range(0, len(ids), BATCH):
            self.apply(
                [
                    CompleteTask(
                        request_id=self.rid("c"),
                        task_id=tid,
                        output={"y": {"v": tid, "pad": "y" * 64}},
                        worker_id="w",
                    )
                    for tid in ids[i : i + BATCH]
                ]
            )

    def run_to_end(self, count: int) -> None:
        self.start(count)
        self.complete(self.poll("t1", count))
        self.complete(self.poll("t2", count))


def measure_apply(rounds: int, per_round: int) -> None:
    d = Driver()
    d.run_to_end(per_round)  # warm up
    d.apply_s, d.commands = 0.0, 0
    for _ in range(rounds):
        d.run_to_end(per_round)
    tasks = rounds * per_round * 2
    print(
        f"apply: {tasks} task lifecycles in {d.apply_s:.3f} s of apply_batch: "
        f"{d.apply_s / tasks * 1e6:.1f} us per task, {d.apply_s / d.commands * 1e6:.1f} us per "
        f"command ({d.commands} commands, entries of {BATCH})"
    )


def measure_snapshot(runs: int) -> None:
    d = Driver()
    finished = limits.MAX_TERMINAL_WORKFLOWS
    for _ in range(0, finished, 1000):
        d.run_to_end(1000)
    d.start(2000)  # the working set: 2 000 running, half with a leased task
    d.poll("t1", 1000)
    st = d.st
    save = load = float("inf")
    size = 0
    for _ in range(runs):
        t0 = time.process_time()
        data = st.snapshot_bytes()
        save = min(save, time.process_time() - t0)
        t0 = time.process_time()
        State.from_snapshot_bytes(data)
        load = min(load, time.process_time() - t0)
        size = len(data)
    n_wf = len(st.workflows)
    print(
        f"snapshot: {n_wf} workflows, {len(st.tasks)} tasks, {len(st.requests)} requests, "
        f"{size / 1e6:.1f} MB: save {save * 1000:.0f} ms, load {load * 1000:.0f} ms (best of {runs})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-round", type=int, default=2000)
    ap.add_argument("--snapshot-runs", type=int, default=5)
    args = ap.parse_args()
    measure_apply(args.rounds, args.per_round)
    measure_snapshot(args.snapshot_runs)


if __name__ == "__main__":
    main()
