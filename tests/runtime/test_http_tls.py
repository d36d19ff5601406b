"""HTTPS for HTTP tasks against a local TLS server whose certificate a test CA (made here with
`cryptography`) signed: verified against the cluster's `http_ca_file`, never unverified."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.runtime.http import AllowList, make_request, tls_context
from orchestrator.security.certs import Issued, issue, make_ca
from tests.runtime.test_http_task import _Handler, _run


@dataclass(frozen=True)
class TlsServer:
    url: str
    ca_file: str


def _serve(tmp: Path, hosts: tuple[str, ...]) -> Iterator[TlsServer]:
    ca = make_ca(Issued(str(tmp / "ca.pem"), str(tmp / "ca-key.pem")), "http test CA")
    cert = issue(ca, Issued(str(tmp / "srv.pem"), str(tmp / "srv-key.pem")), "srv", hosts)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert, cert.key)
    _Handler.hits = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield TlsServer(f"https://127.0.0.1:{srv.server_address[1]}", ca.cert)
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TlsServer]:
    yield from _serve(tmp_path, ("127.0.0.1", "localhost"))


@pytest.fixture
def wrong_name(tmp_path: Path) -> Iterator[TlsServer]:
    """A certificate from the trusted CA, for another host than the one called."""
    yield from _serve(tmp_path, ("srv.example",))


REQUEST = {"method": "GET", "connectionTimeOut": 3000, "readTimeOut": 3000}


def test_https_with_the_clusters_ca_completes(server: TlsServer) -> None:
    wf, tasks = _run({"uri": f"{server.url}/tls"}, ("127.0.0.1",), ca_file=server.ca_file)
    assert wf.status.value == "COMPLETED", wf.reason_for_incompletion
    assert tasks[0].output["response"]["body"] == {"got": None, "path": "/tls"}
    assert _Handler.hits == [("GET", "/tls", None, "")]


def test_an_unknown_ca_fails_the_task_before_any_request(server: TlsServer) -> None:
    wf, tasks = _run({"uri": f"{server.url}/tls"}, ("127.0.0.1",))
    assert wf.status.value == "FAILED"
    assert "CERTIFICATE_VERIFY_FAILED" in tasks[0].reason_for_incompletion
    assert _Handler.hits == [], "nothing was sent to an unverified server"


def test_the_host_name_is_verified_too(wrong_name: TlsServer) -> None:
    outcome = make_request(
        {**REQUEST, "uri": f"{wrong_name.url}/tls"},
        AllowList(["127.0.0.1"]),
        tls_context(wrong_name.ca_file),
    )
    assert not outcome.ok and "CERTIFICATE_VERIFY_FAILED" in outcome.error
    assert "127.0.0.1" in outcome.error  # the mismatch names the host
    assert _Handler.hits == []


def test_the_ca_file_adds_to_the_system_trust_store(server: TlsServer) -> None:
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]
    stats = tls_context(server.ca_file).cert_store_stats()
    assert stats["x509_ca"] == system + 1
    assert tls_context().verify_mode == ssl.CERT_REQUIRED and tls_context().check_hostname


def _config(tmp_path: Path, **extra: Any) -> Any:
    from orchestrator import config

    raw = {"password": "p", **extra}
    raw["replicas"] = [{"id": "n1", "grpc": "127.0.0.1:1", "raft": "127.0.0.1:2"}]
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(raw))
    return config.load(str(path))


def test_http_ca_file_is_a_cluster_setting_relative_to_the_config(tmp_path: Path) -> None:
    from orchestrator.config import ConfigError

    assert _config(tmp_path).http_ca_file == ""
    (tmp_path / "ca").mkdir()
    make_ca(Issued(str(tmp_path / "ca" / "x.pem"), str(tmp_path / "ca" / "x-key.pem")))
    assert _config(tmp_path, http_ca_file="ca/x.pem").http_ca_file == str(tmp_path / "ca/x.pem")
    with pytest.raises(ConfigError, match=r"http_ca_file.*cannot read"):
        _config(tmp_path, http_ca_file="ca/missing.pem")
    with pytest.raises(ConfigError, match="http_ca_file"):
        _config(tmp_path, http_ca_file=["ca/x.pem"])
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"http_ca_file.*no CA certificate"):
        _config(tmp_path, http_ca_file="junk.pem")
