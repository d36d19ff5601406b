"""Every replica's history holds the same rows: the same random log applied on three
replicas, one restarted from its own snapshot taken mid-way (its history ahead of it, the
replayed operations skipped), one whose history file was lost and is rebuilt from the log,
gives the same digest of every row; so do time and size retention along the way."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core import limits
from orchestrator.core.commands import SetHistoryRetention
from orchestrator.core.state import State
from orchestrator.history import History, SearchQuery
from tests.core.test_core_determinism import SMALL_LIMITS, build_log
from tests.core_helpers import Batch, Harness, wire
from tests.history.helpers import MiniReplica, attached


@pytest.fixture(scope="module")
def log() -> list[Batch]:
    mp = pytest.MonkeyPatch()
    try:
        for key, value in SMALL_LIMITS.items():
            mp.setattr(limits, key, value)
        h, _ = build_log(seed=1414, steps=1800)
    finally:
        mp.undo()
    out = list(h.log)
    # Retention changes along the way (shorter, size-bound, then longer again).
    for at, (retention_ms, max_rows) in zip(
        (len(out) // 4, len(out) // 2, 3 * len(out) // 4),
        ((60_000, 0), (10**9, 30), (10**9, 0)),
        strict=True,
    ):
        cmd = SetHistoryRetention(
            request_id=f"ret-{at}", retention_ms=retention_ms, max_workflows=max_rows
        )
        out.insert(at, (out[at - 1][0], wire([cmd])))
    return out


@pytest.fixture(autouse=True)
def _small(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SMALL_LIMITS.items():
        monkeypatch.setattr(limits, key, value)


def _finish(r: MiniReplica, history: History) -> str:
    assert history.writer.wait_reached(r.state.seq, 10)
    return history.digest()


def test_three_replicas_hold_the_same_rows(log: list[Batch], tmp_path: Path) -> None:
    # A: straight through.
    a = MiniReplica(Harness())
    ha = attached(tmp_path, a, "a")
    a.replay(log)
    digest = _finish(a, ha)
    rows = ha._ready(0).execute("SELECT COUNT(*) FROM workflows").fetchone()[0]
    assert rows > 10 and a.state.history_expire, "the log archived workflows and expired"
    assert a.state.history_seq > 0
    ha.stop()

    # B: snapshot at a third, crash at two thirds, restart from the snapshot, replay the rest.
    third, two_thirds = len(log) // 3, 2 * len(log) // 3
    b = MiniReplica(Harness())
    hb = attached(tmp_path, b, "b")
    b.replay(log[:third])
    snap = b.state.snapshot_bytes()
    b.replay(log[third:two_thirds])
    assert hb.writer.wait_reached(b.state.seq, 10)
    hb.writer.stop()  # kill: the file keeps what was committed
    b2 = MiniReplica(Harness())
    hb2 = attached(tmp_path, b2, "b")
    b2.load(State.from_snapshot_bytes(snap))
    assert not hb2.unavailable, "its history is ahead of its snapshot"
    b2.replay(log[third:])
    assert _finish(b2, hb2) == digest
    assert b2.state.digest() == a.state.digest()
    hb2.stop()

    # C: the history file is lost half way; the log still holds everything: rebuilt from it.
    c = MiniReplica(Harness())
    hc = attached(tmp_path, c, "c")
    c.replay(log[: len(log) // 2])
    hc.stop()
    for f in (tmp_path / "c").iterdir():
        f.unlink()
    c2 = MiniReplica(Harness())
    hc2 = attached(tmp_path, c2, "c")
    c2.replay(log)
    assert _finish(c2, hc2) == digest
    hc2.stop()


def test_a_snapshot_past_only_expiries_redoes_the_latest(tmp_path: Path) -> None:
    """A replica whose history missed only expiries (a snapshot covers them) catches up
    alone: the latest expiry deletes what all of them would have."""
    a = MiniReplica(Harness())
    ha = attached(tmp_path, a, "a")
    a.h.leader_epoch(1)
    a.h.register_defaults()
    a.h.ok(SetHistoryRetention(request_id="r", retention_ms=150_000, max_workflows=0))
    for i in range(40):
        a.h.advance(20_000)
        a.h.start("one_step", {"i": i})
        a.h.complete(a.h.poll_one("task_c"))
    d = MiniReplica(Harness())
    hd = attached(tmp_path, d, "d")
    d.replay(a.h.log)
    assert hd.writer.wait_reached(d.state.seq, 10)
    rows_before = hd.search(d, SearchQuery()).total
    # Then nothing but the retention timer: only expiries, which d does not see.
    for _ in range(4):
        a.h.tick(limits.HISTORY_EXPIRE_PERIOD_MS)
    digest = _finish(a, ha)
    assert a.state.history_expire[0] == a.state.seq > a.state.history_seq
    d.load(State.from_snapshot_bytes(a.state.snapshot_bytes()))
    assert not hd.unavailable
    assert _finish(d, hd) == digest
    assert hd.search(d, SearchQuery()).total < rows_before, "the expiry deleted rows"
    ha.stop()
    hd.stop()
