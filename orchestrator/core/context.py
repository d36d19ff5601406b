"""What one apply works with: the outcome of a command, the effects of a batch, and the context
processors decide in and emit events through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import journal
from .appliers import APPLIERS
from .errors import Code
from .state import State

if TYPE_CHECKING:
    from .events import Event
    from .history_ops import HistoryOp

JSON = Any


@dataclass
class Outcome:
    code: Code = Code.OK
    message: str = ""
    result: dict[str, JSON] = field(default_factory=dict)
    seq: int = 0  # the sequence number this command was applied at (not replicated)

    def to_dict(self) -> dict[str, JSON]:
        return {"code": self.code.value, "message": self.message, "result": self.result}

    @staticmethod
    def from_dict(d: dict[str, JSON]) -> Outcome:
        return Outcome(Code(d["code"]), d.get("message", ""), d.get("result") or {})

    @property
    def ok(self) -> bool:
        return self.code is Code.OK


@dataclass
class Effects:
    """What the shell needs to know after a batch: which queues got work, which workflows ended."""

    ready_types: list[str] = field(default_factory=list)
    ended_workflows: list[str] = field(default_factory=list)
    timers_changed: bool = False
    # Task ids that now wait for a script evaluation (the leader's runtime evaluates them in the
    # sandbox and proposes ScriptResult); see queries.pending_scripts() for the full list.
    scripts_ready: list[str] = field(default_factory=list)
    # Request ids of parked polls that left the parked set: filled (their outcome is then
    # recorded for the request), expired, cancelled, or dropped by a new leader epoch.
    polls_settled: list[str] = field(default_factory=list)
    # The whole state was replaced (a snapshot was loaded): waiters re-read it.
    reloaded: bool = False
    # Every event the batch applied, in order (what happened, for tests and tracing).
    events: list[Event] = field(default_factory=list)
    # What the durable history must write, in apply order (history_ops.py).
    history: list[HistoryOp] = field(default_factory=list)

    def ready(self, task_type: str) -> None:
        if task_type not in self.ready_types:
            self.ready_types.append(task_type)


class Ctx:
    """One batch being applied. Processors read `st` and change it only through `emit`."""

    __slots__ = (
        "created",
        "deciding",
        "event_depth",
        "events",
        "failed",
        "fill_types",
        "fp",
        "freed",
        "fx",
        "redecide",
        "st",
        "terminations",
        "undo",
        "wakes",
    )

    def __init__(self, state: State, effects: Effects) -> None:
        self.st = state
        self.fx = effects
        self.events = effects.events
        # Per decide walk: tasks that failed / TERMINATE tasks that ran during the walk.
        self.failed: list[str] = []
        self.terminations: list[str] = []
        # (parent workflow id, parent task id, child id): children that ended, to mirror.
        self.wakes: list[tuple[str, str, str]] = []
        # The fingerprint of the request being applied ("" for commands without request_id).
        self.fp = ""
        # Queues that got a ready task while polls were parked (filled after the batch).
        self.fill_types: list[str] = []
        # The inverse of every write since the command began (journal.py).
        self.undo: journal.Undo = []
        # Workflows the command being applied started from workflows (limits.py).
        self.created = 0
        # Definition names with QUEUED workflows whose running count dropped: drain starts
        # those that fit now (processors/admission.py).
        self.freed: list[str] = []
        # Events being appended inside one another (processors/eventlog.py's chain guard).
        self.event_depth = 0
        # Workflows whose decide walk is under way, and those to walk again after it
        # (processors/decider.py).
        self.deciding: list[str] = []
        self.redecide: list[str] = []

    @property
    def now(self) -> int:
        return self.st.clock_ms

    def mark(self) -> tuple[int, ...]:
        """Where the journal and the effects stand: rollback(mark) returns to here."""
        fx = self.fx
        return (
            len(self.undo),
            len(fx.events),
            len(fx.ready_types),
            len(fx.ended_workflows),
            len(fx.scripts_ready),
            len(fx.polls_settled),
            len(self.fill_types),
            len(self.wakes),
            len(fx.history),
            len(self.freed),
        )

    def rollback(self, mark: tuple[int, ...]) -> None:
        """Undo every write and effect since `mark` (an exception cut a change short)."""
        undo, events, ready, ended, scripts, settled, fill, wakes, history, freed = mark
        journal.rollback(self.undo, undo)
        fx = self.fx
        del fx.events[events:]
        del fx.ready_types[ready:]
        del fx.ended_workflows[ended:]
        del fx.scripts_ready[scripts:]
        del fx.polls_settled[settled:]
        del self.fill_types[fill:]
        del self.wakes[wakes:]
        del fx.history[history:]
        del self.freed[freed:]
        # The heap is derived: a Tick may have taken due timers off it before it failed.
        self.st.rebuild_timer_heap()

    def emit(self, event: Event) -> None:
        """Apply the event at once (later decisions of the same command read its result) and
        record it."""
        APPLIERS[event.__class__](self, event)
        self.events.append(event)
