"""The demo `make run` runs (orchestrator/tools/demo.py) against one replica in this process:
the orchestrated order workflow, and the choreographed order saga to its end."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import STDOUT
from typing import Any

import pytest
from orchestrator_client import OrchestratorClient

from orchestrator.tools import demo
from orchestrator.tools.localcluster import write_config
from tests.fakes import fake_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[Any]:
    with fake_server(tmp_path_factory.mktemp("demo")) as srv:
        yield srv


def test_the_inventory_answers_each_order_with_its_key_and_an_idempotent_request_id() -> None:
    event = {"offset": 41, "payload": {"orderId": "o-1", "items": ["book", "pen"]}}
    answer, key, request_id = demo.inventory_answer(event)
    assert (key, request_id) == ("o-1", "inventory-41")
    assert answer == {
        "orderId": "o-1",
        "status": "reserved",
        "reservationId": "res-o-1",
        "total": 39.0,
    }
    event = {"offset": 42, "payload": {"orderId": "o-2", "items": ["unicorn", "book"]}}
    answer, key, request_id = demo.inventory_answer(event)
    assert answer == {"orderId": "o-2", "status": "out_of_stock", "missing": ["unicorn"]}
    assert (key, request_id) == ("o-2", "inventory-42")


def test_the_order_saga_runs_to_its_end(server: Any) -> None:
    with OrchestratorClient(server.grpc_addr, retry_budget_s=30.0) as client:
        demo.register(client)
        worker = demo.build_worker(client, random.Random(7))
        worker.start()
        inventory = demo.start_inventory(client)
        try:
            wfs = demo.run_saga(client, 3, timeout_s=60)
        finally:
            inventory.stop()
            worker.stop()
        assert [wf.status for wf in wfs] == ["COMPLETED"] * 3, [
            wf.reason_for_incompletion for wf in wfs
        ]
        shipped, rejected = wfs[:2], wfs[2]
        for wf in shipped:
            order = wf.input["orderId"]
            assert wf.output["outcome"] == "shipped"
            assert wf.output["reservationId"] == f"res-{order}"
            assert wf.output["trackingNumber"].startswith("TRK")
            inventory_task = wf.task_by_ref("inventory")
            assert inventory_task is not None and inventory_task.status == "COMPLETED"
            assert inventory_task.output["correlationKey"] == order
        assert rejected.output == {"outcome": "rejected", "missing": ["unicorn"]}
        assert rejected.task_by_ref("charge") is None

        # Each order.created was answered once, and each answer completed its saga's wait.
        events = client.read_events(0, 1000)
        for wf in wfs:
            order = wf.input["orderId"]
            created = [e for e in events if e["name"] == "order.created"]
            assert sum(e["payload"]["orderId"] == order for e in created) == 1
            answers = [
                e
                for e in events
                if e["name"] == "inventory.reserved" and e["correlation_key"] == order
            ]
            assert len(answers) == 1, answers
            waited = wf.task_by_ref("inventory")
            assert waited is not None and answers[0]["offset"] == waited.output["offset"]


def test_run_demo_runs_both_demos_and_stops_its_consumer(
    server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    demo.run_demo(server.access, workflows=2)
    out = capsys.readouterr().out
    assert "== orchestration" in out and "== choreography" in out
    finals = [line for line in out.splitlines() if " output=" in line]
    assert len(finals) == 2 + 2
    assert all(" COMPLETED " in line for line in finals), finals
    assert sum('"outcome": "rejected"' in line for line in finals) == 1


@pytest.mark.cluster
def test_make_runs_local_cluster_with_the_demo_runs_both_parts(tmp_path: Path) -> None:
    """What `make run` does (`orchestrator local-cluster --demo`), on a TLS cluster with tokens
    on free ports: both demos end, then Ctrl-C stops it."""
    config = write_config(str(tmp_path / "cluster.json"), secure=True)
    out = tmp_path / "out.txt"
    cmd = [sys.executable, "-m", "orchestrator", "local-cluster", "--config", config, "--demo"]
    proc = subprocess.Popen([*cmd, "--workflows", "2"], stdout=open(out, "wb"), stderr=STDOUT)
    try:
        deadline = time.monotonic() + 150
        while "keeps running until Ctrl-C" not in out.read_text(errors="replace"):
            assert proc.poll() is None, out.read_text(errors="replace")
            assert time.monotonic() < deadline, out.read_text(errors="replace")
            time.sleep(0.2)
        text = out.read_text(errors="replace")
        finals = [line for line in text.splitlines() if " output=" in line]
        assert len(finals) == 4 and all(" COMPLETED " in line for line in finals), text
        assert sum('"outcome": "rejected"' in line for line in finals) == 1, text
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
