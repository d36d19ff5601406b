"""Fixes for pysyncobj 0.3.17's Raft, applied in our adapter without copying its code.

Stale AppendEntries truncate matching entries. pysyncobj's follower deletes every entry after
`prevLogIdx` whenever it holds more entries than the message, even when they match the leader's
log; Raft §5.3 deletes only from the first *conflicting* entry. With appendEntriesUseBatch off,
the leader routinely sends overlapping AppendEntries (its nextIndex lags the entries in flight),
so an older message arriving after a newer one cut committed, already-applied entries off a
follower ("truncating already-applied log entries" at CRITICAL), the first half of the race that
empties a follower's log under load (pysyncobj-facts §5.1).

The fix rewrites such a message before pysyncobj sees it: when every entry it carries already
matches ours and our last entry was written in the leader's current term, it becomes an empty
AppendEntries at our last index. That is safe by Raft's Log Matching property: an entry of the
current term can only have come from the current leader, which never removes its own entries, so
our whole log up to that entry equals the leader's, and acknowledging it is true.
"""

from __future__ import annotations

from typing import Any

from pysyncobj.monotonic import monotonic
from pysyncobj.transport import TCPTransport

from . import prevote, wire_guard


def conform_append_entries(message: Any, log: Any) -> Any:
    """Return the message to hand to pysyncobj (the same object when nothing needs fixing)."""
    if not isinstance(message, dict) or message.get("type") != "append_entries":
        return message
    if "prevLogIdx" not in message or "transmission" in message or "serialized" in message:
        return message
    if len(log) == 0:
        return message
    first_idx = log[0][1]
    _, last_idx, last_term = log[-1]
    entries = message.get("entries") or []
    prev_idx = message["prevLogIdx"]
    newest = entries[-1][1] if entries else prev_idx
    if prev_idx >= last_idx:
        return message  # nothing of ours after prevLogIdx: nothing to truncate

    def term_at(idx: int) -> int | None:
        pos = idx - first_idx
        return log[pos][2] if 0 <= pos < len(log) else None

    if term_at(prev_idx) != message.get("prevLogTerm"):
        return message  # a real mismatch: let pysyncobj reject it as usual
    for _, idx, term in entries:
        if idx > last_idx:
            break
        if term_at(idx) != term:
            return message  # a conflict: pysyncobj's truncation is right here
    fixed = dict(message)
    if newest >= last_idx:
        # Every entry we hold after prevLogIdx is in the message, identical: skip them.
        fixed["entries"] = [e for e in entries if e[1] > last_idx]
    elif last_term == message.get("term"):
        # Stale: our tail goes beyond the message, and it is the current leader's own.
        fixed["entries"] = []
    else:
        return message
    fixed["prevLogIdx"] = last_idx
    fixed["prevLogTerm"] = last_term
    return fixed


class FixedTransport(TCPTransport):  # type: ignore[misc]
    """pysyncobj's TCP transport with our rules, in place before the tick thread starts.

    - Before any Raft message leaves (AppendEntries replies, votes), the journal is made
      durable; one fsync covers every entry of the tick. If it cannot be (a full disk), the
      message is dropped as if the link were down: nothing is acknowledged that is not on disk.
      The leader's own AppendEntries go out before its fsync (the Raft thesis's "write to disk
      in parallel", section 10.2.1): the leader counts itself towards a commit only at the start
      of a later tick, and `node._Raft._onTick` syncs the journal before every tick, so its copy
      is durable before it counts. Followers receive entries one fsync sooner.
    - Every incoming message passes through conform_append_entries, after the pre-vote
      (prevote.py) has seen it: pre-vote messages stop there.
    - Every connection gets the Raft port's frame limits (wire_guard.py) before it reads.

    Passed as SyncObj's transportClass, so no message is handled or sent without these rules,
    not even in the first ticks.
    """

    def _limits(self) -> wire_guard.FrameLimits:
        settings = getattr(getattr(self._syncObj, "_owner", None), "settings", None)
        if settings is None:
            return wire_guard.DEFAULT_LIMITS
        return wire_guard.FrameLimits(settings.max_frame_bytes, settings.preauth_budget_bytes)

    def _onNewIncomingConnection(self, conn: Any) -> Any:
        wire_guard.set_limits(conn, self._limits())
        return super()._onNewIncomingConnection(conn)

    def addNode(self, node: Any) -> Any:
        result = super().addNode(node)
        conn = self._connections.get(node)
        if conn is not None:
            wire_guard.set_limits(conn, self._limits())
        return result

    def _journal(self) -> Any:
        return self._syncObj._SyncObj__raftLog

    def send(self, node: Any, message: Any) -> Any:
        sync = getattr(self._journal(), "sync", None)
        kind = message.get("type") if isinstance(message, dict) else None
        # A pre-vote message promises nothing about the log: no need for it to wait on disk.
        if sync is not None and kind not in ("append_entries", *prevote.MESSAGES):
            try:
                sync()
            except OSError:
                return False  # the tick-end sync logs the error once and sees space return
        return super().send(node, message)

    def _onMessageReceived(self, node: Any, message: Any) -> Any:
        pre_vote = getattr(self._syncObj, "pre_vote", None)
        if pre_vote is not None and pre_vote.on_message(node, message, monotonic()):
            return None
        return super()._onMessageReceived(node, conform_append_entries(message, self._journal()))


class StallGrace:
    """A follower does not call an election on a timeout that ran out while it was not ticking.

    pysyncobj checks the election deadline at the start of a tick and reads its sockets at the
    end. When the tick thread itself stalled past the deadline (a long collection, a long apply,
    CPU starvation), the leader's heartbeats are waiting unread in the socket, yet the check
    comes first: the follower starts an election and, pysyncobj having no pre-vote, its higher
    term deposes a healthy leader. After such a stall the deadline is moved just past this
    tick, whose end reads the socket: a heartbeat there resets it as usual; if none came, the
    next tick elects. Never twice in a row, so a follower that stalls on every tick still
    elects when its leader is gone, one tick later than without.
    """

    def __init__(self, stall_s: float = 0.2, slack_s: float = 0.3) -> None:
        self.stall_s, self.slack_s = stall_s, slack_s
        self._last: float | None = None
        self._granted = False
        self.granted = 0  # how often, for tests and measurement

    def deadline(self, now: float, deadline: float, following: bool) -> float:
        """The election deadline this tick should use (pysyncobj's clock, at the tick start)."""
        last, self._last = self._last, now
        stalled = last is not None and now - last >= self.stall_s
        if not (following and stalled and deadline < now):
            self._granted = False
            return deadline
        if self._granted:
            self._granted = False
            return deadline
        self._granted = True
        self.granted += 1
        return now + self.slack_s
