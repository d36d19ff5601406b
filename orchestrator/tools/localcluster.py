"""Bring up N replicas as child processes on this machine (used by `make run` and the tests).

A cluster is secure unless `insecure`: its config names TLS material and a tokens file
(write_config puts them beside the config), made on first use (tools/access.prepare).

Replicas end with the process that started them, however it ends: each one is started through
this module's `__main__`, which watches a pipe whose only write end the parent holds. The kernel
closes it when the parent dies (even by SIGKILL), the replica reads EOF and stops as on SIGTERM.
(PR_SET_PDEATHSIG would not do: it fires when the forking *thread* exits, not the process.)
The replicas run in sessions of their own, so a terminal's Ctrl-C reaches only the parent, which
stops them in order.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from orchestrator import config as cfgmod

from .access import AUTH_SETTINGS, TLS_SETTINGS, Access, local_access, prepare

# The read end of a replica's lifeline (see the module's docstring), by number.
LIFELINE_ENV = "ORCHESTRATOR_LIFELINE_FD"
# After the parent died: how long a replica may take to stop cleanly before it exits anyway.
ORPHAN_GRACE_S = 20.0


class AlreadyRunning(RuntimeError):
    """Another local cluster runs from this config, or something else holds its ports."""


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports. The sockets are held until all are bound: one
    released before the next bind can be handed out again (a config once got one port for two
    replicas that way, and the second replica could not start)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def write_config(
    path: str,
    n: int = 3,
    grpc_ports: list[int] | None = None,
    raft_ports: list[int] | None = None,
    raft: dict[str, Any] | None = None,
    data_root: str = "data",
    hosts: list[str] | None = None,
    secure: bool = True,
    ui_ports: list[int] | None = None,
) -> str:
    """Write a cluster config (and a fresh password file, if missing) for n loopback replicas;
    `secure` names TLS material and a tokens file beside it (made by LocalCluster);
    `ui_ports`: each replica's web UI port."""
    hosts = hosts or ["127.0.0.1"] * n
    if not grpc_ports or not raft_ports:
        fresh = free_ports(2 * n)
        grpc_ports, raft_ports = grpc_ports or fresh[:n], raft_ports or fresh[n:]
    base = os.path.dirname(os.path.abspath(path))
    os.makedirs(base, exist_ok=True)
    pw = os.path.join(base, "raft-password")
    if not os.path.exists(pw):
        fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    cfgmod.write(
        path,
        {
            "password_file": "raft-password",
            "data_root": data_root,
            "replicas": [
                {
                    "id": f"n{i + 1}",
                    "grpc": f"{hosts[i]}:{grpc_ports[i]}",
                    "raft": f"{hosts[i]}:{raft_ports[i]}",
                    **({"ui_port": ui_ports[i]} if ui_ports else {}),
                }
                for i in range(n)
            ],
            "raft": raft or {},
            **({"tls": TLS_SETTINGS, "auth": AUTH_SETTINGS} if secure else {}),
        },
    )
    return path


@dataclass
class ReplicaProcess:
    node_id: str
    grpc: str
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    # The write end of the replica's lifeline; closing it (or dying) stops the replica.
    lifeline: int = -1

    def cut_lifeline(self) -> None:
        if self.lifeline >= 0:
            with contextlib.suppress(OSError):
                os.close(self.lifeline)
            self.lifeline = -1


