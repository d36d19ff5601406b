"""The replica's Raft node: pysyncobj behind one replicated method.

Exactly one replicated method (`_raft_apply`), taking envelope bytes: pysyncobj numbers
replicated methods by their sorted names, so there is never a second one. Group commit, leader
epochs and cluster time are base.py's; this module adds what pysyncobj decides: who leads,
whether this replica is in contact, membership, snapshots and the journal.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.monotonic import monotonic as raft_monotonic
from pysyncobj.node import TCPNode

from ..core.state import State
from . import (
    journal,
    prevote,
    raft_fixes,
    snapshot,
    tick_stats,
    wire_crypto,
    wire_frames,
    wire_guard,
)
from .api import (
    Member,
    NotLeader,
    OutcomeUnknown,
    Overloaded,
    ReplicaStatus,
)
from .base import EntryDone, ReplicaBase
from .settings import DUMP_FILE, JOURNAL_FILE, RaftSettings

log = structlog.get_logger("replication")

_ROLE = {0: "FOLLOWER", 1: "CANDIDATE", 2: "LEADER"}
# How long a membership change may take before the caller is told to retry.
MEMBERSHIP_TIMEOUT_S = 15.0


class _Raft(SyncObj):  # type: ignore[misc]
    def __init__(
        self, owner: RaftReplica, self_addr: str, peers: list[str], conf: SyncObjConf
    ) -> None:
        self._owner = owner  # set before SyncObj.__init__: never part of any pickle
        # When a held-back commit index must go out (0: none held back; leader only).
        self._commit_notify_at = 0.0
        self._stall_grace = raft_fixes.StallGrace()
        self.pre_vote = prevote.RaftPreVote(
            self,
            owner.settings.election_min_s,
            owner.settings.election_max_s,
            owner.settings.pre_vote,
        )
        super().__init__(self_addr, peers, conf=conf, transportClass=raft_fixes.FixedTransport)

    def _onTick(self, timeToWait: float = 0.0) -> Any:
        self._owner.tick_stats.tick()
        now = raft_monotonic()
        self._SyncObj__raftElectionDeadline = self._stall_grace.deadline(
            now, self._SyncObj__raftElectionDeadline, not self._isLeader()
        )
        self.pre_vote.gate(now)
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

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:
        """pysyncobj loads a snapshot on the tick thread (its own at start-up, or one the
        leader sent a new or lagging follower), which takes seconds for a large state (3 s for
        100 000 running workflows). Its election deadline was set before the load: counted
        from then, the follower calls an election at its next tick, and (pysyncobj has no
        pre-vote) the higher term deposes a healthy leader. Count it from the end of the load:
        the leader's next heartbeat is due well within it."""
        SyncObj._SyncObj__loadDumpFile(self, clearJournal)
        self._SyncObj__raftElectionDeadline = (
            raft_monotonic() + self._SyncObj__generateRaftTimeout()
        )

    @replicated  # type: ignore[untyped-decorator]
    def _raft_apply(self, data: bytes) -> Any:
        return self._owner._apply_entry(data)


class Observer:
    """Told what the replication layer's work cost (orchestrator/metrics.py measures it);
    these do nothing, so a replica without metrics pays one call."""

    def committed(self, seconds: float) -> None:
        """An entry's outcome arrived, `seconds` after the leader handed it to Raft."""

    def synced(self, seconds: float) -> None:
        """The journal wrote and fsynced what was pending."""

    def snapshot_written(self, seconds: float, ok: bool, size: int) -> None:
        """A snapshot ended (`ok`: written), its file `size` bytes."""

    def snapshot_loaded(self, seconds: float, size: int) -> None:
        """A snapshot of `size` bytes was loaded in `seconds`."""


