"""Three replica processes (`orchestrator serve`, as make run starts them), each with its own
metrics port: one reports leader, the others follower, all the same term and commit index."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.tools.localcluster import LocalCluster, free_port, write_config
from tests.cluster_support import wait_for
from tests.metrics.conftest import scrape
from tests.metrics.test_metrics import value

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[LocalCluster, dict[str, int]]]:
    path = write_config(str(tmp_path / "cluster.json"), secure=False)
    raw = json.loads(Path(path).read_text())
    ports = {}
    for r in raw["replicas"]:
        r["metrics_port"] = ports[r["id"]] = free_port()
    Path(path).write_text(json.dumps(raw))
    lc = LocalCluster(path, insecure=True)
    lc.start_all()
    try:
        lc.wait_healthy(timeout_s=60)
        yield lc, ports
    finally:
        lc.stop_all()


def test_every_replica_serves_its_own_view(cluster: tuple[LocalCluster, dict[str, int]]) -> None:
    lc, ports = cluster
    leader = lc.leader()
    assert leader is not None

    def agreed() -> bool:
        got = {nid: scrape(port) for nid, port in ports.items()}
        terms = {value(s, "orchestrator_raft_term") for s in got.values()}
        commits = {value(s, "orchestrator_raft_commit_index") for s in got.values()}
        roles = {
            nid: [r for r in ("leader", "follower") if value(s, "orchestrator_raft_role", role=r)]
            for nid, s in got.items()
        }
        expected = {nid: ["leader" if nid == leader else "follower"] for nid in ports}
        return len(terms) == 1 and len(commits) == 1 and roles == expected

    wait_for(agreed, 30, "the replicas' metrics to agree on the term, commit index and roles")
