"""The history's writer thread: the apply thread hands it each batch's operations (a replica
listener), it writes them in order, many batches to a transaction.

The queue is bounded: when the writer falls far behind (a slow disk), `submit` blocks the
apply thread until there is room rather than grow memory without bound or drop an operation
(a dropped one would make this replica's history differ from the others' for good).

`reached` is the sequence number up to which every operation handed over is committed (the
search waits for it: read-your-writes). A snapshot barrier (`barrier`) tells, through a pipe
a forked snapshot child can wait on, when everything up to a sequence number is committed and
synced: the snapshot is written, and the Raft log that could rebuild those rows truncated, only
then.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections import deque

import structlog

from ..core.history_ops import HistoryOp
from .store import Store

log = structlog.get_logger("history")

# Operations waiting for the writer before the apply thread waits for room.
MAX_QUEUED_OPS = 20_000
# Operations written per transaction at most (the batches of one take are never split).
MAX_OPS_PER_TXN = 5_000


class Barrier:
    """A pipe the writer signals once everything up to `seq` is committed and synced; a forked
    snapshot child (or the tick thread itself) waits on it."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.r, self.w = os.pipe()

    def wait(self, timeout_s: float) -> bool:
        ready, _, _ = select.select([self.r], [], [], timeout_s)
        return bool(ready) and os.read(self.r, 1) == b"1"

    def detach(self) -> None:
        """The parent's end of the read side after a fork (the child keeps its own)."""
        os.close(self.r)

    def _signal(self, ok: bool) -> None:
        try:
            os.write(self.w, b"1" if ok else b"0")
        except OSError:
            pass  # nobody waits any more (the child gave up)
        finally:
            os.close(self.w)


class Writer:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.reached = store.seq()
        # The highest end seq handed over (written or queued).
        self.handed = self.reached
        self._incomplete = False
        # Batches written since a copy from a peer was asked for (None: no copy under way):
        # written again over the copy once it is installed.
        self._tail: list[tuple[int, list[HistoryOp]]] | None = None
        # Held while the writer writes: installing a copy takes the connection meanwhile.
        self._write_lock = threading.Lock()
        self.error = ""
        self._queue: deque[tuple[int, list[HistoryOp]]] = deque()
        self._queued_ops = 0
        self._busy = False
        self._barriers: list[Barrier] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ apply thread

    def submit(self, end_seq: int, ops: list[HistoryOp]) -> None:
        with self._cond:
            self.handed = max(self.handed, end_seq)
            if not ops and not self._queue and not self._busy:
                # Nothing to write and nothing before it: reached at once, no wake-up.
                self.reached = max(self.reached, end_seq)
                self._cond.notify_all()
                return
            while self._queued_ops >= MAX_QUEUED_OPS and not self._stopped and not self.error:
                self._cond.wait(0.1)
            if self.error:
                # The writer is gone: keep nothing (searches answer UNAVAILABLE with the error;
                # snapshots fail, so the log keeps what a restart rebuilds the history from).
                return
            self._queue.append((end_seq, ops))
            self._queued_ops += len(ops)
            self._cond.notify_all()

    def mark_incomplete(self) -> None:
        """Record (durably, before anything else is written) that the history misses
        operations: a restart must not take it for whole."""
        with self._cond:
            self._incomplete = True
            self._queue.append((0, []))
            self._cond.notify_all()

    def capture(self) -> int:
        """A copy from a peer is being asked for: remember what is written from now on.
        Returns the seq the copy must hold at least (everything handed over so far)."""
        with self._write_lock, self._cond:
            self._tail = []
            return self.handed

    def install(self, path: str, seq: int) -> None:
        """Replace the history with a peer's copy (which holds everything up to `seq`), then
        write again what was written here since the copy was asked for."""
        with self._write_lock:
            tail, self._tail = self._tail or [], None
            self.store.install(path)
            self.store.write([(end, [op for op in ops if op.seq > seq]) for end, ops in tail])

    def barrier(self, seq: int) -> Barrier:
        b = Barrier(seq)
        with self._cond:
            dead = bool(self.error)
            if not dead:
                self._barriers.append(b)
                self._cond.notify_all()
        if dead:
            b._signal(False)
        return b

    # ------------------------------------------------------------ readers

    def wait_reached(self, seq: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.reached < seq:
                left = deadline - time.monotonic()
                if left <= 0 or self.error:
                    return False
                self._cond.wait(left)
            return True

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._busy

    # ------------------------------------------------------------ writer thread

    def _take(self) -> list[tuple[int, list[HistoryOp]]] | None:
        with self._cond:
            while not self._queue and not self._due_barriers() and not self._stopped:
                self._cond.wait(0.5)
            if self._stopped and not self._queue:
                return None
            taken: list[tuple[int, list[HistoryOp]]] = []
            n = 0
            while self._queue and (not taken or n + len(self._queue[0][1]) <= MAX_OPS_PER_TXN):
                item = self._queue.popleft()
                n += len(item[1])
                taken.append(item)
            self._busy = bool(taken)
            return taken

    def _due_barriers(self) -> list[Barrier]:
        return [b for b in self._barriers if b.seq <= self.reached]

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            try:
                with self._write_lock:
                    if self._incomplete:
                        self._incomplete = False
                        self.store.set_incomplete(True)
                    if taken:
                        self.store.write(taken)
                        if self._tail is not None:
                            self._tail.extend(taken)
            except Exception as exc:  # a broken disk: stop, say so (search answers UNAVAILABLE)
                log.exception("history_write_failed")
                with self._cond:
                    self.error = f"history write failed: {type(exc).__name__}: {exc}"
                    self._busy = False
                    self._cond.notify_all()
                self._fail_barriers()
                return
            with self._cond:
                if taken:
                    self.reached = max(self.reached, *(s for s, _ in taken))
                    self._queued_ops -= sum(len(ops) for _, ops in taken)
                self._busy = False
                due = self._due_barriers()
                self._barriers = [b for b in self._barriers if b not in due]
                self._cond.notify_all()
            if due:
                self._sync(due)
        self._fail_barriers()

    def _sync(self, due: list[Barrier]) -> None:
        ok = True
        try:
            self.store.sync()
        except OSError as exc:
            log.error("history_sync_failed", error=str(exc))
            ok = False
        for b in due:
            b._signal(ok)

    def _fail_barriers(self) -> None:
        with self._cond:
            pending, self._barriers = self._barriers, []
        for b in pending:
            b._signal(False)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
