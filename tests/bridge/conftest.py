"""A real nats-server with JetStream on a free loopback port, per test, stopped by its PID.

Without nats-server (Debian's `nats-server`, installed by `make system-deps`) the tests that need
it are skipped with the reason, except when CI=true: there they fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.tools.localcluster import free_port


class NatsServer:
    def __init__(self, tmp: Any) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = str(tmp / "nats-store")
        self.log = str(tmp / "nats-server.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.store],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not listen on {self.port}: see {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def nats_available() -> bool:
    return bool(shutil.which("nats-server") or os.path.exists("/usr/sbin/nats-server"))


@pytest.fixture
def nats_server(tmp_path: Any) -> Iterator[NatsServer]:
    if not nats_available():
        why = "nats-server is not installed (apt-get install nats-server; `make system-deps`)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    server = NatsServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
