"""Sagas over the gRPC API of one replica (the fake replica: real servicers and core, no Raft):
a failure compensates, CompensateWorkflow stops and compensates, BulkAction compensates, and the
client sees COMPENSATING and COMPENSATED."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from orchestrator_client import FailedPreconditionError, OrchestratorClient

from orchestrator.server import ReplicaServer
from tests.cluster_support import wait_for

SAGA = "api_saga"


@pytest.fixture(scope="module")
def client(server: ReplicaServer) -> Iterator[OrchestratorClient]:
    c = OrchestratorClient(server.grpc_addr, timeout_s=5.0, retry_budget_s=10.0)
    c.register_task_defs(
        [
            {"name": n, "retryCount": 0, "responseTimeoutSeconds": 60}
            for n in ("saga_book", "saga_pay", "saga_undo")
        ]
    )
    c.register_workflow_def(
        {
            "name": SAGA,
            "tasks": [
                {
                    "name": "saga_book",
                    "taskReferenceName": "book",
                    "compensateWith": {
                        "name": "saga_undo",
                        "taskReferenceName": "unbook",
                        "inputParameters": {"booking": "${compensated.output.booking}"},
                    },
                },
                {"name": "saga_pay", "taskReferenceName": "pay"},
            ],
        }
    )
    yield c
    c.close()


def _poll_for(c: OrchestratorClient, wid: str, task_type: str) -> str:
    """The task of `wid` of the type (others' tasks of the type are completed out of the way)."""
    for _ in range(50):
        for t in c.poll_tasks(task_type, worker_id="w", count=100, timeout_ms=0):
            if t.workflow_id == wid:
                return str(t.task_id)
            c.complete_task(t.task_id, {}, worker_id="w")
    raise AssertionError(f"no {task_type} task of {wid}")


def _booked(c: OrchestratorClient) -> str:
    wid = c.start_workflow(SAGA, {})
    c.complete_task(_poll_for(c, wid, "saga_book"), {"booking": "B7"}, worker_id="w")
    return wid


def _undo(c: OrchestratorClient, wid: str) -> None:
    undo = _poll_for(c, wid, "saga_undo")
    assert c.get_workflow(wid).task_by_ref("unbook").input == {"booking": "B7"}
    c.complete_task(undo, {}, worker_id="w")
    wait_for(lambda: c.get_workflow(wid).status == "COMPENSATED", 10, "the saga to end")


def test_a_failure_compensates_then_ends_compensated(client: OrchestratorClient) -> None:
    wid = _booked(client)
    client.fail_task(_poll_for(client, wid, "saga_pay"), "declined", worker_id="w", terminal=True)
    wf = client.get_workflow(wid)
    assert wf.status == "COMPENSATING" and not wf.is_terminal
    _undo(client, wid)
    wf = client.get_workflow(wid)
    assert wf.is_terminal and "declined" in wf.reason_for_incompletion
    found = client.search_workflows(name=SAGA, statuses=["COMPENSATED"], page_size=100)
    assert wid in [w.workflow_id for w in found.workflows]


def test_compensate_stops_a_running_workflow_and_is_refused_once_compensated(
    client: OrchestratorClient,
) -> None:
    wid = _booked(client)
    client.compensate_workflow(wid, "customer cancelled")
    client.compensate_workflow(wid)  # compensating: nothing changes
    wf = client.get_workflow(wid)
    assert wf.status == "COMPENSATING" and wf.reason_for_incompletion == "customer cancelled"
    assert wf.task_by_ref("pay").status == "CANCELED"
    _undo(client, wid)
    with pytest.raises(FailedPreconditionError, match="COMPENSATED"):
        client.compensate_workflow(wid)


def test_bulk_compensate_reports_each_workflow(client: OrchestratorClient) -> None:
    wid = _booked(client)
    plain = client.start_workflow(SAGA, {})  # nothing completed: stopped, TERMINATED
    results = {r.workflow_id: r.code for r in client.bulk_action("compensate", [wid, plain])}
    assert results == {wid: "OK", plain: "OK"}
    assert client.get_workflow(plain).status == "TERMINATED"
    _undo(client, wid)


def test_the_cli_compensates(
    server: ReplicaServer, client: OrchestratorClient, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.cli import main

    wid = _booked(client)
    args = ["workflow", "compensate", wid, "--reason", "from the CLI"]
    code = main(["--insecure", "--addresses", server.grpc_addr, *args])
    assert code == 0 and "compensate: 1 ok, 0 failed" in capsys.readouterr().out
    wf = client.get_workflow(wid)
    assert (wf.status, wf.reason_for_incompletion) == ("COMPENSATING", "from the CLI")
    _undo(client, wid)
