"""What a container needs of a replica (deploy/): it listens on bind_host although it is known
by a DNS name it cannot bind, and answers plaintext health probes on health_port while its API
port wants TLS and tokens."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from orchestrator.config import ConfigError, load
from orchestrator.server import ReplicaServer
from orchestrator.tools.access import prepare
from orchestrator.tools.localcluster import free_port, write_config

# Never resolves (RFC 2606): binding it directly fails, as a pod's own name can before its
# headless service publishes it.
POD_NAME = "orchestrator-0.orchestrator.invalid"


def _config(tmp_path: Path, **extra: object) -> str:
    path = write_config(str(tmp_path / "cluster.json"), n=1, hosts=[POD_NAME])
    raw = json.loads(Path(path).read_text())
    raw.update(extra)
    Path(path).write_text(json.dumps(raw))
    return path


def _port(addr: str) -> int:
    return int(addr.rpartition(":")[2])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_binds_bind_host_and_serves_plaintext_health(tmp_path: Path) -> None:
    health_port = free_port()
    cfg = load(_config(tmp_path, bind_host="127.0.0.1", health_port=health_port))
    prepare(cfg)
    srv = ReplicaServer(cfg, "n1")
    srv.start()
    try:
        me = cfg.replica("n1")
        assert srv.grpc_addr == me.grpc  # still advertised by its name
        assert _listening(_port(me.grpc)) and _listening(_port(me.raft))
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            deadline = time.monotonic() + 30
            while True:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert status == health_pb2.HealthCheckResponse.SERVING
            # Health only: the API is not reachable without TLS through this port.
            with pytest.raises(grpc.RpcError) as err:
                ch.unary_unary("/orchestrator.v1.ClusterService/GetReplicaStatus")(b"", timeout=2)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        srv.stop(grace_s=0.2)
    assert not _listening(health_port)


def test_without_bind_host_a_name_it_cannot_bind_fails(tmp_path: Path) -> None:
    """Why bind_host exists (pysyncobj fails on the unresolved name before gRPC would)."""
    cfg = load(_config(tmp_path))
    with pytest.raises((ConfigError, TypeError, OSError)):
        ReplicaServer(cfg, "n1", insecure=True)


@pytest.mark.parametrize(
    "extra",
    [{"bind_host": "0.0.0.0:1"}, {"bind_host": 7}, {"health_port": 70000}, {"health_port": "x"}],
)
def test_bad_settings_are_refused(tmp_path: Path, extra: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=next(iter(extra))):
        load(_config(tmp_path, **extra))
