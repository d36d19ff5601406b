"""Regression: a stale AppendEntries must not truncate matching (committed) entries.

Reproduces pysyncobj 0.3.17's behaviour on a real SyncObj follower driven by hand, then shows
the adapter's fix.
"""

from __future__ import annotations

import logging
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.node import TCPNode

from orchestrator.replication.raft_fixes import FixedTransport, conform_append_entries
from orchestrator.tools.localcluster import free_port


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
