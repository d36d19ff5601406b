"""Events: what a command made happen, as facts. Processors decide and emit them; appliers
(appliers.py, one small function per event) are the only code that changes the state.

An event is applied the moment it is emitted (as Zeebe applies events as they are written),
because a later decision of the same command reads its result: a task scheduled by a decide is
seen by the next step of the same walk. Every event of a batch is listed in Effects.events.
Events are not replicated: the log carries commands, and every replica derives the same events.
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


@dataclass(frozen=True, slots=True)
class Event:
    pass


# ---------------------------------------------------------------- cluster


@dataclass(frozen=True, slots=True)
class EpochRaised(Event):
    term: int


@dataclass(frozen=True, slots=True)
class MemberSet(Event):
    node_id: str
    raft: str
    grpc: str


@dataclass(frozen=True, slots=True)
class MemberRemoved(Event):
    node_id: str


@dataclass(frozen=True, slots=True)
class RequestRecorded(Event):
    request_id: str
    record: RequestRecord


@dataclass(frozen=True, slots=True)
class RequestsExpired(Event):
    """The `count` oldest recorded requests are forgotten (retention)."""

    count: int


# ---------------------------------------------------------------- definitions


@dataclass(frozen=True, slots=True)
class TaskDefsRegistered(Event):
    task_defs: list[JSON]


@dataclass(frozen=True, slots=True)
class WorkflowDefRegistered(Event):
    definition: JSON


# ---------------------------------------------------------------- workflows


@dataclass(frozen=True, slots=True)
class WorkflowStarted(Event):
    """A RUNNING workflow, with the definitions it runs (kept once per content hash)."""

    workflow: Workflow
    definition: JSON
    task_defs: dict[str, JSON]


@dataclass(frozen=True, slots=True)
class IdempotencyKeyRecorded(Event):
    key: str  # "<workflow name>\x00<idempotency key>"
    workflow_id: str


@dataclass(frozen=True, slots=True)
class WorkflowEnded(Event):
    workflow_id: str
    status: WorkflowStatus
    reason: str


@dataclass(frozen=True, slots=True)
class WorkflowOutputSet(Event):
    workflow_id: str
    output: dict[str, JSON]


@dataclass(frozen=True, slots=True)
class WorkflowEndRecorded(Event):
    """An ended workflow joins the retention order (after the workflows its end ended)."""

    workflow_id: str


@dataclass(frozen=True, slots=True)
class WorkflowReterminated(Event):
    """A FAILED or TIMED_OUT workflow re-marked TERMINATED through the API, as in Conductor."""

    workflow_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class WorkflowQuarantined(Event):
    """The last resort after a bug: the workflow is FAILED and its active tasks CANCELED,
    without the decisions an end normally makes (they are what failed)."""

    workflow_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class VariablesSet(Event):
    workflow_id: str
    values: dict[str, JSON]


@dataclass(frozen=True, slots=True)
class WorkflowEvicted(Event):
    workflow_id: str


# ---------------------------------------------------------------- tasks


@dataclass(frozen=True, slots=True)
class TaskScheduled(Event):
    task: Task


@dataclass(frozen=True, slots=True)
class TaskQueued(Event):
    task_id: str
    queue: str


@dataclass(frozen=True, slots=True)
class QueueEntryDropped(Event):
    """A queue named a task that can no longer be leased."""

    queue: str
    task_id: str


@dataclass(frozen=True, slots=True)
class TaskLeased(Event):
    task_id: str
    queue: str
    worker_id: str


@dataclass(frozen=True, slots=True)
class LeaseExtended(Event):
    task_id: str


@dataclass(frozen=True, slots=True)
class TaskStarted(Event):
    """An operator or system task begins (its start time); `running`: it stays IN_PROGRESS."""

    task_id: str
    running: bool


@dataclass(frozen=True, slots=True)
class TaskInputSet(Event):
    task_id: str
    input: dict[str, JSON]


@dataclass(frozen=True, slots=True)
class TaskEnded(Event):
    task_id: str
    status: TaskStatus
    output: JSON = None  # None: unchanged
    reason: str = ""
    worker_id: str = ""  # "": unchanged


@dataclass(frozen=True, slots=True)
class TaskRetried(Event):
    """A failed attempt is replaced by a new one (scheduled next)."""

    task_id: str


@dataclass(frozen=True, slots=True)
class TaskRetriesStopped(Event):
    task_id: str


@dataclass(frozen=True, slots=True)
class FailureTolerated(Event):
    """An optional task's failure: COMPLETED_WITH_ERRORS, and the workflow goes on."""

    task_id: str


@dataclass(frozen=True, slots=True)
class PermissiveFailureRecorded(Event):
    workflow_id: str
    task_id: str


@dataclass(frozen=True, slots=True)
class TaskTimeoutAlerted(Event):
    task_id: str


@dataclass(frozen=True, slots=True)
class CaseSelected(Event):
    task_id: str
    case: str | None


@dataclass(frozen=True, slots=True)
class DynamicForkPlanned(Event):
    task_id: str
    tasks: list[JSON]


@dataclass(frozen=True, slots=True)
class SubWorkflowLinked(Event):
    task_id: str
    child_id: str


@dataclass(frozen=True, slots=True)
class WaitScheduled(Event):
    task_id: str
    until_ms: int
    due_ms: int


@dataclass(frozen=True, slots=True)
class ScriptRequested(Event):
    task_id: str
    marker: ScriptMarker


@dataclass(frozen=True, slots=True)
class LoopConditionEvaluated(Event):
    task_id: str
    outcome: LoopOutcome


@dataclass(frozen=True, slots=True)
class LoopConditionRead(Event):
    """The loop's walk took the committed outcome of its condition."""

    task_id: str


@dataclass(frozen=True, slots=True)
class LoopStarted(Event):
    """A DO_WHILE begins its first iteration (its items, if any, are resolved next)."""

    task_id: str


@dataclass(frozen=True, slots=True)
class LoopItemsSet(Event):
    task_id: str
    items: list[JSON]


@dataclass(frozen=True, slots=True)
class LoopIterationEnded(Event):
    task_id: str
    iteration: int
    outputs: dict[str, JSON]


@dataclass(frozen=True, slots=True)
class LoopIterationStarted(Event):
    task_id: str
    iteration: int


@dataclass(frozen=True, slots=True)
class LoopIterationsPruned(Event):
    """keepLastN: the outputs, references and task records of older iterations go."""

    workflow_id: str
    task_id: str
    iterations: list[int]
    refs: list[str]
    task_ids: list[str]


# ---------------------------------------------------------------- polls and timers


@dataclass(frozen=True, slots=True)
class PollNoted(Event):
    queue: str


@dataclass(frozen=True, slots=True)
class PollParked(Event):
    request_id: str
    poll: ParkedPoll


@dataclass(frozen=True, slots=True)
class PollSettled(Event):
    """A parked poll left the parked set: filled, expired, cancelled or dropped."""

    request_id: str


@dataclass(frozen=True, slots=True)
class TimerSet(Event):
    key: str
    due_ms: int


@dataclass(frozen=True, slots=True)
class TimersFired(Event):
    keys: list[str]
