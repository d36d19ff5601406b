"""Pre-vote (Raft thesis section 9.6) for pysyncobj 0.3.17, which has none.

Without it, a replica that stopped hearing its leader for its own reasons (restarted, paused,
cut off by a partition) raises its term when its election timeout runs out; on its return that
higher term deposes a healthy leader (every replica that sees it steps down), and the cluster
stops for an election it did not need. With pre-vote, the replica whose timeout ran out first
asks the voters whether they *would* vote for it at the next term, changing no term and no vote
anywhere; only with a majority of yeses does pysyncobj run its real election.

A voter says no when it has heard from a live leader within the minimum election timeout (or is
the leader), or when the asker's log is less up to date than its own (the rule of a real vote,
section 5.4.1). So while a majority still hears its leader no election starts, and when the
leader is really gone the first replica to time out with an up-to-date log wins its pre-vote one
round trip later.

Two cases skip the pre-vote: a leadership transfer (the leader asked for the election, and the
voters, who just heard it, would say no), and a replica that hears a leader of a *lower* term.
pysyncobj ignores a lower-term leader entirely, and its voters hear their leader, so such a
replica would ask in vain forever; its real election is what brings the terms together again
(as etcd's Raft does for the same case), one election once.

The messages travel through pysyncobj's transport, so they are encrypted and authenticated with
the cluster password like every other Raft message. Replicas without this module ignore them
(an unknown message type): in a mixed cluster only the upgraded ones wait for yeses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PRE_VOTE = "pre_vote"
PRE_VOTE_REPLY = "pre_vote_response"
MESSAGES = (PRE_VOTE, PRE_VOTE_REPLY)


def log_up_to_date(cand_term: int, cand_idx: int, my_term: int, my_idx: int) -> bool:
    """Raft's rule (section 5.4.1): the asker's last entry is of a later term, or of the same
    term and at least as far."""
    return cand_term > my_term or (cand_term == my_term and cand_idx >= my_idx)


def leader_silent(
    *, now: float, is_leader: bool, leader_heard_at: float | None, min_timeout_s: float
) -> bool:
    """Whether a voter has heard no live leader within the minimum election timeout (and is
    none itself)."""
    if is_leader:
        return False
    return leader_heard_at is None or now - leader_heard_at >= min_timeout_s


def grant(
    *,
    now: float,
    is_leader: bool,
    leader_heard_at: float | None,
    min_timeout_s: float,
    cand_last: tuple[int, int],
    my_last: tuple[int, int],
) -> bool:
    """Whether a voter would vote for the asker. `cand_last` and `my_last` are (term, index)
    of the last log entry."""
    silent = leader_silent(
        now=now, is_leader=is_leader, leader_heard_at=leader_heard_at, min_timeout_s=min_timeout_s
    )
    return silent and log_up_to_date(cand_last[0], cand_last[1], my_last[0], my_last[1])


@dataclass
class PreVote:
    """One replica's pre-vote state; used on pysyncobj's tick thread only."""

    min_timeout_s: float
    # How long a lower-term leader, once heard, lets this replica skip the pre-vote.
    lower_term_window_s: float
    leader_heard_at: float | None = None
    lower_term_leader_at: float | None = None
    round: int = 0
    asked_term: int = 0
    yes: set[Any] = field(default_factory=set)
    won: bool = False
    # Counters for tests and measurement.
    rounds: int = 0
    rounds_won: int = 0
    skipped: int = 0

    def heard_leader(self, now: float) -> None:
        """An AppendEntries of our term or a later one arrived: a live leader. A pre-vote won
        before it is void."""
        self.leader_heard_at = now
        self.won = False
        self.yes.clear()

    def heard_lower_term_leader(self, now: float) -> None:
        self.lower_term_leader_at = now

    def may_elect(self, now: float, transfer: bool) -> bool:
        """Whether pysyncobj may run its real election now that the timeout ran out. Consumes
        the win: the next timeout asks again."""
        lower = self.lower_term_leader_at
        skip = transfer or (lower is not None and now - lower < self.lower_term_window_s)
        if not (self.won or skip):
            return False
        if not self.won:
            self.skipped += 1
        self.won = False
        self.yes.clear()
        return True

    def start_round(self, term: int, last: tuple[int, int], voters: int) -> dict[str, Any]:
        """Begin asking for the next term; returns the message to send every voter."""
        self.round += 1
        self.rounds += 1
        self.asked_term = term + 1
        self.yes = {None}  # our own yes
        self.won = False
        self._check(voters)
        return {
            "type": PRE_VOTE,
            "term": self.asked_term,
            "round": self.round,
            "last_log_term": last[0],
            "last_log_index": last[1],
        }

    def on_reply(self, node: Any, message: dict[str, Any], voters: int) -> bool:
        """Count a voter's answer; True when this answer made the round won."""
        if message.get("round") != self.round or self.won or not self.yes:
            return False  # an answer to an earlier round, or none in progress
        if message.get("term") != self.asked_term or not message.get("granted"):
            return False
        self.yes.add(node)
        return self._check(voters)

    def _check(self, voters: int) -> bool:
        if len(self.yes) > voters / 2:
            self.won = True
            self.rounds_won += 1
            return True
        return False


