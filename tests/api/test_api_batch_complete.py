"""CompleteTasks: several results in one call, each deduplicated and judged on its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from orchestrator_client import OrchestratorClient, Worker
from orchestrator_client.errors import FailedPreconditionError, NotFoundError

from tests.cluster_support import History, wait_for


@pytest.fixture(scope="module")
def client(server: Any) -> Iterator[OrchestratorClient]:
    c = OrchestratorClient([server.grpc_addr], retry_budget_s=10)
    c.register_task_defs([{"name": "batch_t", "retryCount": 0, "responseTimeoutSeconds": 60}])
    c.register_workflow_def(
        {
            "name": "batch_flow",
            "tasks": [
                {
                    "name": "batch_t",
                    "taskReferenceName": "a",
                    "inputParameters": {"k": "${workflow.input.k}"},
                }
            ],
            "outputParameters": {"v": "${a.output.v}"},
        }
    )
    try:
        yield c
    finally:
        c.close()


def _leased(client: OrchestratorClient, n: int) -> list[Any]:
    got: list[Any] = []
    wait_for(
        lambda: (
            got.extend(client.poll_tasks("batch_t", worker_id="w", count=n, timeout_ms=200))
            or len(got) >= n
        ),
        30,
        f"{n} leased tasks",
    )
    return got


def test_each_result_is_judged_alone_and_a_retry_is_deduplicated(
    client: OrchestratorClient,
) -> None:
    wids = [client.start_workflow("batch_flow", {"k": i}) for i in range(3)]
    t0, t1, t2 = sorted(_leased(client, 3), key=lambda t: t.input["k"])
    client.complete_task(t2.task_id, {"v": "first"}, worker_id="w")  # t2 is done already
    results = [
        (t0.task_id, {"v": 0}),
        ("no-such-task", {}),
        (t1.task_id, {"v": 1}),
        (t2.task_id, {"v": 2}),
    ]
    rids = ["b-0", "b-1", "b-2", "b-3"]
    errors = client.complete_tasks(results, worker_id="w", request_ids=rids)
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], NotFoundError)
    assert isinstance(errors[3], FailedPreconditionError), "a late result is refused alone"
    outputs = [client.get_workflow(w).output for w in wids]
    assert outputs == [{"v": 0}, {"v": 1}, {"v": "first"}]
    # The same batch again (a retry after a lost answer): the same verdicts, nothing re-applied.
    again = client.complete_tasks(results, worker_id="w", request_ids=rids)
    assert [type(e) for e in again] == [type(e) for e in errors]
    assert [client.get_workflow(w).output for w in wids] == outputs


def test_the_worker_reports_through_batches_and_records_each_result(
    client: OrchestratorClient,
) -> None:
    history = History()
    wclient = OrchestratorClient(client.addresses, retry_budget_s=10, recorder=history)
    wids = [client.start_workflow("batch_flow", {"k": i}) for i in range(40)]
    worker = Worker(wclient, worker_id="batcher", concurrency=8, poll_timeout_ms=200)
    worker.register("batch_t", lambda t: {"v": t.input["k"] * 10})
    worker.start()
    try:
        done = wait_for(
            lambda: all(client.get_workflow(w).is_terminal for w in wids),
            60,
            "every workflow to complete",
        )
        assert done
    finally:
        worker.stop(timeout_s=10)
        wclient.close()
    assert [client.get_workflow(w).output for w in wids] == [{"v": i * 10} for i in range(40)]
    oks = history.by_request("CompleteTask")
    assert len(oks) == 40 and all(events == ["invoke", "ok"] for events in oks.values())
    assert worker.stats.completed == 40
    batcher = worker._batcher
    assert batcher is not None and not batcher._unbatched, "the server took CompleteTasks"
