"""Workflow-level limits: at most `maxRunning` running workflows of a definition name (all its
versions), at most `maxRunningPerCorrelationId` of them with one correlation id, and what a
start beyond them does (`whenLimited`: QUEUE, or REJECT with FAILED_PRECONDITION).

"Running" is records.WF_RUNS (RUNNING, PAUSED, COMPENSATING); the started version's limits
apply. A start that does not fit under QUEUE creates the workflow QUEUED: no task, no timeout,
nothing decided. When a running workflow of the name ends, the appliers note the name
(ctx.freed) and the command's drain calls `promote`, which starts the oldest QUEUED ones that
fit now, in the same command. Promotion goes in start order: one held back by its correlation
id's limit lets later ones of other correlation ids pass; one held back by the name's
maxRunning holds back every later one (no overtaking for a slot of the name).

The counts are exact because they change only in apply (admission_appliers.py): every replica
admits the same workflows at the same log position.
"""

from __future__ import annotations

from typing import Any

from .. import events as E
from ..context import Ctx
from ..errors import precondition
from ..records import WF_RUNNING, Workflow, admission_key
from ..state import State
from . import decider, registry

JSON = Any


def _over(st: State, name: str, correlation_id: str, lim: JSON, verb: str) -> str:
    """Why a workflow of `name` cannot run now under limits `lim` ("": it can)."""
    max_running = lim.get("maxRunning", 0)
    running = st.running.get(name, 0)
    if max_running and running >= max_running:
        return (
            f"workflow {name!r} {verb}: {running} of its workflows are running, its limit "
            f"maxRunning is {max_running}"
        )
    per_corr = lim.get("maxRunningPerCorrelationId", 0)
    key = admission_key(name, correlation_id)
    if per_corr and key:
        n = st.running_by_correlation.get(key, 0)
        if n >= per_corr:
            return (
                f"workflow {name!r} {verb}: {n} of its workflows with correlation id "
                f"{correlation_id[:100]!r} are running, its limit maxRunningPerCorrelationId "
                f"is {per_corr}"
            )
    return ""


def admits(ctx: Ctx, defn: JSON, correlation_id: str) -> bool:
    """Whether a new workflow of `defn` runs at once (False: it waits QUEUED). Raises
    FAILED_PRECONDITION, naming the definition and the limit, when its definition says REJECT."""
    lim = defn.get("limits")
    if not lim:
        return True
    why = _over(ctx.st, defn["name"], correlation_id, lim, "not started")
    if not why:
        return True
    if lim.get("whenLimited") == "REJECT":
        raise precondition(why)
    return False


def check_runs_again(ctx: Ctx, wf: Workflow) -> None:
    """A workflow that ended runs again (restart, retry, rerun): refused beyond its limits."""
    lim = registry.wf_def(ctx.st, wf).get("limits")
    if lim:
        why = _over(ctx.st, wf.workflow_name, wf.correlation_id, lim, "cannot run again")
        if why:
            raise precondition(f"workflow {wf.workflow_id}: {why}")


def promote(ctx: Ctx, name: str) -> None:
    """Start the oldest QUEUED workflows of `name` that fit now (module doc)."""
    st = ctx.st
    queue = st.queued.get(name)
    if not queue:
        return
    running = st.running.get(name, 0)
    by_corr: dict[str, int] = {}
    # (definition, correlation id) found at its correlation limit in this scan: the rest of its
    # kind is skipped at the cost of a lookup (one busy customer may have thousands queued).
    blocked: dict[tuple[str, str], None] = {}
    chosen: list[Workflow] = []
    for wf_id, kind in queue.items():
        if kind in blocked:
            continue
        wf = st.workflows[wf_id]
        lim = registry.wf_def(st, wf).get("limits") or {}
        max_running = lim.get("maxRunning", 0)
        if max_running and running >= max_running:
            break
        key = admission_key(name, wf.correlation_id)
        if key:
            n = by_corr.get(key)
            if n is None:
                n = st.running_by_correlation.get(key, 0)
            per_corr = lim.get("maxRunningPerCorrelationId", 0)
            if per_corr and n >= per_corr:
                by_corr[key] = n
                blocked[kind] = None
                continue
            by_corr[key] = n + 1
        running += 1
        chosen.append(wf)
    # All are counted before any decides: one that starts a workflow of the same name sees them.
    for wf in chosen:
        ctx.emit(E.WorkflowAdmitted(wf.workflow_id))
    for wf in chosen:
        if wf.status is WF_RUNNING:
            start_running(ctx, wf)


def start_running(ctx: Ctx, wf: Workflow) -> None:
    """A workflow runs from now: its timeout armed, its first tasks scheduled."""
    from .workflows import arm_timeout  # workflows imports this module

    arm_timeout(ctx, wf.workflow_id, registry.wf_def(ctx.st, wf))
    decider.decide(ctx, wf)
