"""An in-memory Replica (orchestrator/replication/api.py) for tests of the API and the runtime.

One replica that leads from the start: proposals go through the same group commit, lazy
commands and leader epoch as on a real node (replication/base.py), and each entry is applied
by the real core's apply_batch on the proposer thread. No sockets, no Raft, no disk.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from orchestrator.replication.api import Member, ReplicaStatus
from orchestrator.replication.base import EntryDone, ReplicaBase
from orchestrator.replication.settings import RaftSettings

TERM = 1


class FakeReplica(ReplicaBase):
    def __init__(
        self, members: list[Member] | None = None, address: str = "", lead: bool = True
    ) -> None:
        me = (members or [Member("n1", "fake:1", "")])[0]
        settings = RaftSettings(self_addr=address or me.raft, peers=[], password="", data_dir="")
        super().__init__(settings, members)
        self.leading = lead
        self.entries = 0  # entries applied: the length of the log a real node would have
        # The other voters as Raft would have them: the configured replicas at first.
        self.voters = {m.raft for m in self.configured if m.raft != self.address}
        # Set to make the next Raft membership change fail (as a refused or lost one would).
        self.refuse_voter_change: Exception | None = None
        self.step_down_requested = False
        self.apply_lag = 0  # committed entries status() reports as not yet applied
        self._proposer.start()
        if lead:
            self._became_leader(TERM)

    def _send_entry(self, term: int, data: bytes, done: EntryDone) -> None:
        outcomes = self._apply_entry(data)
        self.entries += 1
        done(outcomes)

    def is_leader(self) -> bool:
        return self.leading

    def fresh(self) -> bool:
        return True

    def term(self) -> int:
        return TERM

    def role(self) -> str:
        return "LEADER" if self.leading else "FOLLOWER"

    def leader_addr(self) -> str | None:
        return self.address if self.leading else None

    def request_step_down(self) -> None:
        self.step_down_requested = True
        self.lose_leadership()  # no other replica to take over: nobody leads

    def _raft_peers(self) -> set[str]:
        return set(self.voters)

    def _raft_add(self, raft_addr: str) -> None:
        self._voter_change()
        self.voters.add(raft_addr)

    def _raft_remove(self, raft_addr: str) -> None:
        self._voter_change()
        self.voters.discard(raft_addr)

    def _voter_change(self) -> None:
        exc, self.refuse_voter_change = self.refuse_voter_change, None
        if exc is not None:
            raise exc

    @property
    def journal_error(self) -> str:
        return ""

    def status(self) -> ReplicaStatus:
        with self.lock:
            seq, clock, n_wf = self.state.seq, self.state.clock_ms, len(self.state.workflows)
            log_hash = self.log_hash.hex()
        return ReplicaStatus(
            role=self.role(),
            term=TERM,
            commit_index=self.entries + self.apply_lag,
            last_applied=self.entries,
            log_len=self.entries,
            leader=self.leader_addr(),
            ready=True,
            has_quorum=self.leading,
            applied_sequence=seq,
            applied_hash=log_hash,
            cluster_time_ms=clock,
            workflows=n_wf,
        )

    def stop(self) -> None:
        self._stop_proposer()

    def lose_leadership(self) -> None:
        self.leading = False
        self._lost_leadership("FOLLOWER")

    def regain_leadership(self) -> None:
        self.leading = True
        self._became_leader(TERM)


def fake_server(tmp: Any, n: int = 1) -> AbstractContextManager[Any]:
    """Replica n1 of an n-replica configuration, leading on a FakeReplica (gRPC on a free port;
    the other replicas are only configured), stopped on exit."""
    from tests.cluster_support import single_replica

    def build(cfg: Any) -> FakeReplica:
        return FakeReplica([Member(r.node_id, r.raft, r.grpc) for r in cfg.replicas])

    return single_replica(tmp, n=n, replica=build)
