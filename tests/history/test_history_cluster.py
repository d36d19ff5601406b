"""The durable history on a real three-replica cluster: workflows pushed out of memory are
archived on every replica, searchable through any replica, and still there, identical on all
three, after a kill -9 of every replica at once; a replica that lost its history file while
its snapshot covers archived workflows copies a peer's."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core import limits
from orchestrator.history import store as S
from orchestrator.replication import snapshot
from orchestrator.replication.settings import DUMP_FILE
from tests.cluster_support import make_cluster, read_log, wait_for

pytestmark = pytest.mark.cluster

# One TERMINATE task: each workflow ends at its start (COMPLETED or FAILED, with its reason),
# so filling the in-memory window takes a few thousand starts and no workers.
DEFINITION = {
    "name": "ends_at_once",
    "version": 1,
    "tasks": [
        {
            "name": "stop",
            "taskReferenceName": "stop",
            "type": "TERMINATE",
            "inputParameters": {
                "terminationStatus": "${workflow.input.status}",
                "terminationReason": "${workflow.input.reason}",
            },
        }
    ],
}
ARCHIVED = 300  # workflows beyond the in-memory window


def _digest(path: str) -> tuple[int, str]:
    conn = S.connect(path, readonly=True)
    try:
        return S.Store.meta(None, "seq", conn), S.digest(conn)  # type: ignore[arg-type]
    except sqlite3.OperationalError:
        return -1, ""
    finally:
        conn.close()


def _snapshot_seq(cluster: Any, nid: str) -> int:
    dump = Path(cluster.cfg.data_dir(nid)) / DUMP_FILE
    try:
        header, _ = snapshot.read_snapshot(str(dump))
    except (OSError, snapshot.SnapshotError):
        return -1
    return int(header["seq"])


def _failed_total(cluster: Any, addr: str) -> int:
    client = cluster.access().client(addresses=[addr], retry_budget_s=30)
    try:
        page = client.search_workflows(statuses=["FAILED"], text="quota shard", page_size=5)
        return int(page.total)
    finally:
        client.close()


def test_archived_workflows_survive_kill_9_of_every_replica(tmp_path: Path) -> None:
    # Frequent snapshots: the kill -9 lands among them, and n3 has one to restart from.
    cluster = make_cluster(
        tmp_path, raft={"log_compaction_min_entries": 20, "log_compaction_min_time_s": 1.0}
    )
    cluster.start_all()
    try:
        cluster.wait_healthy(timeout_s=60)
        client = cluster.client(retry_budget_s=60)
        client.register_workflow_def(DEFINITION)
        n = limits.MAX_TERMINAL_WORKFLOWS + ARCHIVED

        def start(i: int) -> str:
            failed = i % 3 == 0
            wf_input = {
                "status": "FAILED" if failed else "COMPLETED",
                "reason": f"quota exceeded on shard {i % 7}" if failed else "done",
            }
            return str(client.start_workflow("ends_at_once", wf_input, correlation_id=f"c{i}"))

        with ThreadPoolExecutor(32) as pool:
            ids = list(pool.map(start, range(n)))
        failed = len(range(0, n, 3))
        first = client.get_workflow(ids[0], include_tasks=True)
        assert first.status == "FAILED" and "quota" in first.reason_for_incompletion
        paths = [str(Path(cluster.cfg.data_dir(nid)) / S.FILE) for nid in cluster.replicas]
        # Every replica snapshots past its archives (so the log that could rebuild them is
        # gone after the kill -9; the snapshot barrier must have made the history hold them).
        wait_for(lambda: len({_digest(p) for p in paths}) == 1, 30, "equal histories")
        archived_seq = _digest(paths[0])[0]
        for _ in range(500):
            if all(_snapshot_seq(cluster, nid) >= archived_seq for nid in cluster.replicas):
                break
            client.start_workflow("ends_at_once", {"status": "COMPLETED", "reason": "more"})
        else:
            pytest.fail("no snapshot past the archived workflows on every replica")
        client.close()

        for addr in cluster.addresses:  # a new client asks for no seq: a follower catches up
            wait_for(lambda a=addr: _failed_total(cluster, a) == failed, 30, f"search on {addr}")
        wait_for(lambda: len({_digest(p) for p in paths}) == 1, 30, "equal histories")
        _, before = _digest(paths[0])
        conn = S.connect(paths[0], readonly=True)
        (rows,) = conn.execute("SELECT COUNT(*) FROM workflows").fetchone()
        conn.close()
        assert rows >= ARCHIVED

        cluster.kill_all()
        cluster.start_all()
        cluster.wait_healthy(timeout_s=90)
        for addr in cluster.addresses:
            wait_for(lambda a=addr: _failed_total(cluster, a) == failed, 30, f"search on {addr}")
        client = cluster.client(retry_budget_s=60)
        again = client.get_workflow(ids[0], include_tasks=True)
        assert again.status == "FAILED" and again.reason_for_incompletion == (
            first.reason_for_incompletion
        )
        client.close()
        digests = {_digest(p) for p in paths}
        assert len({d for _, d in digests}) == 1, "every replica holds the same rows"
        assert {d for _, d in digests} == {before}, "nothing lost, nothing added"

        # n3 loses its history file; its snapshot covers archived workflows the log no longer
        # holds: it copies a peer's history, then serves the same search.
        dump = Path(cluster.cfg.data_dir("n3")) / DUMP_FILE
        assert dump.exists(), "n3 has a snapshot"
        cluster.stop("n3")
        for f in Path(cluster.cfg.data_dir("n3")).glob(S.FILE + "*"):
            f.unlink()
        cluster.start("n3")
        cluster.wait_healthy(timeout_s=90)
        n3 = cluster.replicas["n3"].grpc
        wait_for(lambda: _failed_total(cluster, n3) == failed, 60, "search on n3")
        assert "history_copied" in read_log(cluster, "n3")
        wait_for(lambda: len({_digest(p)[1] for p in paths}) == 1, 30, "equal histories")
        assert _digest(paths[2])[1] == before
    finally:
        cluster.kill_all()
