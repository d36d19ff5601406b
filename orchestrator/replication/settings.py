"""Raft settings: what a replica's Raft node is tuned by, from the cluster configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from ..config import ClusterConfig, ConfigError

# The files that hold a replica's Raft state in its data folder (journal.py, snapshot.py).
JOURNAL_FILE = "raft.journal"
DUMP_FILE = "raft.dump"


@dataclass
class RaftSettings:
    self_addr: str
    peers: list[str]
    password: str
    data_dir: str
    bind_addr: str | None = None
    append_entries_period_s: float = 0.05
    # Election timeout. Pre-vote (prevote.py) keeps a replica that was away from deposing a
    # healthy leader, which let these come down from 0.6-1.2 s: `orchestrator failover` p50
    # 1.19 -> ~0.7 s; no election in the c=64 benchmark even at 0.2-0.4 s (docs/reliability.md),
    # kept at 0.3-0.6 s for the margin against tick stalls (tick_stats.py).
    election_min_s: float = 0.3
    election_max_s: float = 0.6
    # Check-quorum: a leader that heard from no majority for this long steps down (capped at
    # election_max_s).
    leader_fallback_s: float = 0.6
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
    # Ask the voters before an election (prevote.py). Off only to measure what it prevents.
    pre_vote: bool = True
    # Write snapshots in a forked child so the tick thread (heartbeats) never waits for them.
    snapshot_fork: bool = True
    # fsync the journal before any Raft message is sent (and term/vote before voting). Off only
    # in tests that say so.
    fsync: bool = True
    # Stagger compactions across replicas (pysyncobj gives each a time slot; even a forced
    # compaction waits for it).
    log_compaction_split: bool = True
    # The Raft port (wire_guard.py): the longest frame an authenticated peer may send (the
    # largest legitimate one, an AppendEntries carrying a 4 MiB request's entry, is ~4.2 MiB),
    # and what a connection may send before a message of it decrypts with the password.
    max_frame_bytes: int = 16 * 1024 * 1024
    preauth_budget_bytes: int = 64 * 1024


def from_config(cfg: ClusterConfig, node_id: str, data_dir: str | None = None) -> RaftSettings:
    """The node's settings: its addresses from the configuration, overrides from its "raft"."""
    me = cfg.replica(node_id)
    known = {f.name for f in fields(RaftSettings)}
    unknown = sorted(set(cfg.raft) - known)
    if unknown:
        raise ConfigError(f"raft: unknown settings {unknown}")
    return RaftSettings(
        self_addr=me.raft,
        peers=[r.raft for r in cfg.replicas if r.node_id != node_id],
        password=cfg.password,
        data_dir=data_dir or cfg.data_dir(node_id),
        **{k: v for k, v in cfg.raft.items() if k in known},
    )


def has_raft_state(data_dir: str) -> bool:
    """Whether the data folder holds a journal or a snapshot of this replica's Raft log."""
    return any(os.path.exists(os.path.join(data_dir, f)) for f in (JOURNAL_FILE, DUMP_FILE))
