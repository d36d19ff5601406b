"""The replica's Raft node: pysyncobj behind one replicated method, group commit and epochs.

- Exactly one replicated method (`_raft_apply`), taking envelope bytes. pysyncobj numbers
  replicated methods by their sorted names, so there is never a second one.
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
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import structlog
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.monotonic import monotonic as raft_monotonic
from pysyncobj.node import TCPNode

from ..core.commands import Command, LeaderEpoch
from ..core.machine import Effects, Outcome, apply_batch
from ..core.state import State
from . import envelope, journal, raft_fixes, snapshot, wire_crypto, wire_frames

log = structlog.get_logger("replication")

_ROLE = {0: "FOLLOWER", 1: "CANDIDATE", 2: "LEADER"}


class ProposalError(Exception):
    """The command was not (known to be) applied."""

    definitely_not_applied = True


class NotLeader(ProposalError):
    pass


class Overloaded(ProposalError):
    pass


class OutcomeUnknown(ProposalError):
    definitely_not_applied = False


@dataclass
class RaftSettings:
    self_addr: str
    peers: list[str]
    password: str
    data_dir: str
    bind_addr: str | None = None
    append_entries_period_s: float = 0.05
    election_min_s: float = 0.6
    election_max_s: float = 1.2
    leader_fallback_s: float = 1.0
    connection_timeout_s: float = 2.0
    connection_retry_s: float = 0.5
    auto_tick_period_s: float = 0.02
    log_compaction_min_entries: int = 5000
    log_compaction_min_time_s: float = 300.0
    batch_max_bytes: int = 64 * 1024
    # One entry in flight: under load the next entry then carries everything queued meanwhile
    # (fewer, larger entries: less per-entry work on every replica). Measured at concurrency
    # 64: 1 -> ~2 100 tasks/s, 2 -> ~1 980, 4 -> ~1 920, 8 -> ~1 800; no change at concurrency 1.
    max_in_flight_entries: int = 1
    # How long the leader may hold back telling followers a new commit index when it has
    # nothing else to send (pysyncobj sends a separate AppendEntries right after every apply).
    # The next entry's AppendEntries, or this deadline, carries it: a follower applies at most
    # this much later, and the leader's critical path loses two sends and two replies per
    # entry. Measured at concurrency 1: 13.3 -> ~10.8 ms p50 (docs/performance.md, stop 9). 0
    # sends at once, as pysyncobj does.
    commit_notify_delay_s: float = 0.005
    max_pending: int = 20_000
    # Write snapshots in a forked child so the tick thread (heartbeats) never waits for them.
    snapshot_fork: bool = True
    # fsync the journal before any Raft message is sent (and term/vote before voting). Off only
    # in tests that say so.
    fsync: bool = True
    # Stagger compactions across replicas (pysyncobj gives each a time slot; even a forced
    # compaction waits for it).
    log_compaction_split: bool = True


@dataclass
class _Pending:
    data: bytes
    futures: list[Future[Outcome]] = field(default_factory=list)
    cmd_names: list[str] = field(default_factory=list)


class _Raft(SyncObj):  # type: ignore[misc]
    def __init__(self, owner: Replica, self_addr: str, peers: list[str], conf: SyncObjConf) -> None:
        self._owner = owner  # set before SyncObj.__init__: never part of any pickle
        # When a held-back commit index must go out (0: none held back; leader only).
        self._commit_notify_at = 0.0
        super().__init__(self_addr, peers, conf=conf, transportClass=raft_fixes.FixedTransport)

    def _onTick(self, timeToWait: float = 0.0) -> Any:
        # The leader counts its own log towards a commit in this tick: make it durable first
        # (its AppendEntries left before the fsync; see raft_fixes.FixedTransport). The journal
        # is pysyncobj's own attribute, there from the first tick on.
        sync = getattr(getattr(self, "_SyncObj__raftLog", None), "sync", None)
        if sync is not None:
            # A failure is reported by the tick-end sync; acks and votes fail the same way.
            with contextlib.suppress(OSError):
                sync()
        if self._commit_notify_at:
            if self._SyncObj__newAppendEntriesTime > self._commit_notify_at or not self._isLeader():
                self._commit_notify_at = 0.0  # AppendEntries went out since (or we follow)
            else:
                # Wake in time to send it (see _SyncObj__applyLogEntries).
                left = self._commit_notify_at - raft_monotonic()
                timeToWait = min(timeToWait, max(left, 0.0))
        return super()._onTick(timeToWait)

    def _SyncObj__applyLogEntries(self) -> bool:
        """pysyncobj's apply step, which asks for AppendEntries at once whenever it applied
        something (with appendEntriesUseBatch off), only to carry the new commit index. On the
        leader that is two sends now and two replies to handle, right when the calls whose
        commands just committed need the GIL and a CPU. Instead the commit index goes out with
        the next AppendEntries, held back at most `commit_notify_delay_s`: the next entry
        usually carries it first. Followers reply to an entry before they apply anything, so
        applying later does not slow a commit."""
        need = bool(SyncObj._SyncObj__applyLogEntries(self))
        delay = self._owner.settings.commit_notify_delay_s
        if not need or delay <= 0 or not self._isLeader():
            return need
        due = raft_monotonic() + delay  # pysyncobj's clock (CLOCK_MONOTONIC_RAW)
        if self._SyncObj__newAppendEntriesTime > due:
            self._SyncObj__newAppendEntriesTime = due
        self._commit_notify_at = self._SyncObj__newAppendEntriesTime
        return False

    @replicated  # type: ignore[misc]
    def _raft_apply(self, data: bytes) -> Any:
        return self._owner._apply_entry(data)


class Replica:
    """Owns the State, the lock that guards it, and the pysyncobj node."""

    def __init__(self, settings: RaftSettings) -> None:
        self.settings = settings
        self.state = State()
        self.log_hash = b""
        self.lock = threading.RLock()
        self.listeners: list[Callable[[Effects], None]] = []
        self.applied_cond = threading.Condition(self.lock)
        self.apply_error: str = ""
        self._queue: deque[tuple[bytes, Future[Outcome], str]] = deque()
        # Commands that ride in the next entry carrying another command (see propose_lazy).
        self._lazy: deque[tuple[bytes, Future[Outcome], str]] = deque()
        # Queued commands that do not take the lazy ones along (propose(carry_lazy=False)).
        self._no_carry: set[Future[Outcome]] = set()
        self._qlock = threading.Lock()
        self._qcond = threading.Condition(self._qlock)
        self._in_flight = 0
        self._leader_term = 0  # term we lead in, 0 when not leading
        self._clock_base_ms = 0
        self._clock_base_mono = 0.0
        # (cluster time of the latest applied entry, monotonic time it was applied here)
        self._applied_clock: tuple[int, float] | None = None
        self._last_stamp_ms = 0
        self._stopped = False
        self._epoch_future: Future[Outcome] | None = None
        self._sync_failing = False
        self._step_down_requested = False
        os.makedirs(settings.data_dir, exist_ok=True)
        self.journal_path = os.path.join(settings.data_dir, "raft.journal")
        self.dump_path = os.path.join(settings.data_dir, "raft.dump")
        dump_prev_idx = 0
        if os.path.exists(self.dump_path):
            # pysyncobj only logs a failed dump load and carries on with an empty state; refuse
            # to start instead, before it can serve anything wrong.
            header, _ = snapshot.read_snapshot(self.dump_path)
            dump_prev_idx = int(header["prev"][1])
        self.snapshotter = snapshot.ForkingSnapshotter(
            self.dump_path,
            self._dump_state_unlocked,
            self._load_state,
            TCPNode,
            settings.snapshot_fork,
        )
        conf = SyncObjConf(
            password=settings.password,
            bindAddress=settings.bind_addr or settings.self_addr,
            dynamicMembershipChange=True,
            appendEntriesUseBatch=False,
            appendEntriesPeriod=settings.append_entries_period_s,
            raftMinTimeout=settings.election_min_s,
            raftMaxTimeout=settings.election_max_s,
            leaderFallbackTimeout=settings.leader_fallback_s,
            connectionTimeout=max(settings.connection_timeout_s, settings.election_max_s),
            connectionRetryTime=settings.connection_retry_s,
            autoTickPeriod=settings.auto_tick_period_s,
            appendEntriesBatchSizeBytes=max(settings.batch_max_bytes * 2, 2**16),
            logCompactionMinEntries=settings.log_compaction_min_entries,
            logCompactionMinTime=settings.log_compaction_min_time_s,
            logCompactionSplit=settings.log_compaction_split,
            journalFile=self.journal_path,
            fullDumpFile=self.dump_path,
            serializer=self.snapshotter.serializer,
            deserializer=self.snapshotter.deserializer,
            serializeChecker=self.snapshotter.checker,
            onStateChanged=self._on_state_changed,
        )
        journal.install()
        wire_crypto.install()
        wire_frames.install()
        journal.register(self.journal_path, settings.fsync, keep_from_idx=dump_prev_idx)
        # Must run on a thread that lives as long as the process: pysyncobj's tick thread exits
        # when the thread that built the SyncObj does.
        self.raft = _Raft(self, settings.self_addr, settings.peers, conf)
        self.journal = journal.journal_for(self.journal_path)
        self._install_tick_sync()
        self._proposer = threading.Thread(target=self._propose_loop, name="proposer", daemon=True)
        self._proposer.start()

    def _install_tick_sync(self) -> None:
        """Sync the journal at the end of every tick, besides before every send (FixedTransport)."""
        # Entries appended in a tick with nothing to send (a single-node cluster, an idle
        # follower) are synced at the end of the tick, before the next tick can commit them.
        self.raft.addOnTickCallback(self._tick_sync)

    def _tick_sync(self) -> None:
        if self._step_down_requested:
            self._step_down_requested = False
            if self.raft._isLeader():
                self.raft.transferLeadership()
        jrnl = self.journal
        if jrnl is None:
            return
        try:
            jrnl.sync()
        except OSError as exc:
            # Nothing unsynced is acknowledged: sends sync first and fail the same way.
            if not self._sync_failing:
                log.error("journal_sync_failed", error=str(exc))
            self._sync_failing = True
        else:
            if self._sync_failing:
                log.info("journal_sync_recovered")
            self._sync_failing = False

    # ------------------------------------------------------------ apply (tick thread)

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
            for listener in self.listeners:
                try:
                    listener(fx)
                except Exception:
                    log.exception("listener_failed")
            return outcomes
        except Exception as exc:  # pragma: no cover - a bug; never let it reach pysyncobj
            log.exception("apply_failed")
            self.apply_error = f"apply failed: {exc}"
            return []

    def _chain(self, data: bytes) -> None:
        # A rolling hash of every applied entry: replicas at the same sequence number must agree.
        self.log_hash = hashlib.blake2b(self.log_hash + data, digest_size=16).digest()

    def _dump_state_unlocked(self) -> tuple[bytes, int, str]:
        # Runs in the forked child (or on the tick thread, the only writer of the state). Never
        # take self.lock here: a reader thread may have held it at fork time.
        return self.state.snapshot_bytes(), self.state.seq, self.log_hash.hex()

    def _load_state(self, data: bytes, header: dict[str, Any]) -> None:
        new = State.from_snapshot_bytes(data)
        with self.lock:
            self.state = new
            self.log_hash = bytes.fromhex(header.get("log_hash", ""))
            self._applied_clock = None  # a snapshot's time says nothing about now
            self.applied_cond.notify_all()
        log.info("snapshot_loaded", seq=new.seq)
        fx = Effects(ready_types=list(new.queues), timers_changed=True, reloaded=True)
        for listener in self.listeners:
            try:
                listener(fx)
            except Exception:
                log.exception("listener_failed")

    # ------------------------------------------------------------ leadership

    def _on_state_changed(self, old: int, new: int) -> None:
        # tick thread: keep it short
        if new == 2:
            term = self.raft.raftCurrentTerm
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
        elif old == 2:
            self._leader_term = 0
            log.info("lost_leadership", new_role=_ROLE.get(new))
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
        """Re-propose LeaderEpoch if the first attempt failed (called by the runtime's timer)."""
        term = self._leader_term
        if not term or not self.raft._isLeader():
            return
        with self.lock:
            if self.state.epoch >= term:
                return
        fut = self._epoch_future
        if fut is None or (fut.done() and fut.exception() is not None):
            self._propose_epoch(term)

    def now_ms(self) -> int:
        """Cluster time as this leader stamps it: applied base + own monotonic delta."""
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
        if not term or not self.raft._isLeader() or not self.fresh():
            return False
        with self.lock:
            return self.state.epoch == term

    @property
    def journal_error(self) -> str:
        """Why the journal cannot be written right now (e.g. a full disk), or ''."""
        if self._sync_failing and self.journal is not None:
            return self.journal.last_error or "journal writes are failing"
        return ""

    def request_step_down(self) -> None:
        """Hand leadership to the most caught-up follower (done on the tick thread)."""
        self._step_down_requested = True

    def fresh(self) -> bool:
        """Whether this replica's view is current enough to serve reads and decisions.

        A leader must have heard from a majority within the minimum election timeout (no newer
        leader can exist yet); a follower must have heard from its leader recently. A replica
        resumed after SIGSTOP, or cut off by a partition, fails this until it hears again,
        even while pysyncobj still calls it leader.
        """
        now = raft_monotonic()
        try:
            if self.raft._isLeader():
                times = list(self.raft._SyncObj__lastResponseTime.values())
                recent = sum(1 for t in times if t > now - self.settings.election_min_s)
                return 1 + recent > (len(times) + 1) / 2
            deadline = self.raft._SyncObj__raftElectionDeadline
        except RuntimeError:  # a dict resized under us by the tick thread: ask again later
            return False
        return bool(deadline > now and self.raft._getLeader() is not None)

    def leader_addr(self) -> str | None:
        leader = self.raft._getLeader()
        return leader.address if leader is not None else None

    def role(self) -> str:
        if self.raft._isLeader():
            return "LEADER"
        st = self.raft.getStatus()
        return _ROLE.get(st.get("state", 0), "FOLLOWER")

    # ------------------------------------------------------------ proposals

    def propose_many(self, cmds: list[Command]) -> list[Future[Outcome]]:
        """Queue several commands at once, in order. Leader only; all or none are queued.

        One wake-up of the proposer for all of them, so they go in the same entry (up to its
        size): queued one by one, the proposer could send the first alone and, with one entry
        in flight, leave the rest waiting for its commit.
        """
        if not self.leader_ready():
            raise NotLeader("this replica is not the ready leader")
        items: list[tuple[bytes, Future[Outcome], str]] = [
            (cmd.log_json(), Future(), cmd.NAME) for cmd in cmds
        ]
        self._enqueue(items)
        return [fut for _, fut, _ in items]

    def propose(self, cmd: Command, carry_lazy: bool = True) -> Future[Outcome]:
        """Queue a command for the next group-commit entry. Leader only.

        With carry_lazy=False the entry does not take the lazy commands along unless another
        command in it does (a Tick that only ends parked polls must not park the next ones,
        or idle pollers would keep each other's expiry Ticks going).
        """
        if not self.leader_ready():
            raise NotLeader("this replica is not the ready leader")
        fut: Future[Outcome] = Future()
        if not carry_lazy:
            with self._qcond:
                self._no_carry.add(fut)
        self._enqueue([(cmd.log_json(), fut, cmd.NAME)])
        return fut

    def propose_lazy(self, cmd: Command) -> Future[Outcome]:
        """Queue a command without sending an entry for it. Leader only.

        It rides at the head of the next entry that carries another command, or goes alone at
        flush_lazy(). A parked poll only matters to a command that makes a task ready, so
        parking this way costs no entry of its own, and an idle cluster commits nothing.
        """
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
        """Take back a lazy command not yet sent; False when it is already on its way."""
        with self._qcond:
            for i, item in enumerate(self._lazy):
                if item[1] is fut:
                    del self._lazy[i]
                    return True
        return False

    def flush_lazy(self) -> None:
        """Send the lazy commands now (in the next entry)."""
        with self._qcond:
            if self._lazy:
                self._queue.extendleft(reversed(self._lazy))
                self._lazy.clear()
                self._wake_proposer()

    def _enqueue(self, items: list[tuple[bytes, Future[Outcome], str]]) -> None:
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

    def _propose_loop(self) -> None:
        while not self._stopped:
            with self._qcond:
                while not self._stopped and (
                    not self._queue or self._in_flight >= self.settings.max_in_flight_entries
                ):
                    self._qcond.wait(0.5)
                if self._stopped:
                    return
                batch: list[tuple[bytes, Future[Outcome], str]] = []
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
                    # Lazy commands first: a parked poll must be applied before the command
                    # that makes its task ready.
                    batch[:0] = self._lazy
                    self._lazy.clear()
                self._in_flight += 1
            term = self._leader_term
            if not term or not self.raft._isLeader():
                self._entry_done()
                for _, fut, _ in batch:
                    if not fut.done():
                        fut.set_exception(NotLeader("not the leader"))
                continue
            data = envelope.encode_commands(term, self.now_ms(), [b for b, _, _ in batch])
            futures = [f for _, f, _ in batch]
            try:
                self.raft._raft_apply(data, callback=self._make_callback(futures))
            except Exception as exc:  # e.g. pysyncobj's own queue full
                self._entry_done()
                for fut in futures:
                    if not fut.done():
                        fut.set_exception(Overloaded(f"raft refused the entry: {exc}"))

    def _entry_done(self) -> None:
        with self._qcond:
            self._in_flight -= 1
            self._wake_proposer()

    def _make_callback(self, futures: list[Future[Outcome]]) -> Callable[[Any, int], None]:
        def callback(result: Any, err: int) -> None:
            self._entry_done()
            if (
                err == FAIL_REASON.SUCCESS
                and isinstance(result, list)
                and len(result) == len(futures)
            ):
                for fut, outcome in zip(futures, result, strict=False):
                    if not fut.done():
                        fut.set_result(outcome)
                return
            if err in (
                FAIL_REASON.QUEUE_FULL,
                FAIL_REASON.MISSING_LEADER,
                FAIL_REASON.DISCARDED,
                FAIL_REASON.NOT_LEADER,
            ):
                exc: ProposalError = NotLeader(f"raft did not apply the entry (reason {err})")
            elif err == FAIL_REASON.SUCCESS:
                exc = OutcomeUnknown("the entry was applied but produced no outcomes")
            else:
                exc = OutcomeUnknown(f"raft outcome unknown (reason {err})")
            for fut in futures:
                if not fut.done():
                    fut.set_exception(exc)

        return callback

    # ------------------------------------------------------------ reads

    def wait_applied(self, seq: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.applied_cond:
            while self.state.seq < seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.applied_cond.wait(left)
            return True

    def status(self) -> dict[str, Any]:
        st = self.raft.getStatus()
        with self.lock:
            seq, clock, n_wf = self.state.seq, self.state.clock_ms, len(self.state.workflows)
            log_hash = self.log_hash.hex()
        return {
            "role": self.role(),
            "term": int(st.get("raft_term", 0)),
            "commit_index": int(st.get("commit_idx", 0)),
            "last_applied": int(st.get("last_applied", 0)),
            "log_len": int(st.get("log_len", 0)),
            "leader": self.leader_addr(),
            "ready": bool(self.raft.isReady()),
            "has_quorum": bool(st.get("has_quorum", False)),
            "applied_sequence": seq,
            "applied_hash": log_hash,
            "cluster_time_ms": clock,
            "workflows": n_wf,
        }

    def force_snapshot(self) -> None:
        self.raft.forceLogCompaction()

    def stop(self) -> None:
        self._stopped = True
        with self._qcond:
            self._qcond.notify_all()
        self._fail_queued(NotLeader("replica stopping"))
        try:
            # Waits for the tick thread, which closes the journal (a final sync) and sockets.
            self.raft.destroy_synchronous()
        except Exception:
            log.exception("raft_destroy_failed")
