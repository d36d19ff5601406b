"""Every read the rest of the server makes on the replicated state, in one place.

api/ and runtime/ call these (under the replica's lock) instead of reaching into State, so the
state's layout can change without touching them; api/views.py maps what these return to
protobuf. Nothing here mutates state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import limits
from .processors import flow
from .processors.http import HttpJob, http_job, pending_http
from .processors.registry import latest_version
from .processors.scripts import pending_scripts
from .records import (
    T_ACTIVE,
    T_IN_PROGRESS,
    Task,
    Workflow,
)
from .state import State

JSON = Any

__all__ = [
    "HttpJob",
    "MemberInfo",
    "ScriptJob",
    "applied_seq",
    "has_work",
    "http_job",
    "leased_tasks",
    "list_workflows",
    "members",
    "next_due_ms",
    "pending_http",
    "pending_scripts",
    "poll_state",
    "recently_polled",
    "script_job",
    "settings",
    "task_def",
    "task_defs",
    "workflow",
    "workflow_def",
    "workflow_def_exists",
    "workflow_defs",
    "workflow_tasks",
]


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A member added or removed at run time (removed ones stay listed, flagged)."""

    node_id: str
    raft: str
    grpc: str
    removed: bool


@dataclass(frozen=True, slots=True)
class ScriptJob:
    """What the script executor needs to evaluate one pending script, copied out of the state
    (apply may change the task right after the lock is released)."""

    task_id: str
    fence: int
    lang: str
    source: str
    input: JSON
    task_type: str
    workflow_id: str


def applied_seq(st: State) -> int:
    return st.seq


def next_due_ms(st: State) -> int | None:
    """The earliest pending timer's due time, or None when nothing is due ever."""
    return st.next_due_ms()


# ---------------------------------------------------------------- definitions


def workflow_def_exists(st: State, name: str) -> bool:
    return bool(st.workflow_defs.get(name))


def workflow_def(st: State, name: str, version: int = 0) -> JSON | None:
    """The definition of `name` at `version` (0: the latest), or None."""
    versions = st.workflow_defs.get(name)
    if not versions:
        return None
    return versions.get(str(version or latest_version(versions)))


def workflow_defs(st: State) -> Iterator[tuple[str, int, JSON]]:
    """(name, version, definition) of every registered definition, by name then version."""
    for name in sorted(st.workflow_defs):
        versions = st.workflow_defs[name]
        for v in sorted(versions, key=int):
            yield name, int(v), versions[v]


def task_def(st: State, name: str) -> JSON | None:
    return st.task_defs.get(name)


def task_defs(st: State) -> list[JSON]:
    """Every task definition, by name."""
    return [st.task_defs[n] for n in sorted(st.task_defs)]


# ---------------------------------------------------------------- workflows and tasks


def workflow(st: State, workflow_id: str) -> Workflow | None:
    return st.workflows.get(workflow_id)


def workflow_tasks(st: State, wf: Workflow) -> list[Task]:
    """A workflow's tasks in the order they were scheduled (evicted ones left out)."""
    tasks = st.tasks
    return [tasks[tid] for tid in wf.tasks if tid in tasks]


def list_workflows(
    st: State, name: str, status: str, limit: int, after: tuple[int, str] | None = None
) -> list[Workflow]:
    """Up to `limit` workflows, newest first, of `name` and `status` ("" matches any); with
    `after` (create_time_ms, workflow_id) of one listed before, those older than it.

    Workflows are kept in start order, which is also create_time_ms order (cluster time never
    goes back), so new starts never land after `after`; when `after` has been evicted since,
    the listing goes on from the first one created earlier than it.
    """
    out: list[Workflow] = []
    passed = after is None
    after_ms, after_id = after or (0, "")
    for wf in reversed(st.workflows.values()):
        if not passed:
            if wf.workflow_id == after_id:
                passed = True
                continue
            if wf.create_time_ms >= after_ms:
                continue
            passed = True
        if name and wf.workflow_name != name:
            continue
        if status and wf.status != status:
            continue
        out.append(wf)
        if len(out) >= limit:
            break
    return out


