"""Events: what a command made happen, as facts. Processors decide and emit them; appliers
(appliers.py, one small function per event) are the only code that changes the state.

An event is applied the moment it is emitted (as Zeebe applies events as they are written),
because a later decision of the same command reads its result: a task scheduled by a decide is
seen by the next step of the same walk. Every event of a batch is listed in Effects.events.
Events are not replicated: the log carries commands, and every replica derives the same events.

Events are facts and never change once emitted. They are slotted dataclasses but not declared
frozen: a frozen dataclass takes about four times as long to build (each field is set through
object.__setattr__), and one task's lifecycle builds about eight events on the apply path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .records import (
    LoopOutcome,
    ParkedPoll,
    RequestRecord,
    ScriptMarker,
    Task,
    TaskStatus,
    Workflow,
    WorkflowStatus,
)

JSON = Any


@dataclass(slots=True)
class Event:
    pass


# ---------------------------------------------------------------- cluster


@dataclass(slots=True)
class EpochRaised(Event):
    term: int


@dataclass(slots=True)
class MemberSet(Event):
    node_id: str
    raft: str
    grpc: str


@dataclass(slots=True)
class MemberRemoved(Event):
    node_id: str


@dataclass(slots=True)
class RequestRecorded(Event):
    request_id: str
    record: RequestRecord


@dataclass(slots=True)
class RequestsExpired(Event):
    """The `count` oldest recorded requests are forgotten (retention)."""

    count: int


# ---------------------------------------------------------------- definitions


@dataclass(slots=True)
class TaskDefsRegistered(Event):
    task_defs: list[JSON]


@dataclass(slots=True)
class WorkflowDefRegistered(Event):
    definition: JSON


# ---------------------------------------------------------------- workflows


@dataclass(slots=True)
class WorkflowStarted(Event):
    """A RUNNING (or QUEUED, processors/admission.py) workflow, with the definitions it runs
    (kept once per content hash)."""

    workflow: Workflow
    definition: JSON
    task_defs: dict[str, JSON]


@dataclass(slots=True)
class WorkflowAdmitted(Event):
    """A QUEUED workflow fits its definition's limits now: RUNNING from now on."""

    workflow_id: str


@dataclass(slots=True)
class IdempotencyKeyRecorded(Event):
    key: str  # "<workflow name>\x00<idempotency key>"
    workflow_id: str


@dataclass(slots=True)
class WorkflowEnded(Event):
    workflow_id: str
    status: WorkflowStatus
    reason: str
    output: dict[str, JSON]


@dataclass(slots=True)
class WorkflowOutputSet(Event):
    workflow_id: str
    output: dict[str, JSON]


@dataclass(slots=True)
class WorkflowEndRecorded(Event):
    """An ended workflow joins the retention order (after the workflows its end ended)."""

    workflow_id: str


@dataclass(slots=True)
class WorkflowReterminated(Event):
    """A FAILED or TIMED_OUT workflow re-marked TERMINATED through the API, as in Conductor."""

    workflow_id: str
    reason: str


@dataclass(slots=True)
class WorkflowQuarantined(Event):
    """The last resort after a bug: the workflow is FAILED and its active tasks CANCELED,
    without the decisions an end normally makes (they are what failed)."""

    workflow_id: str
    reason: str


@dataclass(slots=True)
class VariablesSet(Event):
    workflow_id: str
    values: dict[str, JSON]


@dataclass(slots=True)
class WorkflowEvicted(Event):
    workflow_id: str


# ---------------------------------------------------------------- the operator's actions


@dataclass(slots=True)
class WorkflowPaused(Event):
    workflow_id: str


@dataclass(slots=True)
class WorkflowResumed(Event):
    workflow_id: str


@dataclass(slots=True)
class WorkflowRestored(Event):
    """A workflow no longer in memory is put back from its archive document, as it ended."""

    workflow: Workflow
    tasks: list[Task]
    definition: JSON
    task_defs: dict[str, JSON]
    idempotency_key: str  # "<name>\x00<key>" it takes back (it was free), or ""


@dataclass(slots=True)
class WorkflowReopened(Event):
    """A terminal workflow is RUNNING again (retry, restart, rerun): it leaves the retention
    order and counts as running in its chain again."""

    workflow_id: str


@dataclass(slots=True)
class WorkflowReset(Event):
    """Restart (or rerun from the beginning): the definition, input and variables of a fresh
    run, which starts now."""

    workflow_id: str
    def_hash: str
    definition: JSON
    task_defs: dict[str, JSON]
    input: dict[str, JSON]
    variables: dict[str, JSON]


