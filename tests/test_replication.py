"""The pysyncobj adapter on a single in-process replica: group commit, snapshots, restart."""

from __future__ import annotations

import os
from typing import Any

import pytest

from orchestrator.core import commands as C
from orchestrator.localcluster import free_port
from orchestrator.replication import envelope, snapshot
from orchestrator.replication.node import Overloaded, RaftSettings, Replica

from .cluster_support import wait_for


def _settings(data_dir: str, port: int, **kw: Any) -> RaftSettings:
    return RaftSettings(
        self_addr=f"127.0.0.1:{port}", peers=[], password="test-password", data_dir=data_dir, **kw
    )


def _register(replica: Replica, n: int) -> None:
    futs = [
        replica.propose(
            C.RegisterTaskDefs(request_id=f"r{i}", task_defs=[{"name": f"t{i}", "retryCount": 1}])
        )
        for i in range(n)
    ]
    for f in futs:
        assert f.result(timeout=30).ok


def _content(replica: Replica) -> dict[str, Any]:
    snap = replica.state.to_snapshot()
    for key in ("seq", "epoch", "clock_ms"):
        snap.pop(key)
    return snap


@pytest.mark.parametrize("fork", [True, False])
def test_snapshot_then_restart_restores_the_same_state(tmp_path: Any, fork: bool) -> None:
    port = free_port()
    data = str(tmp_path / "n1")
    replica = Replica(
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
    again = Replica(_settings(data, port, snapshot_fork=fork))
    try:
        # The restarted node replays snapshot + journal, then commits its own LeaderEpoch.
        wait_for(again.leader_ready, 30, "replay of snapshot and journal, and leadership")
        with again.lock:
            assert again.state.seq == seq + 1
            assert _content(again) == before
    finally:
        again.stop()


def test_group_commit_batches_queued_proposals(tmp_path: Any) -> None:
    replica = Replica(_settings(str(tmp_path / "n1"), free_port(), max_in_flight_entries=1))
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
    replica = Replica(
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
        Replica(_settings(str(data), free_port()))


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
    replica = Replica(_settings(str(tmp_path / "n1"), free_port()))
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
    ports = [free_port() for _ in range(3)]
    addrs = [f"127.0.0.1:{p}" for p in ports]
    replicas = [
        Replica(
            RaftSettings(
                self_addr=addrs[i],
                peers=[a for a in addrs if a != addrs[i]],
                password="test-password",
                data_dir=str(tmp_path / f"n{i}"),
            )
        )
        for i in range(3)
    ]
    violations: list[str] = []
    checked = [0]
    try:
        for r in replicas:
            jrnl = r.journal
            assert jrnl is not None
            original = jrnl.setRaftCommitIndex

            def checking(
                idx: int, r: Replica = r, jrnl: Any = jrnl, original: Any = original
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
