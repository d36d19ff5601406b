"""The replicated state: typed records (records.py) in insertion-ordered dicts, and its snapshots.

Iteration order is always defined: dicts keep insertion order and nothing iterates a set.
Derived indexes (the timer heap) are rebuilt from the state and never serialized. Only the
appliers (appliers.py) change a State; everything else reads it (queries.py for the layers
above the core).

Snapshots are our own JSON. Schema 2 writes each record as a row (a list of its field values)
under a header naming the fields per record type, so a load maps rows by name when a later
version adds a field, and the repeated camelCase keys of schema 1 are gone (smaller and faster
to write and read). Schema 1 (camelCase dicts per record) is still read.
"""

from __future__ import annotations

import gc
import hashlib
import heapq
import json
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from . import limits, records
from .codec import encoded_size
from .records import (
    T_IN_PROGRESS,
    WF_QUEUED,
    WF_RUNS,
    DefSnapshot,
    Member,
    ParkedPoll,
    RequestRecord,
    ScriptMarker,
    Task,
    TaskType,
    Workflow,
    admission_key,
)
from .subscription_appliers import FeedRecord, record_size

JSON = Any
DEFAULT_SETTINGS: dict[str, int] = {
    "history_retention_ms": limits.DEFAULT_HISTORY_RETENTION_MS,
    "history_max_workflows": 0,  # no size bound
}
SNAPSHOT_SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
_RECORDS: dict[str, Any] = {
    "Workflow": Workflow,
    "Task": Task,
    "ParkedPoll": ParkedPoll,
    "RequestRecord": RequestRecord,
    "Member": Member,
    "DefSnapshot": DefSnapshot,
}


