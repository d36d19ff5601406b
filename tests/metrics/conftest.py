"""One real replica (single-node Raft, plaintext) with its metrics endpoint on, per module."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.config import load
from orchestrator.server import ReplicaServer
from orchestrator.tools.access import prepare
from orchestrator.tools.localcluster import free_port, write_config
from tests.cluster_support import wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ReplicaServer, int]]:
    tmp = tmp_path_factory.mktemp("metrics")
    path = write_config(str(tmp / "cluster.json"), n=1)
    raw = json.loads(Path(path).read_text())
    port = free_port()
    raw["metrics_port"] = port
    # Snapshots when forced, not only in this node's slot of pysyncobj's compaction period.
    raw["raft"] = {"log_compaction_split": False}
    Path(path).write_text(json.dumps(raw))
    cfg = load(path)
    prepare(cfg)
    srv = ReplicaServer(cfg, "n1", insecure=True)
    srv.start()
    try:
        wait_for(srv.replica.leader_ready, 30, "the replica to lead")
        yield srv, port
    finally:
        srv.stop(grace_s=0.2)


def exposition(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def scrape(port: int) -> Samples:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(exposition(port)):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out