@dataclass(slots=True)
class WorkflowInputSet(Event):
    workflow_id: str
    input: dict[str, JSON]


@dataclass(slots=True)
class TasksDropped(Event):
    """Task records of a run that starts over (restart, rerun) go; `ref_index` is the latest
    attempt of each reference among those that stay."""

    workflow_id: str
    task_ids: list[str]
    ref_index: dict[str, str]


@dataclass(slots=True)
class TaskReopened(Event):
    """An ended task is IN_PROGRESS again: a JOIN or DO_WHILE the workflow's end canceled, or a
    SUB_WORKFLOW task whose child runs again."""

    task_id: str


@dataclass(slots=True)
class PermissiveFailuresForgotten(Event):
    """Permissive failures that run again no longer fail the workflow at its end."""

    workflow_id: str
    task_ids: list[str]


@dataclass(slots=True)
class WorkflowDetached(Event):
    """A child runs again while its parent is no longer in memory: it runs on its own."""

    workflow_id: str


@dataclass(slots=True)
class WorkflowRemoved(Event):
    """An operator removed a terminal workflow: it leaves memory (within the command, unlike
    eviction)."""

    workflow_id: str


# ---------------------------------------------------------------- sagas


@dataclass(slots=True)
class CompensationStarted(Event):
    """A saga begins to undo its completed steps (processors/compensation.py): COMPENSATING,
    keeping the status and reason it would have ended with, and the output it had."""

    workflow_id: str
    from_status: str
    reason: str
    output: dict[str, JSON]
    steps: list[str]  # task ids, in undo order
    failure_workflow: bool  # the failure workflow starts when the compensation ends
    failed_task_id: str


@dataclass(slots=True)
class CompensationScheduled(Event):
    """A compensation task was scheduled for a step (its `compensates` link)."""

    task_id: str
    step_id: str


# ---------------------------------------------------------------- tasks


@dataclass(slots=True)
class TaskScheduled(Event):
    task: Task


@dataclass(slots=True)
class TaskQueued(Event):
    task_id: str
    queue: str
    priority: int = 0  # its workflow's: the queue hands out higher first (processors/flow.py)


@dataclass(slots=True)
class QueueEntryDropped(Event):
    """A queue named a task that can no longer be leased."""

    queue: str
    task_id: str


@dataclass(slots=True)
class TaskLeased(Event):
    task_id: str
    queue: str
    worker_id: str
    owner: str = ""  # the principal that polled: only it may report on the task
    # The queue's rate-limit window (ms) the lease counts in; 0: the queue has no rate limit.
    window_ms: int = 0


@dataclass(slots=True)
class CapacityReturned(Event):
    """A limited queue with ready tasks may lease again (a slot freed, its rate window moved,
    or its limits changed): waiting and parked polls are served (processors/flow.py)."""

    queue: str


@dataclass(slots=True)
class LeaseExtended(Event):
    task_id: str


@dataclass(slots=True)
class TaskStarted(Event):
    """An operator or system task begins (its start time); `running`: it stays IN_PROGRESS."""

    task_id: str
    running: bool


@dataclass(slots=True)
class TaskInputSet(Event):
    task_id: str
    input: dict[str, JSON]


@dataclass(slots=True)
class TaskEnded(Event):
    task_id: str
    status: TaskStatus
    output: JSON = None  # None: unchanged
    reason: str = ""
    worker_id: str = ""  # "": unchanged


@dataclass(slots=True)
class TaskRetried(Event):
    """A failed attempt is replaced by a new one (scheduled next)."""

    task_id: str


@dataclass(slots=True)
class TaskRetriesStopped(Event):
    task_id: str


@dataclass(slots=True)
class FailureTolerated(Event):
    """An optional task's failure: COMPLETED_WITH_ERRORS, and the workflow goes on."""

    task_id: str


@dataclass(slots=True)
class PermissiveFailureRecorded(Event):
    workflow_id: str
    task_id: str


@dataclass(slots=True)
class TaskTimeoutAlerted(Event):
    task_id: str


@dataclass(slots=True)
class CaseSelected(Event):
    task_id: str
    case: str | None


@dataclass(slots=True)
class DynamicForkPlanned(Event):
    task_id: str
    tasks: list[JSON]


@dataclass(slots=True)
class SubWorkflowLinked(Event):
    task_id: str
    child_id: str


@dataclass(slots=True)
class WaitScheduled(Event):
    task_id: str
    until_ms: int
    due_ms: int


