"""The typed records the replicated state is made of, and the closed sets they use.

Records are mutable slotted dataclasses, but only the appliers (appliers.py) change them; every
other module reads. JSON documents a user wrote or a task produced (inputs, outputs, variables,
definitions) stay plain JSON values inside them.

Each record knows its snapshot row (`ROW`: the field names in order) and how to read a record
written by the schema-1 core, which kept camelCase dicts (`from_v1`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from operator import attrgetter
from typing import Any, ClassVar, Self, TypeVar

JSON = Any


class WorkflowStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"
    TIMED_OUT = "TIMED_OUT"
    # An operator paused it: nothing new is scheduled until it is resumed (not terminal).
    PAUSED = "PAUSED"
    # A saga is undoing its completed steps (processors/compensation.py): not terminal; it ends
    # COMPENSATED, or FAILED when a compensation fails for good.
    COMPENSATING = "COMPENSATING"
    COMPENSATED = "COMPENSATED"
    # Started while its definition was at its running limit: waits, with no task, until a slot
    # frees (processors/admission.py); not terminal.
    QUEUED = "QUEUED"


class TaskStatus(StrEnum):
    SCHEDULED = "SCHEDULED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
    FAILED = "FAILED"
    FAILED_WITH_TERMINAL_ERROR = "FAILED_WITH_TERMINAL_ERROR"
    TIMED_OUT = "TIMED_OUT"
    CANCELED = "CANCELED"
    # An operator skipped it: done, with the output the operator gave (Conductor's SKIPPED).
    SKIPPED = "SKIPPED"


class TaskType(StrEnum):
    """The task types the core executes (definitions.SUPPORTED_TASK_TYPES)."""

    SIMPLE = "SIMPLE"
    DYNAMIC = "DYNAMIC"
    SWITCH = "SWITCH"
    DECISION = "DECISION"
    FORK_JOIN = "FORK_JOIN"
    FORK_JOIN_DYNAMIC = "FORK_JOIN_DYNAMIC"
    # The task a FORK_JOIN or FORK_JOIN_DYNAMIC creates (Conductor's TaskType.FORK); records
    # written before it keep their FORK_JOIN / FORK_JOIN_DYNAMIC type and still run.
    FORK = "FORK"
    JOIN = "JOIN"
    EXCLUSIVE_JOIN = "EXCLUSIVE_JOIN"
    DO_WHILE = "DO_WHILE"
    SUB_WORKFLOW = "SUB_WORKFLOW"
    START_WORKFLOW = "START_WORKFLOW"
    SET_VARIABLE = "SET_VARIABLE"
    NOOP = "NOOP"
    TERMINATE = "TERMINATE"
    WAIT = "WAIT"
    HUMAN = "HUMAN"
    INLINE = "INLINE"
    JSON_JQ_TRANSFORM = "JSON_JQ_TRANSFORM"
    HTTP = "HTTP"
    EVENT = "EVENT"
    WAIT_FOR_EVENT = "WAIT_FOR_EVENT"


class TimeoutPolicy(StrEnum):
    RETRY = "RETRY"
    TIME_OUT_WF = "TIME_OUT_WF"
    ALERT_ONLY = "ALERT_ONLY"


class RetryLogic(StrEnum):
    FIXED = "FIXED"
    EXPONENTIAL_BACKOFF = "EXPONENTIAL_BACKOFF"
    LINEAR_BACKOFF = "LINEAR_BACKOFF"


class IdempotencyStrategy(StrEnum):
    FAIL = "FAIL"
    RETURN_EXISTING = "RETURN_EXISTING"
    FAIL_ON_RUNNING = "FAIL_ON_RUNNING"


class TimerKind(StrEnum):
    """A timer's key is "<kind>:<id>"; the id names a task, a workflow or a parked poll."""

    LEASE = "lease"  # responseTimeoutSeconds of a leased task
    READY = "ready"  # a delayed start or retry
    WAIT = "wait"  # a WAIT task's duration or until
    TIMEOUT = "tmo"  # timeoutSeconds, from the first poll
    POLL_TIMEOUT = "ptmo"  # pollTimeoutSeconds
    TOTAL_TIMEOUT = "ttmo"  # totalTimeoutSeconds, over all attempts
    POLL = "poll"  # a parked poll's expiry
    WORKFLOW_TIMEOUT = "wftmo"  # the workflow's timeoutSeconds
    HISTORY = "hist"  # the durable history's retention is due (processors/retention.py)
    RATE = "rate"  # a queue's rate-limit window lets a lease through again (processors/flow.py)

    @property
    def prefix(self) -> str:
        return self._value_ + ":"


