"""The durable history on one replica: rows written from the core's operations, every search
filter, sort and page, totals over memory and history, free text, documents, retention, and
the writer's skipping of operations it already wrote (a replayed log)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core import history_ops as H
from orchestrator.core.commands import SetHistoryRetention
from orchestrator.core.state import State
from orchestrator.history import History, HistoryUnavailable, SearchQuery
from tests.core_helpers import Harness
from tests.history.helpers import MiniReplica, attached


def _run(h: Harness, name: str, reason: str = "", corr: str = "", advance: int = 10) -> str:
    """Start `name`, end it (failed with `reason`, or completed), moving the clock."""
    h.advance(advance)
    wf = h.start(name, {"x": 1}, correlation_id=corr)
    task_type = "task_c" if name == "one_step" else "task_a"
    tid = h.poll_one(task_type)
    h.advance(advance)
    if reason:
        h.fail(tid, reason=reason, terminal=True)
    elif name == "one_step":
        h.complete(tid, {"v": 1})
    else:
        h.terminate(wf, reason="operator stop")
    return wf


@pytest.fixture
def world(h: Harness, tmp_path: Path) -> tuple[MiniReplica, History, dict[str, str]]:
    r = MiniReplica(h)
    history = attached(tmp_path, r)
    ids = {
        "ok1": _run(h, "one_step", corr="c1"),
        "bad1": _run(h, "one_step", reason="disk full on node7", corr="c1"),
        "ok2": _run(h, "one_step", corr="c2"),
        "stop": _run(h, "two_step"),
        "bad2": _run(h, "two_step", reason="Quota exceeded, disk ok"),
        "ok3": _run(h, "one_step"),
    }
    h.advance(10)
    ids["running"] = h.start("two_step", {"x": 2}, correlation_id="c1")
    yield r, history, ids
    history.stop()


def _ids(history: History, r: MiniReplica, **kw: object) -> list[str]:
    page = history.search(r, SearchQuery(**kw))  # type: ignore[arg-type]
    return [wf.workflow_id for wf in page.workflows]


def test_archived_workflows_are_in_the_history_and_memory_keeps_the_newest(world) -> None:
    r, history, ids = world
    in_memory = [i for i in ids.values() if i in r.state.workflows]
    assert in_memory == [ids["ok2"], ids["stop"], ids["bad2"], ids["ok3"], ids["running"]][-3:]
    archived = [i for i in ids.values() if i not in r.state.workflows]
    assert len(archived) >= 4
    for wf_id in archived:
        doc = history.get_doc(wf_id)
        assert doc is not None
        wf, tasks, definition = H.records_from_doc(doc)
        assert wf.workflow_id == wf_id and tasks and definition is not None
    assert history.get_doc("nope") is None
    assert history.seq() == r.state.seq


def test_every_filter_over_memory_and_history(world) -> None:
    r, history, ids = world
    everything = _ids(history, r)
    assert everything == list(reversed(ids.values())), "newest first by create time"
    assert _ids(history, r, name="two_step") == [ids["running"], ids["bad2"], ids["stop"]]
    assert _ids(history, r, name="two_step", version=2) == []
    assert _ids(history, r, statuses=("FAILED",)) == [ids["bad2"], ids["bad1"]]
    assert _ids(history, r, statuses=("RUNNING", "TERMINATED")) == [ids["running"], ids["stop"]]
    assert _ids(history, r, correlation_id="c1") == [ids["running"], ids["bad1"], ids["ok1"]]
    doc = history.get_doc(ids["ok2"])
    assert doc is not None, "archived"
    t_ok2 = doc["workflow"]["create_time_ms"]
    assert _ids(history, r, created_from_ms=t_ok2, created_to_ms=t_ok2 + 1) == [ids["ok2"]]
    t_run = r.state.workflows[ids["running"]].create_time_ms
    assert _ids(history, r, created_from_ms=t_ok2, created_to_ms=t_run) == [
        ids["ok3"],
        ids["bad2"],
        ids["stop"],
        ids["ok2"],
    ]
    ended = _ids(history, r, ended_from_ms=1, sort="end_time", descending=False)
    assert ended == [v for k, v in ids.items() if k != "running"], "running ones never ended"
    assert _ids(history, r, failed_task_type="task_c") == [ids["bad1"]]
    assert _ids(history, r, failed_task_type="task_a") == [ids["bad2"]]
    assert _ids(history, r, text="DISK") == [ids["bad2"], ids["bad1"]]
    assert _ids(history, r, text="disk full") == [ids["bad1"]]
    assert _ids(history, r, text="full quota") == []
    assert _ids(history, r, text="exceeded") == [ids["bad2"]]


def test_pages_walk_everything_once_in_either_order_with_totals(world) -> None:
    r, history, ids = world
    for sort in ("create_time", "end_time"):
        for descending in (True, False):
            full = _ids(history, r, sort=sort, descending=descending)
            assert sorted(full) == sorted(ids.values())
            walked: list[str] = []
            after = None
            while True:
                q = SearchQuery(sort=sort, descending=descending, page_size=2, after=after)
                page = history.search(r, q)
                assert page.total == len(ids)
                walked += [wf.workflow_id for wf in page.workflows]
                after = page.next_after
                if after is None:
                    break
            assert walked == full, (sort, descending)
    page = history.search(r, SearchQuery(with_total=False, page_size=1))
    assert page.total == -1 and len(page.workflows) == 1


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 1001}, "page_size"),
        ({"sort": "name"}, "sort"),
        ({"statuses": ("DONE",)}, "statuses"),
        ({"created_from_ms": -1}, "created_from_ms"),
        ({"after": (1,)}, "after"),
    ],
)
def test_a_bad_query_names_its_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}"):
        SearchQuery(**kw)  # type: ignore[arg-type]


def test_retention_by_time_and_size(world) -> None:
    r, history, ids = world
    h = r.h
    archived = [i for i in ids.values() if i not in r.state.workflows]
    h.ok(SetHistoryRetention(request_id="keep2", retention_ms=10**9, max_workflows=2))
    left = [i for i in archived if history.get_doc(i, r.state.seq) is not None]
    assert left == archived[-2:], "the newest two by end time stay"
    h.advance(10**9)
    h.ok(SetHistoryRetention(request_id="keep-1s", retention_ms=1000, max_workflows=0))
    assert all(history.get_doc(i, r.state.seq) is None for i in archived)


def test_a_replayed_log_is_skipped_and_a_restart_keeps_the_rows(h: Harness, tmp_path: Path) -> None:
    r = MiniReplica(h)
    history = attached(tmp_path, r)
    for _ in range(5):
        _run(h, "one_step", reason="boom")
    seq = r.state.seq
    assert history.writer.wait_reached(seq, 5)
    digest = history.digest()
    history.stop()
    # The process restarts from an empty state and replays the whole log.
    again = MiniReplica(Harness(clock_ms=h.clock_ms))
    reopened = attached(tmp_path, again)
    assert reopened.store.seq() == seq
    again.replay(h.log)
    assert reopened.writer.wait_reached(seq, 5)
    assert reopened.digest() == digest
    reopened.stop()


def test_a_snapshot_newer_than_the_history_makes_it_unavailable(h: Harness, tmp_path: Path) -> None:
    r = MiniReplica(h)
    for _ in range(4):
        _run(h, "one_step")
    assert r.state.history_seq > 0
    behind = MiniReplica(Harness())
    history = attached(tmp_path, behind)
    behind.load(type(r.state).from_snapshot_bytes(r.state.snapshot_bytes()))
    with pytest.raises(HistoryUnavailable, match="copy from a peer"):
        history.search(behind, SearchQuery())
    history.stop()
    assert History(str(tmp_path / "h"), fsync=False).unavailable, "remembered across restarts"


def test_the_snapshot_barrier_opens_once_the_history_is_written(h: Harness, tmp_path: Path) -> None:
    r = MiniReplica(h)
    history = attached(tmp_path, r)
    for _ in range(3):
        _run(h, "one_step")
    barrier = history.snapshot_barrier()
    assert barrier.seq == r.state.seq
    assert barrier.wait(5)
    assert history.store.seq() >= barrier.seq or history.writer.reached >= barrier.seq
    history.stop()


def test_a_history_ahead_of_the_memory_read_lists_each_workflow_once(
    h: Harness, tmp_path: Path
) -> None:
    """Rows archived after the memory read's seq are left out: the memory read has them."""
    r = MiniReplica(h)
    history = attached(tmp_path, r)
    for i in range(4):
        _run(h, "one_step", reason=f"boom {i}")
    then = MiniReplica(Harness(state=State.from_snapshot_bytes(r.state.snapshot_bytes())))
    at_then = history.search(r, SearchQuery(page_size=1000))
    for _ in range(3):  # evicts (archives) workflows the old memory read still holds
        _run(h, "one_step", reason="later")
    assert history.writer.wait_reached(r.state.seq, 5)
    page = history.search(then, SearchQuery(page_size=1000))
    ids = [wf.workflow_id for wf in page.workflows]
    assert len(ids) == len(set(ids)) == page.total == at_then.total
    assert ids == [wf.workflow_id for wf in at_then.workflows]
    history.stop()


