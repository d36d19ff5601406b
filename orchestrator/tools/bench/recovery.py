"""How long a replica takes to serve again with the cluster's state: restarted after kill -9,
and added to the membership as a new replica (which catches up from the leader's snapshot).

"Serving again" is the replica's gRPC health SERVING and its applied sequence (GetReplicaStatus)
at least the leader's when the clock started. Only for a cluster the bench started.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ..localcluster import LocalCluster, free_port


def _leader_seq(cluster: LocalCluster, monitor: Any) -> tuple[str, int]:
    for _ in range(100):
        lead = cluster.leader()
        if lead is not None:
            st = monitor.replica_status(cluster.replicas[lead].grpc, timeout_s=5.0)
            return lead, int(st.get("applied_sequence", 0))
        time.sleep(0.2)
    raise RuntimeError("no leader to measure recovery against")


def _wait_caught_up(
    cluster: LocalCluster, nid: str, monitor: Any, seq: int, t0: float, timeout_s: float
) -> dict[str, Any]:
    """Seconds from t0 until the replica serves and has applied `seq`."""
    serving_s = caught_s = None
    addr = cluster.replicas[nid].grpc
    applied = 0
    while time.monotonic() - t0 < timeout_s:
        if serving_s is None and cluster.health(nid):
            serving_s = time.monotonic() - t0
        if caught_s is None:
            try:
                applied = int(monitor.replica_status(addr, timeout_s=2.0)["applied_sequence"])
            except Exception:
                applied = 0
            if applied >= seq:
                caught_s = time.monotonic() - t0
        if serving_s is not None and caught_s is not None:
            break
        p = cluster.replicas[nid].proc
        if p is not None and p.poll() is not None:
            return {
                "error": f"{nid} exited with {p.returncode}; see {cluster.replicas[nid].log_path}"
            }
        time.sleep(0.1)
    return {
        "target_seq": seq,
        "applied_seq": applied,
        "serving_s": None if serving_s is None else round(serving_s, 2),
        "caught_up_s": None if caught_s is None else round(caught_s, 2),
        "both_s": None
        if serving_s is None or caught_s is None
        else round(max(serving_s, caught_s), 2),
    }


def restart_follower(cluster: LocalCluster, monitor: Any, timeout_s: float) -> dict[str, Any]:
    """kill -9 a follower and start it again; time until it serves with everything applied."""
    lead, _ = _leader_seq(cluster, monitor)
    victim = next(nid for nid in sorted(cluster.replicas, reverse=True) if nid != lead)
    cluster.kill(victim)
    _, seq = _leader_seq(cluster, monitor)
    t0 = time.monotonic()
    cluster.start(victim)
    out = _wait_caught_up(cluster, victim, monitor, seq, t0, timeout_s)
    return {"replica": victim, **out}


def add_replica(
    cluster: LocalCluster, admin: Any, monitor: Any, started: list[Any], timeout_s: float
) -> dict[str, Any]:
    """Add a fourth replica to the membership and start it with --join; time until it serves
    with everything applied. Its LocalCluster goes into `started` (stopped by the caller)."""
    raw = json.load(open(cluster.config_path))
    nid = f"n{len(raw['replicas']) + 1}"
    me = {"id": nid, "grpc": f"127.0.0.1:{free_port()}", "raft": f"127.0.0.1:{free_port()}"}
    raw["replicas"].append(me)
    path = os.path.join(os.path.dirname(cluster.config_path), f"cluster-{nid}.json")
    with open(path, "w") as f:
        json.dump(raw, f)
    grown = LocalCluster(path, env=cluster.env)
    started.append(grown)
    t0 = time.monotonic()
    admin.add_replica(nid, raft_address=me["raft"], grpc_address=me["grpc"])
    _, seq = _leader_seq(cluster, monitor)
    grown.start(nid, join=True)
    out = _wait_caught_up(grown, nid, monitor, seq, t0, timeout_s)
    return {"replica": nid, **out}
