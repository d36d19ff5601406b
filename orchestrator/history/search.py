"""Search over running and archived workflows, and the History a replica serves it from.

The API reads history only through `History` (search, get_doc, seq); SQLite stays in store.py.
"""

from __future__ import annotations

import copy
import heapq
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import structlog

from ..core.history_ops import Expire
from ..core.records import WF_LIVE, Workflow, WorkflowStatus
from ..core.state import State
from . import store as S
from .sync import Syncer
from .writer import Barrier, Writer

log = structlog.get_logger("history")

JSON = Any

SORTS = ("create_time", "end_time")
# How long a search or a read waits for the history to reach the memory it is merged with.
WAIT_TIMEOUT_S = 10.0
# Text matches beyond which a page walks the sort order instead of sorting the matches.
TEXT_SCAN_MIN = 2000
# Totals count the history's matches up to this many, then say "at least" (as Elasticsearch's
# track_total_hits): counting 1 000 000 rows takes a second, a page of them milliseconds.
TOTAL_BOUND = 10_000
MAX_PAGE_SIZE = 1000
_STATUSES = frozenset(s.value for s in WorkflowStatus)
# Not ended: never in terminal_order, end time 0.
_LIVE = frozenset(s.value for s in WF_LIVE)


class HistoryUnavailable(Exception):
    """The history cannot answer yet (catching up, copying from a peer): the API answers
    UNAVAILABLE with this message, never a silently incomplete result."""


@dataclass(frozen=True)
class SearchQuery:
    """A search; constructing an invalid one raises ValueError naming the field."""

    name: str = ""
    version: int = 0  # 0 = any
    statuses: tuple[str, ...] = ()  # WorkflowStatus values; () = any
    correlation_id: str = ""
    created_from_ms: int = 0  # inclusive; 0 = open
    created_to_ms: int = 0  # exclusive; 0 = open
    ended_from_ms: int = 0
    ended_to_ms: int = 0
    # A task of this type ended FAILED / FAILED_WITH_TERMINAL_ERROR / TIMED_OUT.
    failed_task_type: str = ""
    text: str = ""  # words that must all appear in reason_for_incompletion
    sort: str = "create_time"  # "create_time" | "end_time"
    descending: bool = True
    page_size: int = 100  # 1..1000
    after: tuple[int, str] | None = None  # keyset cursor: (sort value, workflow id)
    with_total: bool = True

    def __post_init__(self) -> None:
        _validate(self)


@dataclass
class SearchPage:
    workflows: list[Workflow]  # core records (views.workflow_pb renders them)
    next_after: tuple[int, str] | None
    total: int  # matches over memory and history; -1 when not asked
    # True: `total` is a lower bound (the history had more than TOTAL_BOUND matches).
    total_at_least: bool = False


def _validate(q: SearchQuery) -> None:
    for name in ("version", "created_from_ms", "created_to_ms", "ended_from_ms", "ended_to_ms"):
        value = getattr(q, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}: a non-negative integer")
    if not 1 <= q.page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size: between 1 and {MAX_PAGE_SIZE}")
    if q.sort not in SORTS:
        raise ValueError(f"sort: one of {', '.join(SORTS)}")
    bad = [s for s in q.statuses if s not in _STATUSES]
    if bad:
        raise ValueError(f"statuses: unknown status {bad[0]!r}")
    if q.after is not None and not (
        isinstance(q.after, tuple)
        and len(q.after) == 2
        and isinstance(q.after[0], int)
        and isinstance(q.after[1], str)
    ):
        raise ValueError("after: a (sort value, workflow id) pair")


