"""`orchestrator events` (orchestrator/cli_events.py) against one replica in this process."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from orchestrator_client import OrchestratorClient

from orchestrator import cli_events
from orchestrator.cli import main
from tests.fakes import fake_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[Any]:
    with fake_server(tmp_path_factory.mktemp("cli_events")) as srv:
        with OrchestratorClient(srv.grpc_addr) as c:
            c.register_workflow_def(
                {
                    "name": "cli_ev_gate",
                    "tasks": [{"name": "gate", "taskReferenceName": "gate", "type": "HUMAN"}],
                }
            )
        yield srv


def run(server: Any, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["--insecure", "--addresses", server.grpc_addr, *args])
    return code, capsys.readouterr().out


def _name() -> str:
    return f"cli_{uuid.uuid4().hex[:8]}"


def test_publish_prints_the_offset_and_a_retry_keeps_it(
    server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _name()
    args = ("events", "publish", name, "--payload", '{"n": 1}', "--correlation-key", "k1")
    code, out = run(server, capsys, *args, "--request-id", f"{name}-1")
    assert code == 0
    offset = int(out)
    code, out = run(server, capsys, *args, "--request-id", f"{name}-1")
    assert (code, int(out)) == (0, offset)
    code, out = run(server, capsys, "events", "read", "--from", str(offset), "--json")
    (event,) = [json.loads(line) for line in out.splitlines()]
    assert event["offset"] == offset and event["name"] == name
    assert event["payload"] == {"n": 1} and event["correlation_key"] == "k1"
    with pytest.raises(SystemExit, match="JSON object"):
        run(server, capsys, "events", "publish", name, "--payload", "[1]")


def test_read_filters_by_name_and_stops_at_the_limit(
    server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    wanted, other = _name(), _name()
    with OrchestratorClient(server.grpc_addr) as c:
        first = c.publish_event(other, {})
        offsets = [c.publish_event(wanted if i % 2 else other, {"i": i}) for i in range(6)]
    want = [o for i, o in enumerate(offsets) if i % 2]
    # A page size of 2 makes the reader page through the log.
    base = ("events", "read", "--from", str(first), "--event", wanted, "--page-size", "2")
    code, out = run(server, capsys, *base)
    lines = out.splitlines()
    assert code == 0 and [int(line.split()[0]) for line in lines] == want
    assert all(wanted in line and '{"i":' in line for line in lines)
    code, out = run(server, capsys, *base, "--limit", "2", "--json")
    assert [json.loads(line)["offset"] for line in out.splitlines()] == want[:2]


def test_read_follow_prints_events_published_later(
    server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_events, "FOLLOW_POLL_S", 0.05)
    name = _name()
    with OrchestratorClient(server.grpc_addr) as c:
        start = c.publish_event(name, {"i": 0})

        def later() -> None:
            time.sleep(0.3)
            c.publish_event(name, {"i": 1})

        publisher = threading.Thread(target=later)
        publisher.start()
        code, out = run(
            server, capsys, "events", "read", "--from", str(start), "--event", name,
            "--follow", "--limit", "2", "--json",
        )  # fmt: skip
        publisher.join()
    assert code == 0
    assert [json.loads(line)["payload"] for line in out.splitlines()] == [{"i": 0}, {"i": 1}]


def test_handlers_register_list_act_and_remove(
    server: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    event, handler = _name(), _name()
    spec = {
        "name": handler,
        "event": event,
        "actions": [
            {
                "action": "complete_task",
                "complete_task": {"workflowId": "${payload.id}", "taskRefName": "gate"},
            }
        ],
    }
    path = tmp_path / "handler.json"
    path.write_text(json.dumps([spec]))
    code, out = run(server, capsys, "events", "handlers", "register", str(path))
    assert code == 0 and f"registered event handler {handler}" in out
    code, out = run(server, capsys, "events", "handlers", "list")
    assert f"{handler}  on {event}  -> complete_task" in out
    code, out = run(server, capsys, "events", "handlers", "list", "--json")
    assert spec["actions"] == next(h for h in json.loads(out) if h["name"] == handler)["actions"]

    with OrchestratorClient(server.grpc_addr) as c:
        wid = c.start_workflow("cli_ev_gate")
        code, out = run(
            server, capsys, "events", "publish", event, "--payload", f'{{"id": "{wid}"}}'
        )
        assert code == 0
        assert c.wait_for_workflow(wid, timeout_s=10).status == "COMPLETED"
    code, out = run(server, capsys, "events", "read", "--from", out.strip())
    assert "actions=1" in out and "failed" not in out

    code, out = run(server, capsys, "events", "handlers", "remove", handler)
    assert code == 0 and f"removed event handler {handler}" in out
    code, out = run(server, capsys, "events", "handlers", "list")
    assert handler not in out
    code, _ = run(server, capsys, "events", "handlers", "remove", handler)
    assert code == 1  # NOT_FOUND, reported by main
    with pytest.raises(SystemExit, match="name one or more"):
        run(server, capsys, "events", "handlers", "register")


def test_a_failed_action_is_counted_in_the_line() -> None:
    event = {
        "offset": 7,
        "name": "x",
        "payload": {"a": 1},
        "correlation_key": "k",
        "actions": [{"code": "OK"}, {"code": "NOT_FOUND"}],
    }
    assert cli_events._line(event) == '       7  x  key=k  {"a":1}  actions=2 (1 failed)'


def test_subscribe_acks_what_it_printed_and_resumes_after_it(
    server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    name, group = _name(), _name()
    with OrchestratorClient(server.grpc_addr) as c:
        offsets = [c.publish_event(name, {"i": i}) for i in range(3)]
        args = ("events", "subscribe", "--group", group, "--event", name, "--json")
        code, out = run(server, capsys, *args, "--from", str(offsets[0]), "--limit", "2")
        assert code == 0
        assert [json.loads(line)["offset"] for line in out.splitlines()] == offsets[:2]
        assert c.get_consumer_group("events", group)["committed"] == offsets[1]
        code, out = run(server, capsys, *args, "--limit", "1")
        assert code == 0 and [json.loads(line)["offset"] for line in out.splitlines()] == [
            offsets[2]
        ]
        assert c.get_consumer_group("events", group)["committed"] == offsets[2]