def queue_key(task_type: str, domain: str) -> str:
    """The queue a task waits in: its type's, or its domain's ("<type>@<domain>"; neither a
    type nor a domain may contain "@", so keys never collide)."""
    return f"{task_type}@{domain}" if domain else task_type


def admission_key(workflow_name: str, correlation_id: str) -> str:
    """State.running_by_correlation's key ("" without a correlation id: not counted)."""
    return f"{workflow_name}\x00{correlation_id}" if correlation_id else ""


def idempotency_index_key(workflow_name: str, idempotency_key: str) -> str:
    """The key of State.idempotency for a workflow's idempotency key ("" when it has none):
    keys are per definition name, and no name contains NUL."""
    return f"{workflow_name}\x00{idempotency_key}" if idempotency_key else ""


# Timer key prefixes, as plain strings (keys are built on every lease and task end).
LEASE_TIMER = TimerKind.LEASE.prefix
READY_TIMER = TimerKind.READY.prefix
WAIT_TIMER = TimerKind.WAIT.prefix
TIMEOUT_TIMER = TimerKind.TIMEOUT.prefix
POLL_TIMEOUT_TIMER = TimerKind.POLL_TIMEOUT.prefix
TOTAL_TIMEOUT_TIMER = TimerKind.TOTAL_TIMEOUT.prefix
POLL_TIMER = TimerKind.POLL.prefix
WORKFLOW_TIMEOUT_TIMER = TimerKind.WORKFLOW_TIMEOUT.prefix
HISTORY_TIMER = TimerKind.HISTORY.prefix + "retention"
RATE_TIMER = TimerKind.RATE.prefix
# The timers a task may hold (ended with the task).
TASK_TIMERS = (
    LEASE_TIMER,
    READY_TIMER,
    WAIT_TIMER,
    TIMEOUT_TIMER,
    POLL_TIMEOUT_TIMER,
    TOTAL_TIMEOUT_TIMER,
)

# Members as module constants: in Python 3.11 reading `TaskStatus.X` is a descriptor call, and
# apply's hot paths read them dozens of times per task.
WF_RUNNING = WorkflowStatus.RUNNING
WF_COMPLETED = WorkflowStatus.COMPLETED
WF_FAILED = WorkflowStatus.FAILED
WF_TERMINATED = WorkflowStatus.TERMINATED
WF_TIMED_OUT = WorkflowStatus.TIMED_OUT
WF_PAUSED = WorkflowStatus.PAUSED
WF_COMPENSATING = WorkflowStatus.COMPENSATING
WF_COMPENSATED = WorkflowStatus.COMPENSATED
WF_QUEUED = WorkflowStatus.QUEUED
T_SCHEDULED = TaskStatus.SCHEDULED
T_IN_PROGRESS = TaskStatus.IN_PROGRESS
T_COMPLETED = TaskStatus.COMPLETED
T_COMPLETED_WITH_ERRORS = TaskStatus.COMPLETED_WITH_ERRORS
T_FAILED = TaskStatus.FAILED
T_FAILED_WITH_TERMINAL_ERROR = TaskStatus.FAILED_WITH_TERMINAL_ERROR
T_TIMED_OUT = TaskStatus.TIMED_OUT
T_CANCELED = TaskStatus.CANCELED
T_SKIPPED = TaskStatus.SKIPPED

WF_TERMINAL = frozenset(
    (
        WorkflowStatus.COMPLETED,
        WorkflowStatus.FAILED,
        WorkflowStatus.TERMINATED,
        WorkflowStatus.TIMED_OUT,
        WorkflowStatus.COMPENSATED,
    )
)
# Not ended: running, paused by an operator (its tasks in progress run on), compensating, or
# queued behind its definition's running limit.
WF_LIVE = frozenset(
    (
        WorkflowStatus.RUNNING,
        WorkflowStatus.PAUSED,
        WorkflowStatus.COMPENSATING,
        WorkflowStatus.QUEUED,
    )
)
# What a definition's limits count as running (processors/admission.py): live, not QUEUED.
WF_RUNS = frozenset((WorkflowStatus.RUNNING, WorkflowStatus.PAUSED, WorkflowStatus.COMPENSATING))
T_ACTIVE = frozenset((TaskStatus.SCHEDULED, TaskStatus.IN_PROGRESS))
T_RETRIABLE = frozenset((TaskStatus.FAILED, TaskStatus.TIMED_OUT))
T_DONE_OK = frozenset((TaskStatus.COMPLETED, TaskStatus.COMPLETED_WITH_ERRORS, TaskStatus.SKIPPED))
T_FAILED_STATES = frozenset(
    (
        TaskStatus.FAILED,
        TaskStatus.FAILED_WITH_TERMINAL_ERROR,
        TaskStatus.TIMED_OUT,
        TaskStatus.CANCELED,
    )
)


