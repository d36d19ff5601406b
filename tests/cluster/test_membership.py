"""Membership changes online: 3 -> 5 -> 3 replicas, and replacing a replica that lost its disk."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import pytest
from orchestrator_client import OrchestratorClient

from orchestrator.tools.localcluster import LocalCluster, free_port, write_config
from orchestrator.tools.verify import WF, Load, check_history, check_replicas_agree, definitions
from tests.cluster_support import TEST_RAFT, read_log, wait_for

pytestmark = pytest.mark.cluster


def _config_with(tmp_path: Any, base: LocalCluster, extra: list[str], name: str) -> LocalCluster:
    """A config listing the current replicas plus new ones, sharing data folder and password."""
    raw = json.load(open(base.config_path))
    for nid in extra:
        raw["replicas"].append(
            {"id": nid, "grpc": f"127.0.0.1:{free_port()}", "raft": f"127.0.0.1:{free_port()}"}
        )
    path = tmp_path / name
    path.write_text(json.dumps(raw))
    return LocalCluster(str(path))


def _members(client: OrchestratorClient) -> dict[str, dict[str, Any]]:
    return {r["node_id"]: r for r in client.cluster_status()}


def test_three_to_five_to_three_and_replace_a_lost_disk(tmp_path: Any) -> None:
    cfg = write_config(str(tmp_path / "cluster.json"), raft=TEST_RAFT)
    base = LocalCluster(cfg)
    extra: list[LocalCluster] = []
    load = None
    try:
        base.start_all()
        base.wait_healthy(timeout_s=60)
        admin = base.client(retry_budget_s=60)
        tds, wf = definitions()
        admin.register_task_defs(tds)
        admin.register_workflow_def(wf)
        load = Load(base.access())
        load.begin()
        wait_for(lambda: load.starts.count("ok") >= 20, 60, "load")

        # Snapshots exist everywhere, so a new replica must catch up from one, not from the log.
        wait_for(
            lambda: all(
                os.path.exists(os.path.join(base.cfg.data_dir(n), "raft.dump"))
                for n in base.replicas
            ),
            90,
            "a snapshot on every replica",
            interval_s=0.5,
        )
        # 3 -> 5, one at a time: add to the membership, then start it with --join.
        four = _config_with(tmp_path, base, ["n4"], "cluster-4.json")
        extra.append(four)
        five = _config_with(tmp_path, four, ["n5"], "cluster-5.json")
        extra.append(five)
        for cl, nid in ((four, "n4"), (five, "n5")):
            rp = cl.replicas[nid]
            raw = json.load(open(cl.config_path))
            raft = next(r["raft"] for r in raw["replicas"] if r["id"] == nid)
            admin.add_replica(nid, raft_address=raft, grpc_address=rp.grpc)
            cl.start(nid, join=True)
            wait_for(lambda cl=cl, nid=nid: cl.health(nid), 60, f"{nid} to catch up and serve")
        members = _members(admin)
        assert sorted(members) == ["n1", "n2", "n3", "n4", "n5"]
        assert "snapshot_loaded" in read_log(four, "n4") and "snapshot_loaded" in read_log(
            five, "n5"
        )
        assert all(m["serving"] for m in members.values()), members
        # The new replicas serve clients too.
        direct = five.client(addresses=[five.replicas["n5"].grpc], retry_budget_s=30)
        assert direct.get_workflow_def(WF)["name"] == WF
        direct.close()

        # 5 -> 3: remove them again (stop each process once removed).
        for cl, nid in ((five, "n5"), (four, "n4")):
            admin.remove_replica(nid)
            cl.stop(nid)
        wait_for(lambda: sorted(_members(admin)) == ["n1", "n2", "n3"], 30, "three members")
        before = load.starts.count("ok")
        wait_for(lambda: load.starts.count("ok") >= before + 20, 60, "load on three replicas")

        # A replica loses its disk: it refuses to rejoin as the same voter ...
        leader = wait_for(base.leader, 30, "a leader")
        victim = next(n for n in ("n3", "n2", "n1") if n != leader)
        base.kill(victim)
        shutil.rmtree(base.cfg.data_dir(victim))
        base.start(victim)
        proc = base.replicas[victim].proc
        wait_for(lambda: proc.poll() is not None, 30, "the wiped replica to refuse to start")
        assert proc.returncode == 4 and "holds no Raft state" in read_log(base, victim)
        # ... and comes back by being removed and added again, catching up from a snapshot.
        admin.remove_replica(victim)
        raw = json.load(open(cfg))
        me = next(r for r in raw["replicas"] if r["id"] == victim)
        admin.add_replica(victim, raft_address=me["raft"], grpc_address=me["grpc"])
        base.start(victim, join=True)
        wait_for(lambda: base.health(victim), 90, "the replaced replica to serve")
        assert sorted(_members(admin)) == ["n1", "n2", "n3"]

        load.end()
        check_history(load.client, load.starts, load.results, WF, load.polled, load=load)
        check_replicas_agree(load.client)
        admin.close()
    finally:
        if load is not None:
            load.close()
        for cl in extra:
            cl.kill_all()
        base.kill_all()
