"""The decider: a workflow's progress, recomputed from its definition on every decide.

`_run_list` walks a task list in order, scheduling the first configuration that has no task yet
and descending into forks, switch cases and loops. Tasks are found by reference name (with
DO_WHILE's `__N` suffixes) in the workflow's ref_index, which always points at the latest
attempt. The walk is a function of the state alone, so it is re-run after every change instead
of tracking cursors; what it decides, it emits as events.
"""

from __future__ import annotations

import copy
import functools
from enum import IntEnum
from typing import Any

from .. import events as E
from .. import limits
from ..conditions import ConditionError, condition_true
from ..context import Ctx
from ..definitions import is_restricted_condition, iter_tasks
from ..records import (
    T_ACTIVE,
    T_COMPLETED,
    T_DONE_OK,
    T_FAILED_STATES,
    T_IN_PROGRESS,
    WF_COMPENSATING,
    WF_COMPLETED,
    WF_FAILED,
    WF_RUNNING,
    Task,
    TaskType,
    Workflow,
)
from . import compensation, forks, registry, scheduler, scripts, tasks, workflows

JSON = Any

# Task types whose work happens outside the decider (a worker, the API, a timer, a child).
LIVE_TYPES = (
    *(TaskType.SIMPLE, TaskType.WAIT, TaskType.HUMAN, TaskType.SUB_WORKFLOW),
    *(TaskType.WAIT_FOR_EVENT, TaskType.EVENT, TaskType.HTTP),
)
_FORKS = (TaskType.FORK_JOIN, TaskType.FORK_JOIN_DYNAMIC)
_SWITCHES = (TaskType.SWITCH, TaskType.DECISION)
_JOINS = (TaskType.JOIN, TaskType.EXCLUSIVE_JOIN)
_LOOP = TaskType.DO_WHILE


class Walk(IntEnum):
    """The result of walking one task configuration."""

    DONE = 0  # ended successfully, and everything under it too
    PENDING = 1  # not finished: nothing after it in the same list may start
    FORKED = 2  # a fork whose branches still run: what follows (its JOIN) may start


def decide(ctx: Ctx, wf: Workflow) -> None:
    """Schedule whatever can run now; end the workflow when nothing is left.

    A task may end while its own workflow's walk is under way (an EVENT task's event completes
    a WAIT_FOR_EVENT of the same workflow, processors/messages.py): the walk may already have
    passed it, so that decide is deferred and the workflow walked again once the walk ends."""
    wf_id = wf.workflow_id
    if wf_id in ctx.deciding:
        if wf_id not in ctx.redecide:
            ctx.redecide.append(wf_id)
        return
    ctx.deciding.append(wf_id)
    try:
        _decide(ctx, wf)
        while wf_id in ctx.redecide:
            ctx.redecide.remove(wf_id)
            _decide(ctx, wf)
    finally:
        ctx.deciding.remove(wf_id)


def _decide(ctx: Ctx, wf: Workflow) -> None:
    if wf.status != WF_RUNNING:
        if wf.status is WF_COMPENSATING:  # a saga walks its compensations instead
            compensation.advance(ctx, wf)
        return
    # A decide may start a child workflow, which decides the child: each walk has its own lists.
    saved = (ctx.failed, ctx.terminations)
    ctx.failed, ctx.terminations = [], []
    try:
        complete = _run_list(ctx, wf, registry.wf_def(ctx.st, wf)["tasks"], ["tasks"], "")
        failed, terminations = ctx.failed, ctx.terminations
    finally:
        ctx.failed, ctx.terminations = saved
    if wf.status != WF_RUNNING:
        return
    st = ctx.st
    if terminations:
        workflows.terminate_from_task(ctx, wf, st.tasks[terminations[0]])
    elif failed:
        tasks.handle_failure(ctx, wf, st.tasks[failed[0]])
    elif complete and wf.permissive_failures:
        first = st.tasks[wf.permissive_failures[0]]
        workflows.end_workflow(
            ctx,
            wf,
            WF_FAILED,
            f"permissive task {first.reference_task_name} ({first.task_id}) "
            f"{first.status}: {first.reason_for_incompletion}",
            failed_task=first,
        )
    elif complete:
        workflows.end_workflow(ctx, wf, WF_COMPLETED, "")
    elif wf.workflow_id not in ctx.redecide and not _has_live_task(ctx, wf):
        workflows.end_workflow(
            ctx,
            wf,
            WF_FAILED,
            "the workflow can make no progress: a JOIN waits for tasks that were never scheduled",
        )


