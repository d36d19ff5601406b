"""Regression: a stale AppendEntries must not truncate matching (committed) entries.

Reproduces pysyncobj 0.3.17's behaviour on a real SyncObj follower driven by hand, then shows
the adapter's fix.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.node import TCPNode

from orchestrator.replication.raft_fixes import FixedTransport, StallGrace, conform_append_entries
from orchestrator.tools.localcluster import free_port
from tests.cluster_support import wait_for
from tests.replication.test_replication import _three_replicas


class _Follower(SyncObj):  # type: ignore[misc]
    def __init__(self, me: str, leader: str, transport: Any = None) -> None:
        kw = {"transportClass": transport} if transport is not None else {}
        super().__init__(me, [leader], conf=SyncObjConf(autoTick=False), **kw)

    @replicated  # type: ignore[misc]
    def noop(self) -> None:
        return None


def _ae(prev: int, prev_term: int, entries: list[Any], term: int = 1) -> dict[str, Any]:
    return {
        "type": "append_entries",
        "term": term,
        "commit_index": 4,
        "prevLogIdx": prev,
        "prevLogTerm": prev_term,
        "entries": entries,
    }


def _deliver(
    follower: _Follower, leader: str, fixed: bool, *messages: dict[str, Any]
) -> list[tuple[int, int]]:
    log = follower._SyncObj__raftLog
    handle = follower._SyncObj__onMessageReceived
    node = TCPNode(leader)
    for m in messages:
        handle(node, conform_append_entries(m, log) if fixed else m)
    return [(e[1], e[2]) for e in log]


def _scenario(fixed: bool) -> list[tuple[int, int]]:
    leader = f"127.0.0.1:{free_port()}"
    follower = _Follower(f"127.0.0.1:{free_port()}", leader)
    try:
        cmd = follower._SyncObj__raftLog[0][0]
        newer = _ae(1, 0, [(cmd, 2, 1), (cmd, 3, 1), (cmd, 4, 1)])
        older = _ae(1, 0, [(cmd, 2, 1)])  # sent earlier by the leader, arrives late
        return _deliver(follower, leader, fixed, newer, older)
    finally:
        follower.destroy()
        follower._doDestroy()


def test_pysyncobj_alone_truncates_matching_entries(caplog: Any) -> None:
    with caplog.at_level(logging.CRITICAL):
        assert _scenario(fixed=False) == [(1, 0), (2, 1)]  # entries 3 and 4 were cut


def test_adapter_keeps_matching_entries() -> None:
    assert _scenario(fixed=True) == [(1, 0), (2, 1), (3, 1), (4, 1)]


def test_conflicting_entries_are_still_replaced() -> None:
    log = [(b"c", 1, 0), (b"c", 2, 1), (b"c", 3, 1), (b"c", 4, 1)]
    msg = _ae(2, 1, [(b"x", 3, 2)], term=2)  # a new leader's entry 3 conflicts with ours
    assert conform_append_entries(msg, log) is msg


def test_tail_from_an_older_term_is_not_acknowledged() -> None:
    log = [(b"c", 1, 0), (b"c", 2, 1), (b"c", 3, 1)]
    msg = _ae(1, 0, [(b"c", 2, 1)], term=2)  # our tail (term 1) is not provably the leader's
    assert conform_append_entries(msg, log) is msg


def test_heartbeat_with_a_lagging_prev_index_becomes_a_match_at_our_end() -> None:
    log = [(b"c", 1, 0), (b"c", 2, 1), (b"c", 3, 1)]
    msg = {
        "type": "append_entries",
        "term": 1,
        "commit_index": 3,
        "prevLogIdx": 2,
        "prevLogTerm": 1,
    }
    fixed = conform_append_entries(msg, log)
    assert (fixed["prevLogIdx"], fixed["prevLogTerm"], fixed["entries"]) == (3, 1, [])


def test_fixed_transport_routes_incoming_messages_through_the_fix() -> None:
    leader = f"127.0.0.1:{free_port()}"
    follower = _Follower(f"127.0.0.1:{free_port()}", leader, transport=FixedTransport)
    try:
        transport = follower._SyncObj__transport
        assert isinstance(transport, FixedTransport)
        cmd = follower._SyncObj__raftLog[0][0]
        node = TCPNode(leader)
        transport._onMessageReceived(node, _ae(1, 0, [(cmd, 2, 1), (cmd, 3, 1)]))
        transport._onMessageReceived(node, _ae(1, 0, [(cmd, 2, 1)]))
        assert [(e[1], e[2]) for e in follower._SyncObj__raftLog] == [(1, 0), (2, 1), (3, 1)]
    finally:
        follower.destroy()
        follower._doDestroy()


def test_overlapping_message_appends_only_what_is_new() -> None:
    log = [(b"c", 1, 0), (b"c", 2, 1), (b"c", 3, 1)]
    msg = _ae(1, 0, [(b"c", 2, 1), (b"c", 3, 1), (b"n", 4, 1)])
    fixed = conform_append_entries(msg, log)
    assert (fixed["prevLogIdx"], fixed["prevLogTerm"], fixed["entries"]) == (3, 1, [(b"n", 4, 1)])


def test_stall_grace_moves_a_deadline_that_ran_out_during_a_stall_once() -> None:
    grace = StallGrace(stall_s=0.2, slack_s=0.3)
    assert grace.deadline(10.0, 10.5, following=True) == 10.5  # first tick: nothing to compare
    assert grace.deadline(10.02, 10.01, following=True) == 10.01  # ran out while ticking
    assert grace.deadline(12.0, 10.5, following=True) == 12.3  # ran out during a 2 s stall
    assert grace.deadline(12.5, 12.3, following=True) == 12.3  # no heartbeat read: elect now
    assert grace.deadline(13.0, 12.3, following=False) == 12.3  # a leader has no deadline
    assert grace.deadline(14.0, 13.0, following=True) == 14.3  # a new stall, a new grace
    assert grace.granted == 2


def test_a_follower_whose_tick_thread_stalled_does_not_depose_the_leader(tmp_path: Any) -> None:
    """Without StallGrace the follower wakes past its election deadline, calls an election
    before it reads the heartbeats waiting in its socket, and the higher term deposes the
    leader."""
    replicas = _three_replicas(tmp_path, fsync=False)
    try:
        wait_for(lambda: any(r.leader_ready() for r in replicas), 30, "a leader")
        leader = next(r for r in replicas if r.leader_ready())
        term = leader.term()
        follower = next(r for r in replicas if r is not leader)
        tick, stalled = follower.tick_stats.tick, []

        def stalling_tick() -> None:
            if not stalled:
                stalled.append(True)
                time.sleep(2.5 * follower.settings.election_max_s)
            tick()

        follower.tick_stats.tick = stalling_tick  # type: ignore[method-assign]
        wait_for(lambda: stalled, 10, "the stall")
        time.sleep(3 * follower.settings.election_max_s)
        assert [r.term() for r in replicas] == [term] * 3
        assert leader.is_leader()
        assert follower.raft._stall_grace.granted >= 1
    finally:
        for r in replicas:
            r.stop()
