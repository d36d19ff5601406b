"""`orchestrator failover`: the distribution of failover times over repeated leader kills.

Brings up a local three-replica cluster, keeps a client issuing small writes, and N times:
kill -9 the leader, measure the time until the first client call that succeeds afterwards
(through the client's own failover), restart the killed replica and wait until all three serve.
Prints each sample and the distribution; `--json` writes it too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def run(kills: int, raft: dict[str, Any], keep_dir: str | None = None) -> dict[str, Any]:
    from .localcluster import LocalCluster, write_config

    base = keep_dir or tempfile.mkdtemp(prefix="orchestrator-failover-")
    cluster = LocalCluster(write_config(os.path.join(base, "cluster.json"), raft=raft))
    samples: list[float] = []
    client = None
    try:
        cluster.start_all()
        cluster.wait_healthy(timeout_s=60)
        client = cluster.client(timeout_s=1.0, retry_budget_s=60.0)
        client.register_task_defs([{"name": "failover_probe", "retryCount": 0}])
        client.register_workflow_def(
            {
                "name": "failover_probe",
                "tasks": [{"name": "failover_probe", "taskReferenceName": "p"}],
            }
        )
        for i in range(kills):
            deadline = time.monotonic() + 30
            leader = None
            while leader is None and time.monotonic() < deadline:
                leader = cluster.leader()
                if leader is None:
                    time.sleep(0.05)
            if leader is None:
                raise RuntimeError("no leader to kill")
            client.start_workflow("failover_probe", {"i": i})  # the cluster is serving
            t0 = time.monotonic()
            cluster.kill(leader)
            client.start_workflow("failover_probe", {"i": i, "after_kill": True})
            samples.append(time.monotonic() - t0)
            print(
                f"kill {i + 1}/{kills}: leader {leader} -> first successful call after {samples[-1]:.3f}s",
                flush=True,
            )
            cluster.start(leader)
            cluster.wait_healthy(timeout_s=60)
    finally:
        if client is not None:
            client.close()
        cluster.kill_all()
    return {
        "kills": len(samples),
        "raft": raft,
        "samples_s": [round(s, 4) for s in samples],
        "p50_s": round(_percentile(samples, 50), 3),
        "p90_s": round(_percentile(samples, 90), 3),
        "p99_s": round(_percentile(samples, 99), 3),
        "max_s": round(max(samples), 3),
        "mean_s": round(statistics.mean(samples), 3),
    }


def cmd_failover(ns: argparse.Namespace) -> int:
    raft = json.loads(ns.raft) if ns.raft else {}
    result = run(ns.kills, raft)
    print(
        f"\nfailover over {result['kills']} leader kills (kill -9 to the first successful client call): "
        f"p50 {result['p50_s']}s  p90 {result['p90_s']}s  p99 {result['p99_s']}s  max {result['max_s']}s  mean {result['mean_s']}s"
    )
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "failover",
        help="measure failover time over repeated leader kills",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    s.add_argument("--kills", type=int, default=20)
    s.add_argument(
        "--raft", help="JSON object of raft setting overrides, e.g. '{\"election_min_s\": 0.4}'"
    )
    s.add_argument("--json", help="write the result to this file")
    s.set_defaults(fn=cmd_failover)
