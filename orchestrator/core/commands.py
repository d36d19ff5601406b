"""Commands: the only inputs of the state machine.

Each command is a frozen dataclass with a stable wire name. They travel in the replicated log as
canonical JSON (see codec.py), never as pickles, so a journal stays readable across code versions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .codec import digest, dumps_bytes, fingerprint

JSON = Any

# The key of a request's fingerprint in a logged command (see Command.to_log_dict).
FP_KEY = "fp"


@dataclass(frozen=True)
class Command:
    NAME: ClassVar[str] = ""
    # Fields that the proposer fills in and that a client retry may legitimately change; they are
    # left out of the request fingerprint used for deduplication.
    NON_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({"request_id"})

    def to_dict(self) -> dict[str, JSON]:
        return self._body(frozenset())

    def fingerprint_body(self) -> dict[str, JSON]:
        """What identifies the request for deduplication: to_dict() minus NON_FINGERPRINT."""
        return self._body(self.NON_FINGERPRINT)

    def _body(self, skip: frozenset[str]) -> dict[str, JSON]:
        d = {name: getattr(self, name) for name in _field_names(type(self)) if name not in skip}
        if d.get("principal") == "":
            # Added after journals existed: at its default it is left out, so a request logged
            # by an older version keeps its fingerprint (and its retry its recorded outcome).
            del d["principal"]
        d["t"] = self.NAME
        return d

    def to_log_dict(self) -> dict[str, JSON]:
        """to_dict() plus, for a request, its fingerprint under FP_KEY.

        The proposer computes the fingerprint once; every replica's apply then reads it instead
        of re-encoding the request canonically (a fifth of apply's time for a task completion).
        Commands without it (older journals, tests) are fingerprinted in apply.
        """
        d = self.to_dict()
        if "request_id" in d:
            d[FP_KEY] = fingerprint(self.fingerprint_body())
        return d

    def log_json(self) -> bytes:
        """to_log_dict() as JSON, encoding the request only once.

        The fingerprint needs the canonical encoding of fingerprint_body(); the logged command
        is that encoding with the few NON_FINGERPRINT fields and the fingerprint appended (the
        log needs valid JSON, not canonical key order), instead of a second full encoding.
        """
        if "request_id" not in _field_names(type(self)):
            return dumps_bytes(self.to_dict())
        body = dumps_bytes(self.fingerprint_body())
        extra = {name: getattr(self, name) for name in sorted(self.NON_FINGERPRINT)}
        extra[FP_KEY] = digest(body)
        return body[:-1] + b"," + dumps_bytes(extra)[1:]


# Per class: field names, and (name, expected type) for the fields checked on decode.
# dataclasses.fields() walks the class on every call; apply decodes every command on every replica.
_FIELDS: dict[type, tuple[str, ...]] = {}
_CHECKS: dict[type, tuple[tuple[str, type, str], ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _type_checks(cls: type) -> tuple[tuple[str, type, str], ...]:
    checks = _CHECKS.get(cls)
    if checks is None:
        found = []
        for f in dataclasses.fields(cls):
            expected = {"str": str, "int": int, "bool": bool}.get(str(f.type))
            if expected is not None:
                found.append((f.name, expected, str(f.type)))
        checks = _CHECKS[cls] = tuple(found)
    return checks


@dataclass(frozen=True)
class LeaderEpoch(Command):
    """Committed first by every new leader; older-epoch runtime commands are then ignored."""

    NAME: ClassVar[str] = "LeaderEpoch"
    term: int


@dataclass(frozen=True)
class Noop(Command):
    """A barrier: committing it proves leadership for a linearizable read."""

    NAME: ClassVar[str] = "Noop"
    # Ignored by apply. The benchmark's baseline pads its Noops to the workload's mean command
    # size, so both push the same bytes through Raft (see orchestrator/tools/bench/).
    pad: str = ""


@dataclass(frozen=True)
class RegisterWorkflowDef(Command):
    NAME: ClassVar[str] = "RegisterWorkflowDef"
    request_id: str
    definition: JSON  # normalized definition dict
    overwrite: bool = False


@dataclass(frozen=True)
class RegisterTaskDefs(Command):
    NAME: ClassVar[str] = "RegisterTaskDefs"
    request_id: str
    task_defs: JSON  # list of normalized task definition dicts


@dataclass(frozen=True)
class StartWorkflow(Command):
    NAME: ClassVar[str] = "StartWorkflow"
    NON_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({"request_id", "workflow_id"})
    request_id: str
    workflow_id: str  # chosen by the proposer (random there, never in apply)
    name: str
    version: int = 0
    input: JSON = field(default_factory=dict)
    correlation_id: str = ""
    idempotency_key: str = ""
    idempotency_strategy: str = "FAIL"
    priority: int = 0
    task_to_domain: JSON = field(default_factory=dict)  # task name or "*" -> "d1,d2,NO_DOMAIN"


@dataclass(frozen=True)
class TerminateWorkflow(Command):
    NAME: ClassVar[str] = "TerminateWorkflow"
    request_id: str
    workflow_id: str
    reason: str = ""


# ---- the operator's actions (processors/operations.py). `restore` is the archive document
# (history_ops.archive_doc) of a workflow no longer in memory, attached by the API from its
# history; a retry finds the workflow in memory again, so it is no part of the request.


@dataclass(frozen=True)
class PauseWorkflow(Command):
    """RUNNING -> PAUSED: nothing new is scheduled; tasks in progress run on."""

    NAME: ClassVar[str] = "PauseWorkflow"
    request_id: str
    workflow_id: str


@dataclass(frozen=True)
class ResumeWorkflow(Command):
    """PAUSED -> RUNNING, and decide at once."""

    NAME: ClassVar[str] = "ResumeWorkflow"
    request_id: str
    workflow_id: str


@dataclass(frozen=True)
class RestartWorkflow(Command):
    """A terminal workflow starts again from the beginning (same id, same input)."""

    NAME: ClassVar[str] = "RestartWorkflow"
    NON_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({"request_id", "restore"})
    request_id: str
    workflow_id: str
    use_latest_definition: bool = False
    restore: JSON = None


@dataclass(frozen=True)
class RetryWorkflow(Command):
    """A FAILED / TIMED_OUT / TERMINATED workflow resumes from its failed tasks."""

    NAME: ClassVar[str] = "RetryWorkflow"
    NON_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({"request_id", "restore"})
    request_id: str
    workflow_id: str
    resume_subworkflow_tasks: bool = False
    restore: JSON = None


@dataclass(frozen=True)
class RerunWorkflow(Command):
    """Run again from one task (its id; "" from the beginning), optionally with new input."""

    NAME: ClassVar[str] = "RerunWorkflow"
    NON_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({"request_id", "restore"})
    request_id: str
    workflow_id: str
    task_id: str = ""
    task_input: JSON = None  # None: the task's input is resolved again
    workflow_input: JSON = None  # None: the workflow keeps its input
    restore: JSON = None


@dataclass(frozen=True)
class SkipTask(Command):
    """A task (active, or not scheduled yet) is SKIPPED with `output`; the workflow goes on."""

    NAME: ClassVar[str] = "SkipTask"
    request_id: str
    workflow_id: str
    task_reference_name: str
    output: JSON = field(default_factory=dict)


@dataclass(frozen=True)
class CompensateWorkflow(Command):
    """A saga's operator trigger: a RUNNING or PAUSED workflow stops and undoes its completed
    steps; a FAILED, TERMINATED or TIMED_OUT one undoes them (processors/compensation.py)."""

    NAME: ClassVar[str] = "CompensateWorkflow"
    NON_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({"request_id", "restore"})
    request_id: str
    workflow_id: str
    reason: str = ""
    restore: JSON = None


@dataclass(frozen=True)
class RemoveWorkflow(Command):
    """A terminal workflow leaves memory and history."""

    NAME: ClassVar[str] = "RemoveWorkflow"
    request_id: str
    workflow_id: str


@dataclass(frozen=True)
class PollTasks(Command):
    """Lease up to `count` ready tasks of one type to a worker. Proposed by the leader's dispatcher.

    With `park_until_ms` (cluster time) after the batch's time, a poll that finds nothing ready
    is parked in the state until then: the next task of its type made ready is leased to it in
    the same apply that made it ready (lease at schedule time), recorded as this request's
    outcome.
    """

    NAME: ClassVar[str] = "PollTasks"
    # park_until_ms is where the long poll's wait ends: a retry legitimately carries another one.
    NON_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({"request_id", "epoch", "park_until_ms"})
    request_id: str
    task_type: str
    worker_id: str
    count: int
    epoch: int = 0
    park_until_ms: int = 0
    domain: str = ""  # poll the task domain's queue instead of the type's default queue
    # The authenticated caller (api/identity.py); what it leases only it may complete, fail or
    # heartbeat. "" (no authentication configured) binds nothing.
    principal: str = ""


@dataclass(frozen=True)
class CancelPoll(Command):
    """Drop a parked poll whose caller went away (no-op when it is no longer parked).

    Names the poll's request id in its own field: it is not a request of its own to deduplicate.
    """

    NAME: ClassVar[str] = "CancelPoll"
    poll_request_id: str
    epoch: int


@dataclass(frozen=True)
class CompleteTask(Command):
    NAME: ClassVar[str] = "CompleteTask"
    request_id: str
    task_id: str
    output: JSON = field(default_factory=dict)
    worker_id: str = ""
    # Instead of task_id: the latest attempt of this reference in this workflow (WAIT, HUMAN).
    workflow_id: str = ""
    reference_task_name: str = ""
    principal: str = ""  # the caller: a task leased by another principal is refused


@dataclass(frozen=True)
class FailTask(Command):
    NAME: ClassVar[str] = "FailTask"
    request_id: str
    task_id: str
    reason: str = ""
    terminal: bool = False
    output: JSON = field(default_factory=dict)
    worker_id: str = ""
    # Instead of task_id: the latest attempt of this reference in this workflow (WAIT, HUMAN).
    workflow_id: str = ""
    reference_task_name: str = ""
    principal: str = ""  # the caller: a task leased by another principal is refused


@dataclass(frozen=True)
class HeartbeatTask(Command):
    NAME: ClassVar[str] = "HeartbeatTask"
    request_id: str
    task_id: str
    worker_id: str = ""
    principal: str = ""  # the caller: a task leased by another principal is refused


@dataclass(frozen=True)
class Tick(Command):
    """Fire every timer that is due at the batch's cluster time. Proposed only when one is due."""

    NAME: ClassVar[str] = "Tick"
    epoch: int


@dataclass(frozen=True)
class SetMember(Command):
    """Record a replica's addresses (gRPC for clients and forwarding, Raft for peers)."""

    NAME: ClassVar[str] = "SetMember"
    # Filled in by the proposer, not part of the request.
    NON_FINGERPRINT: ClassVar[frozenset[str]] = frozenset(
        {"request_id", "configured_raft", "configured"}
    )
    request_id: str
    node_id: str
    raft: str
    grpc: str
    # The Raft address the proposer's configuration gives node_id ('' when it has none):
    # configured replicas have no row in the member table until one is added or removed at
    # run time, so apply learns of them here. Older entries carry only this.
    configured_raft: str = ""
    # Every replica the proposer's configuration names, as [node_id, raft, grpc]: apply checks
    # the new member's addresses against all of them (an alias of a configured replica's
    # address would split Raft's view of the cluster from the member table's).
    configured: JSON = field(default_factory=list)


@dataclass(frozen=True)
class RemoveMember(Command):
    NAME: ClassVar[str] = "RemoveMember"
    NON_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({"request_id", "configured"})
    request_id: str
    node_id: str
    # As SetMember.configured: apply decides whether node_id is a member. Empty in older
    # entries, whose removal apply accepted for any id.
    configured: JSON = field(default_factory=list)


@dataclass(frozen=True)
class ScriptResult(Command):
    """The outcome of a script the core asked for (INLINE, JSON_JQ_TRANSFORM, SWITCH/DECISION
    JavaScript, a DO_WHILE loopCondition in full JavaScript), evaluated in the sandbox by the
    leader's runtime. Fenced by (task_id, fence): `fence` is the marker's value from the state,
    so a result for an evaluation that is no longer pending changes nothing."""

    NAME: ClassVar[str] = "ScriptResult"
    task_id: str
    fence: int
    epoch: int
    ok: bool
    value: JSON = None
    error: str = ""


@dataclass(frozen=True)
class HttpResult(Command):
    """The outcome of an HTTP task's request, made by the leader's runtime outside apply and
    fenced as ScriptResult. `response` is Conductor's {statusCode, headers, body, reasonPhrase}
    (None when no response came); `terminal`: refused by the allow-list, not to be retried."""

    NAME: ClassVar[str] = "HttpResult"
    task_id: str
    fence: int
    epoch: int
    response: JSON = None
    error: str = ""
    terminal: bool = False


@dataclass(frozen=True)
class PollActivity(Command):
    """Workers are polling these task-domain queues ("<type>@<domain>"), though their polls
    committed nothing. Proposed by the leader's dispatcher at most every few seconds per queue,
    so a domain with idle workers still counts as active for taskToDomain fallback lists."""

    NAME: ClassVar[str] = "PollActivity"
    epoch: int
    queues: JSON = field(default_factory=list)


@dataclass(frozen=True)
class SetHistoryRetention(Command):
    """Cluster settings of the durable history: an archived workflow is kept retention_ms
    after it ended and, when max_workflows > 0, at most that many are kept (oldest first)."""

    NAME: ClassVar[str] = "SetHistoryRetention"
    request_id: str
    retention_ms: int
    max_workflows: int = 0


@dataclass(frozen=True)
class PublishEvent(Command):
    """An event appended to the replicated event log; matching event handlers act on it in
    the same apply (processors/eventlog.py)."""

    NAME: ClassVar[str] = "PublishEvent"
    request_id: str
    name: str
    payload: JSON = field(default_factory=dict)
    correlation_key: str = ""
    # > 0: if no WAIT_FOR_EVENT task takes it now, it waits this long for one (messages.py).
    ttl_ms: int = 0


@dataclass(frozen=True)
class IngestEvent(Command):
    """A broker message into the event log, exactly once: appended (processors/bridges.py) only
    when `seq` (the message's sequence in its source) is past the source's replicated mark,
    which it then becomes. Proposed by the leader's bridge (orchestrator/bridge/)."""

    NAME: ClassVar[str] = "IngestEvent"
    request_id: str
    source: str
    seq: int
    name: str
    payload: JSON = field(default_factory=dict)
    correlation_key: str = ""


@dataclass(frozen=True)
class AdvanceSink(Command):
    """The events up to `offset` were published by the bridge `sink`: its mark (never backwards,
    never past the log's last offset), where a new leader's sink resumes."""

    NAME: ClassVar[str] = "AdvanceSink"
    request_id: str
    sink: str
    offset: int


@dataclass(frozen=True)
class AckEvents(Command):
    """A consumer group's committed offset on a stream ("events" or "workflows"), moved
    forward only (processors/subscriptions.py)."""

    NAME: ClassVar[str] = "AckEvents"
    request_id: str
    stream: str
    group: str
    offset: int


@dataclass(frozen=True)
class RegisterEventHandler(Command):
    NAME: ClassVar[str] = "RegisterEventHandler"
    request_id: str
    handler: JSON  # {name, event, condition?, actions, active?} (processors/event_handlers.py)
    overwrite: bool = False


@dataclass(frozen=True)
class RemoveEventHandler(Command):
    NAME: ClassVar[str] = "RemoveEventHandler"
    request_id: str
    name: str


ALL_COMMANDS: tuple[type[Command], ...] = (
    LeaderEpoch,
    Noop,
    RegisterWorkflowDef,
    RegisterTaskDefs,
    StartWorkflow,
    TerminateWorkflow,
    PollTasks,
    CompleteTask,
    FailTask,
    HeartbeatTask,
    Tick,
    SetMember,
    RemoveMember,
    ScriptResult,
    HttpResult,
    CancelPoll,
    PollActivity,
    PauseWorkflow,
    ResumeWorkflow,
    RestartWorkflow,
    RetryWorkflow,
    RerunWorkflow,
    SkipTask,
    RemoveWorkflow,
    SetHistoryRetention,
    CompensateWorkflow,
    PublishEvent,
    RegisterEventHandler,
    RemoveEventHandler,
    AckEvents,
    IngestEvent,
    AdvanceSink,
)
BY_NAME: dict[str, type[Command]] = {c.NAME: c for c in ALL_COMMANDS}

# Apply takes FP_KEY out of a logged command before decoding it, and log_json() appends the
# NON_FINGERPRINT fields after the fingerprinted body: neither may clash with a field.
for _cls in ALL_COMMANDS:
    _names = {*_field_names(_cls)}
    if FP_KEY in _names or ("request_id" in _names and not _names >= _cls.NON_FINGERPRINT):
        raise TypeError(f"{_cls.NAME}: field names clash with the log encoding")


class CommandDecodeError(ValueError):
    pass


def command_from_dict(d: Any) -> Command:
    """Decode one command; raises CommandDecodeError naming what is wrong."""
    if not isinstance(d, dict):
        raise CommandDecodeError("command is not an object")
    name = d.get("t")
    cls = BY_NAME.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CommandDecodeError(f"unknown command type {name!r}")
    names = _field_names(cls)
    kwargs = {k: v for k, v in d.items() if k != "t"}
    unknown = sorted(k for k in kwargs if k not in names)
    if unknown:
        raise CommandDecodeError(f"{name}: unknown fields {unknown}")
    try:
        cmd = cls(**kwargs)
    except TypeError as exc:
        raise CommandDecodeError(f"{name}: {exc}") from None
    for fname, expected, tname in _type_checks(cls):
        value = getattr(cmd, fname)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise CommandDecodeError(f"{name}.{fname}: expected {tname}")
    return cmd