class History:
    """One replica's durable history (store.py, written by writer.py) and search over it.

    server.py builds it with the replica's data folder and attaches it to the replica before
    the replica applies anything (`attach`).
    """

    def __init__(self, data_dir: str, fsync: bool = True) -> None:
        os.makedirs(data_dir, exist_ok=True)
        self.path = os.path.join(data_dir, S.FILE)
        self.store = _open_store(self.path, fsync)
        self.writer = Writer(self.store)
        # Why this history cannot answer ("" when it can): it misses operations that only a
        # copy from a peer can bring (a snapshot newer than it replaced the log holding them).
        self.unavailable = ""
        if self.store.meta("incomplete"):
            self.unavailable = (
                "this replica's history is incomplete (a snapshot newer than it was installed);"
                " waiting for a copy from a peer"
            )
        self._replica: Any = None
        self._local = threading.local()
        self._syncer: Syncer | None = None

    # ------------------------------------------------------------ the replica's side

    def attach(self, replica: Any) -> None:
        """Listen to the replica's applied batches (on its apply thread) and gate its snapshots
        on the history (replica.history_barrier)."""
        self._replica = replica
        replica.subscribe(self._on_applied)
        replica.history_barrier = self.snapshot_barrier
        # Attached before the replica applies anything, but the tests' in-memory replica
        # commits its leader epoch (nothing for the history) before: caught up to that.
        self.writer.submit(replica.read(lambda st: st.seq), [])

    def _on_applied(self, fx: Any) -> None:
        st: State = self._replica.state  # the apply thread is its only writer
        if fx.reloaded:
            self._reloaded(st)
        self.writer.submit(st.seq, fx.history)

    def _reloaded(self, st: State) -> None:
        """A snapshot replaced the state: operations the history has not written and the log
        no longer holds are lost to it, unless they were only expiries (redone here)."""
        have = self.writer.handed
        if st.history_seq > have:
            self._set_incomplete(
                f"this replica's history (at seq {have}) misses operations up to seq "
                f"{st.history_seq} that the snapshot it loaded (seq {st.seq}) covers; waiting "
                "for a copy from a peer"
            )
        elif st.history_expire and st.history_expire[0] > have:
            # Expiries alone: the latest one deletes what all of them would have (each keeps
            # the newest rows, and no retention change lies between them: history_seq).
            seq, cutoff_ms, max_rows = st.history_expire
            self.writer.submit(seq, [Expire(seq, cutoff_ms, max_rows)])

    def _set_incomplete(self, reason: str) -> None:
        log.error("history_incomplete", reason=reason)
        self.unavailable = reason
        self.writer.mark_incomplete()
        if self._syncer is not None:
            self._syncer.wake()

    def start_sync(
        self,
        peers: Callable[[], list[str]],
        channel: Callable[[str], grpc.Channel],
        metadata: Any,
    ) -> None:
        """Copy the history from a peer (peers(): their gRPC addresses) whenever it is
        incomplete; `channel` and `metadata` reach a peer with the replica credential."""
        self._syncer = Syncer(self, peers, channel, metadata)
        if self.unavailable:
            self._syncer.wake()

    def begin_copy(self) -> int:
        """The seq a copy from a peer must hold at least (sync.py)."""
        return self.writer.capture()

    def install_copy(self, path: str, seq: int) -> None:
        self.writer.install(path, seq)
        self.unavailable = ""

    def snapshot_barrier(self) -> Barrier:
        """Called on the apply thread right before a snapshot: signalled once everything the
        snapshot covers is written and synced."""
        return self.writer.barrier(self._replica.state.seq)

    def stop(self) -> None:
        if self._syncer is not None:
            self._syncer.stop()
        self.writer.stop()
        self.store.close()

    # ------------------------------------------------------------ reads (any thread)

    def seq(self) -> int:
        """The last sequence number the history has written."""
        return self.writer.reached

    def _ready(self, seq: int) -> sqlite3.Connection:
        if self.unavailable:
            raise HistoryUnavailable(self.unavailable)
        if not self.writer.wait_reached(seq, WAIT_TIMEOUT_S):
            raise HistoryUnavailable(
                self.writer.error
                or f"the history (at seq {self.writer.reached}) has not reached seq {seq} "
                f"within {WAIT_TIMEOUT_S:g}s"
            )
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = S.connect(self.path, readonly=True)
        return conn

    def get_doc(self, workflow_id: str, min_seq: int = 0) -> dict[str, JSON] | None:
        """The archive document (history_ops.archive_doc) of an archived workflow, or None.

        Waits until the history has written what this replica had applied when called (and
        min_seq): a workflow not found in memory just before is then found here."""
        applied = self._replica.state.seq if self._replica is not None else 0
        return S.get_doc(self._ready(max(min_seq, applied)), workflow_id)

    def search(self, replica: Any, q: SearchQuery, min_seq: int = 0) -> SearchPage:
        """Memory (its workflows at seq S taken under replica.read, filtered outside the lock,
        the chosen ones copied under it again) merged with the history once it has
        written everything up to max(S, min_seq); ids deduplicated (memory wins). Raises
        HistoryUnavailable when the history cannot answer in time.

        Rows archived after S are left out (at S they were in memory, and the memory read
        has them as they were then), so a workflow evicted meanwhile is listed once.
        """
        if min_seq and not replica.wait_applied(min_seq, WAIT_TIMEOUT_S):
            raise HistoryUnavailable(f"this replica has not applied seq {min_seq} yet")
        # Under the lock (which apply holds per entry, on the Raft tick thread) only what is
        # cheap: the candidates, then the chosen page's copies; the filtering runs outside it
        # (a walk over 100 000 running workflows held apply for ~0.3 s).
        cands, task_of, seq = replica.read(
            lambda st: (list(_candidates(st, q)), st.tasks.get, st.seq)
        )
        chosen, mem_total = _memory_page(cands, q, task_of)
        mem = replica.read(
            lambda st: [(k, _copy(st.workflows.get(wf.workflow_id, wf))) for k, wf in chosen]
        )
        conn = self._ready(max(seq, min_seq))
        rows, sql_total = _sql_page(conn, q, seq, self.store.fts)
        seen = {wf.workflow_id for _, wf in mem}
        merged = mem + [(k, wf) for k, wf in rows if wf.workflow_id not in seen]
        merged.sort(key=lambda kw: kw[0], reverse=q.descending)
        more = len(merged) > q.page_size
        page = merged[: q.page_size]
        total = mem_total + sql_total[0] if q.with_total else -1
        next_after = page[-1][0] if more else None
        return SearchPage([wf for _, wf in page], next_after, total, sql_total[1])

    def digest(self) -> str:
        """A hash of every row (tests compare replicas with it)."""
        return S.digest(self._ready(0))


