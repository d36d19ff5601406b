"""One replica's history in SQLite: `<data_dir>/history.sqlite3`, written by one writer thread
(writer.py), read by any number of search threads.

A row per archived workflow, with a column for every search filter (indexed), the archive
document (history_ops.archive_doc) as zlib-compressed JSON, a table of the task types that
failed in it, FTS5 over its reason, and a meta row with the sequence number of the last
command whose operations are written, in the same transaction as the rows: after a crash the
file says exactly which operations it holds, and a replayed log skips those.

WAL mode: readers never block the writer nor each other. Commits are not fsynced one by one
(synchronous=NORMAL); `sync()` makes everything committed durable, which the snapshot barrier
needs before the Raft log that could rebuild it is truncated (writer.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import zlib
from collections.abc import Iterable
from typing import Any

from ..core.history_ops import Archive, Expire, HistoryOp, Remove, archive_doc
from ..core.records import TaskStatus, Workflow

JSON = Any

FILE = "history.sqlite3"
# zlib level of the archived documents. Level 1 took a quarter less time in a profile of the
# writer, but the c=64 benchmark did not improve with it (docs/performance.md stop 13), so the
# smaller documents of level 6 stay.
_DOC_LEVEL = 6
SCHEMA_VERSION = 2
# A task of a workflow that ended in one of these makes it match `failed_task_type`.
FAILED_STATUSES = frozenset(
    {TaskStatus.FAILED, TaskStatus.FAILED_WITH_TERMINAL_ERROR, TaskStatus.TIMED_OUT}
)
SORT_COLUMNS = {"create_time": "create_ms", "end_time": "end_ms"}
SORT_INDEXES = {"create_time": "wf_create", "end_time": "wf_end"}
FAILED_SORT_INDEXES = {"create_time": "ft_create", "end_time": "ft_end"}
# Words of a free-text search: letters and digits, as FTS5's unicode61 tokenizer splits them.
WORDS = re.compile(r"[^\W_]+")

_TABLES = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workflows(
    id INTEGER PRIMARY KEY,
    workflow_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    create_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    archived_seq INTEGER NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS wf_create ON workflows(create_ms, workflow_id);
CREATE INDEX IF NOT EXISTS wf_end ON workflows(end_ms, workflow_id);
CREATE INDEX IF NOT EXISTS wf_name_end ON workflows(name, end_ms, workflow_id);
CREATE INDEX IF NOT EXISTS wf_status_end ON workflows(status, end_ms, workflow_id);
CREATE INDEX IF NOT EXISTS wf_corr ON workflows(correlation_id, create_ms);
CREATE INDEX IF NOT EXISTS wf_archived ON workflows(archived_seq);
"""
# Schema 2. failed_types carries the workflow's sort columns, status and row id, so that a page
# of one failed task type reads in order from its own index instead of walking every workflow
# and probing this table, and its count (status and text included) needs no workflow row.
# The name and status indexes carry the other equality filters: a count of name + status +
# version reads only the index, not every FAILED row.
_SCHEMA_2 = """
CREATE INDEX IF NOT EXISTS wf_name_create ON workflows(name, create_ms, workflow_id, version, status);
CREATE INDEX IF NOT EXISTS wf_status_create ON workflows(status, create_ms, workflow_id, name, version);
CREATE TABLE IF NOT EXISTS failed_types(
    task_type TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    create_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    wid INTEGER NOT NULL,
    PRIMARY KEY(task_type, workflow_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ft_workflow ON failed_types(workflow_id);
CREATE INDEX IF NOT EXISTS ft_create ON failed_types(task_type, create_ms, workflow_id, status, wid);
CREATE INDEX IF NOT EXISTS ft_end ON failed_types(task_type, end_ms, workflow_id, status, wid);
CREATE TRIGGER IF NOT EXISTS wf_deleted AFTER DELETE ON workflows BEGIN
    DELETE FROM failed_types WHERE workflow_id = old.workflow_id;
END;
"""
# Schema 1 (before the sort columns): its failed_types gets them from the workflows, in the
# opening transaction, so an upgraded replica keeps every row and answers the same.
_MIGRATE_1 = (
    """
DROP TRIGGER IF EXISTS wf_deleted;
DROP INDEX IF EXISTS wf_name_create;
DROP INDEX IF EXISTS wf_status_create;
CREATE TEMP TABLE failed_types_1 AS
    SELECT f.task_type, f.workflow_id, w.create_ms, w.end_ms, w.status, w.id AS wid
    FROM failed_types f JOIN workflows w ON w.workflow_id = f.workflow_id;
DROP TABLE failed_types;
"""
    + _SCHEMA_2
    + """
INSERT INTO failed_types(task_type, workflow_id, create_ms, end_ms, status, wid)
    SELECT task_type, workflow_id, create_ms, end_ms, status, wid FROM temp.failed_types_1;
DROP TABLE temp.failed_types_1;
"""
)
_FTS = """
CREATE VIRTUAL TABLE IF NOT EXISTS reasons USING fts5(
    reason, content='workflows', content_rowid='id', tokenize='unicode61 remove_diacritics 0'
);
CREATE TRIGGER IF NOT EXISTS wf_reason_added AFTER INSERT ON workflows BEGIN
    INSERT INTO reasons(rowid, reason) VALUES (new.id, new.reason);
END;
CREATE TRIGGER IF NOT EXISTS wf_reason_deleted AFTER DELETE ON workflows BEGIN
    INSERT INTO reasons(reasons, rowid, reason) VALUES ('delete', old.id, old.reason);
END;
"""