class ReadyQueue:
    """The tasks of one queue ready to be leased: per priority, task id -> the cluster time it
    was queued, oldest first. processors/flow.py picks the head by effective priority, which
    costs one look per priority waiting, not one per task."""

    __slots__ = ("by_priority",)

    def __init__(self) -> None:
        # Sub-queues in creation order; an emptied one is dropped (the appliers keep that).
        self.by_priority: dict[int, OrderedDict[str, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.by_priority)

    def __len__(self) -> int:
        return sum(len(sub) for sub in self.by_priority.values())

    def __iter__(self) -> Iterator[str]:
        for sub in self.by_priority.values():
            yield from sub

    def __contains__(self, task_id: object) -> bool:
        return any(task_id in sub for sub in self.by_priority.values())

    def priority_of(self, task_id: str) -> int | None:
        for priority, sub in self.by_priority.items():
            if task_id in sub:
                return priority
        return None

    def to_rows(self) -> list[tuple[str, int, int]]:
        return [(t, p, at) for p, sub in self.by_priority.items() for t, at in sub.items()]

    @classmethod
    def from_rows(cls, rows: list[JSON], st: State) -> ReadyQueue:
        """Rows [task id, priority, queued at]; a snapshot written before priorities held bare
        task ids in FIFO order: they take their workflow's priority, queued at load time."""
        q = cls()
        for row in rows:
            if isinstance(row, str):
                task = st.tasks.get(row)
                wf = st.workflows.get(task.workflow_id) if task is not None else None
                tid, priority, at = row, (wf.priority if wf is not None else 0), st.clock_ms
            else:
                tid, priority, at = row
            q.by_priority.setdefault(priority, OrderedDict())[tid] = at
        return q


class State:
    """Everything every replica agrees on. Only the appliers mutate it."""

    def __init__(self) -> None:
        self.seq = 0  # applied command sequence number
        self.clock_ms = 0  # cluster time: never goes back
        self.epoch = 0  # highest leader epoch committed
        self.workflow_defs: dict[str, dict[str, JSON]] = {}  # name -> {str(version): def}
        self.task_defs: dict[str, JSON] = {}
        # content hash -> the definitions that running workflows run with
        self.def_snapshots: dict[str, DefSnapshot] = {}
        # node id -> member added or removed at run time
        self.members: dict[str, Member] = {}
        self.workflows: dict[str, Workflow] = {}
        self.tasks: dict[str, Task] = {}
        # queue key (task type, or "<type>@<domain>" for a task domain) -> its tasks ready to
        # be leased, by priority (ReadyQueue)
        self.queues: dict[str, ReadyQueue] = {}
        # Flow control (processors/flow.py). Queue key -> its tasks IN_PROGRESS (leased), for
        # concurrentExecLimit: derived from the tasks (rebuilt on load, not in a snapshot).
        self.leased: dict[str, int] = {}
        # Queue key -> the cluster times of its leases still in its rate-limit window (oldest
        # first; trimmed lazily), for queues whose task definition has rateLimitPerFrequency.
        self.lease_times: dict[str, list[int]] = {}
        # request id -> long poll parked until a task of its queue is ready, oldest first
        self.parked: dict[str, ParkedPoll] = {}
        # queue key -> cluster time of its latest poll (task domains pick an active domain)
        self.last_poll: OrderedDict[str, int] = OrderedDict()
        # timer key ("<TimerKind>:<id>", see records.TimerKind) -> due
        self.timers: dict[str, int] = {}
        # request id -> recorded outcome, in insertion (= time) order
        self.requests: OrderedDict[str, RequestRecord] = OrderedDict()
        # "<workflow name>\x00<key>" -> workflow id
        self.idempotency: dict[str, str] = {}
        # terminal workflow ids in the order they ended (retention eviction order)
        self.terminal_order: OrderedDict[str, None] = OrderedDict()
        # chain root workflow id -> (workflows the chain started, its workflows still running);
        # only chains that started a workflow, dropped when their last workflow ends
        self.chains: dict[str, tuple[int, int]] = {}
        # Cluster settings (SetHistoryRetention): history_retention_ms, history_max_workflows
        self.settings: dict[str, int] = dict(DEFAULT_SETTINGS)
        # The durable history's bookkeeping (processors/retention.py): the seq of the latest
        # command a history must not have missed (an Archive or Remove, a retention change),
        # and the latest Expire as [seq, cutoff_ms, max_rows] ([] before the first).
        self.history_seq = 0
        self.history_expire: list[int] = []
        # The event log (processors/eventlog.py): offset -> event record, oldest first (at most
        # limits.MAX_EVENTS), the latest offset given, and event handlers by name.
        self.event_log: dict[int, dict[str, JSON]] = {}
        self.event_offset = 0
        # The encoded size of event_log's records (derived: rebuilt on load, never written).
        self.event_bytes = 0
        self.event_handlers: dict[str, dict[str, JSON]] = {}
        # Message correlation (processors/messages.py): buffered messages by event offset,
        # oldest first, and (derived: rebuilt on load, never written) the WAIT_FOR_EVENT tasks in
        # progress by (event name, correlation key).
        self.messages: dict[int, dict[str, JSON]] = {}
        self.event_waits: dict[tuple[str, str], dict[str, None]] = {}
        # Broker bridges (processors/bridges.py), by bridge name: the last sequence ingested
        # from each source, the last event offset each sink published.
        self.source_marks: dict[str, int] = {}
        self.sink_marks: dict[str, int] = {}
        # Durable subscriptions (processors/subscriptions.py): the workflow change feed (offset
        # -> record, oldest first), its latest offset, its records' size (derived: rebuilt on
        # load), and consumer groups' committed offsets by "<stream>/<group>".
        self.workflow_feed: dict[int, FeedRecord] = {}
        self.feed_offset = 0
        self.feed_bytes = 0
        self.consumer_groups: dict[str, int] = {}
        self._timer_heap: list[tuple[int, str]] = []
        # Workflow-level limits (processors/admission.py), derived from `workflows` (rebuilt on
        # load, never in a snapshot): running workflows (records.WF_RUNS) per definition name
        # and per records.admission_key, and the QUEUED ones per name in start order (id ->
        # (definition hash, correlation id), what promotion tells them apart by). Entries at
        # zero are dropped.
        self.running: dict[str, int] = {}
        self.running_by_correlation: dict[str, int] = {}
        self.queued: dict[str, dict[str, tuple[str, str]]] = {}

    def rebuild_event_waits(self) -> None:
        self.event_waits = {}
        for t in self.tasks.values():
            if t.type is TaskType.WAIT_FOR_EVENT and t.status == T_IN_PROGRESS:
                key = (t.input.get("event", ""), t.input.get("correlationKey", ""))
                self.event_waits.setdefault(key, {})[t.task_id] = None

    # ---- timers (derived heap with lazy deletion) ----
    def set_timer(self, key: str, due_ms: int) -> None:
        self.timers[key] = due_ms
        heapq.heappush(self._timer_heap, (due_ms, key))

    def clear_timer(self, key: str) -> None:
        self.timers.pop(key, None)

    def rebuild_timer_heap(self) -> None:
        self._timer_heap = [(due, key) for key, due in self.timers.items()]
        heapq.heapify(self._timer_heap)

    def next_due_ms(self) -> int | None:
        heap = self._timer_heap
        while heap:
            due, key = heap[0]
            if self.timers.get(key) == due:
                return due
            heapq.heappop(heap)
        return None

    def take_due(self, now_ms: int) -> list[str]:
        """The keys of all timers due at now_ms, ordered by (due, key). They leave the derived
        heap; the caller fires them (events.TimersFired removes them from `timers`)."""
        out: list[str] = []
        heap = self._timer_heap
        while heap and heap[0][0] <= now_ms:
            due, key = heapq.heappop(heap)
            if self.timers.get(key) == due and (not out or out[-1] != key):
                out.append(key)
        return out

    def rebuild_admission(self) -> None:
        """The derived admission counts, from the workflows (in their order: start order)."""
        self.running, self.running_by_correlation, self.queued = {}, {}, {}
        for wf in self.workflows.values():
            if wf.status in WF_RUNS:
                name = wf.workflow_name
                self.running[name] = self.running.get(name, 0) + 1
                key = admission_key(name, wf.correlation_id)
                if key:
                    by_corr = self.running_by_correlation
                    by_corr[key] = by_corr.get(key, 0) + 1
            elif wf.status is WF_QUEUED:
                kind = (wf.def_hash, wf.correlation_id)
                self.queued.setdefault(wf.workflow_name, {})[wf.workflow_id] = kind

    def rebuild_leased(self) -> None:
        """The derived count of leased tasks per queue: worker (SIMPLE) tasks IN_PROGRESS."""
        leased: dict[str, int] = {}
        for t in self.tasks.values():
            if t.status is T_IN_PROGRESS and t.type is TaskType.SIMPLE:
                key = records.queue_key(t.task_type, t.domain)
                leased[key] = leased.get(key, 0) + 1
        self.leased = leased

    # ---- snapshots ----
    def to_snapshot(self) -> dict[str, JSON]:
        return {
            "schema": SNAPSHOT_SCHEMA,
            "rows": {name: cls.ROW for name, cls in _RECORDS.items()},
            "seq": self.seq,
            "clock_ms": self.clock_ms,
            "epoch": self.epoch,
            "workflow_defs": self.workflow_defs,
            "task_defs": self.task_defs,
            "def_snapshots": {k: v.to_row() for k, v in self.def_snapshots.items()},
            "members": {k: v.to_row() for k, v in self.members.items()},
            "workflows": [wf.to_row() for wf in self.workflows.values()],
            "tasks": [t.to_row() for t in self.tasks.values()],
            "queues": {k: v.to_rows() for k, v in self.queues.items()},
            "lease_times": self.lease_times,
            # In key order: the heap orders timers, so their dict order means nothing, and a
            # rolled-back command puts a cleared timer back at the end (journal.py).
            "timers": dict(sorted(self.timers.items())),
            "parked": {k: v.to_row() for k, v in self.parked.items()},
            "requests": {k: v.to_row() for k, v in self.requests.items()},
            "idempotency": self.idempotency,
            "terminal_order": list(self.terminal_order),
            "last_poll": self.last_poll,
            "chains": self.chains,
            "settings": self.settings,
            "history_seq": self.history_seq,
            "history_expire": self.history_expire,
            "event_log": list(self.event_log.values()),
            "event_offset": self.event_offset,
            "event_handlers": self.event_handlers,
            "messages": list(self.messages.values()),
            "source_marks": self.source_marks,
            "sink_marks": self.sink_marks,
            "workflow_feed": list(self.workflow_feed.values()),
            "feed_offset": self.feed_offset,
            "consumer_groups": self.consumer_groups,
        }

    def snapshot_bytes(self) -> bytes:
        # Not sort_keys: dict order is part of the state (queues, eviction order) and JSON keeps it.
        return json.dumps(
            self.to_snapshot(), separators=(",", ":"), ensure_ascii=False, default=_encode
        ).encode()

    @classmethod
    def from_snapshot(cls, snap: dict[str, JSON]) -> State:
        schema = snap.get("schema")
        if schema not in READABLE_SCHEMAS:
            raise ValueError(f"unsupported snapshot schema {schema!r}")
        st = cls()
        st.seq = snap["seq"]
        st.clock_ms = snap["clock_ms"]
        st.epoch = snap["epoch"]
        st.workflow_defs = snap["workflow_defs"]
        st.task_defs = snap["task_defs"]
        if schema == 1:
            _load_v1_records(st, snap)
        else:
            _load_v2_records(st, snap)
        st.queues = {k: ReadyQueue.from_rows(v, st) for k, v in snap["queues"].items()}
        # Written before rate limits: windows start empty.
        st.lease_times = snap.get("lease_times", {})
        st.rebuild_leased()
        st.idempotency = snap["idempotency"]
        st.terminal_order = OrderedDict.fromkeys(snap["terminal_order"])
        st.last_poll = OrderedDict(snap.get("last_poll", {}))
        st.chains = {k: (v[0], v[1]) for k, v in snap.get("chains", {}).items()}
        # Snapshots written before the durable history hold none of these: the defaults are
        # exact (no history had been written).
        st.settings = {**DEFAULT_SETTINGS, **snap.get("settings", {})}
        st.history_seq = snap.get("history_seq", 0)
        st.history_expire = snap.get("history_expire", [])
        # Written before the event log: no events, no handlers.
        st.event_log = {e["offset"]: e for e in snap.get("event_log", [])}
        st.event_offset = snap.get("event_offset", 0)
        st.event_bytes = sum(encoded_size(e) for e in st.event_log.values())
        st.event_handlers = snap.get("event_handlers", {})
        # Written before message correlation: no messages, no WAIT_FOR_EVENT tasks.
        st.messages = {m["offset"]: m for m in snap.get("messages", [])}
        st.rebuild_event_waits()
        # Written before the bridges: nothing ingested or published yet.
        st.source_marks = snap.get("source_marks", {})
        st.sink_marks = snap.get("sink_marks", {})
        # Written before subscriptions: no changes fed, no groups.
        st.workflow_feed = {r[0]: tuple(r) for r in snap.get("workflow_feed", [])}
        st.feed_offset = snap.get("feed_offset", 0)
        st.feed_bytes = sum(record_size(r) for r in st.workflow_feed.values())
        st.consumer_groups = snap.get("consumer_groups", {})
        for key, due in snap["timers"].items():
            st.set_timer(key, due)
        st.rebuild_admission()
        return st

    @classmethod
    def from_snapshot_bytes(cls, data: bytes) -> State:
        # A load allocates hundreds of thousands of containers that all stay alive; the cyclic
        # collector would walk the whole heap again and again meanwhile with nothing to free
        # (over half of the load's time at the retention cap). Pausing it changes no result.
        paused = gc.isenabled()
        gc.disable()
        try:
            return cls.from_snapshot(json.loads(data))
        finally:
            if paused:
                gc.enable()

    def digest(self) -> str:
        """A hash of the whole state (order included), for comparing replicas and replays."""
        return hashlib.sha256(self.snapshot_bytes()).hexdigest()


def _encode(value: Any) -> JSON:
    if isinstance(value, ScriptMarker):
        return value.to_json()
    raise TypeError(f"{type(value).__name__} is not part of a snapshot")


def _reader(snap: dict[str, JSON], name: str) -> Any:
    """Build a record from its row: positionally when the row has today's fields, by name when
    it was written with others (a later version's added field takes its default)."""
    cls = _RECORDS[name]
    names = snap["rows"][name]
    if tuple(names) == cls.ROW:
        return lambda row: cls(*row)
    return lambda row: cls.from_named(names, row)


def _load_v2_records(st: State, snap: dict[str, JSON]) -> None:
    wf, task = _reader(snap, "Workflow"), _reader(snap, "Task")
    for row in snap["workflows"]:
        w = wf(row).fix_types()
        st.workflows[w.workflow_id] = w
    for row in snap["tasks"]:
        t = task(row).fix_types()
        st.tasks[t.task_id] = t
    defs, member = _reader(snap, "DefSnapshot"), _reader(snap, "Member")
    st.def_snapshots = {k: defs(v) for k, v in snap["def_snapshots"].items()}
    st.members = {k: member(v) for k, v in snap.get("members", {}).items()}
    parked, req = _reader(snap, "ParkedPoll"), _reader(snap, "RequestRecord")
    st.parked = {k: parked(v) for k, v in snap.get("parked", {}).items()}
    st.requests = OrderedDict((k, req(v)) for k, v in snap["requests"].items())


def _load_v1_records(st: State, snap: dict[str, JSON]) -> None:
    """Schema 1: the same parts, each record a camelCase dict."""
    st.workflows = {k: Workflow.from_v1(v) for k, v in snap["workflows"].items()}
    st.tasks = {k: Task.from_v1(v) for k, v in snap["tasks"].items()}
    st.def_snapshots = {k: DefSnapshot.from_v1(v) for k, v in snap["def_snapshots"].items()}
    st.members = {k: Member.from_v1(v) for k, v in snap.get("members", {}).items()}
    st.parked = {k: ParkedPoll.from_v1(v) for k, v in snap.get("parked", {}).items()}
    st.requests = OrderedDict((k, RequestRecord.from_v1(v)) for k, v in snap["requests"].items())
