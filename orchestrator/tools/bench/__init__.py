"""`orchestrator bench`: throughput and latency of a cluster, measured end to end.

The benchmark runs against a given cluster (``--addresses``) or brings up a local three-replica
cluster in a temporary folder and stops it (by pid) at the end, whatever happens.

How it measures:

* Starters are closed-loop: each of ``--concurrency`` threads starts a workflow and waits until
  its last task has been completed before it starts the next one, so ``--concurrency`` is the
  number of workflows in flight. Concurrency 1 therefore measures the latency of a lone workflow.
* Workers run in separate processes (multiprocessing, spawn) with the Python worker SDK. They
  timestamp every successful CompleteTask on CLOCK_MONOTONIC (shared by every process on the
  machine) and send the timestamps to the bench process; a workflow's end-to-end latency is the
  time from its starter invoking StartWorkflow to the worker's CompleteTask of its last task
  returning OK (the workflow completes in that same committed command).
* Per-RPC latency comes from the client's recorder hook (invoke -> ok of one logical call,
  retries included). PollTasks is a long poll: its latency includes the wait for a task, so it
  is reported separately for polls that returned tasks. A worker with nothing else in flight
  asks for its next task with each completion (CompleteTasks with a poll that does not wait):
  those polls are reported as "PollTasks in CompleteTasks", with that call's latency.
* Commands/s of the workload is the leader's applied sequence number (one per command) before
  and after the measured phase, divided by its duration.
* The baseline commits empty commands (``Noop``, padded to the workload's mean logged command
  size) through the same replication adapter (``Replica.propose()``) with the same Raft
  settings and window, in three child processes that build a ``Replica`` each on their main
  thread; see `baseline.py`.

Nothing here is asserted as a wall-clock bound; the numbers are reported.

Modules, in the order a run uses them: `cli` (flags), `run` (the steps), `workload` (the
workflow shapes), `workers` (the worker processes), `loop` (the closed-loop starters),
`measure` (the measured phase), `report` (the JSON report and the table), `baseline`, `stats`.
"""

from __future__ import annotations

from .baseline import run_baseline
from .cli import add_parser, cmd_bench, main
from .report import format_table
from .run import run_bench
from .stats import RpcRecorder, latency_summary_ms, percentile, proc_stats
from .workload import (
    TASK_DEF,
    TASK_TYPE,
    padded_noop,
    task_def,
    workflow_def,
    workload_command_bytes,
)

__all__ = [
    "TASK_DEF",
    "TASK_TYPE",
    "RpcRecorder",
    "add_parser",
    "cmd_bench",
    "format_table",
    "latency_summary_ms",
    "main",
    "padded_noop",
    "percentile",
    "proc_stats",
    "run_baseline",
    "run_bench",
    "task_def",
    "workflow_def",
    "workload_command_bytes",
]