def _open_store(path: str, fsync: bool) -> S.Store:
    """The store at `path`; a file SQLite cannot read is moved aside (named in the log) and
    an empty one started, which the log rebuilds or a peer's copy replaces (History._reloaded)
    like a lost file: every other replica holds the same rows."""
    try:
        return S.Store(path, fsync)
    except sqlite3.DatabaseError as exc:
        aside = f"{path}.corrupt-{int(time.time())}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.replace(path + suffix, aside + suffix)
        log.error("history_file_unreadable", error=str(exc), moved_to=aside)
        return S.Store(path, fsync)


Key = tuple[int, str]
Total = tuple[int, bool]  # a count, and whether it stopped at TOTAL_BOUND


def _memory_page(
    cands: list[Workflow], q: SearchQuery, task_of: Callable[[str], Any]
) -> tuple[list[tuple[Key, Workflow]], int]:
    """The first page_size + 1 matches among `cands` after the cursor, and how many match in
    all. Runs outside the replica's lock: apply may change a record meanwhile (each read of
    an attribute is whole), so a workflow may show a status newer than the candidates' seq;
    the caller copies the chosen ones under the lock."""
    words = set(S.text_words(q.text))
    statuses = frozenset(q.statuses)
    failed = q.failed_task_type
    after = q.after
    by_end = q.sort != "create_time"
    n = q.page_size + 1
    page: list[tuple[Key, Workflow]] = []
    total = 0
    for wf in cands:
        if (q.name and wf.workflow_name != q.name) or (
            q.version and wf.workflow_version != q.version
        ):
            continue
        if (statuses and wf.status not in statuses) or (
            q.correlation_id and wf.correlation_id != q.correlation_id
        ):
            continue
        if not _in_range(wf.create_time_ms, q.created_from_ms, q.created_to_ms):
            continue
        if not _in_range(wf.end_time_ms, q.ended_from_ms, q.ended_to_ms):
            continue
        if failed and not _failed_type(task_of, wf, failed):
            continue
        if words and not words <= set(S.text_words(wf.reason_for_incompletion)):
            continue
        total += 1
        key = (wf.end_time_ms if by_end else wf.create_time_ms, wf.workflow_id)
        if after is not None and (key >= after if q.descending else key <= after):
            continue
        page.append((key, wf))
    best = heapq.nlargest(n, page) if q.descending else heapq.nsmallest(n, page)
    return best, total