class RaftReplica(ReplicaBase):
    """The Replica protocol (api.py) over a pysyncobj node."""

    def __init__(
        self,
        settings: RaftSettings,
        configured: list[Member] | None = None,
        before_start: Callable[[RaftReplica], None] | None = None,
    ) -> None:
        """`before_start` runs before the Raft node exists (and so before it loads a snapshot
        or applies an entry): listeners that must see every batch subscribe there."""
        super().__init__(settings, configured)
        self._sync_failing = False
        self._step_down_requested = False
        self.observer = Observer()
        os.makedirs(settings.data_dir, exist_ok=True)
        self.journal_path = os.path.join(settings.data_dir, JOURNAL_FILE)
        self.dump_path = os.path.join(settings.data_dir, DUMP_FILE)
        dump_prev_idx = 0
        if os.path.exists(self.dump_path):
            # pysyncobj only logs a failed dump load and carries on with an empty state; refuse
            # to start instead, before it can serve anything wrong.
            header, _ = snapshot.read_snapshot(self.dump_path)
            dump_prev_idx = int(header["prev"][1])
        self.tick_stats = tick_stats.TickStats(settings.data_dir)
        self.snapshotter = snapshot.ForkingSnapshotter(
            self.dump_path,
            self._dump_state_unlocked,
            self._load_state,
            TCPNode,
            settings.snapshot_fork,
            self._history_gate,
        )
        journal.install()
        wire_crypto.install()
        wire_frames.install()
        wire_guard.install()
        journal.register(self.journal_path, settings.fsync, keep_from_idx=dump_prev_idx)
        if before_start is not None:
            before_start(self)
        # Must run on a thread that lives as long as the process: pysyncobj's tick thread exits
        # when the thread that built the SyncObj does.
        self.raft = _Raft(self, settings.self_addr, settings.peers, self._conf())
        self.journal = journal.journal_for(self.journal_path)
        if self.journal is not None:
            self.journal.on_sync = self._synced
        # Entries appended in a tick with nothing to send (a single-node cluster, an idle
        # follower) are synced at the end of the tick, besides before every send
        # (FixedTransport), before the next tick can commit them.
        self.raft.addOnTickCallback(self._tick_sync)
        self._proposer.start()

    def _conf(self) -> SyncObjConf:
        s = self.settings
        return SyncObjConf(
            password=s.password,
            bindAddress=s.bind_addr or s.self_addr,
            dynamicMembershipChange=True,
            appendEntriesUseBatch=False,
            appendEntriesPeriod=s.append_entries_period_s,
            raftMinTimeout=s.election_min_s,
            raftMaxTimeout=s.election_max_s,
            # Check-quorum: a leader that heard from no majority within an election timeout
            # steps down (by then the majority may have elected another).
            leaderFallbackTimeout=min(s.leader_fallback_s, s.election_max_s),
            connectionTimeout=max(s.connection_timeout_s, s.election_max_s),
            connectionRetryTime=s.connection_retry_s,
            autoTickPeriod=s.auto_tick_period_s,
            appendEntriesBatchSizeBytes=max(s.batch_max_bytes * 2, 2**16),
            logCompactionMinEntries=s.log_compaction_min_entries,
            logCompactionMinTime=s.log_compaction_min_time_s,
            logCompactionSplit=s.log_compaction_split,
            journalFile=self.journal_path,
            fullDumpFile=self.dump_path,
            serializer=self._serialize,
            deserializer=self._deserialize,
            serializeChecker=self._check_snapshot,
            onStateChanged=self._on_state_changed,
        )

    def _synced(self, seconds: float) -> None:
        self.observer.synced(seconds)  # the observer in place now (metrics attach it later)

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

    # ------------------------------------------------------------ snapshots (tick thread)

    def _dump_state_unlocked(self) -> tuple[bytes, int, str]:
        # Runs in the forked child (or on the tick thread, the only writer of the state). Never
        # take self.lock here: a reader thread may have held it at fork time.
        return self.state.snapshot_bytes(), self.state.seq, self.log_hash.hex()

    # Timed for tick_stats: the fork (or a synchronous write) and a load run on the tick thread.
    def _serialize(self, tmp_path: str, data: Any) -> None:
        self.tick_stats.fork_started()
        try:
            self.snapshotter.serializer(tmp_path, data)
        finally:
            self.tick_stats.fork_returned()

    def _check_snapshot(self) -> int:
        result = self.snapshotter.checker()
        if result in (2, 3):
            t0 = self.tick_stats._snap_t0
            self.tick_stats.snapshot_ended(result)
            ok = result == 2 and os.path.exists(self.dump_path)
            size = os.path.getsize(self.dump_path) if ok else 0
            self.observer.snapshot_written(time.monotonic() - t0, ok, size)
        return result

    def _deserialize(self, path: str) -> Any:
        t0 = time.monotonic()
        out = self.snapshotter.deserializer(path)
        size = os.path.getsize(path)
        self.tick_stats.loaded(time.monotonic() - t0, size)
        self.observer.snapshot_loaded(time.monotonic() - t0, size)
        return out

    def _history_gate(self) -> snapshot.Gate | None:
        barrier = self.history_barrier
        return None if barrier is None else barrier()

    def _load_state(self, data: bytes, header: dict[str, Any]) -> None:
        self._replace_state(
            State.from_snapshot_bytes(data), bytes.fromhex(header.get("log_hash", ""))
        )

    # ------------------------------------------------------------ leadership

    def _on_state_changed(self, old: int, new: int) -> None:
        # tick thread: keep it short
        if new == 2:
            self._became_leader(self.raft.raftCurrentTerm)
        elif old == 2:
            self._lost_leadership(_ROLE.get(new, "FOLLOWER"))

    def is_leader(self) -> bool:
        return bool(self.raft._isLeader())

    def term(self) -> int:
        return int(self.raft.raftCurrentTerm)

    @property
    def journal_error(self) -> str:
        if self._sync_failing and self.journal is not None:
            return self.journal.last_error or "journal writes are failing"
        return ""

    def request_step_down(self) -> None:
        self._step_down_requested = True  # done on the tick thread

    def fresh(self) -> bool:
        """A leader must have heard from a majority within the minimum election timeout (no
        newer leader can exist yet); a follower must have heard from its leader recently. A
        replica resumed after SIGSTOP, or cut off by a partition, fails this until it hears
        again, even while pysyncobj still calls it leader."""
        now = raft_monotonic()
        try:
            if self.raft._isLeader():
                return heard_from_majority(
                    list(self.raft.otherNodes),
                    self.raft._SyncObj__lastResponseTime,
                    now - self.settings.election_min_s,
                )
        except RuntimeError:  # a dict resized under us by the tick thread: ask again later
            return False
        return self._leader_heard(now)

    def _leader_heard(self, now: float) -> bool:
        """A follower heard its leader within the longest election timeout. (Not pysyncobj's
        election deadline: a pre-vote round moves it on while no leader is heard.)"""
        heard = self.raft.pre_vote.leader_heard_within(now, self.settings.election_max_s)
        return bool(heard and self.raft._getLeader() is not None)

    def caught_up(self, timeout_s: float) -> bool:
        # pysyncobj keeps the commit index of the leader's latest AppendEntries, even one it
        # rejected because its log did not match yet; applying up to it is what it lacks.
        if self.raft._isLeader():
            return True
        target = self.raft._SyncObj__leaderCommitIndex
        if target is None:
            return False
        deadline = time.monotonic() + timeout_s
        # pysyncobj records an entry as applied after our apply returns (and notifies): poll.
        while self.raft._SyncObj__raftLastApplied < target:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self.applied_cond:
                self.applied_cond.wait(min(left, 0.01))
        return True

    def leader_addr(self) -> str | None:
        """The leader, as far as this replica knows; None when a follower has not heard it
        within an election timeout (a dead leader is no hint to give clients)."""
        leader = self.raft._getLeader()
        if leader is None:
            return None
        if not self.raft._isLeader() and not self._leader_heard(raft_monotonic()):
            return None
        return str(leader.address)

    def role(self) -> str:
        if self.raft._isLeader():
            return "LEADER"
        st = self.raft.getStatus()
        return _ROLE.get(st.get("state", 0), "FOLLOWER")

    # ------------------------------------------------------------ proposals

    def _send_entry(self, term: int, data: bytes, done: EntryDone) -> None:
        t0 = time.monotonic()

        def callback(result: Any, err: int) -> None:
            if err == FAIL_REASON.SUCCESS and isinstance(result, list):
                self.observer.committed(time.monotonic() - t0)
                done(result)
            elif err in (
                FAIL_REASON.QUEUE_FULL,
                FAIL_REASON.MISSING_LEADER,
                FAIL_REASON.DISCARDED,
                FAIL_REASON.NOT_LEADER,
            ):
                done(NotLeader(f"raft did not apply the entry (reason {err})"))
            elif err == FAIL_REASON.SUCCESS:
                done(OutcomeUnknown("the entry was applied but produced no outcomes"))
            else:
                done(OutcomeUnknown(f"raft outcome unknown (reason {err})"))

        try:
            self.raft._raft_apply(data, callback=callback)
        except Exception as exc:  # e.g. pysyncobj's own queue full
            raise Overloaded(f"raft refused the entry: {exc}") from None

    # ------------------------------------------------------------ membership

    def _raft_peers(self) -> set[str]:
        return {n.address for n in self.raft.otherNodes}

    def _raft_add(self, raft_addr: str) -> None:
        self._change_membership(self.raft.addNodeToCluster, raft_addr)

    def _raft_remove(self, raft_addr: str) -> None:
        self._change_membership(self.raft.removeNodeFromCluster, raft_addr)

    def _change_membership(self, change: Any, raft_addr: str) -> None:
        """Run pysyncobj's add/remove and wait for its callback; one change at a time."""
        done = threading.Event()
        result: dict[str, int] = {}

        def callback(res: Any, err: int) -> None:
            result["err"] = err
            done.set()

        change(raft_addr, callback=callback)
        if not done.wait(MEMBERSHIP_TIMEOUT_S):
            raise OutcomeUnknown("the Raft membership change was not confirmed in time")
        if result["err"] != 0:
            raise NotLeader(
                f"Raft refused the membership change (reason {result['err']}: another change "
                "in progress, or the new leader's first entry is not committed yet)"
            )

    # ------------------------------------------------------------ status

    def status(self) -> ReplicaStatus:
        st = self.raft.getStatus()
        with self.lock:
            seq, clock, n_wf = self.state.seq, self.state.clock_ms, len(self.state.workflows)
            log_hash = self.log_hash.hex()
        return ReplicaStatus(
            role=self.role(),
            term=int(st.get("raft_term", 0)),
            commit_index=int(st.get("commit_idx", 0)),
            last_applied=int(st.get("last_applied", 0)),
            log_len=int(st.get("log_len", 0)),
            leader=self.leader_addr(),
            ready=bool(self.raft.isReady()),
            has_quorum=bool(st.get("has_quorum", False)),
            applied_sequence=seq,
            applied_hash=log_hash,
            cluster_time_ms=clock,
            workflows=n_wf,
        )

    def force_snapshot(self) -> None:
        self.raft.forceLogCompaction()

    def stop(self) -> None:
        self._stop_proposer()
        try:
            # Waits for the tick thread, which closes the journal (a final sync) and sockets.
            self.raft.destroy_synchronous()
        except Exception:
            log.exception("raft_destroy_failed")


def heard_from_majority(voters: list[Any], last_response: dict[Any, float], since: float) -> bool:
    """Whether this leader and the other voters it heard from after `since` are a majority.

    Only the current voters count: pysyncobj keeps the response times of removed ones, which
    would make a leader that lost one of three voters after a 5 -> 3 change think itself cut off.
    """
    recent = sum(1 for n in voters if last_response.get(n, 0.0) > since)
    return 1 + recent > (len(voters) + 1) / 2
