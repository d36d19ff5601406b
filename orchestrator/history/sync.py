"""Copying the durable history between replicas (protos/orchestrator/v1/history_sync.proto).

A replica that loaded a snapshot newer than its history (installed from the leader, or its own
with the history file lost) misses operations its log no longer holds. It asks a peer for "your
history at seq >= S" (S: what it had applied when it asked); the peer waits until its history
has written S, takes a consistent copy (SQLite's backup API, one read transaction) into a temp
file and streams it. The asking replica installs the copy (writer.py), writes again the
operations it applied since it asked, and serves its history again.

Only the replica credential may call it (security/permissions.py, api/auth.py).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from orchestrator_client.v1 import history_sync_pb2, history_sync_pb2_grpc

from . import store as S

if TYPE_CHECKING:
    from .search import History

log = structlog.get_logger("history")

CHUNK_BYTES = 1024 * 1024
# How long the answering replica waits for its history to reach the asked seq.
SERVE_WAIT_S = 20.0
# Between rounds of asking the peers, while this replica's history is incomplete.
RETRY_S = 2.0
COPY_TIMEOUT_S = 600.0


class HistorySyncServicer(history_sync_pb2_grpc.HistorySyncServiceServicer):
    def __init__(self, history: History) -> None:
        self.history = history

    def CopyHistory(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        h = self.history
        if h.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"history: {h.unavailable}")
        if not h.writer.wait_reached(request.min_seq, SERVE_WAIT_S):
            context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"history at seq {h.writer.reached} has not reached {request.min_seq}",
            )
        fd, tmp = tempfile.mkstemp(prefix="history-copy-", dir=os.path.dirname(h.path))
        os.close(fd)
        try:
            # Everything up to `reached` is committed before the copy begins, so the copy holds
            # it, even when the last batches had nothing to write (the stored seq lags then).
            seq = copy_of(h.path, tmp, h.writer.reached)
            size = os.path.getsize(tmp)
            with open(tmp, "rb") as f:
                data = f.read(CHUNK_BYTES)
                yield history_sync_pb2.HistoryChunk(data=data, seq=seq, size=size)
                while data := f.read(CHUNK_BYTES):
                    yield history_sync_pb2.HistoryChunk(data=data)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def copy_of(path: str, dest: str, reached: int) -> int:
    """A consistent copy of the history at `path` into `dest`, which held everything up to
    `reached` when it began (returns the copy's seq): the backup runs in one step, one read
    transaction, so the writer carries on meanwhile."""
    src = S.connect(path, readonly=True)
    target = sqlite3.connect(dest, isolation_level=None)
    try:
        src.backup(target)
        target.execute("PRAGMA journal_mode = DELETE")
        target.execute("UPDATE meta SET v = max(v, ?) WHERE k = 'seq'", (reached,))
        row = target.execute("SELECT v FROM meta WHERE k = 'seq'").fetchone()
    finally:
        target.close()
        src.close()
    return int(row[0]) if row else 0


def fetch(channel: grpc.Channel, metadata: Any, min_seq: int, dest: str) -> int:
    """Download a peer's history at seq >= min_seq into `dest`; returns its seq."""
    stub = history_sync_pb2_grpc.HistorySyncServiceStub(channel)  # type: ignore[no-untyped-call]
    request = history_sync_pb2.CopyHistoryRequest(min_seq=min_seq)
    seq, size, got = -1, 0, 0
    with open(dest, "wb") as f:
        for chunk in stub.CopyHistory(request, metadata=metadata, timeout=COPY_TIMEOUT_S):
            if seq < 0:
                seq, size = chunk.seq, chunk.size
            f.write(chunk.data)
            got += len(chunk.data)
        f.flush()
        os.fsync(f.fileno())
    if seq < min_seq or got != size:
        raise ValueError(f"a short or stale copy ({got} of {size} bytes, seq {seq} < {min_seq})")
    return seq


class Syncer:
    """While the history is incomplete: ask each peer in turn until one copy is installed."""

    def __init__(
        self,
        history: History,
        peers: Callable[[], list[str]],
        channel: Callable[[str], grpc.Channel],
        metadata: Any,
    ) -> None:
        self.history = history
        self.peers = peers
        self.channel = channel
        self.metadata = metadata
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="history-sync", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(RETRY_S)
            self._wake.clear()
            if self._stopped or not self.history.unavailable:
                continue
            for addr in self.peers():
                if self._stopped or self._copy_from(addr):
                    break

    def _copy_from(self, addr: str) -> bool:
        h = self.history
        dest = h.path + ".incoming"
        min_seq = h.begin_copy()
        try:
            seq = fetch(self.channel(addr), self.metadata, min_seq, dest)
            h.install_copy(dest, seq)
        except (grpc.RpcError, OSError, ValueError, sqlite3.Error) as exc:
            log.warning("history_copy_failed", peer=addr, error=str(exc))
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
        log.info("history_copied", peer=addr, seq=seq)
        return True