_E = TypeVar("_E", bound=StrEnum)


def _by_value(cls: type[_E]) -> dict[str, _E]:
    return {m._value_: m for m in cls}


# Members by value: a dict lookup costs a tenth of calling the enum (snapshot loads, decoding
# values a definition or command holds).
WORKFLOW_STATUS_OF = _by_value(WorkflowStatus)
TASK_STATUS_OF = _by_value(TaskStatus)
TASK_TYPE_OF = _by_value(TaskType)
TIMEOUT_POLICY_OF = _by_value(TimeoutPolicy)
RETRY_LOGIC_OF = _by_value(RetryLogic)
STRATEGY_OF = _by_value(IdempotencyStrategy)
TIMER_KIND_OF = _by_value(TimerKind)


class _Row:
    """Snapshot rows: a record as the list of its field values, in ROW order."""

    __slots__ = ()
    ROW: ClassVar[tuple[str, ...]]
    _GET: ClassVar[Callable[[Any], tuple[JSON, ...]]]

    def to_row(self) -> tuple[JSON, ...]:
        return type(self)._GET(self)

    @classmethod
    def from_named(cls, names: list[str], row: list[JSON]) -> Self:
        """A record from a row written with another field order (or fewer fields)."""
        known = set(cls.ROW)
        kw = {n: v for n, v in zip(names, row, strict=True) if n in known}
        return cls(**kw)


def _row_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@dataclass(slots=True, frozen=True)
class LoopOutcome:
    """A DO_WHILE loopCondition's evaluation, kept until the loop's decide walk reads it."""

    ok: bool
    again: bool
    error: str


@dataclass(slots=True)
class ScriptMarker:
    """A task waiting for a script evaluation outside apply (the runtime's sandbox).

    The fence is the sequence number of the command that asked: a result names it, so a result
    for an older request is told apart."""

    fence: int
    lang: str  # "js" or "jq"; "http": an HTTP request (input), made by the runtime
    source: str
    # What the script reads; None: the task's input.
    input: JSON = None
    # DO_WHILE: the iteration the condition is asked for, and its outcome once committed.
    iteration: int | None = None
    outcome: LoopOutcome | None = None

    def to_json(self) -> dict[str, JSON]:
        d: dict[str, JSON] = {"fence": self.fence, "lang": self.lang, "source": self.source}
        if self.input is not None:
            d["input"] = self.input
        if self.iteration is not None:
            d["iteration"] = self.iteration
        if self.outcome is not None:
            o = self.outcome
            d["outcome"] = {"ok": o.ok, "again": o.again, "error": o.error}
        return d

    @classmethod
    def from_json(cls, d: dict[str, JSON]) -> ScriptMarker:
        o = d.get("outcome")
        return cls(
            fence=d["fence"],
            lang=d["lang"],
            source=d["source"],
            input=d.get("input"),
            iteration=d.get("iteration"),
            outcome=None if o is None else LoopOutcome(o["ok"], o["again"], o["error"]),
        )


