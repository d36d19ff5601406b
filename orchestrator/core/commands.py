"""Commands: the only inputs of the state machine.

Each command is a frozen dataclass with a stable wire name. They travel in the replicated log as
canonical JSON (see codec.py), never as pickles, so a journal stays readable across code versions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

JSON = Any


@dataclass(frozen=True)
class Command:
    NAME: ClassVar[str] = ""
    # Fields that the proposer fills in and that a client retry may legitimately change; they are
    # left out of the request fingerprint used for deduplication.
    NON_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({"request_id"})

    def to_dict(self) -> dict[str, JSON]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["t"] = self.NAME
        return d


@dataclass(frozen=True)
class LeaderEpoch(Command):
    """Committed first by every new leader; older-epoch runtime commands are then ignored."""

    NAME: ClassVar[str] = "LeaderEpoch"
    term: int


@dataclass(frozen=True)
class Noop(Command):
    """A barrier: committing it proves leadership for a linearizable read."""

    NAME: ClassVar[str] = "Noop"


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


@dataclass(frozen=True)
class TerminateWorkflow(Command):
    NAME: ClassVar[str] = "TerminateWorkflow"
    request_id: str
    workflow_id: str
    reason: str = ""


@dataclass(frozen=True)
class PollTasks(Command):
    """Lease up to `count` ready tasks of one type to a worker. Proposed by the leader's dispatcher."""

    NAME: ClassVar[str] = "PollTasks"
    NON_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({"request_id", "epoch"})
    request_id: str
    task_type: str
    worker_id: str
    count: int
    epoch: int = 0


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


@dataclass(frozen=True)
class HeartbeatTask(Command):
    NAME: ClassVar[str] = "HeartbeatTask"
    request_id: str
    task_id: str
    worker_id: str = ""


@dataclass(frozen=True)
class Tick(Command):
    """Fire every timer that is due at the batch's cluster time. Proposed only when one is due."""

    NAME: ClassVar[str] = "Tick"
    epoch: int


@dataclass(frozen=True)
class SetMember(Command):
    """Record a replica's addresses (gRPC for clients and forwarding, Raft for peers)."""

    NAME: ClassVar[str] = "SetMember"
    request_id: str
    node_id: str
    raft: str
    grpc: str


@dataclass(frozen=True)
class RemoveMember(Command):
    NAME: ClassVar[str] = "RemoveMember"
    request_id: str
    node_id: str


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
)
BY_NAME: dict[str, type[Command]] = {c.NAME: c for c in ALL_COMMANDS}


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
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in d.items() if k != "t"}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise CommandDecodeError(f"{name}: unknown fields {unknown}")
    try:
        cmd = cls(**kwargs)
    except TypeError as exc:
        raise CommandDecodeError(f"{name}: {exc}") from None
    for f in dataclasses.fields(cls):
        value = getattr(cmd, f.name)
        expected = {"str": str, "int": int, "bool": bool}.get(str(f.type))
        if expected is not None and (
            not isinstance(value, expected) or (expected is int and isinstance(value, bool))
        ):
            raise CommandDecodeError(f"{name}.{f.name}: expected {f.type}")
    return cmd
