"""A follower serves reads only once it has applied what its leader had committed when it last
heard from it (RaftReplica.caught_up): a replica resumed after a pause hears the new leader,
and so is fresh, before its log has the entries that leader committed meanwhile; reading then
would answer NOT_FOUND for a workflow that exists (tests/cluster/test_faults.py's paused-leader
test saw it under load)."""

from __future__ import annotations

import threading
from typing import Any

from orchestrator.replication.node import RaftReplica


class _Raft:
    def __init__(self, leader: bool, commit: int | None, applied: int) -> None:
        self.leader = leader
        self._SyncObj__leaderCommitIndex = commit
        self._SyncObj__raftLastApplied = applied

    def _isLeader(self) -> bool:
        return self.leader


def _replica(raft: Any) -> RaftReplica:
    replica = object.__new__(RaftReplica)  # only what caught_up reads
    replica.raft = raft
    replica.applied_cond = threading.Condition(threading.RLock())
    return replica


def test_a_leader_is_caught_up() -> None:
    assert _replica(_Raft(True, 10, 3)).caught_up(0.01)


def test_a_follower_behind_its_leaders_commit_is_not() -> None:
    assert not _replica(_Raft(False, 10, 9)).caught_up(0.05)
    assert not _replica(_Raft(False, None, 9)).caught_up(0.05)  # no leader heard yet


def test_a_follower_is_caught_up_once_it_applied_the_commit_it_heard() -> None:
    raft = _Raft(False, 10, 9)
    replica = _replica(raft)

    def apply() -> None:
        with replica.applied_cond:
            raft._SyncObj__raftLastApplied = 10
            replica.applied_cond.notify_all()

    timer = threading.Timer(0.05, apply)
    timer.start()
    try:
        assert replica.caught_up(10.0)
    finally:
        timer.join()