def leased_tasks(st: State, task_ids: list[str], worker_id: str) -> list[Task]:
    """The tasks among `task_ids` still leased to `worker_id`: a retried poll returns what the
    first one leased, but not a task whose lease has since moved on or ended."""
    out: list[Task] = []
    for tid in task_ids:
        t = st.tasks.get(tid)
        if t is not None and t.status == T_IN_PROGRESS and t.worker_id == worker_id:
            out.append(t)
    return out


# ---------------------------------------------------------------- polls and queues


def has_work(st: State, task_type: str, request_id: str) -> bool:
    """A poll would answer at once: a task of its queue is ready and the queue's limits allow
    a lease (processors/flow.py), or its request is recorded."""
    return flow.can_lease(st, task_type) or request_id in st.requests


def recently_polled(st: State, queue: str) -> bool:
    """The queue's latest recorded poll is within half the active-worker window, so recording
    another one would change nothing a task domain choice reads."""
    seen = st.last_poll.get(queue)
    return seen is not None and st.clock_ms - seen < limits.ACTIVE_WORKER_MS / 2


def poll_state(st: State, request_id: str) -> tuple[bool, JSON | None]:
    """(parked, recorded outcome as a dict): a poll still parked in the state, or the outcome
    recorded for its request (None while neither, e.g. expired or dropped)."""
    if request_id in st.parked:
        return True, None
    rec = st.requests.get(request_id)
    return False, None if rec is None else rec.outcome


# ---------------------------------------------------------------- members


def members(st: State) -> list[MemberInfo]:
    return [MemberInfo(nid, m.raft, m.grpc, m.removed) for nid, m in st.members.items()]


# ---------------------------------------------------------------- scripts


def script_job(st: State, task_id: str) -> ScriptJob | None:
    """The pending script of an active task, or None when there is none to evaluate."""
    task = st.tasks.get(task_id)
    if task is None or task.status not in T_ACTIVE:
        return None
    marker = task.script
    if marker is None or marker.outcome is not None or marker.lang == "http":
        return None  # an HTTP request is the HTTP executor's (http_job)
    return ScriptJob(
        task_id=task_id,
        fence=marker.fence,
        lang=marker.lang,
        source=marker.source,
        input=json.loads(json.dumps(task.input if marker.input is None else marker.input)),
        task_type=task.type.value,
        workflow_id=task.workflow_id,
    )


# ---------------------------------------------------------------- cluster settings


def settings(st: State) -> dict[str, JSON]:
    """The cluster settings (SetHistoryRetention): history_retention_ms, history_max_workflows."""
    return dict(st.settings)


def read_events(st: State, from_offset: int, limit: int) -> list[dict[str, JSON]]:
    """Up to `limit` events of the log from `from_offset` on, oldest first."""
    log = st.event_log
    if not log:
        return []
    first = next(iter(log))
    start = max(from_offset, first)
    return [log[o] for o in range(start, min(start + limit, st.event_offset + 1))]


def event_handlers(st: State) -> list[dict[str, JSON]]:
    return list(st.event_handlers.values())


def source_mark(st: State, source: str) -> int:
    """The last sequence a broker source put into the log (IngestEvent); 0 before the first."""
    return st.source_marks.get(source, 0)


def sink_batch(st: State, sink: str, prefix: str, after: int, limit: int) -> dict[str, JSON]:
    """What a broker sink sends next, from past max(`after`, its replicated mark): `mark`,
    `first` (the first offset looked at; past the log's oldest kept one when retention dropped
    events the sink never looked at), `last` (the last looked at, at most `limit` of them) and
    `records` (those whose `sink` starts with `prefix`)."""
    mark = st.sink_marks.get(sink, 0)
    log = st.event_log
    first = max(after, mark) + 1
    oldest = next(iter(log)) if log else st.event_offset + 1
    look = max(first, oldest)
    last = min(st.event_offset, look + limit - 1)
    records = [log[o] for o in range(look, last + 1) if log[o].get("sink", "").startswith(prefix)]
    return {
        "mark": mark,
        "first": first,
        "oldest": oldest,
        "last": max(last, first - 1),
        "records": records,
    }
