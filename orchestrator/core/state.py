"""The replicated state: plain JSON-able dicts, so snapshots are our own canonical format.

Iteration order is always defined: dicts keep insertion order and nothing iterates a set.
Derived indexes (the timer heap) are rebuilt from the state and never serialized.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import OrderedDict
from typing import Any

JSON = Any
SNAPSHOT_SCHEMA = 1


class State:
    """Everything every replica agrees on. Only machine.apply mutates it."""

    def __init__(self) -> None:
        self.seq = 0  # applied command sequence number
        self.clock_ms = 0  # cluster time: never goes back
        self.epoch = 0  # highest leader epoch committed
        self.workflow_defs: dict[str, dict[str, JSON]] = {}  # name -> {str(version): def}
        self.task_defs: dict[str, JSON] = {}
        # content hash -> {"def", "taskDefs", "refs"}: definitions that workflows run with
        self.def_snapshots: dict[str, JSON] = {}
        # node id -> {"raft", "grpc", "removed"}: members added or removed at run time
        self.members: dict[str, JSON] = {}
        self.workflows: dict[str, JSON] = {}
        self.tasks: dict[str, JSON] = {}
        # queue key (task type, or "<type>@<domain>" for a task domain) -> ordered set (dict
        # with None values) of task ids ready to be leased
        self.queues: dict[str, OrderedDict[str, None]] = {}
        # request id -> {"taskType", "workerId", "count", "epoch", "expires", "fp"}: long polls
        # parked until a task of their type is ready, oldest first (lease at schedule time)
        self.parked: dict[str, JSON] = {}
        # queue key -> cluster time of its latest poll (task domains pick an active domain)
        self.last_poll: OrderedDict[str, int] = OrderedDict()
        # timer key ("lease:<task>", "ready:<task>", "wait:<task>", "poll:<request id>",
        # "tmo:"/"ptmo:"/"ttmo:<task>" task timeouts, "wftmo:<workflow>") -> due
        self.timers: dict[str, int] = {}
        # request id -> {"fp", "outcome", "at"}, in insertion (= time) order
        self.requests: OrderedDict[str, JSON] = OrderedDict()
        # "<workflow name>\x00<key>" -> workflow id
        self.idempotency: dict[str, str] = {}
        # terminal workflow ids in the order they ended (retention eviction order)
        self.terminal_order: OrderedDict[str, None] = OrderedDict()
        self._timer_heap: list[tuple[int, str]] = []

    # ---- timers (derived heap with lazy deletion) ----
    def set_timer(self, key: str, due_ms: int) -> None:
        self.timers[key] = due_ms
        heapq.heappush(self._timer_heap, (due_ms, key))

    def clear_timer(self, key: str) -> None:
        self.timers.pop(key, None)

    def next_due_ms(self) -> int | None:
        heap = self._timer_heap
        while heap:
            due, key = heap[0]
            if self.timers.get(key) == due:
                return due
            heapq.heappop(heap)
        return None

    def pop_due(self, now_ms: int) -> list[str]:
        """Remove and return the keys of all timers due at now_ms, ordered by (due, key)."""
        out: list[str] = []
        heap = self._timer_heap
        while heap and heap[0][0] <= now_ms:
            due, key = heapq.heappop(heap)
            if self.timers.get(key) == due:
                del self.timers[key]
                out.append(key)
        return out

    # ---- snapshots ----
    def to_snapshot(self) -> dict[str, JSON]:
        return {
            "schema": SNAPSHOT_SCHEMA,
            "seq": self.seq,
            "clock_ms": self.clock_ms,
            "epoch": self.epoch,
            "workflow_defs": self.workflow_defs,
            "task_defs": self.task_defs,
            "def_snapshots": self.def_snapshots,
            "members": self.members,
            "workflows": self.workflows,
            "tasks": self.tasks,
            "queues": {k: list(v) for k, v in self.queues.items()},
            "timers": self.timers,
            "parked": self.parked,
            "requests": self.requests,
            "idempotency": self.idempotency,
            "terminal_order": list(self.terminal_order),
            "last_poll": self.last_poll,
        }

    def snapshot_bytes(self) -> bytes:
        # Not sort_keys: dict order is part of the state (queues, eviction order) and JSON keeps it.
        import json

        return json.dumps(self.to_snapshot(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_snapshot(cls, snap: dict[str, JSON]) -> State:
        if snap.get("schema") != SNAPSHOT_SCHEMA:
            raise ValueError(f"unsupported snapshot schema {snap.get('schema')!r}")
        st = cls()
        st.seq = snap["seq"]
        st.clock_ms = snap["clock_ms"]
        st.epoch = snap["epoch"]
        st.workflow_defs = snap["workflow_defs"]
        st.task_defs = snap["task_defs"]
        st.def_snapshots = snap["def_snapshots"]
        st.members = snap.get("members", {})
        st.workflows = snap["workflows"]
        st.tasks = snap["tasks"]
        st.queues = {k: OrderedDict.fromkeys(v) for k, v in snap["queues"].items()}
        st.parked = snap.get("parked", {})
        st.requests = OrderedDict(snap["requests"])
        st.idempotency = snap["idempotency"]
        st.terminal_order = OrderedDict.fromkeys(snap["terminal_order"])
        st.last_poll = OrderedDict(snap.get("last_poll", {}))
        for key, due in snap["timers"].items():
            st.set_timer(key, due)
        return st

    @classmethod
    def from_snapshot_bytes(cls, data: bytes) -> State:
        import json

        return cls.from_snapshot(json.loads(data))

    def digest(self) -> str:
        """A hash of the whole state (order included), for comparing replicas and replays."""
        return hashlib.sha256(self.snapshot_bytes()).hexdigest()
