"""The client's search, operator, bulk, execute and settings calls, against the scripted fake
server of test_client_unit (each call's request is checked as the server received it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from orchestrator_client import OrchestratorClient
from orchestrator_client.v1 import cluster_pb2, workflows_pb2

from tests.client.test_client_unit import FakeServer, fail, reply, script


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.stop()


@pytest.fixture
def client(server: FakeServer) -> Iterator[OrchestratorClient]:
    c = OrchestratorClient(server.address, timeout_s=2.0, retry_budget_s=5.0)
    yield c
    c.close()


def _wf(wid: str, status: int = workflows_pb2.WORKFLOW_STATUS_FAILED) -> workflows_pb2.Workflow:
    return workflows_pb2.Workflow(workflow_id=wid, workflow_name="flow", status=status)


def test_search_pages_through_with_the_filters_on_every_call(
    server: FakeServer, client: OrchestratorClient
) -> None:
    server.on(
        "SearchWorkflows",
        script(
            reply(
                workflows_pb2.SearchWorkflowsResponse(
                    workflows=[_wf("a"), _wf("b")], next_page_token="t1", total_count=-1
                )
            ),
            reply(workflows_pb2.SearchWorkflowsResponse(workflows=[_wf("c")])),
        ),
    )
    found = list(
        client.search(
            name="flow",
            statuses=["FAILED", "timed_out"],
            failed_task_type="charge",
            text="card declined",
            ended_from_ms=5,
            sort="end_time",
            ascending=True,
            page_size=2,
        )
    )
    assert [w.workflow_id for w in found] == ["a", "b", "c"]
    assert found[0].status == "FAILED"
    calls = server.calls_of("SearchWorkflows")
    assert [c.request.page_token for c in calls] == ["", "t1"]
    for call in calls:
        r = call.request
        assert r.workflow_name == "flow" and r.page_size == 2
        assert list(r.statuses) == [
            workflows_pb2.WORKFLOW_STATUS_FAILED,
            workflows_pb2.WORKFLOW_STATUS_TIMED_OUT,
        ]
        assert (r.failed_task_type, r.text, r.ended_from_ms) == ("charge", "card declined", 5)
        assert r.sort == workflows_pb2.SEARCH_SORT_END_TIME and r.ascending
        assert r.skip_total  # the iterator does not ask for counts


def test_search_stops_at_its_limit_and_a_page_reports_the_total(
    server: FakeServer, client: OrchestratorClient
) -> None:
    server.on(
        "SearchWorkflows",
        reply(
            workflows_pb2.SearchWorkflowsResponse(
                workflows=[_wf("a"), _wf("b")], next_page_token="more", total_count=42
            )
        ),
    )
    assert [w.workflow_id for w in client.search(limit=2)] == ["a", "b"]
    assert len(server.calls_of("SearchWorkflows")) == 1
    page = client.search_workflows(page_size=2, statuses=["RUNNING"])
    assert page.total == 42 and page.next_page_token == "more" and not page.total_at_least
    assert not server.calls_of("SearchWorkflows")[-1].request.skip_total
    with pytest.raises(ValueError, match="unknown status"):
        client.search_workflows(statuses=["DONE"])
    with pytest.raises(ValueError, match="unknown sort"):
        client.search_workflows(sort="name")


def test_a_bounded_total_says_at_least(server: FakeServer, client: OrchestratorClient) -> None:
    server.on(
        "SearchWorkflows",
        reply(workflows_pb2.SearchWorkflowsResponse(total_count=10_000, total_at_least=True)),
    )
    page = client.search_workflows()
    assert (page.total, page.total_at_least) == (10_000, True)


ACTIONS: list[tuple[str, Callable[[OrchestratorClient], None], dict[str, Any]]] = [
    ("PauseWorkflow", lambda c: c.pause_workflow("w1"), {}),
    ("ResumeWorkflow", lambda c: c.resume_workflow("w1"), {}),
    (
        "RestartWorkflow",
        lambda c: c.restart_workflow("w1", use_latest_definition=True),
        {"use_latest_definition": True},
    ),
    (
        "RetryWorkflow",
        lambda c: c.retry_workflow("w1", resume_subworkflow_tasks=True),
        {"resume_subworkflow_tasks": True},
    ),
    (
        "RerunWorkflow",
        lambda c: c.rerun_workflow("w1", task_id="t7", task_input={"x": 1}),
        {"task_id": "t7", "task_input_json": '{"x":1}', "workflow_input_json": ""},
    ),
    (
        "SkipTask",
        lambda c: c.skip_task("w1", "charge", {"skipped": True}),
        {"task_reference_name": "charge", "output_json": '{"skipped":true}'},
    ),
    ("RemoveWorkflow", lambda c: c.remove_workflow("w1"), {}),
    (
        "CompensateWorkflow",
        lambda c: c.compensate_workflow("w1", "fraud"),
        {"reason": "fraud"},
    ),
]


@pytest.mark.parametrize("method, act, fields", ACTIONS, ids=[a[0] for a in ACTIONS])
def test_each_action_sends_its_fields_and_reuses_its_request_id_on_a_retry(
    server: FakeServer,
    client: OrchestratorClient,
    method: str,
    act: Callable[[OrchestratorClient], None],
    fields: dict[str, Any],
) -> None:
    response = getattr(workflows_pb2, f"{method}Response")()
    server.on(method, script(fail(grpc.StatusCode.UNAVAILABLE), reply(response)))
    act(client)
    first, second = server.calls_of(method)
    assert first.request.request_id and first.request.request_id == second.request.request_id
    assert second.request.workflow_id == "w1"
    for name, value in fields.items():
        assert getattr(second.request, name) == value, name


def _bulk_reply(request: Any, context: grpc.ServicerContext) -> Any:
    ids = list(request.workflow_ids) or ["s1", "s2"]
    out = workflows_pb2.BulkActionResponse()
    for wid in ids:
        code = grpc.StatusCode.NOT_FOUND.value[0] if wid.endswith("x") else 0
        out.results.add(workflow_id=wid, code=code, message="gone" if code else "")
    if not request.workflow_ids and request.search.page_token != "p2":
        out.next_page_token = "p2" if not request.search.page_token else ""
    return out


def test_bulk_over_ids_goes_in_batches_and_reports_each_workflow(
    server: FakeServer, client: OrchestratorClient
) -> None:
    server.on("BulkAction", _bulk_reply)
    ids = [f"w{i}" for i in range(249)] + ["wx"]
    results = list(client.bulk_action("terminate", ids, batch_size=100, reason="cleanup"))
    assert [r.workflow_id for r in results] == ids
    assert [r.code for r in results if not r.ok] == ["NOT_FOUND"]
    calls = server.calls_of("BulkAction")
    assert [len(c.request.workflow_ids) for c in calls] == [100, 100, 50]
    assert len({c.request.request_id for c in calls}) == 3
    assert all(
        c.request.action == workflows_pb2.BULK_ACTION_TYPE_TERMINATE
        and c.request.reason == "cleanup"
        for c in calls
    )
    with pytest.raises(ValueError, match="unknown action"):
        list(client.bulk_action("explode", ["w1"]))
    with pytest.raises(ValueError, match="batch_size"):
        list(client.bulk_action("retry", ["w1"], batch_size=1001))


def test_bulk_over_a_search_follows_the_continuation_token(
    server: FakeServer, client: OrchestratorClient
) -> None:
    server.on("BulkAction", _bulk_reply)
    results = list(
        client.bulk_action("retry", filters={"statuses": ["FAILED"], "name": "flow"}, batch_size=2)
    )
    assert len(results) == 4 and all(r.ok for r in results)
    calls = server.calls_of("BulkAction")
    assert [c.request.search.page_token for c in calls] == ["", "p2"]
    assert all(c.request.search.page_size == 2 for c in calls)
    assert all(c.request.search.workflow_name == "flow" for c in calls)
    assert calls[0].request.action == workflows_pb2.BULK_ACTION_TYPE_RETRY


def test_execute_waits_longer_than_one_attempt_and_retries_with_the_same_start(
    server: FakeServer, client: OrchestratorClient
) -> None:
    done = workflows_pb2.ExecuteWorkflowResponse(
        workflow=_wf("w9", workflows_pb2.WORKFLOW_STATUS_COMPLETED), ended=True, created=True
    )
    server.on("ExecuteWorkflow", script(fail(grpc.StatusCode.UNAVAILABLE), reply(done)))
    wf, ended = client.execute_workflow("flow", {"a": 1}, wait_s=3.0, include_tasks=True)
    assert ended and wf.workflow_id == "w9" and wf.status == "COMPLETED"
    first, second = server.calls_of("ExecuteWorkflow")
    assert first.request.start.request_id == second.request.start.request_id != ""
    assert second.request.wait_timeout_ms == 3000 and second.request.include_tasks
    assert second.request.start.name == "flow" and second.request.start.input_json == '{"a":1}'
    with pytest.raises(ValueError, match="wait_s"):
        client.execute_workflow("flow", wait_s=61)


def test_settings_are_read_and_set(server: FakeServer, client: OrchestratorClient) -> None:
    settings = cluster_pb2.ClusterSettings(history_retention_ms=3_600_000, history_max_workflows=9)
    server.on(
        "GetClusterSettings", reply(cluster_pb2.GetClusterSettingsResponse(settings=settings))
    )
    server.on(
        "SetHistoryRetention", reply(cluster_pb2.SetHistoryRetentionResponse(settings=settings))
    )
    assert client.cluster_settings() == {
        "history_retention_ms": 3_600_000,
        "history_max_workflows": 9,
    }
    assert client.set_history_retention(3_600_000, 9)["history_max_workflows"] == 9
    (call,) = server.calls_of("SetHistoryRetention")
    assert (call.request.retention_ms, call.request.max_workflows) == (3_600_000, 9)
    assert call.request.request_id