@dataclass(slots=True)
class Workflow(_Row):
    workflow_id: str
    workflow_name: str
    workflow_version: int
    # The content hash of the definition (and task definitions) it runs: State.def_snapshots.
    def_hash: str
    status: WorkflowStatus
    input: dict[str, JSON]
    output: dict[str, JSON]
    variables: dict[str, JSON]
    correlation_id: str
    priority: int
    idempotency_key: str
    create_time_ms: int
    end_time_ms: int
    reason_for_incompletion: str
    tasks: list[str]  # task ids in the order they were scheduled
    ref_index: dict[str, str]  # reference (with DO_WHILE "__N" suffixes) -> latest attempt's id
    task_seq: int  # the next task id's number
    parent_workflow_id: str = ""
    parent_workflow_task_id: str = ""
    depth: int = 0  # SUB_WORKFLOW / failure workflow nesting
    # Workflows started by workflows above it, up to one a client started (limits.MAX_CHAIN_DEPTH)
    chain_depth: int = 0
    # The client-started workflow at the top of its chain ("" for that one): State.chains' key
    chain_root: str = ""
    task_to_domain: dict[str, str] = field(default_factory=dict)
    permissive_failures: list[str] = field(default_factory=list)
    triggering_workflow_id: str = ""  # a failure workflow: the workflow whose failure started it
    # When it last started running (its start, its admission out of QUEUED, a restart, retry or
    # rerun); 0 while QUEUED, and in records written before it was kept.
    start_time_ms: int = 0
    # A saga (processors/compensation.py), set when its compensation begins: the status it
    # would have ended with ("": no compensation ran), the steps to undo (task ids, in undo
    # order), the applied sequence number it began at, whether its failure workflow starts when
    # the compensation ends, and the task that failed it.
    saga_status: str = ""
    saga_steps: list[str] = field(default_factory=list)
    saga_seq: int = 0
    saga_failure_workflow: bool = False
    saga_failed_task: str = ""

    ROW: ClassVar[tuple[str, ...]] = ()

    def fix_types(self) -> Self:
        self.status = WORKFLOW_STATUS_OF[self.status]
        return self

    @classmethod
    def from_v1(cls, d: dict[str, JSON]) -> Workflow:
        return cls(
            workflow_id=d["workflowId"],
            workflow_name=d["workflowName"],
            workflow_version=d["workflowVersion"],
            def_hash=d["defHash"],
            status=WORKFLOW_STATUS_OF[d["status"]],
            input=d["input"],
            output=d["output"],
            variables=d["variables"],
            correlation_id=d["correlationId"],
            priority=d["priority"],
            idempotency_key=d["idempotencyKey"],
            create_time_ms=d["createTime"],
            end_time_ms=d["endTime"],
            reason_for_incompletion=d["reasonForIncompletion"],
            tasks=d["tasks"],
            ref_index=d["refIndex"],
            task_seq=d["taskSeq"],
            parent_workflow_id=d.get("parentWorkflowId", ""),
            parent_workflow_task_id=d.get("parentWorkflowTaskId", ""),
            depth=d.get("depth", 0),
            task_to_domain=d.get("taskToDomain") or {},
            permissive_failures=d.get("permissiveFailures", []),
            triggering_workflow_id=d.get("triggeringWorkflowId", ""),
        )


@dataclass(slots=True)
class Task(_Row):
    task_id: str
    task_type: str  # the queue's type: the task definition's name for SIMPLE, else the type
    type: TaskType
    reference_task_name: str
    workflow_id: str
    workflow_type: str
    correlation_id: str
    # Where its configuration sits in the workflow's definition; None: in dynamic_task.
    path: list[str | int] | None
    seq: int  # its position in the workflow's task list
    status: TaskStatus
    input: dict[str, JSON]
    output: JSON
    retry_count: int
    retried_task_id: str
    poll_count: int
    scheduled_time_ms: int
    start_time_ms: int
    end_time_ms: int
    lease_expires_ms: int
    reason_for_incompletion: str
    worker_id: str
    response_timeout_seconds: int
    retry_limit: int
    retry_logic: RetryLogic
    retry_delay_seconds: int
    backoff_scale_factor: float
    max_retry_delay_seconds: int
    optional: bool
    permissive: bool = False
    dynamic_task: JSON = None  # the configuration of a DYNAMIC or dynamically forked task
    base_ref: str = ""  # inside a DO_WHILE: the reference without the "__N" suffix
    iteration: int = 0
    # Worker tasks only: the task definition's timeouts.
    timeout_policy: TimeoutPolicy = TimeoutPolicy.TIME_OUT_WF
    timeout_seconds: int = 0
    poll_timeout_seconds: int = 0
    total_timeout_seconds: int = 0
    first_scheduled_ms: int | None = None  # the first attempt's scheduled time
    domain: str = ""
    script: ScriptMarker | None = None
    selected_case: str | None = None  # SWITCH / DECISION; None: the default case
    dynamic_fork_tasks: list[JSON] | None = None
    items: list[JSON] | None = None  # DO_WHILE over items
    loop_iteration: int = 0
    sub_workflow_id: str = ""
    wait_until_ms: int | None = None
    timeout_alerts: int = 0  # ALERT_ONLY timeouts that fired
    retried: bool = False  # a later attempt replaced it
    permissive_failed: bool = False
    lease_owner: str = ""  # the principal whose poll leased it ("" binds nothing)
    # The applied sequence number of the command that ended it (a saga undoes steps in reverse
    # completion order; 0: ended before it was recorded).
    end_seq: int = 0
    compensates: str = ""  # a compensation task: the id of the step it undoes

    ROW: ClassVar[tuple[str, ...]] = ()

    def fix_types(self) -> Self:
        self.status = TASK_STATUS_OF[self.status]
        self.type = TASK_TYPE_OF[self.type]
        self.retry_logic = RETRY_LOGIC_OF[self.retry_logic]
        self.timeout_policy = TIMEOUT_POLICY_OF[self.timeout_policy]
        if self.script is not None:
            self.script = ScriptMarker.from_json(self.script)  # type: ignore[arg-type]
        return self

    @classmethod
    def from_v1(cls, d: dict[str, JSON]) -> Task:
        marker = d.get("script")
        return cls(
            task_id=d["taskId"],
            task_type=d["taskType"],
            type=TASK_TYPE_OF[d["type"]],
            reference_task_name=d["referenceTaskName"],
            workflow_id=d["workflowId"],
            workflow_type=d["workflowType"],
            correlation_id=d["correlationId"],
            path=d["path"],
            seq=d["seq"],
            status=TASK_STATUS_OF[d["status"]],
            input=d["input"],
            output=d["output"],
            retry_count=d["retryCount"],
            retried_task_id=d["retriedTaskId"],
            poll_count=d["pollCount"],
            scheduled_time_ms=d["scheduledTime"],
            start_time_ms=d["startTime"],
            end_time_ms=d["endTime"],
            lease_expires_ms=d["leaseExpiresTime"],
            reason_for_incompletion=d["reasonForIncompletion"],
            worker_id=d["workerId"],
            response_timeout_seconds=d["responseTimeoutSeconds"],
            retry_limit=d["retryLimit"],
            retry_logic=RETRY_LOGIC_OF[d["retryLogic"]],
            retry_delay_seconds=d["retryDelaySeconds"],
            backoff_scale_factor=d["backoffScaleFactor"],
            max_retry_delay_seconds=d["maxRetryDelaySeconds"],
            optional=d["optional"],
            permissive=bool(d.get("permissive", False)),
            dynamic_task=d.get("dynamicTask"),
            base_ref=d.get("baseRef", ""),
            iteration=d.get("iteration", 0),
            timeout_policy=TIMEOUT_POLICY_OF[d.get("timeoutPolicy", "TIME_OUT_WF")],
            timeout_seconds=d.get("timeoutSeconds", 0),
            poll_timeout_seconds=d.get("pollTimeoutSeconds", 0),
            total_timeout_seconds=d.get("totalTimeoutSeconds", 0),
            first_scheduled_ms=d.get("firstScheduledTime"),
            domain=d.get("domain", ""),
            script=None if marker is None else ScriptMarker.from_json(marker),
            selected_case=d.get("selectedCase"),
            dynamic_fork_tasks=d.get("dynamicForkTasks"),
            items=d.get("items"),
            loop_iteration=d.get("loopIteration", 0),
            sub_workflow_id=d.get("subWorkflowId", ""),
            wait_until_ms=d.get("waitUntil"),
            timeout_alerts=d.get("timeoutAlerts", 0),
            retried=bool(d.get("retried", False)),
            permissive_failed=bool(d.get("permissiveFailed", False)),
        )


