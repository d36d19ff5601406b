"""A replica whose history misses what a snapshot covers copies a peer's history over the
internal CopyHistory RPC (history_sync.proto), answers UNAVAILABLE until then, and afterwards
holds the same rows as the peer, including what it applied while the copy travelled."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from orchestrator_client.v1 import history_sync_pb2_grpc

from orchestrator.core.state import State
from orchestrator.history import HistoryUnavailable, SearchQuery
from orchestrator.history import sync as sync_mod
from orchestrator.history.sync import HistorySyncServicer
from tests.cluster_support import wait_for
from tests.core_helpers import Harness
from tests.history.helpers import MiniReplica, attached
from tests.history.test_history_store import _run


def _serve(servicer: Any) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    history_sync_pb2_grpc.add_HistorySyncServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def test_an_incomplete_history_is_copied_from_a_peer(
    h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = MiniReplica(h)
    ha = attached(tmp_path, a, "a")
    for i in range(6):
        _run(h, "one_step", reason=f"boom {i}" if i % 2 else "")
    b = MiniReplica(Harness())
    hb = attached(tmp_path, b, "b")
    b.load(State.from_snapshot_bytes(a.state.snapshot_bytes()))
    with pytest.raises(HistoryUnavailable, match="copy from a peer"):
        hb.search(b, SearchQuery())
    # Both apply more; then, while the copy travels, b applies a batch a has not yet.
    mark = len(h.log)
    for _ in range(3):
        _run(h, "one_step")
    b.replay(h.log[mark:])
    fetch = sync_mod.fetch

    def slow_fetch(*args: Any) -> int:
        seq = fetch(*args)
        mark2 = len(h.log)
        _run(h, "one_step", reason="while copying")  # applied on a, then on b (its tail)
        b.replay(h.log[mark2:])
        assert hb.writer.wait_reached(b.state.seq, 5)
        return seq

    monkeypatch.setattr(sync_mod, "fetch", slow_fetch)
    server, addr = _serve(HistorySyncServicer(ha))
    try:
        hb.start_sync(lambda: ["127.0.0.1:1", addr], grpc.insecure_channel, ())
        wait_for(lambda: not hb.unavailable, 30, "the copy (the first peer is unreachable)")
        assert a.state.seq == b.state.seq
        assert ha.writer.wait_reached(a.state.seq, 5) and hb.writer.wait_reached(b.state.seq, 5)
        assert hb.digest() == ha.digest()
        assert hb.search(b, SearchQuery()).total == ha.search(a, SearchQuery()).total
    finally:
        server.stop(0)
        ha.stop()
        hb.stop()
