"""The operator's commands (orchestrator/cli_ops.py) against one replica in this process."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from orchestrator_client import OrchestratorClient

from orchestrator.cli import main
from orchestrator.cli_ops import duration_ms, time_ms
from tests.fakes import fake_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[Any]:
    with fake_server(tmp_path_factory.mktemp("cli_ops")) as srv:
        with OrchestratorClient(srv.grpc_addr) as c:
            c.register_task_defs([{"name": "cli_t", "retryCount": 0}])
            c.register_workflow_def(
                {"name": "cli_flow", "tasks": [{"name": "cli_t", "taskReferenceName": "t"}]}
            )
        yield srv


def run(server: Any, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["--insecure", "--addresses", server.grpc_addr, *args])
    return code, capsys.readouterr().out


def test_times_and_durations_parse() -> None:
    assert time_ms("1000") == 1000
    assert time_ms("1970-01-01T00:00:01Z") == 1000
    assert time_ms("1970-01-01T01:00:00+01:00") == 0
    assert duration_ms("7d") == 7 * 86_400_000 and duration_ms("90s") == 90_000
    assert duration_ms("250") == 250
    with pytest.raises(Exception, match="duration"):
        duration_ms("soon")


def test_search_act_in_bulk_and_report_each_workflow(
    server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex
    with OrchestratorClient(server.grpc_addr) as c:
        ids = [c.start_workflow("cli_flow", {"i": i}, correlation_id=tag) for i in range(3)]
    code, out = run(server, capsys, "search", "--correlation-id", tag, "--total", "--json")
    found = json.loads(out)
    assert code == 0 and found["total"] == 3
    assert sorted(w["workflow_id"] for w in found["workflows"]) == sorted(ids)

    code, out = run(server, capsys, "workflow", "pause", ids[0])
    assert code == 0 and "pause: 1 ok, 0 failed" in out
    code, out = run(server, capsys, "search", "--correlation-id", tag, "--status", "PAUSED")
    assert code == 0 and ids[0] in out and ids[1] not in out

    code, out = run(
        server,
        capsys,
        "workflow",
        "terminate",
        "--bulk",
        "--correlation-id",
        tag,
        "--status",
        "RUNNING,PAUSED",
        "--batch-size",
        "2",
        "--json",
    )
    report = json.loads(out)
    assert code == 0 and report["failed"] == 0
    assert sorted(r["workflow_id"] for r in report["results"]) == sorted(ids)

    code, out = run(server, capsys, "workflow", "retry", ids[1], "no-such-workflow")
    assert code == 1
    assert f"{ids[1]}  OK" in out and "no-such-workflow  NOT_FOUND" in out
    code, out = run(server, capsys, "workflow", "terminate", ids[1])
    assert code == 0
    code, out = run(server, capsys, "workflow", "remove", *ids)
    assert code == 0 and "remove: 3 ok, 0 failed" in out
    code, out = run(server, capsys, "search", "--correlation-id", tag, "--total")
    assert code == 0 and "0 shown of 0 matching" in out


def test_a_bounded_total_prints_at_least(
    server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history's count stopped at its bound: the API, client and CLI say "at least"."""
    from orchestrator.history import search

    real = search.History.search

    def bounded(self: Any, *args: Any, **kw: Any) -> Any:
        page = real(self, *args, **kw)
        if page.total >= 0:
            page.total, page.total_at_least = page.total + search.TOTAL_BOUND, True
        return page

    monkeypatch.setattr(search.History, "search", bounded)
    tag = uuid.uuid4().hex
    with OrchestratorClient(server.grpc_addr) as c:
        c.start_workflow("cli_flow", {}, correlation_id=tag)
    code, out = run(server, capsys, "search", "--correlation-id", tag, "--total")
    assert code == 0 and "1 shown of at least 10001 matching" in out
    code, out = run(server, capsys, "search", "--correlation-id", tag, "--total", "--json")
    found = json.loads(out)
    assert (found["total"], found["total_at_least"]) == (10_001, True)


def test_bulk_needs_a_filter(server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="at least one filter"):
        run(server, capsys, "workflow", "terminate", "--bulk")
    with pytest.raises(SystemExit, match="--bulk works for"):
        run(server, capsys, "workflow", "skip-task", "--bulk", "--name", "cli_flow")


def test_execute_and_settings(server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(server, capsys, "execute", "cli_flow", "--input", '{"x": 1}', "--wait", "0.2")
    shown = json.loads(out)
    assert code == 3 and shown["ended"] is False and shown["status"] == "RUNNING"
    code, out = run(server, capsys, "settings", "--retention", "2d", "--max-workflows", "10")
    assert code == 0
    assert json.loads(out) == {"history_retention_ms": 172_800_000, "history_max_workflows": 10}
    code, out = run(server, capsys, "settings")
    assert json.loads(out)["history_max_workflows"] == 10