def has_fts5() -> bool:
    try:
        sqlite3.connect(":memory:").execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    return True


def connect(path: str, readonly: bool = False) -> sqlite3.Connection:
    # Transactions are explicit (BEGIN/COMMIT), never the module's implicit ones.
    target = f"file:{path}?mode=ro" if readonly else path
    conn = sqlite3.connect(target, uri=readonly, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


class Store:
    """The writer's connection and the schema; readers use `reader()` connections."""

    def __init__(self, path: str, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self.fts = has_fts5()
        self.conn = connect(path)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {'NORMAL' if fsync else 'OFF'}")
        self.conn.executescript(_TABLES + (_FTS if self.fts else ""))
        self._meta_default("seq", 0)
        self._meta_default("incomplete", 0)
        self.migrate()

    def migrate(self) -> None:
        """Bring the file to SCHEMA_VERSION in one transaction (a crash leaves the old one)."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            fresh = (
                c.execute("SELECT 1 FROM sqlite_master WHERE name = 'failed_types'").fetchone()
                is None
            )
            version = SCHEMA_VERSION if fresh else self.meta("schema") or 1
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"history schema {version} is newer than this version's {SCHEMA_VERSION}"
                )
            script = _SCHEMA_2 if fresh else _MIGRATE_1 if version == 1 else ""
            for statement in _statements(script):
                c.execute(statement)
            c.execute("INSERT OR REPLACE INTO meta(k, v) VALUES ('schema', ?)", (SCHEMA_VERSION,))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def _meta_default(self, key: str, value: int) -> None:
        self.conn.execute("INSERT OR IGNORE INTO meta(k, v) VALUES (?, ?)", (key, value))

    def meta(self, key: str, conn: sqlite3.Connection | None = None) -> int:
        row = (conn or self.conn).execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def seq(self) -> int:
        return self.meta("seq")

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------ writing (writer thread)

    def write(self, batches: Iterable[tuple[int, list[HistoryOp]]]) -> int:
        """Write the operations of (end seq, ops) batches in one transaction, skipping those
        already written (seq <= the stored seq); returns the stored seq afterwards."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            done = self.seq()
            top = done
            for end_seq, ops in batches:
                for op in ops:
                    if op.seq > done:
                        self._apply(op)
                top = max(top, end_seq)
            if top > done:
                c.execute("UPDATE meta SET v = ? WHERE k = 'seq'", (top,))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return top

    def set_incomplete(self, value: bool) -> None:
        self.conn.execute("UPDATE meta SET v = ? WHERE k = 'incomplete'", (int(value),))

    def _apply(self, op: HistoryOp) -> None:
        if isinstance(op, Archive):
            self._archive(op)
        elif isinstance(op, Remove):
            self.conn.execute("DELETE FROM workflows WHERE workflow_id = ?", (op.workflow_id,))
        elif isinstance(op, Expire):
            self._expire(op)

    def _archive(self, op: Archive) -> None:
        wf = op.workflow
        doc = json.dumps(archive_doc(op), separators=(",", ":"), ensure_ascii=False).encode()
        c = self.conn
        c.execute("DELETE FROM workflows WHERE workflow_id = ?", (wf.workflow_id,))
        row = c.execute(
            "INSERT INTO workflows(workflow_id, name, version, status, correlation_id, create_ms,"
            " end_ms, reason, archived_seq, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                wf.workflow_id,
                wf.workflow_name,
                wf.workflow_version,
                str(wf.status),
                wf.correlation_id,
                wf.create_time_ms,
                wf.end_time_ms,
                wf.reason_for_incompletion,
                op.seq,
                zlib.compress(doc, _DOC_LEVEL),
            ),
        ).lastrowid
        failed = sorted(
            {n for t in op.tasks if t.status in FAILED_STATUSES for n in (t.task_type, t.type)}
        )
        c.executemany(
            "INSERT OR IGNORE INTO failed_types(task_type, workflow_id, create_ms, end_ms,"
            " status, wid) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (str(n), wf.workflow_id, wf.create_time_ms, wf.end_time_ms, str(wf.status), row)
                for n in failed
            ],
        )

    def _expire(self, op: Expire) -> None:
        c = self.conn
        c.execute("DELETE FROM workflows WHERE end_ms < ?", (op.cutoff_ms,))
        if op.max_rows > 0:
            (count,) = c.execute("SELECT COUNT(*) FROM workflows").fetchone()
            if count > op.max_rows:
                c.execute(
                    "DELETE FROM workflows WHERE id IN (SELECT id FROM workflows"
                    " ORDER BY end_ms, workflow_id LIMIT ?)",
                    (count - op.max_rows,),
                )

    def sync(self) -> None:
        """Everything committed so far survives a machine crash (WAL and database fsynced)."""
        if not self.fsync:
            return
        for suffix in ("-wal", ""):
            try:
                fd = os.open(self.path + suffix, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def backup(self, dest: str) -> int:
        """A consistent copy of the whole history into `dest`; returns the copy's seq."""
        target = sqlite3.connect(dest)
        try:
            self.conn.backup(target)
            row = target.execute("SELECT v FROM meta WHERE k = 'seq'").fetchone()
        finally:
            target.close()
        return int(row[0]) if row else 0

    def install(self, path: str) -> None:
        """Overwrite this history with the database at `path` (a peer's copy), in one
        transaction: readers see the old rows or the new ones, never a mix."""
        src = connect(path, readonly=True)
        try:
            src.backup(self.conn)
        finally:
            src.close()
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.migrate()  # a peer of an older version sends its own schema
        self.set_incomplete(False)

    # ------------------------------------------------------------ reading (any thread)

    def reader(self) -> sqlite3.Connection:
        return connect(self.path, readonly=True)


def _statements(script: str) -> list[str]:
    # executescript would commit the migration's transaction first: one statement at a time
    # (a trigger's body holds semicolons of its own).
    out: list[str] = []
    part = ""
    for piece in script.split(";"):
        part += piece + ";"
        if sqlite3.complete_statement(part):
            if part.strip(" \n;"):
                out.append(part.strip())
            part = ""
    return out


def get_doc(conn: sqlite3.Connection, workflow_id: str) -> dict[str, JSON] | None:
    row = conn.execute("SELECT doc FROM workflows WHERE workflow_id = ?", (workflow_id,)).fetchone()
    if row is None:
        return None
    doc: dict[str, JSON] = json.loads(zlib.decompress(row[0]))
    return doc


def workflow_of(blob: bytes) -> Workflow:
    """The workflow record of a stored document (its tasks are not decoded)."""
    d = json.loads(zlib.decompress(blob))["workflow"]
    return Workflow.from_named(list(d), list(d.values())).fix_types()


def text_words(text: str) -> list[str]:
    return [w.lower() for w in WORDS.findall(text)]


def digest(conn: sqlite3.Connection) -> str:
    """A hash of every row (documents decompressed), by workflow id: replicas compare it."""
    h = hashlib.sha256()
    rows = conn.execute(
        "SELECT workflow_id, name, version, status, correlation_id, create_ms, end_ms, reason,"
        " archived_seq, doc FROM workflows ORDER BY workflow_id"
    )
    for row in rows:
        h.update(json.dumps([*row[:-1], zlib.decompress(row[-1]).decode()]).encode())
    for row in conn.execute("SELECT task_type, workflow_id FROM failed_types ORDER BY 1, 2"):
        h.update(json.dumps(list(row)).encode())
    return h.hexdigest()
