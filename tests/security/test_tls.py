"""TLS on the gRPC port: required, mutual when configured, certificate subjects as principals,
plaintext only with --insecure (and then a warning), clear errors for bad TLS settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import structlog

from orchestrator.config import ConfigError, load
from orchestrator.security.certs import Issued, ca_at, issue
from orchestrator.server import ReplicaServer
from orchestrator.tools.access import local_access
from orchestrator.tools.localcluster import write_config
from tests.security.security_support import call, every_rpc, secure_fake

LIST_DEFS, LIST_REQ = next((p, r) for p, r in every_rpc() if p.endswith("/ListWorkflowDefs"))
REGISTER, REGISTER_REQ = next((p, r) for p, r in every_rpc() if p.endswith("/RegisterTaskDefs"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[Any]:
    with secure_fake(tmp_path_factory.mktemp("tls")) as srv:
        yield srv


def test_a_plaintext_client_is_refused(server: Any) -> None:
    admin = local_access(server.cfg).metadata()
    with grpc.insecure_channel(server.grpc_addr) as ch:
        assert call(ch, LIST_DEFS, LIST_REQ, admin) == grpc.StatusCode.UNAVAILABLE
    with server.access.channel(server.grpc_addr) as ch:
        assert call(ch, LIST_DEFS, LIST_REQ) == grpc.StatusCode.OK


def test_a_client_that_does_not_trust_the_ca_is_refused(server: Any, tmp_path: Any) -> None:
    from orchestrator.security.certs import make_ca

    other = make_ca(Issued(str(tmp_path / "ca.pem"), str(tmp_path / "ca-key.pem")))
    creds = grpc.ssl_channel_credentials(open(other.cert, "rb").read())
    admin = local_access(server.cfg).metadata()
    with grpc.secure_channel(server.grpc_addr, creds) as ch:
        assert call(ch, LIST_DEFS, LIST_REQ, admin) == grpc.StatusCode.UNAVAILABLE


@pytest.fixture(scope="module")
def mutual(tmp_path_factory: Any) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("mtls")
    with secure_fake(tmp, require_client_cert=True) as srv:
        tokens = json.loads(open(srv.cfg.auth.tokens_file).read())
        tokens["subjects"] = [{"subject": "ci-bot", "name": "ci", "role": "reader"}]
        open(srv.cfg.auth.tokens_file, "w").write(json.dumps(tokens))
        ca = ca_at(srv.cfg.tls.ca)
        srv.client_cert = issue(ca, Issued(str(tmp / "c.pem"), str(tmp / "c-key.pem")), "ci-bot")
        yield srv


def _mtls(srv: Any, cert: Issued | None) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        open(srv.cfg.tls.ca, "rb").read(),
        open(cert.key, "rb").read() if cert else None,
        open(cert.cert, "rb").read() if cert else None,
    )
    return grpc.secure_channel(srv.grpc_addr, creds)


def test_mutual_tls_refuses_a_client_without_a_certificate(mutual: Any) -> None:
    admin = local_access(mutual.cfg).metadata()
    with _mtls(mutual, None) as ch:
        assert call(ch, LIST_DEFS, LIST_REQ, admin) == grpc.StatusCode.UNAVAILABLE
    with _mtls(mutual, mutual.client_cert) as ch:
        assert call(ch, LIST_DEFS, LIST_REQ, admin) == grpc.StatusCode.OK


def test_a_mapped_certificate_is_a_principal_without_a_token(mutual: Any) -> None:
    with _mtls(mutual, mutual.client_cert) as ch:
        assert call(ch, LIST_DEFS, LIST_REQ) == grpc.StatusCode.OK  # a reader
        assert call(ch, REGISTER, REGISTER_REQ) == grpc.StatusCode.PERMISSION_DENIED
        # A token, when given, decides instead of the certificate.
        admin = local_access(mutual.cfg).metadata()
        assert call(ch, REGISTER, REGISTER_REQ, admin) != grpc.StatusCode.PERMISSION_DENIED


def test_insecure_serves_plaintext_and_logs_a_warning(tmp_path: Any) -> None:
    cfg = load(write_config(str(tmp_path / "cluster.json"), n=1, secure=False))
    srv = ReplicaServer(cfg, "n1", insecure=True)
    try:
        with structlog.testing.capture_logs() as logs:
            srv.start()
        warned = [e for e in logs if e["event"] == "insecure_mode"]
        assert warned and warned[0]["log_level"] == "warning"
        with grpc.insecure_channel(srv.grpc_addr) as ch:
            status = next(p for p, _ in every_rpc() if p.endswith("/GetReplicaStatus"))
            assert call(ch, status, next(r for p, r in every_rpc() if p == status)) == (
                grpc.StatusCode.OK
            )
    finally:
        srv.stop(grace_s=0.2)


def test_without_tls_or_tokens_a_replica_refuses_to_start(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load(write_config(str(tmp_path / "cluster.json"), n=1, secure=False))
    with pytest.raises(ConfigError, match="--insecure"):
        ReplicaServer(cfg, "n1")
    path = write_config(str(tmp_path / "c2.json"), n=1, secure=True)
    raw = json.loads(open(path).read())
    del raw["auth"]
    open(path, "w").write(json.dumps(raw))
    monkeypatch.delenv("ORCHESTRATOR_TOKENS_FILE", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_TOKENS", raising=False)
    with pytest.raises(ConfigError, match="no tokens"):
        ReplicaServer(load(path), "n1")


@pytest.mark.parametrize(
    ("tls", "error"),
    [
        ({"cert": "a.pem"}, "'cert' and 'key' are required"),
        ({"cert": "a.pem", "key": "k.pem", "require_client_cert": True}, "needs tls.ca"),
        ({"cert": "a.pem", "key": "k.pem", "require_client_cert": "yes"}, "expected true"),
        ({"cert": "a.pem", "key": "k.pem", "cipher": "x"}, "unknown settings ['cipher']"),
        ("tls.pem", "'tls' must be an object"),
    ],
)
def test_bad_tls_settings_are_clear_config_errors(tmp_path: Any, tls: Any, error: str) -> None:
    path = write_config(str(tmp_path / "cluster.json"), n=1, secure=False)
    raw = json.loads(open(path).read())
    raw["tls"] = tls
    open(path, "w").write(json.dumps(raw))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert error in str(info.value)


def test_a_missing_certificate_file_is_named(tmp_path: Any) -> None:
    path = write_config(str(tmp_path / "cluster.json"), n=1, secure=True)
    cfg = load(path)
    open(cfg.auth.tokens_file, "w").write('{"tokens": []}')  # but no certificate files
    with pytest.raises(ConfigError, match=r"tls\.(key|cert): cannot read .*n1"):
        ReplicaServer(cfg, "n1")