@dataclass(slots=True)
class ScriptRequested(Event):
    task_id: str
    marker: ScriptMarker


@dataclass(slots=True)
class LoopConditionEvaluated(Event):
    task_id: str
    outcome: LoopOutcome


@dataclass(slots=True)
class LoopConditionRead(Event):
    """The loop's walk took the committed outcome of its condition."""

    task_id: str


@dataclass(slots=True)
class LoopStarted(Event):
    """A DO_WHILE begins its first iteration (its items, if any, are resolved next)."""

    task_id: str


@dataclass(slots=True)
class LoopItemsSet(Event):
    task_id: str
    items: list[JSON]


@dataclass(slots=True)
class LoopIterationEnded(Event):
    task_id: str
    iteration: int
    outputs: dict[str, JSON]


@dataclass(slots=True)
class LoopIterationStarted(Event):
    task_id: str
    iteration: int


@dataclass(slots=True)
class LoopIterationsPruned(Event):
    """keepLastN: the outputs, references and task records of older iterations go."""

    workflow_id: str
    task_id: str
    iterations: list[int]
    refs: list[str]
    task_ids: list[str]


# ---------------------------------------------------------------- polls and timers


@dataclass(slots=True)
class PollNoted(Event):
    queue: str


@dataclass(slots=True)
class PollParked(Event):
    request_id: str
    poll: ParkedPoll


@dataclass(slots=True)
class PollSettled(Event):
    """A parked poll left the parked set: filled, expired, cancelled or dropped."""

    request_id: str


@dataclass(slots=True)
class TimerSet(Event):
    key: str
    due_ms: int


@dataclass(slots=True)
class TimersFired(Event):
    keys: list[str]


# ---------------------------------------------------------------- durable history


@dataclass(slots=True)
class HistorySettingsSet(Event):
    """The cluster's history retention changed (SetHistoryRetention)."""

    retention_ms: int
    max_workflows: int


@dataclass(slots=True)
class HistoryExpiryDue(Event):
    """Retention of the durable history runs now (history_ops.Expire) and next at next_due_ms."""

    cutoff_ms: int
    max_rows: int
    next_due_ms: int


@dataclass(slots=True)
class HistoryNoted(Event):
    """The command just applied gave the durable history work (between commands, like
    eviction): `seq` > 0 when a history that missed it cannot catch up alone (an Archive or
    a Remove), `expire` the command's last Expire as [seq, cutoff_ms, max_rows] (or [])."""

    seq: int
    expire: list[int]


# ---------------------------------------------------------------- the event log


@dataclass(slots=True)
class EventAppended(Event):
    """An event joined the log at record["offset"] (with its handlers' per-action outcomes)."""

    record: dict[str, JSON]


@dataclass(slots=True)
class OldestEventDropped(Event):
    """The log is over limits.MAX_EVENTS: its oldest event leaves memory."""

    offset: int


@dataclass(slots=True)
class EventHandlerSet(Event):
    handler: dict[str, JSON]


@dataclass(slots=True)
class EventHandlerRemoved(Event):
    name: str


@dataclass(slots=True)
class BridgeMarkSet(Event):
    """A broker bridge's replicated mark: `marks` is "source_marks" (the last sequence ingested
    from a source) or "sink_marks" (the last event offset a sink published)."""

    marks: str
    name: str
    value: int


@dataclass(slots=True)
class ConsumerCommitted(Event):
    """A consumer group's committed offset; `key` is "<stream>/<group>"."""

    key: str
    offset: int


@dataclass(slots=True)
class EventRecordSet(Event):
    """An appended event's record gains what happened after its append: its handlers' outcomes
    ("actions") or the tasks it completed ("correlated")."""

    offset: int
    key: str
    value: JSON


@dataclass(slots=True)
class EventWaitStarted(Event):
    """A WAIT_FOR_EVENT task waits for the event `name` with `key` (processors/messages.py)."""

    task_id: str
    name: str
    key: str


@dataclass(slots=True)
class MessageBuffered(Event):
    """An event nobody waited for waits for its task: {"offset", "name", "correlationKey",
    "expires"} (its payload stays in the event log)."""

    message: dict[str, JSON]


@dataclass(slots=True)
class MessageRemoved(Event):
    """A buffered message was consumed, expired or dropped over the bound."""

    offset: int


@dataclass(slots=True)
class AsyncOutputSet(Event):
    """An asyncComplete task (EVENT, HTTP) did its work: its output, and it waits IN_PROGRESS
    for a signal (no script or request pending any more)."""

    task_id: str
    output: JSON
