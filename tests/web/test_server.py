"""The UI's configuration (ui_port, cluster-level and per replica) and its HTTP server: served
from a thread of its own, bounded, and gone when stopped."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import ConfigError, load
from orchestrator.tools.localcluster import LocalCluster, free_port, write_config
from orchestrator.web import WebUI, for_replica
from orchestrator.web import server as web_server


def _config(tmp_path: Path, **top: Any) -> str:
    path = write_config(str(tmp_path / "cluster.json"), n=2, ui_ports=[8091, 0], secure=False)
    raw = json.loads(Path(path).read_text())
    raw.update(top)
    Path(path).write_text(json.dumps(raw))
    return path


def test_ui_port_per_replica_else_the_clusters(tmp_path: Path) -> None:
    cfg = load(_config(tmp_path, ui_port=8090))
    assert cfg.ui_port_of("n1") == 8091 and cfg.ui_port_of("n2") == 8090
    assert load(_config(tmp_path)).ui_port_of("n2") == 0
    with pytest.raises(ConfigError, match="ui_port"):
        load(_config(tmp_path, ui_port="8080"))


def test_local_cluster_prints_its_ui_urls_and_off_means_none(tmp_path: Path) -> None:
    cluster = LocalCluster(_config(tmp_path), insecure=True)
    assert cluster.ui_urls() == {"n1": "http://127.0.0.1:8091/"}
    cfg = load(_config(tmp_path))

    class Insecure:
        insecure, authenticator, peer_credentials = True, None, None

    ui = for_replica(cfg, "n1", Insecure())
    assert ui is not None and ui.url == "http://127.0.0.1:8091/" and not ui.app.secure
    assert for_replica(cfg, "n2", Insecure()) is None


def _get(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_served_in_its_own_thread_bounded_and_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_server, "MAX_THREADS", 2)
    port = free_port()
    # A gateway to a port nobody serves: pages would fail, the stylesheet needs no call.
    ui = WebUI("n1", "127.0.0.1", port, f"127.0.0.1:{free_port()}", None, None, {"secure": False})
    ui.start()
    try:
        assert any(t.name == "web-ui" for t in threading.enumerate())
        status, headers = _get(f"http://127.0.0.1:{port}/static/style.css")
        assert status == 200 and headers["X-Frame-Options"] == "DENY"
        # Two idle connections hold both threads; a third is closed at once.
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        extra = socket.create_connection(("127.0.0.1", port))
        extra.settimeout(5)
        assert extra.recv(1) == b""
        for s in (*idle, extra):
            s.close()
    finally:
        ui.stop()
    assert not any(t.name == "web-ui" for t in threading.enumerate())
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
