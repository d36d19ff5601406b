"""Support for cluster tests: real replica processes on loopback, and a recorded history."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.localcluster import LocalCluster, write_config

# Raft settings for tests: small compaction threshold so snapshots really happen.
TEST_RAFT = {
    "log_compaction_min_entries": 200,
    "log_compaction_min_time_s": 30.0,
}


def make_cluster(
    tmp_path: Any, n: int = 3, raft: dict[str, Any] | None = None, failpoints: bool = False
) -> LocalCluster:
    cfg = write_config(str(tmp_path / "cluster.json"), n=n, raft=dict(TEST_RAFT, **(raft or {})))
    env = {"ORCHESTRATOR_LOG_LEVEL": "INFO"}
    cluster = LocalCluster(cfg, env=env)
    if failpoints:
        # Each replica reads its own file; the test arms the one that leads.
        cluster.failpoint_files = {
            nid: str(tmp_path / f"failpoints-{nid}") for nid in cluster.replicas
        }  # type: ignore[attr-defined]
    return cluster


def start_node(cluster: LocalCluster, nid: str) -> None:
    files = getattr(cluster, "failpoint_files", None)
    cluster.start(nid, {"ORCHESTRATOR_FAILPOINTS_FILE": files[nid]} if files else None)


def wait_for(
    pred: Callable[[], Any],
    timeout_s: float,
    what: str | Callable[[], str],
    interval_s: float = 0.1,
) -> Any:
    """Wait until pred() is truthy (a condition, never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = pred()
            if value:
                return value
        except Exception as exc:  # conditions may fail while a cluster is recovering
            last_exc = exc
        time.sleep(interval_s)
    if callable(what):
        what = what()
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what}"
        + (f" (last error: {last_exc!r})" if last_exc else "")
    )


@dataclass
class History:
    """Every client operation: invoke, then ok, fail or unknown (Jepsen-style)."""

    events: list[tuple[float, str, str, str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: str, op: str, request_id: str, detail: Any) -> None:
        with self._lock:
            self.events.append((time.monotonic(), event, op, request_id, detail))

    def by_request(self, op: str | None = None) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        with self._lock:
            for _, event, o, rid, _ in self.events:
                if op is None or o == op:
                    out.setdefault(rid, []).append(event)
        return out

    def count(self, event: str, op: str | None = None) -> int:
        with self._lock:
            return sum(1 for e in self.events if e[1] == event and (op is None or e[2] == op))


def read_log(cluster: LocalCluster, nid: str) -> str:
    path = cluster.replicas[nid].log_path
    return open(path, errors="replace").read() if os.path.exists(path) else ""
