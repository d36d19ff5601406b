"""The one seam between the replica and the rest of the server: api/, runtime/ and server.py
use this protocol and nothing else of replication/.

`node.RaftReplica` implements it over pysyncobj; tests use an in-memory fake (tests/fakes.py)
that applies committed commands with the real core, with no sockets and no Raft.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ..core.commands import Command
from ..core.machine import Effects, Outcome
from ..core.state import State

T = TypeVar("T")

Listener = Callable[[Effects], None]


class ProposalError(Exception):
    """The command was not (known to be) applied."""

    definitely_not_applied = True


class NotLeader(ProposalError):
    pass


class Overloaded(ProposalError):
    pass


class OutcomeUnknown(ProposalError):
    definitely_not_applied = False


class MembershipIncomplete(ProposalError):
    """The member's addresses are committed, but Raft's own membership has not changed (yet).

    A retry with the same request id finishes it: the committed part is deduplicated and the
    Raft step is taken again.
    """

    definitely_not_applied = False


@dataclass(frozen=True)
class Member:
    """A replica of the cluster: its id, and its Raft and gRPC addresses."""

    node_id: str
    raft: str
    grpc: str


@dataclass(frozen=True)
class ReplicaStatus:
    """This replica's view of the cluster and of its own progress."""

    role: str  # LEADER, CANDIDATE or FOLLOWER
    term: int
    commit_index: int
    last_applied: int
    log_len: int
    leader: str | None  # the leader's Raft address, when one is known
    ready: bool  # caught up with the leader's log at least once since it started
    has_quorum: bool
    applied_sequence: int
    applied_hash: str
    cluster_time_ms: int
    workflows: int


class Replica(Protocol):
    """A replicated state machine: commands go in through the leader, state is read locally."""

    # ---- proposing (leader only; raise NotLeader elsewhere, Overloaded beyond the bound)

    def propose(self, cmd: Command, carry_lazy: bool = True) -> Future[Outcome]:
        """Queue a command for the next entry; its future holds the committed outcome or a
        ProposalError. With carry_lazy=False the entry takes no lazy command along unless
        another command in it does."""
        ...

    def propose_many(self, cmds: list[Command]) -> list[Future[Outcome]]:
        """Queue several commands at once, in order, all or none (one entry if they fit)."""
        ...

    def propose_lazy(self, cmd: Command) -> Future[Outcome]:
        """Queue a command that rides in the next entry carrying another one."""
        ...

    def withdraw_lazy(self, fut: Future[Outcome]) -> bool:
        """Take back a lazy command not yet sent; False when it is already on its way."""
        ...

    def flush_lazy(self) -> None:
        """Send the lazy commands in the next entry."""
        ...

    # ---- reading (any replica)

    def read(self, fn: Callable[[State], T]) -> T:
        """fn(state) under the lock that apply holds per entry: fn sees one applied sequence
        and must copy out what it needs."""
        ...

    def wait_applied(self, seq: int, timeout_s: float) -> bool:
        """Wait until this replica has applied `seq`; False on timeout."""
        ...

    def subscribe(self, listener: Listener) -> None:
        """Call listener(effects) after every applied entry (on the apply thread: keep it
        short) and after a snapshot replaced the state (effects.reloaded)."""
        ...

    # ---- leadership and time

    def is_leader(self) -> bool:
        """Whether this replica believes it leads (alone, this proves nothing: see fresh)."""
        ...

    def leader_ready(self) -> bool:
        """Leads, is in contact with a majority, and has applied its own LeaderEpoch."""
        ...

    @property
    def leader_term(self) -> int:
        """The term this replica leads in (the epoch its runtime's commands carry), 0 if none."""
        ...

    def ensure_epoch(self) -> None:
        """Propose LeaderEpoch again if the first attempt failed."""
        ...

    def now_ms(self) -> int:
        """Cluster time as this leader stamps it."""
        ...

    def fresh(self) -> bool:
        """Whether this replica heard from its leader (or, leading, a majority) recently."""
        ...

    def caught_up(self, timeout_s: float) -> bool:
        """Wait until a follower has applied everything its leader had committed when it last
        heard from it (a leader: at once); False on timeout. A follower that is fresh can still
        lag: one resumed after a pause hears the new leader before it has the entries."""
        ...

    def term(self) -> int: ...

    def role(self) -> str: ...

    def leader_addr(self) -> str | None:
        """The leader's Raft address, when one is known."""
        ...

    def request_step_down(self) -> None:
        """Hand leadership to the most caught-up follower."""
        ...

    # ---- membership

    @property
    def address(self) -> str:
        """This replica's own Raft address."""
        ...

    def members(self) -> list[Member]:
        """The configured replicas, updated by members added or removed at run time."""
        ...

    def add_member(self, request_id: str, member: Member, timeout_s: float) -> Outcome:
        """Commit the member's addresses (apply decides ALREADY_EXISTS), then add it to Raft.

        Raises ProposalError; MembershipIncomplete when only the first step happened.
        """
        ...

    def remove_member(self, request_id: str, node_id: str, timeout_s: float) -> Outcome:
        """Take the member out of Raft, then commit its removal. NOT_FOUND for a non-member;
        the leader itself steps aside instead (NotLeader: retry on the next leader)."""
        ...

    # ---- health

    def status(self) -> ReplicaStatus: ...

    @property
    def apply_error(self) -> str:
        """Why apply failed or a log entry was refused (the replica is then unhealthy), or ''."""
        ...

    @property
    def journal_error(self) -> str:
        """Why the journal cannot be written right now (e.g. a full disk), or ''."""
        ...

    def stop(self) -> None: ...
