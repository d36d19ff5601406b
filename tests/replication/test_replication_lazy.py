"""Lazy proposals on a single in-process replica: a parked poll rides in the next entry that
carries another command, is withdrawn unsent at no cost, and does not ride with a Tick."""

from __future__ import annotations

from typing import Any

from orchestrator.core import commands as C
from orchestrator.replication.node import RaftReplica
from orchestrator.replication.settings import RaftSettings
from orchestrator.tools.localcluster import free_port
from tests.cluster_support import wait_for


def _replica(tmp_path: Any) -> RaftReplica:
    replica = RaftReplica(
        RaftSettings(
            self_addr=f"127.0.0.1:{free_port()}",
            peers=[],
            password="test-password",
            data_dir=str(tmp_path / "n1"),
        )
    )
    wait_for(replica.leader_ready, 30, "leadership")
    return replica


def _park(replica: RaftReplica, rid: str) -> C.PollTasks:
    return C.PollTasks(
        request_id=rid,
        task_type="t",
        worker_id="w",
        count=1,
        epoch=replica.leader_term,
        park_until_ms=replica.now_ms() + 10_000,
    )


def test_a_lazy_command_rides_at_the_head_of_the_next_entry(tmp_path: Any) -> None:
    replica = _replica(tmp_path)
    try:
        seq = replica.state.seq
        lazy = replica.propose_lazy(_park(replica, "p1"))
        assert replica.state.seq == seq and not lazy.done(), "nothing is sent for it alone"
        entries = replica.raft.getStatus()["log_len"]
        noop = replica.propose(C.Noop()).result(timeout=30)
        parked = lazy.result(timeout=30)
        assert parked.result == {"task_ids": [], "parked": True}
        assert parked.seq == noop.seq - 1, "applied just before the command it rode with"
        assert replica.raft.getStatus()["log_len"] == entries + 1
    finally:
        replica.stop()


def test_a_withdrawn_lazy_command_is_never_applied(tmp_path: Any) -> None:
    replica = _replica(tmp_path)
    try:
        lazy = replica.propose_lazy(_park(replica, "p1"))
        assert replica.withdraw_lazy(lazy)
        assert not replica.withdraw_lazy(lazy)
        replica.propose(C.Noop()).result(timeout=30)
        assert not lazy.done() and "p1" not in replica.state.parked
    finally:
        replica.stop()


def test_a_tick_does_not_carry_lazy_commands_but_a_flush_sends_them(tmp_path: Any) -> None:
    replica = _replica(tmp_path)
    try:
        lazy = replica.propose_lazy(_park(replica, "p1"))
        replica.propose(C.Tick(epoch=replica.leader_term), carry_lazy=False).result(timeout=30)
        assert not lazy.done()
        replica.flush_lazy()
        assert lazy.result(timeout=30).result.get("parked")
        assert "p1" in replica.state.parked
    finally:
        replica.stop()
