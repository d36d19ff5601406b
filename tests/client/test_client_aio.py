"""The asyncio client (orchestrator_client.aio): the worker protocol, starts and events against
a one-replica server; failover (leader hints, UNAVAILABLE retried with the same request id)
against scripted fake replicas and, with the leader killed, a real three-replica cluster."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import grpc
import pytest
from orchestrator_client import (
    FailedPreconditionError,
    NotFoundError,
    OrchestratorClient,
    OrchestratorError,
    UnavailableError,
)
from orchestrator_client.aio import AsyncOrchestratorClient
from orchestrator_client.v1 import events_pb2, tasks_pb2, workflows_pb2

from tests.client.test_client_unit import (
    LEADER_KEY,
    MIN_SEQ_KEY,
    FakeServer,
    fail,
    reply,
    script,
    started,
)
from tests.cluster_support import History, make_cluster, wait_for
from tests.fakes import fake_server
from tests.security.security_support import secure_fake

_T = TypeVar("_T")

TASK_DEF = {"name": "aio_t", "retryCount": 0, "responseTimeoutSeconds": 60}
WORKFLOW = {
    "name": "aio_flow",
    "tasks": [
        {"name": "aio_t", "taskReferenceName": "a", "inputParameters": {"k": "${workflow.input.k}"}}
    ],
    "outputParameters": {"v": "${a.output.v}"},
}
# A workflow of its own for the batch test: its polls see no other test's tasks.
BATCH_TASK = dict(TASK_DEF, name="aio_b")
BATCH_FLOW = {**WORKFLOW, "name": "aio_batch", "tasks": [{**WORKFLOW["tasks"][0], "name": "aio_b"}]}
WAITING = {"name": "aio_wait", "tasks": [{"name": "w", "taskReferenceName": "w", "type": "WAIT"}]}


def run(
    make: Callable[[AsyncOrchestratorClient], Coroutine[Any, Any, _T]], *a: Any, **kw: Any
) -> _T:
    """Runs ``make(client)`` on a fresh event loop with a client made of ``a`` and ``kw``."""

    async def main() -> _T:
        async with AsyncOrchestratorClient(*a, **kw) as client:
            return await make(client)

    return asyncio.run(main())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with fake_server(tmp_path_factory.mktemp("aio")) as srv:
        with OrchestratorClient([srv.grpc_addr], retry_budget_s=10) as c:
            c.register_task_defs([TASK_DEF, BATCH_TASK])
            for definition in (WORKFLOW, BATCH_FLOW, WAITING):
                c.register_workflow_def(definition)
        yield srv


# --------------------------------------------------------------------------------------------
# Against a one-replica server


def test_a_workflow_runs_through_the_asyncio_client(server: Any) -> None:
    async def flow(client: AsyncOrchestratorClient) -> tuple[str, str, list[str], Any]:
        wid = await client.start_workflow("aio_flow", {"k": 7}, correlation_id="aio")
        running = await client.get_workflow(wid)
        tasks = await client.poll_tasks("aio_t", worker_id="w-aio", count=5, timeout_ms=2000)
        for task in tasks:
            await client.complete_task(task.task_id, {"v": task.input["k"] * 2}, worker_id="w-aio")
        done = await client.get_workflow(wid)
        return running.status, done.status, [t.workflow_id for t in tasks], (wid, done)

    running, status, polled, (wid, done) = run(flow, server.grpc_addr)
    assert running == "RUNNING"
    assert polled == [wid]
    assert status == "COMPLETED"
    assert done.output == {"v": 14} and done.correlation_id == "aio"


def test_fail_task_and_errors_are_the_sync_clients(server: Any) -> None:
    async def flow(client: AsyncOrchestratorClient) -> tuple[str, type[BaseException]]:
        wid = await client.start_workflow("aio_flow", {"k": 1})
        (task,) = await client.poll_tasks("aio_t", worker_id="w-aio", timeout_ms=2000)
        await client.fail_task(task.task_id, "boom", terminal=True, worker_id="w-aio")
        failed = await client.get_workflow(wid)
        try:
            await client.get_workflow("no-such-workflow")
        except NotFoundError as exc:
            return failed.status, type(exc)
        raise AssertionError("NOT_FOUND expected")

    status, error = run(flow, server.grpc_addr)
    assert status == "FAILED"
    assert error is NotFoundError


def test_publish_event_retried_with_its_request_id_returns_the_first_offset(server: Any) -> None:
    async def flow(client: AsyncOrchestratorClient) -> list[int]:
        first = await client.publish_event("aio.evt", {"a": 1}, request_id="aio-evt-1")
        again = await client.publish_event("aio.evt", {"a": 1}, request_id="aio-evt-1")
        other = await client.publish_event("aio.evt", {"a": 2})
        return [first, again, other]

    first, again, other = run(flow, server.grpc_addr)
    assert first >= 1 and again == first and other > first


def test_the_client_reads_its_own_writes_through_the_sequence(server: Any) -> None:
    async def flow(client: AsyncOrchestratorClient) -> tuple[int, int]:
        before = client.last_sequence
        await client.start_workflow("aio_flow", {"k": 2})
        return before, client.last_sequence

    before, after = run(flow, server.grpc_addr)
    assert before == 0 and after > 0


def test_batch_starts_list_search_and_batch_completions(server: Any) -> None:
    async def flow(client: AsyncOrchestratorClient) -> dict[str, Any]:
        starts = [("aio_batch", {"k": k}) for k in range(3)] + [("no_such_flow", {})]
        *ids, missing = await client.start_workflows(starts, correlation_id="aio-batch")
        listed = await client.list_workflows(name="aio_batch", status="RUNNING", limit=1000)
        page = await client.search_workflows(correlation_id="aio-batch", page_size=2)
        found = [wf.workflow_id async for wf in client.search(correlation_id="aio-batch")]
        tasks = await client.poll_tasks("aio_b", worker_id="w-aio", count=3, timeout_ms=2000)
        results = [(t.task_id, {"v": t.input["k"]}) for t in tasks]
        first = await client.complete_tasks(results, worker_id="w-aio")
        again = await client.complete_tasks(results, worker_id="w-aio")
        done = [await client.wait_for_workflow(str(w), timeout_s=10) for w in ids]
        return dict(
            ids=ids, missing=missing, listed={w.workflow_id for w in listed}, page=page,
            found=found, polled={t.workflow_id for t in tasks}, first=first, again=again,
            done=done,
        )  # fmt: skip

    out = run(flow, server.grpc_addr)
    ids = out["ids"]
    assert all(isinstance(i, str) and i for i in ids)
    assert isinstance(out["missing"], NotFoundError)
    assert set(ids) <= out["listed"]
    assert out["page"].total == 3 and len(out["page"].workflows) == 2
    assert out["page"].next_page_token
    assert sorted(out["found"]) == sorted(ids)
    assert out["polled"] == set(ids)
    assert out["first"] == [None] * 3
    # Reported again under new request ids: refused one by one (the tasks have ended).
    assert all(isinstance(e, OrchestratorError) for e in out["again"])
    assert [wf.status for wf in out["done"]] == ["COMPLETED"] * 3
    assert sorted(wf.output["v"] for wf in out["done"]) == [0, 1, 2]


def test_the_operators_actions(server: Any) -> None:
    async def flow(client: AsyncOrchestratorClient) -> list[str]:
        wid = await client.start_workflow("aio_flow", {"k": 1})
        seen = []

        async def status() -> None:
            seen.append((await client.get_workflow(wid, include_tasks=False)).status)

        await client.pause_workflow(wid)
        await status()
        await client.resume_workflow(wid)
        await status()
        await client.terminate_workflow(wid, "enough")
        await status()
        await client.retry_workflow(wid)
        await status()
        await client.terminate_workflow(wid)
        await client.restart_workflow(wid, use_latest_definition=True)
        await status()
        try:
            await client.resume_workflow(wid)
        except FailedPreconditionError:
            seen.append("refused")
        return seen

    assert run(flow, server.grpc_addr) == [
        "PAUSED",
        "RUNNING",
        "TERMINATED",
        "RUNNING",
        "RUNNING",
        "refused",
    ]


def test_definitions_heartbeats_and_signals(server: Any) -> None:
    async def flow(client: AsyncOrchestratorClient) -> tuple[Any, ...]:
        names = await client.register_task_defs([dict(TASK_DEF, description="aio")])
        task_def = await client.get_task_def("aio_t")
        registered = await client.register_workflow_def(dict(WAITING, version=2))
        definition = await client.get_workflow_def("aio_wait")
        await client.start_workflow("aio_flow", {"k": 3})
        # Any test's aio_t task (this module's tests share the server).
        (task,) = await client.poll_tasks("aio_t", worker_id="w-aio", timeout_ms=2000)
        lease = await client.heartbeat_task(task.task_id, worker_id="w-aio")
        await client.complete_task(task.task_id, {"v": 3}, worker_id="w-aio")
        waiting = await client.start_workflow("aio_wait")
        await client.signal_task(waiting, "w", {"approved": True})
        failing = await client.start_workflow("aio_wait")
        await client.signal_task(failing, "w", failed=True, reason="rejected")
        return (
            names,
            task_def["description"],
            registered,
            definition["version"],
            lease > task.lease_expires_ms - 1,
            (await client.wait_for_workflow(task.workflow_id, timeout_s=10)).status,
            await client.wait_for_workflow(waiting, timeout_s=10),
            await client.wait_for_workflow(failing, timeout_s=10),
        )

    names, description, registered, version, renewed, status, signalled, failed = run(
        flow, server.grpc_addr
    )
    assert names == ["aio_t"] and description == "aio"
    assert registered == ("aio_wait", 2) and version == 2
    assert renewed and status == "COMPLETED"
    assert signalled.status == "COMPLETED" and signalled.tasks[0].output == {"approved": True}
    assert failed.status == "FAILED" and failed.tasks[0].reason_for_incompletion == "rejected"


def test_a_token_is_sent_over_tls(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="only over TLS"):
        AsyncOrchestratorClient("127.0.0.1:1", token="secret")
    with secure_fake(tmp_path) as srv:
        addr, creds, token = srv.grpc_addr, srv.access.credentials(), srv.access.bearer()
        assert creds is not None and token

        async def read(client: AsyncOrchestratorClient) -> OrchestratorError:
            try:
                await client.get_task_def("nothing")
            except OrchestratorError as exc:
                return exc
            raise AssertionError("an error expected")

        # Authenticated: the server looked and found nothing.
        assert type(run(read, addr, credentials=creds, token=token)) is NotFoundError
        refused = run(read, addr, credentials=creds, retry_budget_s=0)
        assert refused.code == grpc.StatusCode.UNAUTHENTICATED


# --------------------------------------------------------------------------------------------
# Failover against scripted replicas


@pytest.fixture
def make_server() -> Iterator[Callable[[], FakeServer]]:
    servers: list[FakeServer] = []

    def make() -> FakeServer:
        servers.append(FakeServer())
        return servers[-1]

    yield make
    for fake in servers:
        fake.stop()


def test_unavailable_is_retried_with_the_same_request_id(
    make_server: Callable[[], FakeServer],
) -> None:
    fake = make_server()
    fake.on(
        "StartWorkflow",
        script(fail(grpc.StatusCode.UNAVAILABLE, "electing"), started("wf-a")),
    )
    wid = run(lambda c: c.start_workflow("order", {"q": 1}), fake.address)
    assert wid == "wf-a"
    calls = fake.calls_of("StartWorkflow")
    assert len(calls) == 2
    assert calls[0].request.request_id == calls[1].request.request_id != ""
    assert json.loads(calls[1].request.input_json) == {"q": 1}


def test_a_batch_is_retried_item_by_item_with_the_same_request_ids(
    make_server: Callable[[], FakeServer],
) -> None:
    fake = make_server()
    ok = tasks_pb2.ItemStatus(code=0)
    lost = tasks_pb2.ItemStatus(code=grpc.StatusCode.FAILED_PRECONDITION.value[0], message="gone")
    fake.on(
        "CompleteTasks",
        script(
            fail(grpc.StatusCode.UNAVAILABLE, "electing"),
            reply(tasks_pb2.CompleteTasksResponse(statuses=[ok, lost])),
        ),
    )
    history = History()
    results = [("t1", {"a": 1}), ("t2", None)]
    errors = run(
        lambda c: c.complete_tasks(results, worker_id="w", request_ids=["r1", "r2"]),
        fake.address,
        recorder=history,
    )
    assert errors[0] is None and isinstance(errors[1], FailedPreconditionError)
    first, second = (c.request for c in fake.calls_of("CompleteTasks"))
    assert [i.request_id for i in first.items] == [i.request_id for i in second.items]
    assert [i.request_id for i in second.items] == ["r1", "r2"]
    # Recorded as two CompleteTask operations, one applied and one refused.
    assert history.by_request("CompleteTask") == {
        "r1": ["invoke", "ok"],
        "r2": ["invoke", "fail"],
    }


def test_the_leader_hint_is_followed_then_remembered(make_server: Callable[[], FakeServer]) -> None:
    follower, leader = make_server(), make_server()
    follower.on(
        "PublishEvent",
        fail(grpc.StatusCode.UNAVAILABLE, "not the leader", ((LEADER_KEY, leader.address),)),
    )
    leader.seq = 41
    leader.on("PublishEvent", reply(events_pb2.PublishEventResponse(offset=9)))
    leader.on(
        "GetWorkflow",
        reply(workflows_pb2.GetWorkflowResponse(workflow=workflows_pb2.Workflow(workflow_id="w"))),
    )

    async def flow(client: AsyncOrchestratorClient) -> tuple[int, str]:
        offset = await client.publish_event("e", {}, request_id="evt-1")
        wf = await client.get_workflow("w")
        return offset, wf.workflow_id

    assert run(flow, [follower.address]) == (9, "w")
    assert len(follower.calls_of("PublishEvent")) == 1
    (published,) = leader.calls_of("PublishEvent")
    assert published.request.request_id == "evt-1"
    # The read went to the leader at once (sticky), carrying the sequence the write returned.
    assert follower.calls_of("GetWorkflow") == []
    (read,) = leader.calls_of("GetWorkflow")
    assert read.metadata[MIN_SEQ_KEY] == "41"


def test_an_exhausted_budget_raises_unavailable(make_server: Callable[[], FakeServer]) -> None:
    fake = make_server()
    fake.on("GetWorkflow", fail(grpc.StatusCode.UNAVAILABLE, "down"))
    with pytest.raises(UnavailableError) as caught:
        run(lambda c: c.get_workflow("w"), fake.address, retry_budget_s=0.3)
    assert caught.value.attempts >= 2
    assert len(fake.calls_of("GetWorkflow")) == caught.value.attempts


# --------------------------------------------------------------------------------------------
# Failover on a real cluster


def leader_first(cluster: Any, task_def: Any, workflow: Any) -> tuple[str, list[str]]:
    """Waits for a healthy cluster and registers the definitions; the leader, and every address
    with the leader's first (calls must find the next leader once it is killed)."""
    cluster.wait_healthy(timeout_s=60)
    with cluster.client(retry_budget_s=30) as c:
        c.register_task_defs([task_def])
        c.register_workflow_def(workflow)
    leader = wait_for(cluster.leader, 30, "a leader")
    leader_addr = cluster.replicas[leader].grpc
    return leader, [leader_addr] + [a for a in cluster.addresses if a != leader_addr]


@pytest.mark.cluster
def test_calls_succeed_across_a_leader_kill(tmp_path: Any) -> None:
    cluster = make_cluster(tmp_path, insecure=True)
    cluster.start_all()
    history = History()
    try:
        leader, addresses = leader_first(cluster, TASK_DEF, WORKFLOW)

        async def flow(client: AsyncOrchestratorClient) -> list[str]:
            wids = [await client.start_workflow("aio_flow", {"k": 0})]
            cluster.kill(leader)
            wids += [await client.start_workflow("aio_flow", {"k": k}) for k in (1, 2, 3)]
            done = 0
            while done < len(wids):
                for task in await client.poll_tasks("aio_t", worker_id="aio", count=4):
                    await client.complete_task(task.task_id, {"v": task.input["k"]})
                    done += 1
            await client.publish_event("aio.failover", {"n": done})
            return [(await client.get_workflow(wid)).status for wid in wids]

        statuses = run(flow, addresses, timeout_s=2.0, retry_budget_s=45.0, recorder=history)
        assert statuses == ["COMPLETED"] * 4
        assert history.count("fail") == 0 and history.count("unknown") == 0
    finally:
        cluster.kill_all()