@dataclass(slots=True)
class ParkedPoll(_Row):
    """A long poll parked until a task of its queue is ready (leased at schedule time)."""

    queue: str
    worker_id: str
    count: int
    epoch: int
    expires_ms: int
    fp: str  # its request's fingerprint: the outcome is recorded under its id when filled
    owner: str = ""  # the polling principal, who owns what the poll leases

    ROW: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_v1(cls, d: dict[str, JSON]) -> ParkedPoll:
        return cls(d["taskType"], d["workerId"], d["count"], d["epoch"], d["expires"], d["fp"])


@dataclass(slots=True)
class RequestRecord(_Row):
    """The outcome recorded for a request id: a retry gets it again."""

    fp: str
    outcome: dict[str, JSON]  # Outcome.to_dict()
    at_ms: int

    ROW: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_v1(cls, d: dict[str, JSON]) -> RequestRecord:
        return cls(d["fp"], d["outcome"], d["at"])


@dataclass(slots=True)
class Member(_Row):
    """A replica added (or removed) at run time."""

    raft: str
    grpc: str
    removed: bool

    ROW: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_v1(cls, d: dict[str, JSON]) -> Member:
        return cls(d["raft"], d["grpc"], bool(d.get("removed", False)))


@dataclass(slots=True)
class DefSnapshot(_Row):
    """A definition and the task definitions running workflows started with, shared by
    content and counted: dropped when the last workflow using it is evicted."""

    definition: JSON
    task_defs: dict[str, JSON]
    refs: int

    ROW: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_v1(cls, d: dict[str, JSON]) -> DefSnapshot:
        return cls(d["def"], d["taskDefs"], d["refs"])


for _cls in (Workflow, Task, ParkedPoll, RequestRecord, Member, DefSnapshot):
    _cls.ROW = _row_names(_cls)
    _cls._GET = attrgetter(*_cls.ROW)
