"""Search at scale, kept exact: totals bounded (exact up to TOTAL_BOUND, "at least" beyond,
memory's exact count added), the failed-task-type page read from failed_types' own sort
indexes (every filter and page still exact), and a history file of the older schema migrated
at open without losing a row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestrator.history import History, SearchQuery, search
from orchestrator.history import store as S
from tests.core_helpers import Harness
from tests.history.helpers import MiniReplica, attached
from tests.history.test_history_store import _run


@pytest.fixture
def failures(h: Harness, tmp_path: Path):
    """Ten ended workflows (8 archived, 2 ended and 1 running in memory): failures of task_c
    (one_step) and task_a (two_step) among completions and terminations."""
    r = MiniReplica(h)
    history = attached(tmp_path, r)
    plan = [
        ("one_step", "boom c"),
        ("two_step", "boom a"),
        ("one_step", ""),
        ("one_step", "boom c again"),
        ("two_step", ""),
        ("two_step", "boom a again"),
        ("one_step", "boom c late"),
        ("one_step", ""),
        ("two_step", "boom a late"),
        ("one_step", "boom c last"),
    ]
    made = [
        (_run(h, name, reason=reason, corr=f"c{i % 2}"), name, reason)
        for i, (name, reason) in enumerate(plan)
    ]
    h.advance(10)
    h.start("two_step", {"x": 2})
    assert history.writer.wait_reached(r.state.seq, 5)
    yield r, history, made
    history.stop()


def _walk(history: History, r: MiniReplica, **kw: object) -> list[str]:
    """Every match, a page of one at a time."""
    out: list[str] = []
    after = None
    while True:
        page = history.search(r, SearchQuery(page_size=1, after=after, **kw))  # type: ignore[arg-type]
        out += [wf.workflow_id for wf in page.workflows]
        after = page.next_after
        if after is None:
            return out


def _expected(r: MiniReplica, history: History, made, kw: dict[str, object]) -> list[str]:
    """The matches computed from the records themselves (memory or archived documents)."""
    rows = []
    for wid, name, reason in made:
        wf = r.state.workflows.get(wid)
        if wf is None:
            doc = history.get_doc(wid)
            assert doc is not None
            create, end, corr = (
                doc["workflow"][k] for k in ("create_time_ms", "end_time_ms", "correlation_id")
            )
        else:
            create, end, corr = wf.create_time_ms, wf.end_time_ms, wf.correlation_id
        task_type = "task_c" if name == "one_step" else "task_a"
        if not reason or task_type != kw["failed_task_type"]:
            continue
        if kw.get("name") not in (None, name) or kw.get("correlation_id") not in (None, corr):
            continue
        if kw.get("statuses", ("FAILED",)) != ("FAILED",) or kw.get("text", "") not in reason:
            continue  # every workflow with a failed task here failed
        lo, hi = kw.get("created_from_ms", 0), kw.get("created_to_ms", 0)
        if (not lo or create >= lo) and (not hi or create < hi):
            key = create if kw.get("sort", "create_time") == "create_time" else end
            rows.append((key, wid))
    rows.sort(reverse=kw.get("descending", True))
    return [wid for _, wid in rows]


def test_failed_task_type_pages_are_exact_in_every_order_and_with_other_filters(failures) -> None:
    r, history, made = failures
    archived = [wid for wid, _, _ in made if wid not in r.state.workflows]
    assert len(archived) == 8
    mid = r.state.workflows[made[-2][0]].create_time_ms if made[-2][0] in r.state.workflows else 0
    doc = history.get_doc(made[3][0])
    assert doc is not None
    from_ms = doc["workflow"]["create_time_ms"]
    for extra in (
        {},
        {"name": "one_step"},
        {"correlation_id": "c0"},
        {"statuses": ("FAILED",)},
        {"statuses": ("COMPLETED",)},
        {"text": "again"},
        {"text": "late", "statuses": ("FAILED",), "created_from_ms": from_ms},
        {"created_from_ms": from_ms},
        {"created_from_ms": from_ms, "created_to_ms": mid or from_ms + 10**9},
    ):
        for task_type in ("task_c", "task_a", "nothing"):
            for sort in ("create_time", "end_time"):
                for descending in (True, False):
                    kw = {
                        "failed_task_type": task_type,
                        "sort": sort,
                        "descending": descending,
                        **extra,
                    }
                    want = _expected(r, history, made, kw)
                    assert _walk(history, r, **kw) == want, kw
                    page = history.search(r, SearchQuery(**kw))  # type: ignore[arg-type]
                    assert page.total == len(want) and not page.total_at_least, kw
    assert len(_expected(r, history, made, {"failed_task_type": "task_c"})) == 4


def test_totals_are_exact_up_to_the_bound_and_at_least_beyond_it(
    failures, monkeypatch: pytest.MonkeyPatch
) -> None:
    r, history, made = failures
    in_memory = sum(1 for wf in r.state.workflows.values())
    archived = len(made) + 1 - in_memory
    assert (in_memory, archived) == (3, 8)
    exact = history.search(r, SearchQuery())
    assert (exact.total, exact.total_at_least) == (11, False)
    monkeypatch.setattr(search, "TOTAL_BOUND", archived)
    page = history.search(r, SearchQuery())
    assert (page.total, page.total_at_least) == (11, False), "exactly the bound is exact"
    monkeypatch.setattr(search, "TOTAL_BOUND", 3)
    page = history.search(r, SearchQuery())
    assert (page.total, page.total_at_least) == (in_memory + 3, True), "memory's count is exact"
    assert len(page.workflows) == 11, "the page itself is not bounded"
    c = history.search(r, SearchQuery(failed_task_type="task_c"))
    assert (c.total, c.total_at_least) == (1 + 3, False), "3 archived, 1 in memory"
    monkeypatch.setattr(search, "TOTAL_BOUND", 2)
    c = history.search(r, SearchQuery(failed_task_type="task_c"))
    assert (c.total, c.total_at_least) == (1 + 2, True)
    few = history.search(r, SearchQuery(text="again"))
    assert (few.total, few.total_at_least) == (2, False)
    none = history.search(r, SearchQuery(with_total=False))
    assert (none.total, none.total_at_least) == (-1, False)


_SCHEMA_1 = """
DROP TRIGGER wf_deleted;
DROP TABLE failed_types;
CREATE TABLE failed_types(
    task_type TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    PRIMARY KEY(task_type, workflow_id)
) WITHOUT ROWID;
CREATE INDEX ft_workflow ON failed_types(workflow_id);
CREATE TRIGGER wf_deleted AFTER DELETE ON workflows BEGIN
    DELETE FROM failed_types WHERE workflow_id = old.workflow_id;
