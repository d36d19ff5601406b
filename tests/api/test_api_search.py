"""SearchWorkflows, ListWorkflows and GetWorkflow over memory and the durable history of one
replica (the fake replica with the server's real History on a tmp folder).

The in-memory window is cut to a few ended workflows for this module, so most of the ended
workflows below live only in history: every filter, sort and page must find them there as well
as in memory, and every answer is checked against what the test itself made.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from orchestrator_client import NotFoundError, OrchestratorClient, Workflow
from orchestrator_client.v1 import workflows_pb2 as wpb

from orchestrator.core import limits
from orchestrator.server import ReplicaServer
from tests.cluster_support import api_stubs, wait_for

WINDOW = 3  # ended workflows kept in memory here


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[ReplicaServer]:
    from tests.fakes import fake_server

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(limits, "MAX_TERMINAL_WORKFLOWS", WINDOW)
        with fake_server(tmp_path_factory.mktemp("search")) as srv:
            yield srv


@pytest.fixture(scope="module")
def client(server: ReplicaServer) -> Iterator[OrchestratorClient]:
    assert server.node.history is not None
    c = OrchestratorClient(server.grpc_addr, timeout_s=5.0, retry_budget_s=10.0)
    c.register_task_defs(
        [{"name": n, "retryCount": 0, "responseTimeoutSeconds": 60} for n in ("s_pay", "s_ship")]
    )
    for version, task in ((1, "s_pay"), (2, "s_ship")):
        c.register_workflow_def(
            {
                "name": "s_flow",
                "version": version,
                "tasks": [{"name": task, "taskReferenceName": "t"}],
            }
        )
    c.register_workflow_def(
        {"name": "s_other", "tasks": [{"name": "s_pay", "taskReferenceName": "t"}]}
    )
    yield c
    c.close()


def _finish(c: OrchestratorClient, wid: str, how: str) -> None:
    wf = c.get_workflow(wid)
    task_type = wf.task_by_ref("t").task_type
    for _ in range(50):
        for t in c.poll_tasks(task_type, worker_id="s", count=100, timeout_ms=0):
            if t.workflow_id != wid:
                c.complete_task(t.task_id, {}, worker_id="s")
                continue
            if how == "COMPLETED":
                c.complete_task(t.task_id, {"ok": True}, worker_id="s")
            else:
                c.fail_task(t.task_id, how, terminal=True, worker_id="s")
            return
    raise AssertionError(f"no task for {wid}")


@pytest.fixture(scope="module")
def made(client: OrchestratorClient, server: ReplicaServer) -> dict[str, Workflow]:
    """Twelve workflows of one correlation id: completed, failed with a reason, terminated and
    running, of two names and two versions; most ended ones archived."""
    tag = f"s-{uuid.uuid4().hex}"
    plan = [
        ("s_flow", 1, "COMPLETED"),
        ("s_flow", 1, "insufficient funds on the card"),
        ("s_flow", 2, "COMPLETED"),
        ("s_flow", 2, "address unknown to the carrier"),
        ("s_other", 1, "card expired"),
        ("s_flow", 1, "TERMINATED"),
        ("s_flow", 2, "RUNNING"),
        ("s_other", 1, "COMPLETED"),
        ("s_flow", 1, "funds frozen by the bank"),
        ("s_flow", 2, "TERMINATED"),
        ("s_other", 1, "RUNNING"),
        ("s_flow", 1, "COMPLETED"),
    ]
    ids = []
    for name, version, how in plan:
        wid = client.start_workflow(name, {"how": how}, version=version, correlation_id=tag)
        ids.append(wid)
        if how == "TERMINATED":
            client.terminate_workflow(wid, "stopped by the test")
        elif how != "RUNNING":
            _finish(client, wid, how)
    out = {wid: client.get_workflow(wid) for wid in ids}
    archived = server.replica.read(lambda st: [w for w in ids if w not in st.workflows])
    assert len(archived) >= 6, "the module is about archived workflows"
    return {"tag": tag, **out}  # type: ignore[dict-item]


def _wfs(made: dict[str, Any]) -> list[Workflow]:
    return [w for k, w in made.items() if k != "tag"]


def _ids(found: Any) -> list[str]:
    return [w.workflow_id for w in found]


def _expect(made: dict[str, Any], keep: Any) -> list[str]:
    """Newest first, as search sorts by default."""
    chosen = [w for w in _wfs(made) if keep(w)]
    chosen.sort(key=lambda w: (w.create_time_ms, w.workflow_id), reverse=True)
    return [w.workflow_id for w in chosen]


FILTERS: list[tuple[str, dict[str, Any], Any]] = [
    ("all", {}, lambda w: True),
    ("name", {"name": "s_other"}, lambda w: w.workflow_name == "s_other"),
    (
        "name+version",
        {"name": "s_flow", "version": 2},
        lambda w: w.workflow_name == "s_flow" and w.workflow_version == 2,
    ),
    (
        "statuses",
        {"statuses": ["FAILED", "TERMINATED"]},
        lambda w: w.status in ("FAILED", "TERMINATED"),
    ),
    (
        "failed task type",
        {"failed_task_type": "s_pay"},
        lambda w: w.status == "FAILED" and w.task_by_ref("t").task_type == "s_pay",
    ),
    (
        "text",
        {"text": "funds"},
        lambda w: "funds" in w.reason_for_incompletion.split(),
    ),
    (
        "two words",
        {"text": "card funds"},
        lambda w: {"card", "funds"} <= set(w.reason_for_incompletion.split()),
    ),
]


@pytest.mark.parametrize("label, filters, keep", FILTERS, ids=[f[0] for f in FILTERS])
def test_each_filter_finds_exactly_its_matches_in_memory_and_history(
    client: OrchestratorClient, made: dict[str, Any], label: str, filters: dict[str, Any], keep: Any
) -> None:
    want = _expect(made, keep)
    assert want or label == "two words"
    page = client.search_workflows(correlation_id=made["tag"], page_size=100, **filters)
    assert _ids(page.workflows) == want
    assert page.total == len(want) and page.next_page_token == ""


def test_time_ranges_bound_the_matches(client: OrchestratorClient, made: dict[str, Any]) -> None:
    wfs = sorted(_wfs(made), key=lambda w: (w.create_time_ms, w.workflow_id))
    lo, hi = wfs[3].create_time_ms, wfs[8].create_time_ms
    found = client.search_workflows(
        correlation_id=made["tag"], created_from_ms=lo, created_to_ms=hi, page_size=100
    )
    assert _ids(found.workflows) == _expect(made, lambda w: lo <= w.create_time_ms < hi)
    ended = sorted(w.end_time_ms for w in wfs if w.end_time_ms)
    lo, hi = ended[1], ended[-1]
    found = client.search_workflows(
        correlation_id=made["tag"], ended_from_ms=lo, ended_to_ms=hi, page_size=100
    )
    assert _ids(found.workflows) == _expect(made, lambda w: lo <= w.end_time_ms < hi)


@pytest.mark.parametrize("sort, ascending", [("create_time", False), ("end_time", True)])
def test_pages_cover_every_match_once_in_order(
    client: OrchestratorClient, made: dict[str, Any], sort: str, ascending: bool
) -> None:
    seen: list[Workflow] = []
    token = ""
    while True:
        page = client.search_workflows(
            correlation_id=made["tag"],
            sort=sort,
            ascending=ascending,
            page_size=5,
            page_token=token,
        )
        assert page.total == len(_wfs(made))
        assert len(page.workflows) <= 5
        seen.extend(page.workflows)
        if not page.next_page_token:
            break
        token = page.next_page_token
    field = "create_time_ms" if sort == "create_time" else "end_time_ms"
    keys = [(getattr(w, field), w.workflow_id) for w in seen]
    assert keys == sorted(keys, reverse=not ascending)
    assert sorted(_ids(seen)) == sorted(w.workflow_id for w in _wfs(made))


def test_a_page_token_of_another_sort_or_listing_is_refused(
    server: ReplicaServer, client: OrchestratorClient, made: dict[str, Any]
) -> None:
    page = client.search_workflows(correlation_id=made["tag"], page_size=2)
    with grpc.insecure_channel(server.grpc_addr) as ch:
        wfs = api_stubs(ch).wfs
        for request, field in (
            (wpb.SearchWorkflowsRequest(page_token=page.next_page_token, sort=2), "page_token"),
            (wpb.SearchWorkflowsRequest(page_token="bm90IGEgdG9rZW4"), "page_token"),
            (wpb.SearchWorkflowsRequest(page_size=1001), "page_size"),
            (wpb.SearchWorkflowsRequest(statuses=[99]), "statuses[0]"),
            (wpb.SearchWorkflowsRequest(created_from_ms=-1), "created_from_ms"),
            (wpb.SearchWorkflowsRequest(sort=7), "sort"),
        ):
            with pytest.raises(grpc.RpcError) as err:
                wfs.SearchWorkflows(request, timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details().startswith(field), err.value.details()
        skipped = wfs.SearchWorkflows(wpb.SearchWorkflowsRequest(skip_total=True), timeout=5)
        assert skipped.total_count == -1


def test_list_and_get_reach_archived_workflows(
    server: ReplicaServer, client: OrchestratorClient, made: dict[str, Any]
) -> None:
    archived = server.replica.read(
        lambda st: [w for w in _wfs(made) if w.workflow_id not in st.workflows]
    )
    for wf in archived:
        got = client.get_workflow(wf.workflow_id)
        assert got == wf  # the same record, tasks and all, as when it was in memory
    listed = client.list_workflows(name="s_other", limit=1000)
    assert set(_expect(made, lambda w: w.workflow_name == "s_other")) <= set(_ids(listed))
    failed = client.list_workflows(status="FAILED", limit=1000)
    assert set(_expect(made, lambda w: w.status == "FAILED")) <= set(_ids(failed))


def test_a_search_sees_the_callers_own_writes_at_once(client: OrchestratorClient) -> None:
    for _ in range(5):
        tag = uuid.uuid4().hex
        wid = client.start_workflow("s_other", {}, correlation_id=tag)
        assert _ids(client.search(correlation_id=tag)) == [wid]
        client.terminate_workflow(wid, "seen")
        assert [w.status for w in client.search(correlation_id=tag)] == ["TERMINATED"]


def test_bulk_retry_over_a_search_brings_archived_workflows_back(
    server: ReplicaServer, client: OrchestratorClient
) -> None:
    tag = f"b-{uuid.uuid4().hex}"
    ids = []
    for i in range(WINDOW + 3):
        wid = client.start_workflow("s_other", {"i": i}, correlation_id=tag)
        _finish(client, wid, f"declined number {i}")
        ids.append(wid)
    # Push them all out of memory.
    for _ in range(WINDOW):
        client.terminate_workflow(client.start_workflow("s_other", {}), "filler")
    assert server.replica.read(lambda st: [w for w in ids if w in st.workflows]) == []
    results = list(
        client.bulk_action(
            "retry", filters={"correlation_id": tag, "statuses": ["FAILED"]}, batch_size=2
        )
    )
    assert sorted(r.workflow_id for r in results) == sorted(ids) and all(r.ok for r in results)
    for wid in ids:
        wf = client.get_workflow(wid)
        assert wf.status == "RUNNING" and wf.task_by_ref("t").retry_count == 1
    assert client.search_workflows(correlation_id=tag, statuses=["FAILED"]).total == 0
    results = list(client.bulk_action("terminate", ids))
    assert all(r.ok for r in results)


def test_remove_deletes_an_archived_workflow_from_search(
    server: ReplicaServer, client: OrchestratorClient
) -> None:
    tag = f"r-{uuid.uuid4().hex}"
    wid = client.start_workflow("s_other", {}, correlation_id=tag)
    client.terminate_workflow(wid, "to be removed")
    for _ in range(WINDOW + 1):
        client.terminate_workflow(client.start_workflow("s_other", {}), "filler")
    wait_for(lambda: server.replica.read(lambda st: wid not in st.workflows), 5, "archived")
    assert _ids(client.search(correlation_id=tag)) == [wid]
    client.remove_workflow(wid)
    assert _ids(client.search(correlation_id=tag)) == []
    with pytest.raises(NotFoundError):
        client.get_workflow(wid)


def test_workflow_ids_grow_even_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.api import ids

    clock = iter([5_000, 5_000, 4_000, 6_000] + [6_000] * 5000)
    monkeypatch.setattr(ids, "_CLOCK", ids._Clock())
    monkeypatch.setattr(ids.time, "time_ns", lambda: next(clock) * 1_000_000)
    made = [ids.new_workflow_id() for _ in range(4 + 5000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(uuid.UUID(w).version == 7 for w in made)
    # More than 4,096 ids in the millisecond 6000: the last ones borrow the next one.
    assert uuid.UUID(made[-1]).int >> 80 == 6_001