def _has_live_task(ctx: Ctx, wf: Workflow) -> bool:
    for tid in wf.tasks:
        t = ctx.st.tasks[tid]
        if t.status in T_ACTIVE and (t.type in LIVE_TYPES or t.script is not None):
            return True
    return False


def _stopped(ctx: Ctx, wf: Workflow) -> bool:
    """The walk must stop: the workflow ended, or a task failed or terminated it."""
    return wf.status != WF_RUNNING or bool(ctx.failed) or bool(ctx.terminations)


def _run_list(
    ctx: Ctx, wf: Workflow, wts: list[JSON], path: list[str | int] | None, suffix: str
) -> bool:
    """Walk a task list in order; True when every task in it (and under it) has ended."""
    complete = True
    for j, wt in enumerate(wts):
        r = _run_task(ctx, wf, wt, None if path is None else [*path, j], suffix)
        if r == Walk.PENDING or _stopped(ctx, wf):
            return False
        if r == Walk.FORKED:
            complete = False
    return complete


def _run_task(ctx: Ctx, wf: Workflow, wt: JSON, path: list[str | int] | None, suffix: str) -> Walk:
    tid = wf.ref_index.get(wt["taskReferenceName"] + suffix)
    if tid is None:
        scheduled = scheduler.schedule(ctx, wf, wt, path, suffix)
        if scheduled is None or wf.status != WF_RUNNING or ctx.failed:
            return Walk.PENDING
        task = scheduled
    else:
        task = ctx.st.tasks[tid]
    ttype = wt["type"]
    status = task.status
    if status in T_FAILED_STATES:
        if task.permissive_failed:
            return Walk.DONE
        # Only a failure not handled yet is still the latest attempt of its reference.
        if task.task_id not in ctx.failed:
            ctx.failed.append(task.task_id)
        return Walk.PENDING
    if ttype in _FORKS:
        return _run_fork(ctx, wf, wt, task, path, suffix)
    if ttype in _SWITCHES:
        if status not in T_DONE_OK:
            return Walk.PENDING
        case = task.selected_case
        if case is None:
            branch, bkey = wt["defaultCase"], ["defaultCase"]
        else:
            branch, bkey = wt["decisionCases"][case], ["decisionCases", case]
        bpath = None if path is None else [*path, *bkey]
        return Walk.DONE if _run_list(ctx, wf, branch, bpath, suffix) else Walk.PENDING
    if ttype in _JOINS and status == T_IN_PROGRESS:
        forks.evaluate_join(ctx, wf, wt, task)
        status = task.status
    if ttype == _LOOP and status == T_IN_PROGRESS:
        return _run_loop(ctx, wf, wt, task, path, suffix)
    return Walk.DONE if status in T_DONE_OK else Walk.PENDING


def _run_fork(
    ctx: Ctx, wf: Workflow, wt: JSON, task: Task, path: list[str | int] | None, suffix: str
) -> Walk:
    """A fork's branches run side by side: each is walked; the fork is done when all are."""
    if task.status not in T_DONE_OK:
        return Walk.PENDING
    branches: list[tuple[list[JSON], list[str | int] | None]]
    if wt["type"] == _FORKS[0]:
        branches = [
            (branch, None if path is None else [*path, "forkTasks", b])
            for b, branch in enumerate(wt["forkTasks"])
        ]
    else:
        branches = [([dyn], None) for dyn in task.dynamic_fork_tasks or []]
    complete = True
    for branch, bpath in branches:
        if not _run_list(ctx, wf, branch, bpath, suffix):
            complete = False
        if _stopped(ctx, wf):
            return Walk.PENDING
    return Walk.DONE if complete else Walk.FORKED