def test_many_text_matches_walk_the_sort_order_with_the_same_answer(
    world, monkeypatch: pytest.MonkeyPatch
) -> None:
    r, history, ids = world
    from orchestrator.history import search

    expected = [
        _ids(history, r, text=t, descending=d) for t in ("disk", "exceeded") for d in (1, 0)
    ]
    monkeypatch.setattr(search, "TEXT_SCAN_MIN", 0)
    again = [_ids(history, r, text=t, descending=d) for t in ("disk", "exceeded") for d in (1, 0)]
    assert again == expected and expected[0] == [ids["bad2"], ids["bad1"]]
    page = history.search(r, SearchQuery(text="disk", page_size=1))
    assert page.total == 2 and page.next_after is not None


def test_a_failing_disk_makes_the_history_unavailable_and_fails_snapshots(
    h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.history import store as S

    r = MiniReplica(h)
    history = attached(tmp_path, r)

    def broken(self: S.Store, batches: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(S.Store, "write", broken)
    for _ in range(3):
        _run(h, "one_step")
    with pytest.raises(HistoryUnavailable, match="No space left"):
        history.search(r, SearchQuery())
    assert not history.snapshot_barrier().wait(5), "no snapshot may drop the log"
    assert not history.writer._queue, "nothing piles up behind a dead writer"
    history.stop()


def test_an_unreadable_history_file_is_moved_aside_and_rebuilt_from_the_log(
    h: Harness, tmp_path: Path
) -> None:
    r = MiniReplica(h)
    history = attached(tmp_path, r)
    for _ in range(4):
        _run(h, "one_step", reason="boom")
    assert history.writer.wait_reached(r.state.seq, 5)
    digest = history.digest()
    history.stop()
    for f in (tmp_path / "h").iterdir():
        f.write_bytes(b"not a database" * 100)
    again = MiniReplica(Harness(clock_ms=h.clock_ms))
    rebuilt = attached(tmp_path, again)
    assert list((tmp_path / "h").glob("history.sqlite3.corrupt-*")), "kept for a post-mortem"
    again.replay(h.log)
    assert rebuilt.writer.wait_reached(again.state.seq, 5)
    assert rebuilt.digest() == digest
    rebuilt.stop()


def test_a_search_filters_memory_outside_the_replicas_lock(world, monkeypatch) -> None:
    # The lock is the one apply holds per entry on the Raft tick thread: a search walking
    # 100 000 running workflows under it held apply for ~0.3 s.
    r, history, ids = world
    from orchestrator.history import search as hs

    walked: list[bool] = []
    real = hs._memory_page

    def spy(*args: object) -> object:
        held = r.lock._is_owned()  # type: ignore[attr-defined]
        walked.append(held)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(hs, "_memory_page", spy)
    page = history.search(r, SearchQuery(page_size=1000))
    assert walked == [False]
    assert {w.workflow_id for w in page.workflows} >= set(ids.values())