END;
UPDATE meta SET v = 1 WHERE k = 'schema';
"""


def _to_schema_1(path: Path) -> None:
    """Rewrites a history file as version 1 wrote it (failed_types without sort columns)."""
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT task_type, workflow_id FROM failed_types").fetchall()
    conn.executescript(_SCHEMA_1)
    conn.executemany("INSERT INTO failed_types VALUES (?, ?)", rows)
    conn.commit()
    conn.close()


def test_a_history_file_of_schema_1_is_migrated_at_open_and_keeps_every_row(
    failures, tmp_path: Path
) -> None:
    r, history, made = failures
    queries = [
        {"failed_task_type": t, "sort": s}
        for t in ("task_a", "task_c")
        for s in ("create_time", "end_time")
    ]
    before = [_walk(history, r, **q) for q in queries]
    digest = history.digest()
    history.stop()
    path = tmp_path / "h" / S.FILE
    _to_schema_1(path)
    old = sqlite3.connect(path)
    assert [c[1] for c in old.execute("PRAGMA table_info(failed_types)")] == [
        "task_type",
        "workflow_id",
    ]
    old.close()

    reopened = History(str(tmp_path / "h"), fsync=False)
    reopened._replica = r
    try:
        assert reopened.store.meta("schema") == S.SCHEMA_VERSION == 2
        assert reopened.digest() == digest, "no row lost or changed"
        assert [_walk(reopened, r, **q) for q in queries] == before
        conn = reopened.store.conn
        (lost,) = conn.execute(
            "SELECT COUNT(*) FROM failed_types f JOIN workflows w USING (workflow_id)"
            " WHERE f.create_ms != w.create_ms OR f.end_ms != w.end_ms OR f.status != w.status"
            " OR f.wid != w.id"
        ).fetchone()
        assert lost == 0
        gone = made[0][0]  # the trigger that drops a deleted workflow's types is back
        conn.execute("DELETE FROM workflows WHERE workflow_id = ?", (gone,))
        assert not conn.execute(
            "SELECT 1 FROM failed_types WHERE workflow_id = ?", (gone,)
        ).fetchone()
    finally:
        reopened.stop()
    again = S.Store(str(path), fsync=False)
    assert again.meta("schema") == 2, "opening a current file changes nothing"
    again.close()


def test_a_history_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / S.FILE
    S.Store(str(path), fsync=False).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET v = 99 WHERE k = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(sqlite3.DatabaseError, match="schema 99"):
        S.Store(str(path), fsync=False)