def _run_loop(
    ctx: Ctx, wf: Workflow, wt: JSON, task: Task, path: list[str | int] | None, suffix: str
) -> Walk:
    st = ctx.st
    body_path = None if path is None else [*path, "loopOver"]
    body_refs = [t["taskReferenceName"] for t in iter_tasks(wt["loopOver"])]
    while True:
        it = task.loop_iteration
        body_suffix = f"{suffix}__{it}"
        if not _run_list(ctx, wf, wt["loopOver"], body_path, body_suffix):
            return Walk.PENDING
        # The iteration ended: record its outputs, then decide whether to go round again.
        outputs = {}
        for ref in body_refs:
            tid = wf.ref_index.get(ref + body_suffix)
            if tid is not None:
                outputs[ref] = st.tasks[tid].output
        ctx.emit(E.LoopIterationEnded(task.task_id, it, outputs))
        again: bool | None = True
        if task.items is not None:
            again = it < len(task.items)
        cond = wt.get("loopCondition")
        if again and cond is not None:
            again = _loop_condition(ctx, wf, wt, task, cond, outputs)
            if again is None:
                return Walk.PENDING
        keep = task.input.get("keepLastN")
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            keep = 0
        if not again:
            if keep:
                _prune_iterations(ctx, wf, task, body_refs, suffix, it + 1 - keep)
            tasks.end_task(ctx, task, T_COMPLETED)
            return Walk.DONE
        if it >= limits.MAX_LOOP_ITERATIONS:
            tasks.fail_now(ctx, task, f"DO_WHILE ran {it} iterations (MAX_LOOP_ITERATIONS)")
            return Walk.PENDING
        ctx.emit(E.LoopIterationStarted(task.task_id, it + 1))
        if keep:
            # Before the next iteration starts: keep the last N finished ones.
            _prune_iterations(ctx, wf, task, body_refs, suffix, it + 1 - keep)


def _loop_condition(
    ctx: Ctx, wf: Workflow, wt: JSON, task: Task, cond: str, outputs: dict[str, JSON]
) -> bool | None:
    """Whether the loop goes round again; None while that is not known yet (a script is asked,
    or the loop failed)."""
    it = task.loop_iteration
    doc = scheduler.resolve_input(ctx, wf, wt, task.task_id)
    for ref, out in outputs.items():
        doc[ref] = out
    doc[wt["taskReferenceName"]] = task.output
    if _restricted(cond):
        try:
            return condition_true(cond, doc)
        except ConditionError as exc:
            tasks.fail_now(ctx, task, f"DO_WHILE loopCondition: {exc}")
            return None
    # Full JavaScript: ask the sandbox once per iteration, then read its outcome.
    marker = task.script
    if marker is None or marker.iteration != it:
        # A copy: the marker must not alias live parts of the state.
        scripts.await_script(ctx, task, "js", cond, input=copy.deepcopy(doc), iteration=it)
        return None
    outcome = marker.outcome
    if outcome is None:
        return None
    ctx.emit(E.LoopConditionRead(task.task_id))
    if not outcome.ok:
        tasks.fail_now(ctx, task, f"DO_WHILE loopCondition failed: {outcome.error}")
        return None
    return bool(outcome.again)


def _prune_iterations(
    ctx: Ctx, wf: Workflow, loop: Task, body_refs: list[str], suffix: str, upto: int
) -> None:
    """keepLastN: forget the task records and outputs of iterations before `upto`."""
    st = ctx.st
    iterations: list[int] = []
    refs: list[str] = []
    drop: dict[str, None] = {}
    for n in range(1, upto):
        if str(n) not in loop.output and not any(
            f"{r}{suffix}__{n}" in wf.ref_index for r in body_refs
        ):
            continue
        iterations.append(n)
        prefix = f"{suffix}__{n}"
        for ref in wf.ref_index:
            base, _, rest = ref.partition("__")
            if _under(f"__{rest}", prefix) and base in body_refs:
                refs.append(ref)
        for tid in wf.tasks:
            t = st.tasks[tid]
            base, _, rest = t.reference_task_name.partition("__")
            if base in body_refs and _under(f"__{rest}", prefix) and t.status not in T_ACTIVE:
                drop[tid] = None
    if iterations:
        ev = E.LoopIterationsPruned(wf.workflow_id, loop.task_id, iterations, refs, list(drop))
        ctx.emit(ev)


@functools.lru_cache(maxsize=1024)
def _restricted(cond: str) -> bool:
    return is_restricted_condition(cond)


def _under(suffix: str, prefix: str) -> bool:
    return suffix == prefix or suffix.startswith(prefix + "__")
