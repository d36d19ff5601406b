"""The asyncio client's operator, bulk, execution, definition-list, event-handler and cluster
calls: against a one-replica server, and against the scripted fake replica with the sync
client's tables (the same calls must send the same requests)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from orchestrator_client import (
    FailedPreconditionError,
    NotFoundError,
    OrchestratorClient,
    UnavailableError,
)
from orchestrator_client.aio import AsyncOrchestratorClient, BulkResult
from orchestrator_client.v1 import cluster_pb2, events_pb2, workflows_pb2

from tests.client.test_client_aio import run
from tests.client.test_client_operations import ACTIONS, _bulk_reply
from tests.client.test_client_unit import FakeServer, fail, reply, script
from tests.cluster_support import History
from tests.fakes import fake_server

TASK_DEFS = [
    {"name": n, "retryCount": 0, "responseTimeoutSeconds": 60}
    for n in ("aiox_do", "aiox_undo", "aiox_run", "aiox_c1", "aiox_c2")
]
SAGA = {
    "name": "aiox_saga",
    "tasks": [
        {
            "name": "aiox_do",
            "taskReferenceName": "do",
            "compensateWith": {"name": "aiox_undo", "taskReferenceName": "undo"},
        },
        {"name": "gate", "taskReferenceName": "gate", "type": "WAIT"},
    ],
}
RUN = {
    "name": "aiox_run",
    "tasks": [
        {
            "name": "aiox_run",
            "taskReferenceName": "r",
            "inputParameters": {"k": "${workflow.input.k}"},
        }
    ],
    "outputParameters": {"v": "${r.output.v}"},
}
CHAIN = {
    "name": "aiox_chain",
    "tasks": [
        {"name": "aiox_c1", "taskReferenceName": "a"},
        {"name": "aiox_c2", "taskReferenceName": "b"},
    ],
}
GATE = {"name": "aiox_gate", "tasks": [{"name": "g", "taskReferenceName": "g", "type": "WAIT"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with fake_server(tmp_path_factory.mktemp("aiox")) as srv:
        with OrchestratorClient([srv.grpc_addr], retry_budget_s=10) as c:
            c.register_task_defs(TASK_DEFS)
            for definition in (SAGA, RUN, GATE, CHAIN):
                c.register_workflow_def(definition)
        yield srv


async def _task_of(client: AsyncOrchestratorClient, task_type: str, wid: str) -> str:
    """The id of ``wid``'s task of ``task_type`` (each type here is one test's alone)."""
    for _ in range(20):
        for task in await client.poll_tasks(task_type, worker_id="w", count=10, timeout_ms=500):
            if task.workflow_id == wid:
                return task.task_id
    raise AssertionError(f"no {task_type} task of {wid}")


# --------------------------------------------------------------------------------------------
# Against a one-replica server


def test_skip_rerun_remove(server: Any) -> None:
    async def flow(client: AsyncOrchestratorClient) -> list[Any]:
        wid = await client.start_workflow("aiox_gate")
        await client.skip_task(wid, "g", {"skipped": True})
        skipped = await client.wait_for_workflow(wid, timeout_s=10)
        await client.rerun_workflow(wid, workflow_input={"again": 1})
        rerun = await client.get_workflow(wid)
        await client.terminate_workflow(wid)
        await client.remove_workflow(wid)
        try:
            await client.get_workflow(wid)
        except NotFoundError:
            gone = True
        return [skipped, rerun, gone]

    skipped, rerun, gone = run(flow, server.grpc_addr)
    assert skipped.status == "COMPLETED" and skipped.tasks[0].status == "SKIPPED"
    assert skipped.tasks[0].output == {"skipped": True}
    assert rerun.status == "RUNNING" and rerun.input == {"again": 1}
    assert gone


def test_compensate_runs_the_undo_then_is_refused(server: Any) -> None:
    async def flow(client: AsyncOrchestratorClient) -> list[Any]:
        wid = await client.start_workflow("aiox_saga")
        await client.complete_task(await _task_of(client, "aiox_do", wid), {}, worker_id="w")
        await client.compensate_workflow(wid, "cancelled")
        compensating = await client.get_workflow(wid)
        await client.complete_task(await _task_of(client, "aiox_undo", wid), {}, worker_id="w")
        done = await client.wait_for_workflow(wid, timeout_s=10)
        try:
            await client.compensate_workflow(wid)
        except FailedPreconditionError as exc:
            return [compensating, done, exc]
        raise AssertionError("FAILED_PRECONDITION expected")

    compensating, done, refused = run(flow, server.grpc_addr)
    assert compensating.status == "COMPENSATING"
    assert compensating.reason_for_incompletion == "cancelled"
    assert done.status == "COMPENSATED"
    assert "COMPENSATED" in str(refused)


def test_execute_waits_for_the_end_and_bulk_acts_per_workflow(server: Any) -> None:
    async def work(client: AsyncOrchestratorClient) -> None:
        while not (tasks := await client.poll_tasks("aiox_run", worker_id="w", timeout_ms=500)):
            pass
        await client.complete_task(tasks[0].task_id, {"v": tasks[0].input["k"] + 1})

    async def flow(client: AsyncOrchestratorClient) -> dict[str, Any]:
        (executed, ended), _ = await asyncio.gather(
            client.execute_workflow("aiox_run", {"k": 4}, wait_s=10), work(client)
        )
        gated, gated_ended = await client.execute_workflow(
            "aiox_gate", correlation_id="aiox-bulk", wait_s=0.2
        )
        more = [await client.start_workflow("aiox_gate", correlation_id="aiox-bulk")]
        ids = [gated.workflow_id, *more, "no-such-workflow"]
        terminated = [r async for r in client.bulk_action("terminate", ids, batch_size=2)]
        filters = {"correlation_id": "aiox-bulk", "statuses": ["TERMINATED"]}
        removed = [r async for r in client.bulk_action("remove", filters=filters)]
        try:
            [r async for r in client.bulk_action("explode", ids)]
        except ValueError as exc:
            refused = str(exc)
        return dict(
            executed=executed, ended=ended, gated=gated, gated_ended=gated_ended, ids=ids,
            terminated=terminated, removed=removed, refused=refused,
        )  # fmt: skip

    out = run(flow, server.grpc_addr)
    assert out["ended"] and out["executed"].status == "COMPLETED"
    assert out["executed"].output == {"v": 5}
    assert not out["gated_ended"] and out["gated"].status == "RUNNING"
    terminated: list[BulkResult] = out["terminated"]
    assert [r.workflow_id for r in terminated] == out["ids"]
    assert [r.code for r in terminated] == ["OK", "OK", "NOT_FOUND"]
    assert sorted(r.workflow_id for r in out["removed"] if r.ok) == sorted(out["ids"][:2])
    assert "unknown action" in out["refused"]


def test_definition_lists_event_handlers_and_cluster_reads(server: Any) -> None:
    handler = {
        "name": "aiox_h",
        "event": "aiox.evt",
        "actions": [{"action": "start_workflow", "start_workflow": {"name": "aiox_gate"}}],
    }

    async def flow(client: AsyncOrchestratorClient) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["workflow_defs"] = {
            (d["name"], d["version"]) for d in await client.list_workflow_defs()
        }
        out["task_defs"] = {d["name"] for d in await client.list_task_defs()}
        out["registered"] = await client.register_event_handler(handler)
        out["handlers"] = [h["name"] for h in await client.list_event_handlers()]
        offset = await client.publish_event("aiox.evt", {"n": 1})
        out["events"] = await client.read_events(offset, 1)
        await client.remove_event_handler("aiox_h")
        out["after"] = [h["name"] for h in await client.list_event_handlers()]
        try:
            await client.remove_event_handler("aiox_h")
        except NotFoundError:
            out["removed_twice"] = "NOT_FOUND"
        out["group"] = await client.get_consumer_group("events", "aiox-group")
        out["status"] = await client.cluster_status()
        settings = out["settings"] = await client.cluster_settings()
        out["set"] = await client.set_history_retention(
            settings["history_retention_ms"], settings["history_max_workflows"]
        )
        return out

    out = run(flow, server.grpc_addr)
    assert {("aiox_saga", 1), ("aiox_run", 1), ("aiox_gate", 1)} <= out["workflow_defs"]
    assert {"aiox_do", "aiox_undo", "aiox_run"} <= out["task_defs"]
    assert out["registered"] == "aiox_h" and "aiox_h" in out["handlers"]
    (event,) = out["events"]
    assert event["name"] == "aiox.evt" and event["payload"] == {"n": 1}
    assert [a["code"] for a in event["actions"]] == ["OK"]
    assert "aiox_h" not in out["after"] and out["removed_twice"] == "NOT_FOUND"
    assert out["group"]["committed"] == 0 and out["group"]["last_offset"] >= 1
    (replica,) = out["status"]
    assert isinstance(replica["applied_sequence"], int) and replica["applied_sequence"] > 0
    assert out["settings"]["history_retention_ms"] > 0 and out["set"] == out["settings"]


def test_complete_and_poll_takes_the_next_task_from_the_answer(server: Any) -> None:
    ids = {"aiox_c1": "aiox-p1", "aiox_c2": "aiox-p2"}
    args: dict[str, Any] = {"worker_id": "w", "request_ids": ["aiox-a"], "poll_request_ids": ids}

    async def flow(client: AsyncOrchestratorClient) -> list[Any]:
        wid = await client.start_workflow("aiox_chain")
        done = [(await _task_of(client, "aiox_c1", wid), {"v": 1})]
        polls = {"aiox_c1": 1, "aiox_c2": 2}
        first = await client.complete_tasks_and_poll(done, polls=polls, **args)
        # The same call again (the same ids): the same answer, nothing applied twice.
        again = await client.complete_tasks_and_poll(done, polls=polls, **args)
        try:
            await client.complete_tasks_and_poll(done, polls={}, worker_id="w")
        except ValueError:
            return [wid, first, again]
        raise AssertionError("ValueError expected")

    history = History()
    wid, (errors, tasks), (errors_again, tasks_again) = run(
        flow, server.grpc_addr, recorder=history
    )
    assert errors == errors_again == [None]
    assert tasks["aiox_c1"] == [] and tasks_again["aiox_c1"] == []
    (b,) = tasks["aiox_c2"]
    assert (b.workflow_id, b.reference_task_name) == (wid, "b")
    assert [t.task_id for t in tasks_again["aiox_c2"]] == [b.task_id]
    # Each riding poll is recorded as a PollTasks operation of its own, once per call.
    polls = history.by_request("PollTasks")
    assert polls["aiox-p1"] == polls["aiox-p2"] == ["invoke", "ok", "invoke", "ok"]


# --------------------------------------------------------------------------------------------
# Against the scripted fake replica: the sync client's tables, awaited


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


@pytest.mark.parametrize("method, act, fields", ACTIONS, ids=[a[0] for a in ACTIONS])
def test_each_action_sends_the_sync_clients_request_and_reuses_its_request_id(
    fake: FakeServer, method: str, act: Callable[[Any], Any], fields: dict[str, Any]
) -> None:
    response = getattr(workflows_pb2, f"{method}Response")()
    fake.on(method, script(fail(grpc.StatusCode.UNAVAILABLE), reply(response)))
    # The sync table's calls, made on the asyncio client: each returns its coroutine.
    run(act, fake.address)
    first, second = fake.calls_of(method)
    assert first.request.request_id and first.request.request_id == second.request.request_id
    assert second.request.workflow_id == "w1"
    for name, value in fields.items():
        assert getattr(second.request, name) == value, name


def test_bulk_batches_and_search_pages_as_the_sync_client(fake: FakeServer) -> None:
    fake.on("BulkAction", _bulk_reply)
    ids = [f"w{i}" for i in range(5)] + ["wx"]

    async def flow(client: AsyncOrchestratorClient) -> tuple[list[BulkResult], list[BulkResult]]:
        by_ids = [r async for r in client.bulk_action("pause", ids, batch_size=4)]
        filters = {"statuses": ["FAILED"], "name": "flow"}
        searched = [r async for r in client.bulk_action("retry", filters=filters, batch_size=2)]
        return by_ids, searched

    by_ids, searched = run(flow, fake.address)
    assert [r.workflow_id for r in by_ids] == ids
    assert [r.code for r in by_ids if not r.ok] == ["NOT_FOUND"]
    assert len(searched) == 4 and all(r.ok for r in searched)
    calls = [c.request for c in fake.calls_of("BulkAction")]
    assert [len(r.workflow_ids) for r in calls[:2]] == [4, 2]
    assert [r.search.page_token for r in calls[2:]] == ["", "p2"]
    assert len({r.request_id for r in calls}) == 4 and all(r.request_id for r in calls)


def test_writes_of_events_and_membership_reuse_their_request_ids(fake: FakeServer) -> None:
    settings = cluster_pb2.ClusterSettings(history_retention_ms=3_600_000, history_max_workflows=9)
    answers = {
        "RegisterEventHandler": events_pb2.RegisterEventHandlerResponse(name="h"),
        "RemoveEventHandler": events_pb2.RemoveEventHandlerResponse(),
        "AddReplica": cluster_pb2.AddReplicaResponse(),
        "RemoveReplica": cluster_pb2.RemoveReplicaResponse(),
        "SetHistoryRetention": cluster_pb2.SetHistoryRetentionResponse(settings=settings),
    }
    for method, answer in answers.items():
        fake.on(method, script(fail(grpc.StatusCode.UNAVAILABLE), reply(answer)))

    async def flow(client: AsyncOrchestratorClient) -> tuple[str, dict[str, int]]:
        name = await client.register_event_handler({"name": "h"}, overwrite=True)
        await client.remove_event_handler("h")
        await client.add_replica("n4", raft_address="h:1", grpc_address="h:2")
        await client.remove_replica("n4")
        return name, await client.set_history_retention(3_600_000, 9)

    name, after = run(flow, fake.address)
    assert name == "h" and after == {"history_retention_ms": 3_600_000, "history_max_workflows": 9}
    for method in answers:
        first, second = (c.request for c in fake.calls_of(method))
        assert first.request_id and first.request_id == second.request_id, method
    assert fake.calls_of("RegisterEventHandler")[0].request.overwrite
    added = fake.calls_of("AddReplica")[0].request
    assert (added.node_id, added.raft_address, added.grpc_address) == ("n4", "h:1", "h:2")


def test_replica_status_asks_the_named_replica_only(server: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"

    async def flow(client: AsyncOrchestratorClient) -> dict[str, Any]:
        out: dict[str, Any] = {"named": await client.replica_status(server.grpc_addr)}
        try:
            await client.replica_status(dead, timeout_s=1.0)
        except UnavailableError as err:
            out["dead"] = err.address
        return out

    out = run(flow, [dead, server.grpc_addr], retry_budget_s=5)
    assert out["named"]["grpc_address"] == server.grpc_addr
    assert out["named"]["applied_sequence"] > 0
    assert out["dead"] == dead  # not answered by the live replica instead
