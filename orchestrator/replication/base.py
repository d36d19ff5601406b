"""What a replica does whatever carries its log: group commit, leader epochs, cluster time,
apply, and reads under the lock apply holds.

- Group commit: proposals queue while entries are in flight; the next entry carries everything
  queued (up to `batch_max_bytes`). One outcome per command comes back.
- Bounded in-flight work: beyond `max_pending` queued commands, propose() raises Overloaded.
- Leader epochs: a new leader first commits LeaderEpoch(term); it serves proposals only once
  that is applied locally (`leader_ready`).
- Cluster time: stamped only by the leader into each envelope, advanced by the leader's
  monotonic clock, so wall-clock jumps do not move it. A new leader starts from the last
  applied cluster time plus the monotonic time elapsed since this process applied it, so an
  election does not stop the cluster's clock (only a whole-cluster outage does: a freshly
  started process has no such reference).

- Membership: a member's addresses are committed (apply decides whether they are taken) and
  Raft's voters change, as one operation with one answer.

Subclasses say how an entry is sent (`_send_entry`), whether this replica leads, and how
Raft's voters change: node.py over pysyncobj, and the in-memory fake the API tests use.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import structlog

from ..core import queries
from ..core.commands import Command, LeaderEpoch, RemoveMember, SetMember
from ..core.machine import Effects, Outcome, apply_batch
from ..core.state import State
from . import envelope
from .api import (
    Listener,
    Member,
    MembershipIncomplete,
    NotLeader,
    OutcomeUnknown,
    Overloaded,
    ProposalError,
)
from .settings import RaftSettings

log = structlog.get_logger("replication")

T = TypeVar("T")

# A queued command: its log bytes, the future of its outcome, its name (for logs).
_Item = tuple[bytes, Future[Outcome], str]
# Told the outcomes of a sent entry, or why there are none.
EntryDone = Callable[[list[Outcome] | ProposalError], None]


class ReplicaBase:
    """Owns the State, the lock that guards it, the proposal queue and the leader's clock."""

    def __init__(self, settings: RaftSettings, configured: list[Member] | None = None) -> None:
        self.settings = settings
        # The replicas the configuration names (members() adds and removes run-time changes).
        self.configured = list(configured or ())
        self.state = State()
        self.log_hash = b""
        self.lock = threading.RLock()
        self.applied_cond = threading.Condition(self.lock)
        self.apply_error: str = ""
        self._listeners: list[Listener] = []
        # Set by the durable history (history/search.py): called on the apply thread right
        # before a snapshot; what it returns opens once the history holds the snapshot's seq.
        self.history_barrier: Callable[[], Any] | None = None
        self._queue: deque[_Item] = deque()
        # Commands that ride in the next entry carrying another command (see propose_lazy).
        self._lazy: deque[_Item] = deque()
        # Queued commands that do not take the lazy ones along (propose(carry_lazy=False)).
        self._no_carry: set[Future[Outcome]] = set()
        self._qcond = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._stopped = False
        self._leader_term = 0  # term we lead in, 0 when not leading
        self._epoch_future: Future[Outcome] | None = None
        self._clock_base_ms = 0
        self._clock_base_mono = 0.0
        # (cluster time of the latest applied entry, monotonic time it was applied here)
        self._applied_clock: tuple[int, float] | None = None
        self._last_stamp_ms = 0
        self._proposer = threading.Thread(target=self._propose_loop, name="proposer", daemon=True)

    # ------------------------------------------------------------ what subclasses provide

    def is_leader(self) -> bool:
        raise NotImplementedError

    def fresh(self) -> bool:
        raise NotImplementedError

    def _send_entry(self, term: int, data: bytes, done: EntryDone) -> None:
        """Replicate one envelope; call done() once with its outcomes. Raise ProposalError
        when it cannot be sent at all."""
        raise NotImplementedError

    def request_step_down(self) -> None:
        raise NotImplementedError

    def _raft_peers(self) -> set[str]:
        """The Raft addresses of the other voters, as the Raft layer has them now."""
        raise NotImplementedError

    def _raft_add(self, raft_addr: str) -> None:
        """Add a voter (one change at a time); raise ProposalError when it did not happen."""
        raise NotImplementedError

    def _raft_remove(self, raft_addr: str) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ reads

    def read(self, fn: Callable[[State], T]) -> T:
        with self.lock:
            return fn(self.state)

    def wait_applied(self, seq: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.applied_cond:
            while self.state.seq < seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.applied_cond.wait(left)
            return True

    def caught_up(self, timeout_s: float) -> bool:
        return True  # the Raft layer (node.py) knows the leader's commit index

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _notify(self, fx: Effects) -> None:
        for listener in self._listeners:
            try:
                listener(fx)
            except Exception:
                log.exception("listener_failed")

    # ------------------------------------------------------------ apply

    def _apply_entry(self, data: bytes) -> list[Outcome]:
        # Nothing may escape: pysyncobj retries a raising entry forever and wedges every replica.
        try:
            try:
                env = envelope.decode(data)
            except envelope.EnvelopeError as exc:
                with self.lock:
                    self.state.seq += 1  # keep sequence numbers aligned on every replica
                    self._chain(data)
                self.apply_error = f"rejected corrupt log entry: {exc}"
                log.error("corrupt_log_entry", error=str(exc))
                return []
            with self.lock:
                outcomes, fx = apply_batch(self.state, env.now_ms, env.commands)
                self._chain(data)
                self._applied_clock = (self.state.clock_ms, time.monotonic())
                self.applied_cond.notify_all()
            self._notify(fx)
            return outcomes
        except Exception as exc:  # pragma: no cover - a bug; never let it reach pysyncobj
            log.exception("apply_failed")
            self.apply_error = f"apply failed: {exc}"
            return []

    def _chain(self, data: bytes) -> None:
        # A rolling hash of every applied entry: replicas at the same sequence number must agree.
        self.log_hash = hashlib.blake2b(self.log_hash + data, digest_size=16).digest()

    def _replace_state(self, new: State, log_hash: bytes) -> None:
        """A snapshot replaced the state: waiters and the runtime re-read it."""
        with self.lock:
            self.state = new
            self.log_hash = log_hash
            self._applied_clock = None  # a snapshot's time says nothing about now
            self.applied_cond.notify_all()
        log.info("snapshot_loaded", seq=new.seq)
        self._notify(Effects(ready_types=list(new.queues), timers_changed=True, reloaded=True))

    # ------------------------------------------------------------ leadership and time

    def _became_leader(self, term: int) -> None:
        with self.lock:
            applied_ms = self.state.clock_ms
            seen = self._applied_clock
        now_mono = time.monotonic()
        if applied_ms <= 0:
            base = int(time.time() * 1000)  # a brand-new cluster: start from the wall clock
        elif seen is not None and seen[0] == applied_ms:
            # The time that passed since this process applied the latest entry (an election,
            # a partition) passed for the cluster too.
            base = applied_ms + int((now_mono - seen[1]) * 1000)
        else:
            base = applied_ms
        self._clock_base_ms = base
        self._clock_base_mono = now_mono
        self._leader_term = term
        log.info("became_leader", term=term)
        self._propose_epoch(term)

    def _lost_leadership(self, new_role: str) -> None:
        self._leader_term = 0
        log.info("lost_leadership", new_role=new_role)
        self._fail_queued(NotLeader("leadership lost before the command was proposed"))

    def _propose_epoch(self, term: int) -> None:
        fut: Future[Outcome] = Future()
        self._epoch_future = fut
        try:
            epoch = LeaderEpoch(term=term)
            self._enqueue([(epoch.log_json(), fut, epoch.NAME)])
        except ProposalError as exc:
            fut.set_exception(exc)

    def ensure_epoch(self) -> None:
        term = self._leader_term
        if not term or not self.is_leader():
            return
        with self.lock:
            if self.state.epoch >= term:
                return
        fut = self._epoch_future
        if fut is None or (fut.done() and fut.exception() is not None):
            self._propose_epoch(term)

    def now_ms(self) -> int:
        now = self._clock_base_ms + int((time.monotonic() - self._clock_base_mono) * 1000)
        if now < self._last_stamp_ms:
            now = self._last_stamp_ms
        self._last_stamp_ms = now
        return now

    @property
    def leader_term(self) -> int:
        return self._leader_term

    def leader_ready(self) -> bool:
        term = self._leader_term
        if not term or not self.is_leader() or not self.fresh():
            return False
        with self.lock:
            return self.state.epoch == term

    # ------------------------------------------------------------ proposals

    def propose_many(self, cmds: list[Command]) -> list[Future[Outcome]]:
        # One wake-up of the proposer for all of them, so they go in the same entry (up to its
        # size): queued one by one, the proposer could send the first alone and, with one entry
        # in flight, leave the rest waiting for its commit.
        if not self.leader_ready():
            raise NotLeader("this replica is not the ready leader")
        items: list[_Item] = [(cmd.log_json(), Future(), cmd.NAME) for cmd in cmds]
        self._enqueue(items)
        return [fut for _, fut, _ in items]

    def propose(self, cmd: Command, carry_lazy: bool = True) -> Future[Outcome]:
        # carry_lazy=False: a Tick that only ends parked polls must not park the next ones, or
        # idle pollers would keep each other's expiry Ticks going.
        if not self.leader_ready():
            raise NotLeader("this replica is not the ready leader")
        fut: Future[Outcome] = Future()
        if not carry_lazy:
            with self._qcond:
                self._no_carry.add(fut)
        self._enqueue([(cmd.log_json(), fut, cmd.NAME)])
        return fut

    def propose_lazy(self, cmd: Command) -> Future[Outcome]:
        # A parked poll only matters to a command that makes a task ready, so parking this way
        # costs no entry of its own, and an idle cluster commits nothing.
        if not self.leader_ready():
            raise NotLeader("this replica is not the ready leader")
        fut: Future[Outcome] = Future()
        data = cmd.log_json()
        with self._qcond:
            if len(self._queue) + len(self._lazy) >= self.settings.max_pending:
                raise Overloaded(f"{len(self._queue)} commands already waiting for Raft")
            self._lazy.append((data, fut, cmd.NAME))
        return fut

    def withdraw_lazy(self, fut: Future[Outcome]) -> bool:
        with self._qcond:
            for i, item in enumerate(self._lazy):
                if item[1] is fut:
                    del self._lazy[i]
                    return True
        return False

    def flush_lazy(self) -> None:
        with self._qcond:
            if self._lazy:
                self._queue.extendleft(reversed(self._lazy))
                self._lazy.clear()
                self._wake_proposer()

    def _enqueue(self, items: list[_Item]) -> None:
        """Queue encoded commands for the proposer, all or none, with one wake-up."""
        with self._qcond:
            if len(self._queue) + len(items) > self.settings.max_pending:
                raise Overloaded(f"{len(self._queue)} commands already waiting for Raft")
            self._queue.extend(items)
            self._wake_proposer()

    def _wake_proposer(self) -> None:
        """Wake the proposer only when it can send an entry (caller holds _qcond): every
        needless wake-up is a context switch and a turn at the GIL, on the leader's busiest
        moments (a commit, a burst of calls)."""
        if self._queue and self._in_flight < self.settings.max_in_flight_entries:
            self._qcond.notify()

    def _fail_queued(self, exc: ProposalError) -> None:
        with self._qcond:
            items = list(self._lazy) + list(self._queue)
            self._lazy.clear()
            self._queue.clear()
            self._no_carry.clear()
        for _, fut, _ in items:
            if not fut.done():
                fut.set_exception(exc)

    def _next_batch(self) -> list[_Item] | None:
        """Wait for queued commands and room in flight; take the next entry's (None: stop)."""
        with self._qcond:
            while not self._stopped and (
                not self._queue or self._in_flight >= self.settings.max_in_flight_entries
            ):
                self._qcond.wait(0.5)
            if self._stopped:
                return None
            batch: list[_Item] = []
            size = 0
            while self._queue and (
                not batch or size + len(self._queue[0][0]) <= self.settings.batch_max_bytes
            ):
                item = self._queue.popleft()
                size += len(item[0])
                batch.append(item)
            carry = False
            for _, fut, _ in batch:
                if fut in self._no_carry:
                    self._no_carry.discard(fut)
                else:
                    carry = True
            if carry and self._lazy:
                # Lazy commands first: a parked poll must be applied before the command that
                # makes its task ready.
                batch[:0] = self._lazy
                self._lazy.clear()
            self._in_flight += 1
            return batch

    def _propose_loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            futures = [f for _, f, _ in batch]
            term = self._leader_term
            try:
                if not term or not self.is_leader():
                    raise NotLeader("not the leader")
                data = envelope.encode_commands(term, self.now_ms(), [b for b, _, _ in batch])
                self._send_entry(term, data, functools.partial(self._settle, futures))
            except ProposalError as exc:
                self._settle(futures, exc)

    def _settle(
        self, futures: list[Future[Outcome]], result: list[Outcome] | ProposalError
    ) -> None:
        with self._qcond:
            self._in_flight -= 1
            self._wake_proposer()
        if isinstance(result, list) and len(result) != len(futures):
            result = OutcomeUnknown("the entry was applied but produced no outcomes")
        for i, fut in enumerate(futures):
            if fut.done():
                continue
            if isinstance(result, ProposalError):
                fut.set_exception(result)
            else:
                fut.set_result(result[i])

    # ------------------------------------------------------------ membership

    @property
    def address(self) -> str:
        return self.settings.self_addr

    def members(self) -> list[Member]:
        by_id = {m.node_id: m for m in self.configured}
        for m in self.read(queries.members):
            if m.removed:
                by_id.pop(m.node_id, None)
            else:
                by_id[m.node_id] = Member(m.node_id, m.raft, m.grpc)
        return list(by_id.values())

    def add_member(self, request_id: str, member: Member, timeout_s: float) -> Outcome:
        # Apply decides whether the node id or the address is taken (configured replicas have
        # no row in the state's member table, so their address travels in the command).
        configured = next((m.raft for m in self.configured if m.node_id == member.node_id), "")
        cmd = SetMember(
            request_id=request_id,
            node_id=member.node_id,
            raft=member.raft,
            grpc=member.grpc,
            configured_raft=configured,
            configured=self._configured_rows(),
        )
        outcome = _committed(self.propose(cmd), timeout_s)
        if not outcome.ok:
            return outcome
        # A retry with the same request id gets the committed outcome and finishes this step.
        if member.raft != self.address and member.raft not in self._raft_peers():
            try:
                self._raft_add(member.raft)
            except ProposalError as exc:
                raise MembershipIncomplete(
                    f"replica {member.node_id}'s addresses are committed, but Raft has not "
                    f"added {member.raft}: {exc}; retry with the same request_id to finish"
                ) from None
        log.info("replica_added", member=member.node_id, raft=member.raft, grpc=member.grpc)
        return outcome

    def remove_member(self, request_id: str, node_id: str, timeout_s: float) -> Outcome:
        # Raft first: a replica whose removal is committed must no longer be a voter.
        peer = next((m for m in self.members() if m.node_id == node_id), None)
        cmd = RemoveMember(
            request_id=request_id, node_id=node_id, configured=self._configured_rows()
        )
        if peer is None:
            # Not a member here: apply decides (NOT_FOUND, or a retry's recorded outcome).
            return _committed(self.propose(cmd), timeout_s)
        if peer.raft == self.address:
            # Raft cannot remove its own leader: hand over, and let the retry land there.
            self.request_step_down()
            raise NotLeader(
                f"{node_id} is the leader; it is stepping aside, retry to remove it from the "
                "new leader"
            )
        if peer.raft in self._raft_peers():
            self._raft_remove(peer.raft)
        try:
            outcome = _committed(self.propose(cmd), timeout_s)
        except ProposalError as exc:
            raise MembershipIncomplete(
                f"Raft removed replica {node_id}, but its removal is not committed: {exc}; "
                "retry with the same request_id to finish"
            ) from None
        log.info("replica_removed", member=node_id, raft=peer.raft)
        return outcome

    def _configured_rows(self) -> list[list[str]]:
        return [[m.node_id, m.raft, m.grpc] for m in self.configured]

    def _stop_proposer(self) -> None:
        self._stopped = True
        with self._qcond:
            self._qcond.notify_all()
        self._fail_queued(NotLeader("replica stopping"))


def _committed(fut: Future[Outcome], timeout_s: float) -> Outcome:
    """The committed outcome of a proposal, or OutcomeUnknown when it takes too long."""
    try:
        outcome: Outcome = fut.result(timeout=timeout_s)
    except TimeoutError:
        raise OutcomeUnknown("not committed in time") from None
    return outcome
