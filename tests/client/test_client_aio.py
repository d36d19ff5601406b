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
from orchestrator_client import NotFoundError, OrchestratorClient, UnavailableError
from orchestrator_client.aio import AsyncOrchestratorClient
from orchestrator_client.v1 import events_pb2, workflows_pb2

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

_T = TypeVar("_T")

TASK_DEF = {"name": "aio_t", "retryCount": 0, "responseTimeoutSeconds": 60}
WORKFLOW = {
    "name": "aio_flow",
    "tasks": [
        {"name": "aio_t", "taskReferenceName": "a", "inputParameters": {"k": "${workflow.input.k}"}}
    ],
    "outputParameters": {"v": "${a.output.v}"},
}


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
            c.register_task_defs([TASK_DEF])
            c.register_workflow_def(WORKFLOW)
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


@pytest.mark.cluster
def test_calls_succeed_across_a_leader_kill(tmp_path: Any) -> None:
    cluster = make_cluster(tmp_path, insecure=True)
    cluster.start_all()
    history = History()
    try:
        cluster.wait_healthy(timeout_s=60)
        with cluster.client(retry_budget_s=30) as c:
            c.register_task_defs([TASK_DEF])
            c.register_workflow_def(WORKFLOW)
        leader = wait_for(cluster.leader, 30, "a leader")
        leader_addr = cluster.replicas[leader].grpc
        # The dead leader first: every call must find its way to the new one.
        addresses = [leader_addr] + [a for a in cluster.addresses if a != leader_addr]

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
