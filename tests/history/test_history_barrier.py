"""The snapshot barrier on a real Raft node: a snapshot (and the truncation of the log that
could rebuild the history) completes only once the history holds everything it covers, and
the tick thread does not wait for it meanwhile."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core import commands as C
from orchestrator.history import History
from orchestrator.history import store as S
from orchestrator.replication import snapshot
from orchestrator.replication.node import RaftReplica
from orchestrator.replication.settings import RaftSettings
from orchestrator.tools.localcluster import free_port
from tests.cluster_support import wait_for


@pytest.mark.parametrize("fork", [True, False])
def test_a_snapshot_waits_for_the_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: bool
) -> None:
    data = str(tmp_path / "n1")
    history = History(data, fsync=True)
    gate = threading.Event()
    write = S.Store.write

    def held_write(self: S.Store, batches: Any) -> int:
        gate.wait(30)
        return write(self, batches)

    monkeypatch.setattr(S.Store, "write", held_write)
    replica = RaftReplica(
        RaftSettings(
            self_addr=f"127.0.0.1:{free_port()}",
            peers=[],
            password="test-password",
            data_dir=data,
            log_compaction_min_entries=10**9,
            snapshot_fork=fork,
            log_compaction_split=False,
        ),
        before_start=history.attach,
    )
    try:
        wait_for(replica.leader_ready, 30, "leadership")
        # An expiry for the history to write (the writer is held).
        out = replica.propose(
            C.SetHistoryRetention(request_id="r", retention_ms=1000, max_workflows=5)
        ).result(timeout=30)
        assert out.ok
        seq = replica.state.seq
        if fork:
            replica.force_snapshot()
            wait_for(lambda: replica.snapshotter.child_pid != 0, 30, "the snapshot child")
            ticks = replica.raft.getStatus()["raft_term"]
            assert replica.propose(C.Noop()).result(timeout=30).ok, "the tick thread serves on"
            assert replica.snapshotter.completed == 0, "the child waits for the history"
            assert replica.raft.getStatus()["raft_term"] == ticks
        else:
            seen: list[int] = []
            dump = snapshot.ForkingSnapshotter._write

            def checked(self: snapshot.ForkingSnapshotter, data: Any) -> None:
                reader = S.connect(history.path, readonly=True)
                seen.append(history.store.meta("seq", reader))
                reader.close()
                dump(self, data)

            monkeypatch.setattr(snapshot.ForkingSnapshotter, "_write", checked)
            threading.Timer(0.5, gate.set).start()
            replica.force_snapshot()
            wait_for(lambda: seen, 30, "the snapshot's write")
            assert seen[0] >= seq, "written only once the history held what it covers"
        gate.set()
        wait_for(lambda: replica.snapshotter.completed >= 1, 30, "the snapshot")
        header, _ = snapshot.read_snapshot(replica.dump_path)
        assert header["seq"] >= seq
        reader = S.connect(history.path, readonly=True)
        assert history.store.meta("seq", reader) >= seq, "the history holds what it covers"
        reader.close()
    finally:
        gate.set()
        replica.stop()
        history.stop()
