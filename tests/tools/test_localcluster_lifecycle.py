"""`make run`'s lifecycle (issue 16 item 7): the replicas end with `orchestrator local-cluster`
however it ends, and a second one from the same config says the first is up."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.tools.localcluster import AlreadyRunning, LocalCluster, write_config

PID_LINE = re.compile(r"^\s+(n\d+): pid (\d+) gRPC", re.M)


def _until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        time.sleep(0.1)


def _gone(pid: int) -> bool:
    """Exited (a zombie left for whoever adopted it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


class Run:
    """One `orchestrator local-cluster --insecure` as a subprocess, its output in a file."""

    def __init__(self, config: str, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "local-cluster",
                "--config",
                config,
                "--insecure",
            ],
            stdout=open(out, "wb"),
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def replica_pids(self, timeout_s: float = 90.0) -> dict[str, int]:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"local-cluster exited {self.proc.returncode}:\n{self.text()}")
            return len(PID_LINE.findall(self.text())) == 3

        _until(up, timeout_s, "the cluster up and its replicas' pids printed")
        return {nid: int(pid) for nid, pid in PID_LINE.findall(self.text())}


@pytest.fixture
def config(tmp_path: Path) -> Iterator[str]:
    path = write_config(str(tmp_path / "cluster.json"), secure=False)
    yield path


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait(10)


@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name
)
def test_replicas_end_with_their_parent(
    sig: signal.Signals, config: str, tmp_path: Path, runs: list[Run]
) -> None:
    first = Run(config, tmp_path / "first.out")
    runs.append(first)
    pids = first.replica_pids()
    assert all(not _gone(p) for p in pids.values())
    if sig == signal.SIGKILL:
        # While it is up, a second one from the same config says so (and starts nothing).
        second = Run(config, tmp_path / "second.out")
        runs.append(second)
        assert second.proc.wait(30) == 3
        said = second.text()
        assert "already running" in said and f"pid {first.proc.pid}" in said, said
        assert "starting" not in said
        assert all(not _gone(p) for p in pids.values())
    first.proc.send_signal(sig)
    first.proc.wait(30)
    _until(
        lambda: all(_gone(p) for p in pids.values()),
        ORPHAN_WAIT_S,
        f"replicas {pids} gone after {sig.name} of their parent",
    )
    if sig != signal.SIGKILL:
        assert first.proc.returncode == 0, first.text()
        assert "stopping" in first.text()


# A replica told by its lifeline stops as on SIGTERM (a few seconds), or exits after the grace.
ORPHAN_WAIT_S = 30.0


def test_second_run_after_a_killed_one_starts(config: str, tmp_path: Path, runs: list[Run]) -> None:
    """After a SIGKILLed parent, the next run waits for the old replicas' ports and starts."""
    first = Run(config, tmp_path / "first.out")
    runs.append(first)
    first.replica_pids()
    first.proc.kill()
    first.proc.wait(10)
    second = Run(config, tmp_path / "second.out")
    runs.append(second)
    second.replica_pids()
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(30) == 0, second.text()


def test_claim_names_a_port_another_program_holds(config: str) -> None:
    cluster = LocalCluster(config, insecure=True)
    addr = cluster.cfg.replicas[1].raft
    host, _, port = addr.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((host, int(port)))
        squatter.listen()
        with pytest.raises(AlreadyRunning) as err:
            cluster.claim(ports_free_within_s=0.5)
    assert f"port {addr} (n2's Raft)" in str(err.value)
    # The refusal released the lock: with the port free, the same config can be claimed.
    LocalCluster(config, insecure=True).claim(ports_free_within_s=0.5)


def test_a_replica_stops_when_its_lifeline_closes(config: str) -> None:
    """LocalCluster as the tests use it: closing the write end stops the replica too."""
    cluster = LocalCluster(config, insecure=True)
    cluster.start_all()
    try:
        cluster.wait_healthy(timeout_s=60)
        rp = cluster.replicas["n1"]
        assert rp.proc is not None
        rp.cut_lifeline()
        assert rp.proc.wait(ORPHAN_WAIT_S) == 0
        assert "parent process gone" in open(rp.log_path).read()
    finally:
        cluster.kill_all()
    assert all(os.path.exists(r.log_path) for r in cluster.replicas.values())