def reply(request: dict[str, Any], granted: bool) -> dict[str, Any]:
    return {
        "type": PRE_VOTE_REPLY,
        "term": request.get("term"),
        "round": request.get("round"),
        "granted": granted,
    }


class RaftPreVote:
    """The pre-vote inside one pysyncobj SyncObj (node._Raft): the tick-start gate in front of
    its election check, and the messages (FixedTransport hands them over). Runs on the tick
    thread, which is also where pysyncobj handles messages."""

    def __init__(
        self, raft: Any, min_timeout_s: float, max_timeout_s: float, enabled: bool = True
    ) -> None:
        self.raft, self.enabled = raft, enabled
        self.state = PreVote(min_timeout_s=min_timeout_s, lower_term_window_s=2 * max_timeout_s)

    def gate(self, now: float) -> None:
        """Before pysyncobj's own check: a timeout that ran out starts a pre-vote round and
        moves the deadline on, unless a won round (or a skip) lets this tick elect."""
        raft = self.raft
        if not self.enabled or raft._isLeader() or raft._SyncObj__selfNode is None:
            return
        if raft._SyncObj__raftElectionDeadline >= now or not raft._SyncObj__connectedToAnyone():
            return
        pv = self.state
        if pv.may_elect(now, bool(raft._SyncObj__transferInProgress)):
            return
        raft._SyncObj__raftElectionDeadline = now + raft._SyncObj__generateRaftTimeout()
        voters = list(raft._SyncObj__otherNodes)
        request = pv.start_round(
            raft._SyncObj__raftCurrentTerm, self._last_entry(), len(voters) + 1
        )
        if pv.won:  # the only voter
            raft._SyncObj__raftElectionDeadline = 0
            return
        for node in voters:
            raft._SyncObj__transport.send(node, request)

    def _last_entry(self) -> tuple[int, int]:
        raft = self.raft
        return int(raft._SyncObj__getCurrentLogTerm()), int(raft._SyncObj__getCurrentLogIndex())

    def on_message(self, node: Any, message: Any, now: float) -> bool:
        """Note what a message says about leaders; handle pre-vote messages (True: consumed)."""
        raft = self.raft
        kind = message.get("type") if isinstance(message, dict) else None
        pv = self.state
        if kind == "append_entries":
            if message.get("term", 0) >= raft._SyncObj__raftCurrentTerm:
                pv.heard_leader(now)
            else:
                pv.heard_lower_term_leader(now)
            return False
        if kind == PRE_VOTE:
            cand = (int(message.get("last_log_term", 0)), int(message.get("last_log_index", 0)))
            mine = self._last_entry()
            silent = leader_silent(
                now=now,
                is_leader=bool(raft._isLeader()),
                leader_heard_at=pv.leader_heard_at,
                min_timeout_s=pv.min_timeout_s,
            )
            ok = silent and log_up_to_date(*cand, *mine)
            raft._SyncObj__transport.send(node, reply(message, ok))
            # Refused for its log alone: the leader is likely gone and ours is the more up to
            # date, so ask for ourselves now rather than at our own, later timeout (a pre-vote
            # round only: nothing changes unless a majority agrees).
            if silent and not ok and self.enabled:
                deadline = raft._SyncObj__raftElectionDeadline
                raft._SyncObj__raftElectionDeadline = min(deadline, now)
            return True
        if kind == PRE_VOTE_REPLY:
            voters = raft._SyncObj__otherNodes
            if node in voters and pv.on_reply(node, message, len(voters) + 1):
                raft._SyncObj__raftElectionDeadline = 0  # elect at the next tick start
            return True
        return False

    def leader_heard_within(self, now: float, window_s: float) -> bool:
        heard = self.state.leader_heard_at
        return heard is not None and now - heard < window_s