@dataclass
class LocalCluster:
    config_path: str
    env: dict[str, str] = field(default_factory=dict)
    replicas: dict[str, ReplicaProcess] = field(default_factory=dict)
    log_dir: str = ""
    # Per-replica command prefix, e.g. ["ip", "netns", "exec", "ns1"] (it execs, so the PID is
    # the replica's own).
    wrap: dict[str, list[str]] = field(default_factory=dict)
    # Replicas run with --insecure (plaintext, no tokens), whatever the config says.
    insecure: bool = False

    def __post_init__(self) -> None:
        self._started: set[str] = set()
        self._lock_fd = -1
        cfg = cfgmod.load(self.config_path)
        self.cfg = cfg
        if not insecure_config(cfg, self.insecure):
            prepare(cfg)
        # Beside the data folder: .local-cluster/logs for `make run`, <tmp>/logs in tests.
        self.log_dir = self.log_dir or os.path.join(
            os.path.dirname(cfg.data_root.rstrip(os.sep)), "logs"
        )
        os.makedirs(self.log_dir, exist_ok=True)
        for r in cfg.replicas:
            self.replicas[r.node_id] = ReplicaProcess(
                r.node_id, r.grpc, log_path=os.path.join(self.log_dir, f"{r.node_id}.log")
            )

    @property
    def addresses(self) -> list[str]:
        return [r.grpc for r in self.replicas.values()]

    def ui_urls(self) -> dict[str, str]:
        """Each replica's web UI (config ui_port), HTTPS unless the cluster is insecure."""
        scheme = "http" if insecure_config(self.cfg, self.insecure) else "https"
        return {
            r.node_id: f"{scheme}://{r.grpc.rpartition(':')[0]}:{port}/"
            for r in self.cfg.replicas
            if (port := self.cfg.ui_port_of(r.node_id))
        }

    def access(self, name: str = "admin") -> Access:
        """How to reach this cluster as `name` (a role's name, or one added with add_token)."""
        if insecure_config(self.cfg, self.insecure):
            return Access(self.addresses)
        return local_access(self.cfg, name)

    def client(self, name: str = "admin", **kw: Any) -> Any:
        """An OrchestratorClient of every replica, as `name`; `kw` as the client's."""
        return self.access(name).client(**kw)

    def channel(self, address: str, name: str = "admin") -> grpc.Channel:
        """A raw channel to one replica's gRPC address whose calls authenticate as `name`."""
        return self.access(name).channel(address)

    def start(
        self, node_id: str, extra_env: dict[str, str] | None = None, join: bool = False
    ) -> None:
        """Start a replica; its first start here bootstraps (or joins) when its folder is empty."""
        rp = self.replicas[node_id]
        mode: list[str] = []
        if node_id not in self._started:
            mode = ["--join"] if join else ["--bootstrap"]
        elif join:
            mode = ["--join"]
        self._started.add(node_id)
        if rp.proc is not None and rp.proc.poll() is None:
            return
        rp.cut_lifeline()
        read_end, rp.lifeline = os.pipe()
        env = dict(os.environ, **self.env, **(extra_env or {}), **{LIFELINE_ENV: str(read_end)})
        log = open(rp.log_path, "ab")
        rp.proc = subprocess.Popen(
            [
                *self.wrap.get(node_id, []),
                sys.executable,
                "-m",
                __name__,
                "serve",
                "--config",
                self.config_path,
                "--node",
                node_id,
                *mode,
                *(["--insecure"] if self.insecure else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            pass_fds=(read_end,),
        )
        log.close()
        os.close(read_end)

    def start_all(self) -> None:
        for nid in self.replicas:
            self.start(nid)

    def pid(self, node_id: str) -> int | None:
        p = self.replicas[node_id].proc
        return p.pid if p is not None and p.poll() is None else None

    def signal(self, node_id: str, sig: int) -> None:
        pid = self.pid(node_id)
        if pid is not None:
            os.kill(pid, sig)

    def kill(self, node_id: str) -> None:
        """kill -9 and reap."""
        p = self.replicas[node_id].proc
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
            p.kill()
            p.wait(10)
        self.replicas[node_id].cut_lifeline()

    def stop(self, node_id: str, timeout_s: float = 10.0) -> None:
        p = self.replicas[node_id].proc
        if p is None or p.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGCONT)
        p.terminate()
        try:
            p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
        self.replicas[node_id].cut_lifeline()

    def claim(self, ports_free_within_s: float = 10.0) -> None:
        """Refuse (AlreadyRunning, saying why) when another local cluster runs from this config
        or another program holds one of its ports; else hold a lock until this process exits.

        The ports get `ports_free_within_s` to come free: replicas whose parent was just
        killed are still stopping."""
        base = os.path.dirname(self.cfg.data_root.rstrip(os.sep))
        os.makedirs(base, exist_ok=True)
        path = os.path.join(base, "local-cluster.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(
                f"a local cluster from {self.config_path} is already running (pid {holder}, "
                f"gRPC on {','.join(self.addresses)}): use it (e.g. `orchestrator status`), or "
                f"stop it first (Ctrl-C in its terminal, or `kill {holder}`)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        deadline = time.monotonic() + ports_free_within_s
        while (busy := self._busy_ports()) and time.monotonic() < deadline:
            time.sleep(0.2)
        if busy:
            os.close(fd)
            raise AlreadyRunning(
                f"{', '.join(busy)} already in use by another program (see `ss -ltnp`); "
                f"stop it, or give {self.config_path} other ports"
            )
        self._lock_fd = fd

    def _busy_ports(self) -> list[str]:
        busy = []
        for r in self.cfg.replicas:
            addrs = [("gRPC", r.grpc), ("Raft", r.raft)]
            if metrics := self.cfg.metrics_port_of(r.node_id):
                addrs.append(("metrics", f"{r.grpc.rpartition(':')[0]}:{metrics}"))
            if ui := self.cfg.ui_port_of(r.node_id):
                addrs.append(("web UI", f"{r.grpc.rpartition(':')[0]}:{ui}"))
            for what, addr in addrs:
                host, _, port = addr.rpartition(":")
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    # As the replicas bind: a connection in TIME_WAIT does not hold the port.
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        s.bind((host, int(port)))
                    except OSError as exc:
                        if exc.errno == errno.EADDRINUSE:
                            busy.append(f"port {addr} ({r.node_id}'s {what})")
        return busy

    def stop_all(self) -> None:
        for nid in self.replicas:
            self.stop(nid)

    def kill_all(self) -> None:
        for nid in self.replicas:
            self.kill(nid)

    def alive(self, node_id: str) -> bool:
        return self.pid(node_id) is not None

    def health(self, node_id: str, timeout_s: float = 1.0) -> bool:
        addr = self.replicas[node_id].grpc
        try:
            with self.channel(addr) as ch:
                resp = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
                )
                return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
        except grpc.RpcError:
            return False

    def wait_healthy(self, node_ids: list[str] | None = None, timeout_s: float = 60.0) -> None:
        ids = node_ids or list(self.replicas)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            bad = [nid for nid in ids if not self.health(nid)]
            if not bad:
                return
            for nid in bad:
                p = self.replicas[nid].proc
                if p is not None and p.poll() is not None:
                    raise RuntimeError(
                        f"replica {nid} exited with {p.returncode}; see {self.replicas[nid].log_path}"
                    )
            time.sleep(0.2)
        raise TimeoutError(f"replicas {bad} not healthy after {timeout_s}s")

    def leader(self, timeout_s: float = 1.0) -> str | None:
        """The node id every reachable replica agrees leads, or None."""
        from orchestrator_client.v1 import cluster_pb2, cluster_pb2_grpc

        seen = set()
        for nid, rp in self.replicas.items():
            if not self.alive(nid):
                continue
            try:
                with self.channel(rp.grpc) as ch:
                    st = cluster_pb2_grpc.ClusterServiceStub(ch).GetReplicaStatus(
                        cluster_pb2.GetReplicaStatusRequest(), timeout=timeout_s
                    )
                    if st.role == "LEADER" and st.serving:
                        seen.add(nid)
            except grpc.RpcError:
                continue
        return seen.pop() if len(seen) == 1 else None


def insecure_config(cfg: cfgmod.ClusterConfig, insecure: bool) -> bool:
    return insecure or cfg.tls is None


def watch_lifeline(fd: int, grace_s: float = ORPHAN_GRACE_S) -> None:
    """In a replica: stop as on SIGTERM once the parent's end of `fd` closes, and exit anyway
    `grace_s` later."""

    def watch() -> None:
        while True:
            try:
                if not os.read(fd, 1):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        print("local cluster: parent process gone, stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


if __name__ == "__main__":
    from orchestrator.cli import main

    lifeline = os.environ.pop(LIFELINE_ENV, "")
    if lifeline:
        watch_lifeline(int(lifeline))
    raise SystemExit(main())