def _candidates(st: State, q: SearchQuery) -> Iterable[Workflow]:
    """Every workflow in memory, or only the ended ones (at most MAX_TERMINAL_WORKFLOWS, in
    terminal_order) when the query cannot match a running or paused one: a search for failures
    then costs the apply lock nothing like a walk over 100 000 running workflows."""
    ended_only = q.ended_from_ms > 0 or (q.statuses and not _LIVE.intersection(q.statuses))
    if not ended_only:
        return st.workflows.values()
    wfs = st.workflows
    return (wfs[wid] for wid in st.terminal_order if wid in wfs)


def _in_range(value: int, lo: int, hi: int) -> bool:
    return (not lo or value >= lo) and (not hi or value < hi)


def _failed_type(task_of: Callable[[str], Any], wf: Workflow, task_type: str) -> bool:
    for tid in list(wf.tasks):
        t = task_of(tid)
        if t is not None and t.status in S.FAILED_STATUSES and task_type in (t.task_type, t.type):
            return True
    return False


def _copy(wf: Workflow) -> Workflow:
    out = copy.copy(wf)
    out.input, out.output, out.variables = dict(wf.input), dict(wf.output), dict(wf.variables)
    out.tasks = list(wf.tasks)
    return out


def _conditions(q: SearchQuery, fts: bool) -> tuple[str, list[str], list[Any], str]:
    """The FROM clause of a query (workflows `w`, joined to failed_types `f` when the query
    has a failed task type: its rows carry the sort columns, so a page reads in order from its
    index), the WHERE conditions and their arguments, and its FTS5 match ("" none)."""
    where: list[str] = []
    args: list[Any] = []
    source = "workflows w"
    own = "w"  # the table whose sort columns and status the conditions read (its index's)
    if q.failed_task_type:
        # The correlation index is narrower than any type's rows: the planner chooses then.
        hint = "" if q.correlation_id else f" INDEXED BY {S.FAILED_SORT_INDEXES[q.sort]}"
        source = f"failed_types f{hint} JOIN workflows w ON w.workflow_id = f.workflow_id"
        own = "f"
        where.append("f.task_type = ?")
        args.append(q.failed_task_type)
    for column, value in (("name", q.name), ("correlation_id", q.correlation_id)):
        if value:
            where.append(f"w.{column} = ?")
            args.append(value)
    if q.version:
        where.append("w.version = ?")
        args.append(q.version)
    if q.statuses:
        where.append(f"{own}.status IN ({', '.join('?' * len(q.statuses))})")
        args.extend(q.statuses)
    for column, lo, hi in (
        ("create_ms", q.created_from_ms, q.created_to_ms),
        ("end_ms", q.ended_from_ms, q.ended_to_ms),
    ):
        if lo:
            where.append(f"{own}.{column} >= ?")
            args.append(lo)
        if hi:
            where.append(f"{own}.{column} < ?")
            args.append(hi)
    words = S.text_words(q.text)
    if words and not fts:  # without FTS5: substrings, not words
        for w in words:
            where.append("lower(w.reason) LIKE ?")
            args.append(f"%{w}%")
    return source, where, args, " ".join(f'"{w}"' for w in words) if fts else ""


