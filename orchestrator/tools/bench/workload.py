"""The benchmark's workload: its workflow shapes, task definition and mean command size."""

from __future__ import annotations

import argparse
from typing import Any

TASK_TYPE = "bench_task"


def parse_shape(text: str) -> tuple[str, int]:
    kind, _, num = text.partition(":")
    if kind not in ("seq", "fork") or not num.isdigit() or int(num) < 1:
        raise argparse.ArgumentTypeError("expected seq:N or fork:N with N >= 1")
    return kind, int(num)


def workflow_def(kind: str, n: int) -> dict[str, Any]:
    """The benchmark workflow: n SIMPLE tasks in sequence, or a fork of n parallel branches."""
    name = f"bench_{kind}_{n}"
    if kind == "seq":
        tasks: list[dict[str, Any]] = []
        for i in range(n):
            src = "${workflow.input.payload}" if i == 0 else f"${{t{i - 1}.output.p}}"
            tasks.append(
                {
                    "name": TASK_TYPE,
                    "taskReferenceName": f"t{i}",
                    "type": "SIMPLE",
                    "inputParameters": {"p": src},
                }
            )
        out = {"p": f"${{t{n - 1}.output.p}}"}
    else:
        branches = [
            [
                {
                    "name": TASK_TYPE,
                    "taskReferenceName": f"b{i}",
                    "type": "SIMPLE",
                    "inputParameters": {"p": "${workflow.input.payload}"},
                }
            ]
            for i in range(n)
        ]
        tasks = [
            {
                "name": "bench_fork",
                "taskReferenceName": "fork",
                "type": "FORK_JOIN",
                "forkTasks": branches,
            },
            {
                "name": "bench_join",
                "taskReferenceName": "join",
                "type": "JOIN",
                "joinOn": [f"b{i}" for i in range(n)],
            },
        ]
        out = {"done": "${join.output}"}
    return {
        "name": name,
        "version": 1,
        "description": "orchestrator bench workload",
        "tasks": tasks,
        "outputParameters": out,
    }


TASK_DEF = {
    "name": TASK_TYPE,
    "retryCount": 2,
    "retryLogic": "FIXED",
    "retryDelaySeconds": 1,
    "responseTimeoutSeconds": 60,
}


def parse_rate(text: str) -> tuple[int, int]:
    """`--rate-limit N/F`: N leases per F seconds (F defaults to 1)."""
    n, sep, f = text.partition("/")
    if not n.isdigit() or int(n) < 1 or (sep and (not f.isdigit() or int(f) < 1)):
        raise argparse.ArgumentTypeError("expected N/F: N >= 1 leases per F >= 1 seconds")
    return int(n), int(f or 1)


def task_def(task_limit: int = 0, rate_limit: tuple[int, int] | None = None) -> dict[str, Any]:
    """The bench task's definition, with issue 17's limits when asked (0 / None: none)."""
    out = dict(TASK_DEF)
    if task_limit:
        out["concurrentExecLimit"] = task_limit
    if rate_limit:
        out["rateLimitPerFrequency"], out["rateLimitFrequencyInSeconds"] = rate_limit
    return out


def padded_noop(command_bytes: int) -> Any:
    """A Noop whose logged form is `command_bytes` long (or as short as a Noop can be)."""
    from orchestrator.core.commands import Noop

    bare = len(Noop().log_json())
    return Noop(pad="x" * max(0, command_bytes - bare))


def workload_command_bytes(
    kind: str, n: int, payload: str, commands_per_workflow: float | None
) -> int:
    """The mean logged size of the workload's commands, weighted as the run committed them.

    Per workflow: one StartWorkflow, one CompleteTask per SIMPLE task (its output carries the
    payload back, as the bench's workers answer), and the rest PollTasks; each built as the
    servers build them, with ids of the same lengths.
    """
    from orchestrator.core.commands import CompleteTask, PollTasks, StartWorkflow

    rid, wid = "r" * 32, "w" * 36
    start = StartWorkflow(
        request_id=rid,
        workflow_id=wid,
        name=workflow_def(kind, n)["name"],
        input={"payload": payload},
    )
    complete = CompleteTask(
        request_id=rid, task_id=f"{wid}-t0-1", output={"p": payload}, worker_id="bench-w0-12345"
    )
    poll = PollTasks(
        request_id=rid, task_type=TASK_TYPE, worker_id="bench-w0-12345", count=16, epoch=1
    )
    per_wf = commands_per_workflow or float(1 + n)
    polls = max(0.0, per_wf - 1 - n)
    total = len(start.log_json()) + n * len(complete.log_json()) + polls * len(poll.log_json())
    return round(total / (1 + n + polls))
