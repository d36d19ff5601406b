"""A full disk on one replica: a clear error there, nothing corrupted, recovery when space returns.

The replica's data folder is a small tmpfs the test mounts (and unmounts); the test fills it.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from orchestrator.tools.verify import WF, Load, check_history, check_replicas_agree, definitions
from tests.cluster_support import make_cluster, read_log, wait_for

pytestmark = pytest.mark.cluster


def _mount_tmpfs(path: str, size: str) -> None:
    os.makedirs(path, exist_ok=True)
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs for the full-disk test in CI: {out.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")


def _fill(path: str) -> str:
    filler = os.path.join(path, "filler")
    # Unbuffered: a buffered file keeps the part of a block the disk had no room for and fails
    # again when it is closed (whenever the free space is not a multiple of the block).
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_full_disk_on_one_replica(tmp_path: Any) -> None:
    cluster = make_cluster(tmp_path)
    victim = "n3"
    data = cluster.cfg.data_dir(victim)
    _mount_tmpfs(data, "32m")
    load = None
    try:
        cluster.start_all()
        cluster.wait_healthy(timeout_s=60)
        admin = cluster.client(retry_budget_s=30)
        tds, wf = definitions()
        admin.register_task_defs(tds)
        admin.register_workflow_def(wf)
        admin.close()
        load = Load(cluster.access())
        load.begin()
        wait_for(lambda: load.starts.count("ok") >= 20, 60, "load")
        if cluster.leader() == victim:  # keep the fault on a follower: the leader case is a kill
            cluster.replicas[victim].proc.terminate()
            cluster.replicas[victim].proc.wait(10)
            cluster.start(victim)
            wait_for(
                lambda: cluster.leader() not in (None, victim) and cluster.health(victim),
                60,
                "a leader elsewhere",
            )
        filler = _fill(data)
        wait_for(
            lambda: "journal_sync_failed" in read_log(cluster, victim),
            60,
            "the replica to report the full disk",
        )
        wait_for(lambda: not cluster.health(victim), 30, "the full replica to report NOT_SERVING")
        before = load.starts.count("ok")
        wait_for(
            lambda: load.starts.count("ok") >= before + 30, 60, "the other replicas to carry on"
        )
        assert cluster.alive(victim), "a full disk must not crash the replica"
        os.remove(filler)
        wait_for(
            lambda: "journal_sync_recovered" in read_log(cluster, victim),
            60,
            "recovery when space returns",
        )
        wait_for(lambda: cluster.health(victim), 60, "the replica to serve again")
        load.end()
        check_history(load.client, load.starts, load.results, WF, load.polled, load=load)
        check_replicas_agree(load.client)
        # Nothing on the full disk was corrupted: the replica restarts from it.
        cluster.kill(victim)
        cluster.start(victim)
        wait_for(lambda: cluster.health(victim), 60, "a clean restart from the once-full disk")
        check_replicas_agree(load.client)
    finally:
        if load is not None:
            load.close()
        cluster.kill_all()
        subprocess.run(["umount", data], capture_output=True)