def _sql_page(
    conn: sqlite3.Connection, q: SearchQuery, max_seq: int, fts: bool
) -> tuple[list[tuple[Key, Workflow]], Total]:
    source, where, args, match = _conditions(q, fts)
    text_only = not (q.name or q.correlation_id or q.version or q.statuses or q.failed_task_type)
    table = "f" if q.failed_task_type else "w"
    col = f"{table}.{S.SORT_COLUMNS[q.sort]}"
    order = "DESC" if q.descending else "ASC"
    conn.execute("BEGIN")
    try:
        hits = -1
        if match:
            # The matches, once per search: the page and the count both test rows against them.
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS text_hits(id INTEGER PRIMARY KEY)")
            conn.execute("DELETE FROM temp.text_hits")
            hits = conn.execute(
                "INSERT INTO temp.text_hits SELECT rowid FROM reasons WHERE reasons MATCH ?",
                (match,),
            ).rowcount
            # Joined to failed_types: its own copy of the row id, never an index constraint
            # (the planner would look every row up once per match: minutes at 1M rows).
            where.append(f"{'+f.wid' if q.failed_task_type else 'w.id'} IN temp.text_hits")
        page_source = source
        if match and text_only and hits > TEXT_SCAN_MIN:
            # Many matches: walk the sort order testing rows against them, rather than fetch
            # and sort every match.
            page_source = f"workflows w INDEXED BY {S.SORT_INDEXES[q.sort]}"
        page_where, page_args = [*where, "w.archived_seq <= ?"], [*args, max_seq]
        if q.after is not None:
            page_where.append(f"({col}, {table}.workflow_id) {'<' if q.descending else '>'} (?, ?)")
            page_args.extend(q.after)
        rows = conn.execute(
            f"SELECT {col}, w.workflow_id, w.doc FROM {page_source}"
            f" WHERE {' AND '.join(page_where)}"
            f" ORDER BY {col} {order}, {table}.workflow_id {order} LIMIT ?",
            (*page_args, q.page_size + 1),
        ).fetchall()
        known = hits if match and len(where) == 1 else -1  # the text alone: its matches
        total = _count(conn, source, where, args, max_seq, known) if q.with_total else (0, False)
    finally:
        if match:  # not kept until this thread's next text search
            conn.execute("DELETE FROM temp.text_hits")
        conn.execute("COMMIT")
    return [((v, wid), S.workflow_of(doc)) for v, wid, doc in rows], total


def _count(
    conn: sqlite3.Connection,
    source: str,
    where: list[str],
    args: list[Any],
    max_seq: int,
    known: int,
) -> Total:
    """Matches archived up to max_seq, counted up to TOTAL_BOUND: (count, whether there are
    more). All matches are counted (or `known`, when not -1), less the few archived after
    max_seq, found by their index (a count with the seq condition itself would read every
    matching row, not only an index)."""
    cond = " AND ".join(where) or "1"
    recent = 0
    if conn.execute(
        "SELECT 1 FROM workflows WHERE archived_seq > ? LIMIT 1", (max_seq,)
    ).fetchone():
        (recent,) = conn.execute(
            f"SELECT COUNT(*) FROM {source} WHERE w.archived_seq > ? AND {cond}",
            (max_seq, *args),
        ).fetchone()
    limit = TOTAL_BOUND + recent
    if source.startswith("failed_types") and "w." not in cond:
        source = source.split(" JOIN ")[0]  # every condition is on failed_types' own index
    count = known
    if count < 0:
        (count,) = conn.execute(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM {source} WHERE {cond} LIMIT ?)",
            (*args, limit + 1),
        ).fetchone()
    if count > limit:
        return TOTAL_BOUND, True
    return int(count) - recent, False
