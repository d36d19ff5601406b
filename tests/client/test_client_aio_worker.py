"""The asyncio Worker (orchestrator_client.aio.Worker): workflows run by coroutine handlers with
bounded concurrency against a one-replica server; the sync worker's lease, heartbeat and report
rules against a scripted task queue; and a run across a leader kill -9 on a three-replica
cluster (every workflow completes, no task is completed twice)."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import grpc
import pytest
from orchestrator_client import OrchestratorClient
from orchestrator_client.aio import AsyncOrchestratorClient, AsyncTaskContext, Task, Worker
from orchestrator_client.v1.tasks_pb2 import CompleteTasksResponse, ItemStatus

from tests.client.test_client_aio import leader_first, run
from tests.client.test_client_unit import WAIT_S, FakeServer, TaskQueue, fail
from tests.cluster_support import History, make_cluster, wait_for
from tests.fakes import fake_server

_T = TypeVar("_T")

TASK_DEF = {"name": "aw_t", "retryCount": 2, "retryDelaySeconds": 0, "responseTimeoutSeconds": 5}
WORKFLOW = {
    "name": "aw_flow",
    "tasks": [
        {"name": "aw_t", "taskReferenceName": "a", "inputParameters": {"k": "${workflow.input.k}"}}
    ],
    "outputParameters": {"v": "${a.output.v}"},
}


async def until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------------------------
# Against a one-replica server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with fake_server(tmp_path_factory.mktemp("aio-worker")) as srv:
        with OrchestratorClient([srv.grpc_addr], retry_budget_s=10) as c:
            c.register_task_defs([TASK_DEF])
            c.register_workflow_def(WORKFLOW)
        yield srv


def test_the_worker_runs_workflows_with_at_most_its_concurrency(server: Any) -> None:
    running, most, ran = 0, 0, collections.Counter[str]()

    async def flow(client: AsyncOrchestratorClient) -> tuple[list[Any], Any]:
        worker = Worker(client, concurrency=3, poll_timeout_ms=200)

        @worker.task("aw_t")
        async def double(task: Task) -> dict[str, Any]:
            nonlocal running, most
            ran[task.task_id] += 1
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.05)
            running -= 1
            return {"v": task.input["k"] * 2}

        async with worker:
            ids = await client.start_workflows([("aw_flow", {"k": k}) for k in range(12)])
            done = [await client.wait_for_workflow(str(wid), timeout_s=WAIT_S) for wid in ids]
        return done, worker.stats

    done, stats = run(flow, server.grpc_addr)
    assert [wf.status for wf in done] == ["COMPLETED"] * 12
    assert [wf.output["v"] for wf in done] == [2 * k for k in range(12)]
    assert 1 < most <= 3, most
    assert set(ran.values()) == {1} and len(ran) == 12
    assert stats.completed == 12 and stats.running == 0 and stats.failed == 0


def test_a_handler_gets_its_context_and_a_failure_fails_the_task(server: Any) -> None:
    async def flow(client: AsyncOrchestratorClient) -> tuple[Any, Any, str]:
        worker = Worker(client, concurrency=1, poll_timeout_ms=200)
        seen: list[str] = []

        @worker.task("aw_t")
        async def handler(task: Task, ctx: AsyncTaskContext) -> dict[str, Any]:
            seen.append(ctx.worker_id)
            await ctx.heartbeat()
            raise RuntimeError(f"boom {task.input['k']}")

        async with worker:
            wid = await client.start_workflow("aw_flow", {"k": 5})
            wf = await client.wait_for_workflow(wid, timeout_s=WAIT_S)
        return wf, worker.stats, seen[0] if seen else ""

    wf, stats, seen_id = run(flow, server.grpc_addr)
    # retryCount 2: three attempts, each failed by the handler.
    assert wf.status == "FAILED"
    assert [t.reason_for_incompletion for t in wf.tasks] == ["boom 5"] * 3
    assert stats.failed == 3 and seen_id != ""


# --------------------------------------------------------------------------------------------
# Against a scripted task queue


@pytest.fixture
def queue_server() -> Iterator[TaskQueue]:
    fake = FakeServer()
    yield TaskQueue(fake)
    fake.stop()


def work(
    address: str,
    register: Callable[[Worker], None],
    body: Callable[[Worker], Coroutine[Any, Any, None]],
    **kwargs: Any,
) -> Worker:
    """Runs a worker on the queue's server: ``register`` its handlers, then ``body`` while it
    runs; stops it; returns it."""

    async def main(client: AsyncOrchestratorClient) -> Worker:
        kwargs.setdefault("poll_timeout_ms", 100)
        worker = Worker(client, worker_id="w-aio", **kwargs)
        register(worker)
        await worker.start()
        try:
            await body(worker)
        finally:
            await worker.stop(timeout_s=WAIT_S)
        return worker

    return run(main, address, retry_budget_s=2.0)


def test_heartbeats_keep_a_long_task_and_a_quiet_server_gets_one_call_each(
    queue_server: TaskQueue,
) -> None:
    tq = queue_server

    def register(worker: Worker) -> None:
        @worker.task("double")
        async def long_running(task: Task, ctx: AsyncTaskContext) -> dict[str, Any]:
            await until(lambda: len(tq.server.calls_of("HeartbeatTask")) >= 2, "heartbeats")
            return {"lease": ctx.lease_expires_ms}

    tq.add("t1")

    async def body(worker: Worker) -> None:
        await until(lambda: worker.stats.completed == 1, "the completion")

    work(tq.server.address, register, body, heartbeat_interval_s=0.05)
    # The fake has no CompleteTasks (UNIMPLEMENTED): the worker reported with CompleteTask.
    (complete,) = tq.server.calls_of("CompleteTask")
    assert json.loads(complete.request.output_json) == {"lease": 99}
    beats = tq.server.calls_of("HeartbeatTask")
    assert {b.request.task_id for b in beats} == {"t1"}
    assert all(b.request.worker_id == "w-aio" for b in beats)


def test_completions_go_in_batches_and_a_refused_one_is_lost_not_retried(
    queue_server: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    tq = queue_server

    def answer(request: Any, context: grpc.ServicerContext) -> Any:
        refused = ItemStatus(
            code=grpc.StatusCode.FAILED_PRECONDITION.value[0], message="lease expired"
        )
        ok = ItemStatus(code=0)
        return CompleteTasksResponse(
            statuses=[refused if i.task_id == "late" else ok for i in request.items]
        )

    tq.server.on("CompleteTasks", answer)
    for task_id in ("a", "late", "b"):
        tq.add(task_id)

    def register(worker: Worker) -> None:
        worker.register("double", lambda task: {"id": task.task_id}, concurrency=3)

    async def body(worker: Worker) -> None:
        await until(lambda: worker.stats.completed + worker.stats.lost == 3, "the reports")

    with caplog.at_level(logging.WARNING, logger="orchestrator_client.worker"):
        worker = work(tq.server.address, register, body)
    reported = [i.task_id for c in tq.server.calls_of("CompleteTasks") for i in c.request.items]
    assert sorted(reported) == ["a", "b", "late"]  # each once: the refusal was not retried
    assert tq.server.calls_of("CompleteTask") == []
    assert worker.stats.completed == 2 and worker.stats.lost == 1
    assert any("lease lost" in r.getMessage() for r in caplog.records)


def test_a_lease_a_heartbeat_found_lost_is_not_reported(queue_server: TaskQueue) -> None:
    tq = queue_server
    tq.server.on("HeartbeatTask", fail(grpc.StatusCode.FAILED_PRECONDITION, "lease expired"))
    tq.add("t1")

    def register(worker: Worker) -> None:
        @worker.task("double")
        async def slow(task: Task, ctx: AsyncTaskContext) -> dict[str, Any]:
            await until(lambda: ctx.lease_lost, "the lost lease")
            return {}

    async def body(worker: Worker) -> None:
        await until(lambda: worker.stats.lost == 1, "the lost task")

    worker = work(tq.server.address, register, body, heartbeat_interval_s=0.05)
    assert len(tq.server.calls_of("HeartbeatTask")) == 1  # no heartbeats after the loss
    assert tq.server.calls_of("CompleteTask") == [] and tq.server.calls_of("CompleteTasks") == []
    assert worker.stats.completed == 0 and worker.stats.running == 0


def test_a_failure_and_an_output_that_is_not_json_are_reported_as_failures(
    queue_server: TaskQueue,
) -> None:
    from orchestrator_client.aio import TaskFailure

    tq = queue_server
    tq.add("bad-output")
    tq.add("terminal")

    def register(worker: Worker) -> None:
        @worker.task("double", concurrency=2)
        async def handler(task: Task) -> dict[str, Any]:
            if task.task_id == "terminal":
                raise TaskFailure("no stock", terminal=True, output={"left": 0})
            return {"when": object()}

    async def body(worker: Worker) -> None:
        await until(lambda: worker.stats.failed == 2, "the failures")

    work(tq.server.address, register, body)
    failed = {c.request.task_id: c.request for c in tq.server.calls_of("FailTask")}
    assert "not valid JSON" in failed["bad-output"].reason
    assert not failed["bad-output"].terminal
    assert failed["terminal"].reason == "no stock" and failed["terminal"].terminal
    assert json.loads(failed["terminal"].output_json) == {"left": 0}


def test_stop_waits_for_a_running_task_to_report(queue_server: TaskQueue) -> None:
    tq = queue_server
    tq.add("t1")
    started = asyncio.Event()

    def register(worker: Worker) -> None:
        @worker.task("double")
        async def slow(task: Task) -> dict[str, Any]:
            started.set()
            await asyncio.sleep(0.3)
            return {"done": True}

    async def body(worker: Worker) -> None:
        await asyncio.wait_for(started.wait(), WAIT_S)

    worker = work(tq.server.address, register, body)  # stop() is called while the handler sleeps
    assert len(tq.server.calls_of("CompleteTask")) == 1
    assert worker.stats.completed == 1 and worker.stats.running == 0


def test_a_failing_poll_backs_off_and_stop_cuts_the_pause_short() -> None:
    fake = FakeServer()
    try:
        fake.on("PollTasks", fail(grpc.StatusCode.PERMISSION_DENIED, "no"))

        def register(worker: Worker) -> None:
            worker.register("double", lambda task: None)

        async def body(worker: Worker) -> None:
            await until(lambda: worker.stats.poll_errors >= 1, "a poll error")

        began = time.monotonic()
        worker = work(fake.address, register, body)
        # After an error a poll loop pauses (0.5 s) instead of spinning; stop() ends the pause.
        assert len(fake.calls_of("PollTasks")) <= 2
        assert time.monotonic() - began < 5.0
        assert worker.stats.poll_errors >= 1
    finally:
        fake.stop()


def test_the_worker_refuses_bad_settings_and_late_registrations(queue_server: TaskQueue) -> None:
    async def flow(client: AsyncOrchestratorClient) -> None:
        with pytest.raises(ValueError):
            Worker(client, concurrency=0)
        worker = Worker(client, poll_timeout_ms=100)
        with pytest.raises(RuntimeError, match="register at least one"):
            await worker.start()
        worker.register("double", lambda task: None)
        with pytest.raises(ValueError, match="registered already"):
            worker.register("double", lambda task: None)
        await worker.start()
        with pytest.raises(RuntimeError):
            worker.register("other", lambda task: None)
        await worker.stop(timeout_s=WAIT_S)

    run(flow, queue_server.server.address)


def test_run_returns_after_stop_from_another_coroutine(queue_server: TaskQueue) -> None:
    async def flow(client: AsyncOrchestratorClient) -> bool:
        worker = Worker(client, poll_timeout_ms=100)
        worker.register("double", lambda task: None)

        async def stop_soon() -> None:
            await until(lambda: queue_server.server.calls_of("PollTasks") != [], "a poll")
            await worker.stop(timeout_s=WAIT_S)

        await asyncio.wait_for(asyncio.gather(worker.run(), stop_soon()), WAIT_S)
        return worker.stopping

    assert run(flow, queue_server.server.address)


def test_run_stops_gracefully_on_sigterm(queue_server: TaskQueue) -> None:
    queue_server.add("t1")

    async def flow(client: AsyncOrchestratorClient) -> Any:
        worker = Worker(client, poll_timeout_ms=100)

        @worker.task("double")
        async def slow(task: Task) -> dict[str, Any]:
            os.kill(os.getpid(), signal.SIGTERM)  # while a task runs: it still reports
            await asyncio.sleep(0.1)
            return {"ok": True}

        await asyncio.wait_for(worker.run(stop_timeout_s=WAIT_S), WAIT_S)
        return worker.stats

    before = signal.getsignal(signal.SIGTERM)
    stats = run(flow, queue_server.server.address)
    assert stats.completed == 1 and stats.running == 0
    assert signal.getsignal(signal.SIGTERM) == before  # the caller's handler is back


# --------------------------------------------------------------------------------------------
# Failover on a real cluster


@pytest.mark.cluster
def test_the_worker_completes_every_workflow_across_a_leader_kill(tmp_path: Any) -> None:
    cluster = make_cluster(tmp_path)  # TLS and tokens: the asyncio client's token= too
    cluster.start_all()
    history = History()
    ran = collections.Counter[str]()
    try:
        leader, addresses = leader_first(cluster, TASK_DEF, WORKFLOW)
        access = cluster.access()

        async def flow(client: AsyncOrchestratorClient) -> list[Any]:
            worker = Worker(client, concurrency=4, poll_timeout_ms=500)

            @worker.task("aw_t")
            async def double(task: Task) -> dict[str, Any]:
                ran[task.task_id] += 1
                await asyncio.sleep(0.02)
                return {"v": task.input["k"] * 2}

            async with worker:
                ids = await client.start_workflows([("aw_flow", {"k": k}) for k in range(10)])
                await until(lambda: sum(ran.values()) >= 3, "the first tasks", 30)
                await asyncio.to_thread(cluster.kill, leader)
                ids += await client.start_workflows([("aw_flow", {"k": k}) for k in range(10, 20)])
                return [await client.wait_for_workflow(str(w), timeout_s=90) for w in ids]

        done = run(
            flow,
            addresses,
            credentials=access.credentials(),
            token=access.bearer(),
            timeout_s=2.0,
            retry_budget_s=45.0,
            recorder=history,
        )
        assert not cluster.alive(leader) and wait_for(cluster.leader, 30, "a leader") != leader
        assert [wf.status for wf in done] == ["COMPLETED"] * 20
        assert [wf.output["v"] for wf in done] == [2 * k for k in range(20)]
        for wf in done:
            # One attempt completed per workflow, by one run of the handler.
            assert sum(t.status == "COMPLETED" for t in wf.tasks) == 1, wf.tasks
        assert set(ran.values()) == {1}
        # Each task was reported under one request id (a retry reuses it; the server applies
        # it once), and no start or report ended in error.
        reported = collections.Counter(
            e[4].task_id for e in history.events if e[1] == "invoke" and e[2] == "CompleteTask"
        )
        assert reported and set(reported.values()) == {1}
        for op in ("StartWorkflow", "CompleteTask"):
            assert history.count("fail", op) == 0 and history.count("unknown", op) == 0
    finally:
        cluster.kill_all()
