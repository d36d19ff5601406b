"""The pysyncobj adapter on a single in-process replica: group commit, snapshots, restart."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from orchestrator.core import commands as C
from orchestrator.replication import envelope, snapshot
from orchestrator.replication.api import Overloaded
from orchestrator.replication.node import RaftReplica, heard_from_majority
from orchestrator.replication.settings import RaftSettings
from orchestrator.tools.localcluster import free_port
from tests.cluster_support import wait_for


def _settings(data_dir: str, port: int, **kw: Any) -> RaftSettings:
    return RaftSettings(
        self_addr=f"127.0.0.1:{port}", peers=[], password="test-password", data_dir=data_dir, **kw
    )


def _three_replicas(tmp_path: Any, **kw: Any) -> list[RaftReplica]:
    """Three in-process replicas on loopback, one cluster."""
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    return [
        RaftReplica(
            RaftSettings(
                self_addr=addr,
                peers=[a for a in addrs if a != addr],
                password="test-password",
                data_dir=str(tmp_path / f"n{i}"),
                **kw,
            )
        )
        for i, addr in enumerate(addrs)
    ]


def _register(replica: RaftReplica, n: int) -> None:
    futs = [
        replica.propose(
            C.RegisterTaskDefs(request_id=f"r{i}", task_defs=[{"name": f"t{i}", "retryCount": 1}])
        )
        for i in range(n)
    ]
    for f in futs:
        assert f.result(timeout=30).ok


def _content(replica: RaftReplica) -> dict[str, Any]:
    snap = replica.state.to_snapshot()
    for key in ("seq", "epoch", "clock_ms"):
        snap.pop(key)
    return snap


@pytest.mark.parametrize("fork", [True, False])
def test_snapshot_then_restart_restores_the_same_state(tmp_path: Any, fork: bool) -> None:
    port = free_port()
    data = str(tmp_path / "n1")
    replica = RaftReplica(
        _settings(
            data,
            port,
            log_compaction_min_entries=50,
            snapshot_fork=fork,
            log_compaction_split=False,
        )
    )
    try:
        wait_for(replica.leader_ready, 30, "leadership")
        _register(replica, 300)
        replica.force_snapshot()
        wait_for(lambda: replica.snapshotter.completed >= 1, 30, "a completed snapshot")
        assert os.path.exists(replica.dump_path)
        _register_more = [replica.propose(C.Noop()) for _ in range(10)]
        for f in _register_more:
            f.result(timeout=30)
        with replica.lock:
            before, seq = _content(replica), replica.state.seq
    finally:
        replica.stop()
    again = RaftReplica(_settings(data, port, snapshot_fork=fork))
    try:
        # The restarted node replays snapshot + journal, then commits its own LeaderEpoch.
        wait_for(again.leader_ready, 30, "replay of snapshot and journal, and leadership")
        with again.lock:
            assert again.state.seq == seq + 1
            assert _content(again) == before
    finally:
        again.stop()


def test_group_commit_batches_queued_proposals(tmp_path: Any) -> None:
    replica = RaftReplica(_settings(str(tmp_path / "n1"), free_port(), max_in_flight_entries=1))
    try:
        wait_for(replica.leader_ready, 30, "leadership")
        before = replica.raft.getStatus()["log_len"]
        futs = [replica.propose(C.Noop()) for _ in range(500)]
        seqs = [f.result(timeout=30).seq for f in futs]
        assert seqs == sorted(seqs) and len(set(seqs)) == 500, "one outcome per command, in order"
        entries = replica.raft.getStatus()["log_len"] - before
        assert entries < 500, f"500 queued proposals must share entries, got {entries}"
    finally:
        replica.stop()


def test_commands_proposed_together_share_one_entry_or_are_all_refused(tmp_path: Any) -> None:
    replica = RaftReplica(
        _settings(str(tmp_path / "n1"), free_port(), max_in_flight_entries=1, max_pending=50)
    )
    try:
        wait_for(replica.leader_ready, 30, "leadership")
        for _ in range(5):
            before = replica.raft.getStatus()["log_len"]
            futs = replica.propose_many([C.Noop(pad=str(i)) for i in range(20)])
            seqs = [f.result(timeout=30).seq for f in futs]
            assert seqs == list(range(seqs[0], seqs[0] + 20)), "in order, one outcome each"
            assert replica.raft.getStatus()["log_len"] - before == 1, "all 20 in one entry"
        queued = replica.state.seq
        with pytest.raises(Overloaded):
            replica.propose_many([C.Noop() for _ in range(51)])
        replica.propose(C.Noop()).result(timeout=30)
        assert replica.state.seq == queued + 1, "the refused batch queued nothing"
    finally:
        replica.stop()


def test_corrupt_snapshot_refuses_to_start(tmp_path: Any) -> None:
    data = tmp_path / "n1"
    data.mkdir()
    (data / "raft.dump").write_bytes(snapshot.MAGIC + b"\x00\x00\x00\x02{}garbage")
    with pytest.raises(snapshot.SnapshotError):
        RaftReplica(_settings(str(data), free_port()))


def test_snapshot_detects_truncation_and_bit_flips(tmp_path: Any) -> None:
    path = str(tmp_path / "dump")
    snapshot.write_snapshot(path, b'{"x": 1}' * 100, 7, (b"a", 1, 1), (b"b", 0, 1), ["127.0.0.1:1"])
    header, body = snapshot.read_snapshot(path)
    assert header["seq"] == 7 and body == b'{"x": 1}' * 100
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[:-3])
    with pytest.raises(snapshot.SnapshotError, match="truncated"):
        snapshot.read_snapshot(path)
    flipped = bytearray(raw)
    flipped[-2] ^= 0xFF
    open(path, "wb").write(bytes(flipped))
    with pytest.raises(snapshot.SnapshotError, match="checksum"):
        snapshot.read_snapshot(path)


def test_envelope_round_trip_and_corruption() -> None:
    data = envelope.encode(3, 1234, [{"t": "Noop"}])
    env = envelope.decode(data)
    assert (env.epoch, env.now_ms, env.commands) == (3, 1234, [{"t": "Noop"}])
    assert envelope.decode(envelope.encode_commands(3, 1234, [b'{"t":"Noop"}'])) == env
    bad = bytearray(data)
    bad[-3] ^= 0x01
    with pytest.raises(envelope.EnvelopeError, match="checksum"):
        envelope.decode(bytes(bad))
    with pytest.raises(envelope.EnvelopeError):
        envelope.decode(b"XX" + data[2:])


def test_corrupt_log_entry_is_rejected_without_wedging(tmp_path: Any) -> None:
    replica = RaftReplica(_settings(str(tmp_path / "n1"), free_port()))
    try:
        wait_for(replica.leader_ready, 30, "leadership")
        seq0 = replica.state.seq
        assert replica._apply_entry(b"garbage") == []
        assert replica.apply_error and replica.state.seq == seq0 + 1
        # The replica still applies what follows.
        assert replica.propose(C.Noop()).result(timeout=30).ok
    finally:
        replica.stop()


def test_the_leader_commits_only_what_its_own_journal_holds_durably(tmp_path: Any) -> None:
    """The leader sends AppendEntries before its fsync, so it must not count itself towards a
    commit until its copy is durable: every commit index the leader records is at or below the
    last entry its journal has fsynced."""
    replicas = _three_replicas(tmp_path)
    violations: list[str] = []
    checked = [0]
    try:
        for r in replicas:
            jrnl = r.journal
            assert jrnl is not None
            original = jrnl.setRaftCommitIndex

            def checking(
                idx: int, r: RaftReplica = r, jrnl: Any = jrnl, original: Any = original
            ) -> None:
                if r.raft._isLeader():
                    checked[0] += 1
                    durable = jrnl.durable_last_index()
                    if idx > durable:
                        violations.append(f"commit index {idx} > durable index {durable}")
                original(idx)

            jrnl.setRaftCommitIndex = checking  # type: ignore[method-assign]
        leader = wait_for(
            lambda: next((r for r in replicas if r.leader_ready()), None), 30, "a leader"
        )
        for round_ in range(20):
            futs = [
                leader.propose(
                    C.RegisterTaskDefs(
                        request_id=f"r{round_}-{i}", task_defs=[{"name": f"t{round_}-{i}"}]
                    )
                )
                for i in range(10)
            ]
            for f in futs:
                assert f.result(timeout=30).ok
    finally:
        for r in replicas:
            r.stop()
    assert checked[0] > 10, "the leader advanced its commit index"
    assert not violations, violations[:3]


@pytest.mark.parametrize("delay_s", [0.0, RaftSettings.commit_notify_delay_s])
def test_the_next_entry_carries_the_commit_index(tmp_path: Any, delay_s: float) -> None:
    """pysyncobj sends AppendEntries right after every apply just to carry the commit index:
    two more sends per entry with two followers, at the moment the committed calls want to
    answer. With `commit_notify_delay_s` the leader holds it back and the next entry's
    AppendEntries carries it; followers still learn every commit (delay 0 is pysyncobj's own
    behaviour, kept to show the difference)."""
    period_s = RaftSettings.append_entries_period_s
    replicas = _three_replicas(tmp_path, commit_notify_delay_s=delay_s)
    try:
        leader = wait_for(
            lambda: next((r for r in replicas if r.leader_ready()), None), 30, "a leader"
        )
        transport = leader.raft._SyncObj__transport
        original = transport.send
        sent = [0]

        def counting(node: Any, message: Any) -> Any:
            if isinstance(message, dict) and message.get("type") == "append_entries":
                sent[0] += 1
            return original(node, message)

        # A held-back commit index that failed to go out in time would make the leader poll
        # without waiting: count its ticks too.
        ticks = [0]
        on_tick = leader.raft._onTick

        def counting_ticks(time_to_wait: float = 0.0) -> Any:
            ticks[0] += 1
            return on_tick(time_to_wait)

        transport.send = counting
        leader.raft._onTick = counting_ticks
        n = 40
        started = time.monotonic()
        for i in range(n):
            cmd = C.RegisterTaskDefs(request_id=f"r{i}", task_defs=[{"name": f"t{i}"}])
            assert leader.propose(cmd).result(timeout=30).ok
        elapsed = time.monotonic() - started
        transport.send = original
        leader.raft._onTick = on_tick
        # A tick per queued entry, per reply and per tick period, with room to spare.
        assert ticks[0] <= 10 * (n + elapsed / leader.settings.auto_tick_period_s + 10), (
            ticks[0],
            elapsed,
        )
        # One AppendEntries per entry to each follower, plus heartbeats and held-back commit
        # indexes that came due (each at most once per period or delay, to each follower).
        extra = 2 * (elapsed / period_s + 2) + (2 * (elapsed / delay_s + 2) if delay_s else 0)
        if delay_s:
            assert sent[0] <= 2 * n + extra, (sent[0], elapsed)
        else:
            assert sent[0] >= 3 * n, sent[0]
        # Followers learn the last commit too, without another entry.
        target = leader.state.seq
        wait_for(lambda: all(r.state.seq >= target for r in replicas), 30, "followers caught up")
        assert len({r.log_hash for r in replicas}) == 1
    finally:
        for r in replicas:
            r.stop()


def test_only_current_voters_count_towards_a_leaders_majority() -> None:
    # After 5 -> 3 with one of the three down: a and b remain voters, c and d were removed (their
    # response times stay behind in pysyncobj), b is down.
    last = {"a": 10.0, "b": 1.0, "c": 1.0, "d": 1.0}
    assert heard_from_majority(["a", "b"], last, since=5.0)
    assert not heard_from_majority(["a", "b"], dict(last, a=1.0), since=5.0)
    assert heard_from_majority([], {}, since=5.0), "a single voter is its own majority"
