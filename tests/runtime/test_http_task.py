"""The HTTP executor against a local http.server on 127.0.0.1 (started and stopped here, on a free
port): the leader makes the request outside apply and proposes HttpResult."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from orchestrator.core.commands import RegisterTaskDefs, RegisterWorkflowDef, StartWorkflow
from orchestrator.runtime.http import AllowList, HttpExecutor
from tests.cluster_support import wait_for
from tests.fakes import FakeReplica

JSON = Any


class _Handler(BaseHTTPRequestHandler):
    hits: list[tuple[str, str, JSON, str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, code: int, body: JSON) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the read-timeout test's client hung up
            self.wfile.write(data)

    def _handle(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n)) if n else None
        self.hits.append((self.command, self.path, body, self.headers.get("X-Test", "")))
        if self.path == "/busy":
            self._answer(503, {"error": "busy"})
        elif self.path == "/slow":
            time.sleep(1.5)
            self._answer(200, {})
        else:
            self._answer(201 if self.command == "POST" else 200, {"got": body, "path": self.path})

    do_GET = do_POST = _handle


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.hits = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _run(
    request: JSON, allow: tuple[str, ...], retries: int = 0, ca_file: str = ""
) -> tuple[Any, list[Any]]:
    """Run a one-task workflow to its end; returns the workflow and its tasks."""
    replica = FakeReplica(lead=True)
    wait_for(replica.leader_ready, 10, "the fake replica to lead")
    executor = HttpExecutor(replica, allow, threads=2, ca_file=ca_file)
    executor.start()
    try:
        td = {"name": "call", "retryCount": retries, "retryDelaySeconds": 0}
        wt = {"name": "call", "taskReferenceName": "call", "type": "HTTP"}
        wt["inputParameters"] = {"http_request": request}
        cmds = [
            RegisterTaskDefs(request_id="td", task_defs=[td]),
            RegisterWorkflowDef(request_id="wd", definition={"name": "w", "tasks": [wt]}),
            StartWorkflow(request_id="s", name="w", input={}, workflow_id="wf1"),
        ]
        for cmd in cmds:
            assert replica.propose(cmd).result(timeout=10).ok
        done = lambda: replica.read(lambda st: st.workflows["wf1"].status.value) != "RUNNING"  # noqa: E731
        wait_for(done, 15, "the workflow to end")
        return replica.read(
            lambda st: (st.workflows["wf1"], [st.tasks[t] for t in st.workflows["wf1"].tasks])
        )
    finally:
        executor.stop()
        replica.stop()


def test_get_json_completes_with_the_decoded_response(server: str) -> None:
    wf, tasks = _run({"uri": f"{server}/json?x=1", "method": "GET"}, ("127.0.0.1",))
    assert wf.status.value == "COMPLETED", wf.reason_for_incompletion
    resp = tasks[0].output["response"]
    assert resp["statusCode"] == 200 and resp["reasonPhrase"] == "OK"
    assert resp["body"] == {"got": None, "path": "/json?x=1"}
    assert resp["headers"]["Content-Type"] == "application/json"
    assert _Handler.hits == [("GET", "/json?x=1", None, "")]


def test_post_sends_json_body_and_headers(server: str) -> None:
    req = {"uri": f"{server}/echo", "method": "POST", "body": {"a": [1, 2]}}
    req["headers"] = {"X-Test": "yes"}
    wf, tasks = _run(req, ("127.0.0.0/8",))
    assert wf.status.value == "COMPLETED", wf.reason_for_incompletion
    assert tasks[0].output["response"]["statusCode"] == 201
    assert tasks[0].output["response"]["body"]["got"] == {"a": [1, 2]}
    assert _Handler.hits == [("POST", "/echo", {"a": [1, 2]}, "yes")]


def test_non_2xx_fails_and_is_retried_per_the_task_definition(server: str) -> None:
    wf, tasks = _run({"uri": f"{server}/busy"}, ("127.0.0.1",), retries=1)
    assert wf.status.value == "FAILED"
    assert [t.status.value for t in tasks] == ["FAILED", "FAILED"]
    assert tasks[1].output["response"]["statusCode"] == 503
    assert "HTTP 503" in tasks[1].reason_for_incompletion
    assert len(_Handler.hits) == 2


def test_read_timeout_fails_the_task(server: str) -> None:
    wf, tasks = _run({"uri": f"{server}/slow", "readTimeOut": 300}, ("127.0.0.1",))
    assert wf.status.value == "FAILED"
    assert tasks[0].status.value == "FAILED"
    assert "timed out" in tasks[0].reason_for_incompletion


def test_loopback_is_refused_terminally_without_the_allow_list(server: str) -> None:
    wf, tasks = _run({"uri": f"{server}/json"}, (), retries=3)
    assert wf.status.value == "FAILED"
    assert len(tasks) == 1, "a refusal is not retried"
    assert tasks[0].status.value == "FAILED_WITH_TERMINAL_ERROR"
    assert "loopback" in tasks[0].reason_for_incompletion
    assert "http_allow" in tasks[0].reason_for_incompletion
    assert _Handler.hits == [], "no request was made"


@pytest.mark.parametrize(
    ("allow", "host", "addresses", "refused"),
    [
        ((), "x", ["10.0.0.1"], "private"),
        ((), "x", ["169.254.169.254"], "link-local"),
        ((), "x", ["93.184.216.34", "127.0.0.1"], "loopback"),
        ((), "x", ["::1"], "loopback"),
        ((), "x", ["::ffff:127.0.0.1"], "not in"),
        ((), "x", ["0.0.0.0"], "not in"),
        (("10.0.0.0/8",), "x", ["10.2.3.4"], ""),
        (("svc.internal",), "SVC.internal", ["10.2.3.4"], ""),
        ((), "example.com", ["93.184.216.34"], ""),
    ],
)
def test_the_allow_list_checks_every_address(
    allow: tuple[str, ...], host: str, addresses: list[str], refused: str
) -> None:
    why = AllowList(allow).refusal(host, addresses)
    assert (refused in why and why != "") if refused else why == ""


def _config(tmp_path: Any, http_allow: JSON) -> Any:
    from orchestrator import config

    raw = {"password": "p", "http_allow": http_allow}
    raw["replicas"] = [{"id": "n1", "grpc": "127.0.0.1:1", "raft": "127.0.0.1:2"}]
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(raw))
    return config.load(str(path))


def test_http_allow_is_a_cluster_setting_empty_by_default(tmp_path: Any) -> None:
    from orchestrator.config import ConfigError

    assert _config(tmp_path, None).http_allow == ()
    allow = ["10.0.0.0/8", "fd00::/8", "svc.internal", "127.0.0.1"]
    assert _config(tmp_path, allow).http_allow == tuple(allow)
    for bad in ("10.0.0.0/8", [1], ["not a host!"]):
        with pytest.raises(ConfigError, match="http_allow"):
            _config(tmp_path, bad)
