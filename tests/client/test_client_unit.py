"""Unit tests of the Python client SDK against in-process fake gRPC servers.

Each fake server binds 127.0.0.1:0, serves every orchestrator.v1 method through one generic
handler, records every call with its metadata, and answers with whatever behaviour a test
scripts for that method. Tests synchronise on conditions with timeouts, never on sleeps.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.message import Message
from orchestrator_client import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OrchestratorClient,
    OrchestratorError,
    ResourceExhaustedError,
    Task,
    TaskContext,
    TaskFailure,
    UnavailableError,
    Worker,
)
from orchestrator_client.v1 import (
    cluster_pb2,
    definitions_pb2,
    events_pb2,
    tasks_pb2,
    workflows_pb2,
)

WAIT_S = 10.0  # upper bound for any condition a test waits on; never reached when passing

LEADER_KEY = "x-orchestrator-leader"
SEQ_KEY = "x-orchestrator-seq"
MIN_SEQ_KEY = "x-orchestrator-min-seq"
RETRY_AFTER_KEY = "x-orchestrator-retry-after-ms"


# --------------------------------------------------------------------------------------------
# Fake server


def _method_table() -> dict[str, tuple[str, type[Message], type[Message]]]:
    table: dict[str, tuple[str, type[Message], type[Message]]] = {}
    for module in (workflows_pb2, tasks_pb2, definitions_pb2, cluster_pb2, events_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                table[f"/{service.full_name}/{method.name}"] = (
                    method.name,
                    message_factory.GetMessageClass(method.input_type),
                    message_factory.GetMessageClass(method.output_type),
                )
    return table


METHODS = _method_table()

Behaviour = Callable[[Any, grpc.ServicerContext], Message]


@dataclass(frozen=True)
class Call:
    method: str
    request: Any
    metadata: dict[str, str]


class FakeServer:
    """An in-process gRPC server whose answers each test scripts per method."""

    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.calls: list[Call] = []
        self.cond = threading.Condition()
        # Trailing x-orchestrator-seq sent with every answer, when set.
        self.seq: int | None = None
        # Blocking behaviours wait on this; set at teardown so the server can stop.
        self.release = threading.Event()
        self._server = grpc.server(ThreadPoolExecutor(max_workers=16))
        self._server.add_generic_rpc_handlers((_GenericHandler(self),))
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        self._server.start()

    def on(self, method: str, behaviour: Behaviour) -> None:
        self.behaviours[method] = behaviour

    def dispatch(self, method: str, request: Any, context: grpc.ServicerContext) -> Message:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        with self.cond:
            self.calls.append(Call(method, request, metadata))
            self.cond.notify_all()
        if self.seq is not None:
            context.set_trailing_metadata(((SEQ_KEY, str(self.seq)),))
        behaviour = self.behaviours.get(method)
        if behaviour is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"fake has no {method}")
        return behaviour(request, context)

    def calls_of(self, method: str) -> list[Call]:
        with self.cond:
            return [c for c in self.calls if c.method == method]

    def wait_calls(self, method: str, count: int, timeout_s: float = WAIT_S) -> list[Call]:
        with self.cond:
            ok = self.cond.wait_for(
                lambda: len([c for c in self.calls if c.method == method]) >= count, timeout_s
            )
            calls = [c for c in self.calls if c.method == method]
        assert ok, f"expected {count} {method} call(s), got {len(calls)}"
        return calls

    def stop(self) -> None:
        self.release.set()
        self._server.stop(grace=None).wait(WAIT_S)


class _GenericHandler(grpc.GenericRpcHandler):
    def __init__(self, fake: FakeServer) -> None:
        self._fake = fake

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        entry = METHODS.get(handler_call_details.method)
        if entry is None:
            return None
        name, request_type, response_type = entry

        def handle(request: Any, context: grpc.ServicerContext) -> Message:
            return self._fake.dispatch(name, request, context)

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )


def reply(message: Message, trailers: tuple[tuple[str, str], ...] = ()) -> Behaviour:
    def behaviour(request: Any, context: grpc.ServicerContext) -> Message:
        if trailers:
            context.set_trailing_metadata(trailers)
        return message

    return behaviour


def fail(
    code: grpc.StatusCode, details: str = "", trailers: tuple[tuple[str, str], ...] = ()
) -> Behaviour:
    def behaviour(request: Any, context: grpc.ServicerContext) -> Message:
        if trailers:
            context.set_trailing_metadata(trailers)
        context.abort(code, details or code.name.lower())

    return behaviour


def script(*steps: Behaviour) -> Behaviour:
    """Answers the n-th call with the n-th step; the last step repeats."""
    lock = threading.Lock()
    position = [0]

    def behaviour(request: Any, context: grpc.ServicerContext) -> Message:
        with lock:
            step = steps[min(position[0], len(steps) - 1)]
            position[0] += 1
        return step(request, context)

    return behaviour


def block_until(event: threading.Event, then: Behaviour) -> Behaviour:
    """Never answers in time: stands in for a paused replica."""

    def behaviour(request: Any, context: grpc.ServicerContext) -> Message:
        event.wait(WAIT_S)
        return then(request, context)

    return behaviour


@pytest.fixture
def make_server() -> Iterator[Callable[[], FakeServer]]:
    servers: list[FakeServer] = []

    def make() -> FakeServer:
        server = FakeServer()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def make_client() -> Iterator[Callable[..., OrchestratorClient]]:
    clients: list[OrchestratorClient] = []

    def make(addresses: Any, **kwargs: Any) -> OrchestratorClient:
        client = OrchestratorClient(addresses, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def started(workflow_id: str = "wf-1") -> Behaviour:
    return reply(workflows_pb2.StartWorkflowResponse(workflow_id=workflow_id, created=True))


# --------------------------------------------------------------------------------------------
# Retries, routing and read-your-writes


def test_request_id_is_reused_across_retries_after_unavailable(make_server, make_client):
    server = make_server()
    server.on(
        "StartWorkflow",
        script(
            fail(grpc.StatusCode.UNAVAILABLE, "no leader"),
            fail(grpc.StatusCode.UNAVAILABLE, "no leader"),
            started("wf-42"),
        ),
    )
    client = make_client([server.address])

    assert client.start_workflow("order", {"qty": 1}) == "wf-42"

    calls = server.calls_of("StartWorkflow")
    assert len(calls) == 3
    request_ids = {c.request.request_id for c in calls}
    assert len(request_ids) == 1
    (request_id,) = request_ids
    assert len(request_id) == 32 and int(request_id, 16) >= 0  # uuid4 hex
    assert json.loads(calls[0].request.input_json) == {"qty": 1}


def test_each_logical_call_gets_a_new_request_id_unless_given(make_server, make_client):
    server = make_server()
    server.on("TerminateWorkflow", reply(workflows_pb2.TerminateWorkflowResponse()))
    client = make_client(server.address)

    client.terminate_workflow("wf-1", "done")
    client.terminate_workflow("wf-1", "done")
    client.terminate_workflow("wf-1", "done", request_id="mine")

    ids = [c.request.request_id for c in server.calls_of("TerminateWorkflow")]
    assert ids[0] != ids[1]
    assert ids[2] == "mine"


def test_poll_retry_reuses_request_id(make_server, make_client):
    server = make_server()
    task = workflows_pb2.Task(task_id="t1", task_type="pay", status="TASK_STATUS_IN_PROGRESS")
    server.on(
        "PollTasks",
        script(
            fail(grpc.StatusCode.DEADLINE_EXCEEDED, "lost response"),
            reply(tasks_pb2.PollTasksResponse(tasks=[task])),
        ),
    )
    client = make_client(server.address)

    tasks = client.poll_tasks("pay", worker_id="w1", count=3, timeout_ms=0)

    assert [t.task_id for t in tasks] == ["t1"]
    assert tasks[0].status == "IN_PROGRESS"
    calls = server.calls_of("PollTasks")
    assert len(calls) == 2
    assert calls[0].request.request_id == calls[1].request.request_id != ""
    assert calls[0].request.count == 3 and calls[0].request.worker_id == "w1"


def test_leader_hint_is_followed_and_remembered(make_server, make_client):
    follower = make_server()
    leader = make_server()
    follower.on(
        "StartWorkflow",
        fail(grpc.StatusCode.UNAVAILABLE, "not the leader", ((LEADER_KEY, leader.address),)),
    )
    leader.on("StartWorkflow", started("wf-7"))
    # The leader is not even configured: a hint may name any replica.
    client = make_client([follower.address])

    assert client.start_workflow("order") == "wf-7"
    assert client.start_workflow("order") == "wf-7"

    assert len(follower.calls_of("StartWorkflow")) == 1
    leader_calls = leader.calls_of("StartWorkflow")
    assert len(leader_calls) == 2  # the second call went straight to the leader
    assert (
        leader_calls[0].request.request_id
        == follower.calls_of("StartWorkflow")[0].request.request_id
    )


def test_unavailable_without_hint_rotates_to_next_address(make_server, make_client):
    down = make_server()
    up = make_server()
    down.on("GetWorkflow", fail(grpc.StatusCode.UNAVAILABLE, "not caught up"))
    up.on(
        "GetWorkflow",
        reply(workflows_pb2.GetWorkflowResponse(workflow=workflows_pb2.Workflow(workflow_id="w"))),
    )
    client = make_client(f"{down.address}, {up.address}")

    assert client.get_workflow("w").workflow_id == "w"
    assert len(down.calls_of("GetWorkflow")) == 1
    assert len(up.calls_of("GetWorkflow")) == 1


def test_min_seq_is_sent_after_a_response_carried_seq(make_server, make_client):
    server = make_server()
    server.on("StartWorkflow", started())
    server.on(
        "GetWorkflow",
        reply(workflows_pb2.GetWorkflowResponse(workflow=workflows_pb2.Workflow(workflow_id="w"))),
    )
    client = make_client(server.address)
    assert client.last_sequence == 0

    server.seq = 42
    client.start_workflow("order")
    assert client.last_sequence == 42
    server.seq = 40  # a lagging replica must not lower what the client asks for
    client.get_workflow("wf-1")

    first, second = server.calls_of("StartWorkflow")[0], server.calls_of("GetWorkflow")[0]
    assert first.metadata.get(MIN_SEQ_KEY, "0") == "0"
    assert second.metadata[MIN_SEQ_KEY] == "42"
    assert client.last_sequence == 42


def test_seq_in_error_trailers_is_remembered(make_server, make_client):
    server = make_server()
    server.on(
        "GetWorkflow",
        fail(grpc.StatusCode.NOT_FOUND, "no such workflow", ((SEQ_KEY, "17"),)),
    )
    client = make_client(server.address)
    with pytest.raises(NotFoundError):
        client.get_workflow("nope")
    assert client.last_sequence == 17


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.ALREADY_EXISTS, AlreadyExistsError),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPreconditionError),
        (grpc.StatusCode.PERMISSION_DENIED, OrchestratorError),
        (grpc.StatusCode.INTERNAL, OrchestratorError),
    ],
)
def test_non_retryable_error_raises_subclass_immediately(
    make_server, make_client, code, error_type
):
    server = make_server()
    other = make_server()
    server.on("StartWorkflow", fail(code, "computer says no"))
    other.on("StartWorkflow", started())
    client = make_client([server.address, other.address])

    with pytest.raises(error_type) as info:
        client.start_workflow("order", idempotency_key="k")

    assert type(info.value) is error_type
    assert info.value.code == code
    assert info.value.details == "computer says no"
    assert info.value.op == "StartWorkflow"
    assert len(server.calls_of("StartWorkflow")) == 1
    assert other.calls_of("StartWorkflow") == []


def test_resource_exhausted_is_retried_after_the_hinted_delay(make_server, make_client):
    server = make_server()
    server.on(
        "CompleteTask",
        script(
            fail(grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded", ((RETRY_AFTER_KEY, "100"),)),
            reply(tasks_pb2.CompleteTaskResponse()),
        ),
    )
    client = make_client(server.address)

    began = time.monotonic()
    client.complete_task("t1", {"ok": True}, worker_id="w")
    elapsed = time.monotonic() - began

    calls = server.calls_of("CompleteTask")
    assert len(calls) == 2
    assert calls[0].request.request_id == calls[1].request.request_id
    assert elapsed >= 0.1  # honoured the hint rather than the 50 ms initial backoff


def test_retry_budget_exhaustion_raises_unavailable(make_server, make_client):
    server = make_server()
    server.on("TerminateWorkflow", fail(grpc.StatusCode.UNAVAILABLE, "no leader"))
    client = make_client(server.address, retry_budget_s=0.4)

    began = time.monotonic()
    with pytest.raises(UnavailableError) as info:
        client.terminate_workflow("wf-1")
    elapsed = time.monotonic() - began

    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert info.value.attempts == len(server.calls_of("TerminateWorkflow")) > 1
    assert info.value.outcome_unknown
    assert elapsed < 3.0
    assert len({c.request.request_id for c in server.calls_of("TerminateWorkflow")}) == 1


def test_persistent_backpressure_raises_resource_exhausted(make_server, make_client):
    server = make_server()
    server.on("StartWorkflow", fail(grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded"))
    client = make_client(server.address)

    with pytest.raises(ResourceExhaustedError):
        client.start_workflow("order", retry_budget_s=0.3)  # per-call budget override
    assert len(server.calls_of("StartWorkflow")) > 1


def test_zero_budget_means_a_single_attempt(make_server, make_client):
    server = make_server()
    server.on("StartWorkflow", fail(grpc.StatusCode.UNAVAILABLE, "no leader"))
    client = make_client(server.address, retry_budget_s=0.0)
    with pytest.raises(UnavailableError):
        client.start_workflow("order")
    assert len(server.calls_of("StartWorkflow")) == 1


def test_recorder_sees_one_history_entry_pair_per_logical_call(make_server, make_client):
    server = make_server()
    server.on(
        "StartWorkflow",
        script(
            fail(grpc.StatusCode.UNAVAILABLE),  # retried: still one invoke/ok pair
            started("wf-1"),
            fail(grpc.StatusCode.ALREADY_EXISTS, "key taken"),
            fail(grpc.StatusCode.UNAVAILABLE),
        ),
    )
    events: list[tuple[str, str, str, Any]] = []
    lock = threading.Lock()

    def recorder(event: str, op: str, request_id: str, detail: Any) -> None:
        with lock:
            events.append((event, op, request_id, detail))

    client = make_client(server.address, recorder=recorder, retry_budget_s=0.3)

    client.start_workflow("order", request_id="r1")
    with pytest.raises(AlreadyExistsError):
        client.start_workflow("order", request_id="r2")
    with pytest.raises(UnavailableError):
        client.start_workflow("order", request_id="r3")

    assert [(e, op, rid) for e, op, rid, _ in events] == [
        ("invoke", "StartWorkflow", "r1"),
        ("ok", "StartWorkflow", "r1"),
        ("invoke", "StartWorkflow", "r2"),
        ("fail", "StartWorkflow", "r2"),
        ("invoke", "StartWorkflow", "r3"),
        ("unknown", "StartWorkflow", "r3"),
    ]
    assert events[0][3].name == "order"  # the request
    assert events[1][3].workflow_id == "wf-1"  # the response
    assert isinstance(events[3][3], AlreadyExistsError)
    assert isinstance(events[5][3], UnavailableError)


def test_blocking_replica_is_abandoned_at_the_attempt_deadline(make_server, make_client):
    paused = make_server()
    healthy = make_server()
    paused.on("StartWorkflow", block_until(paused.release, started("late")))
    healthy.on("StartWorkflow", started("wf-ok"))
    client = make_client([paused.address, healthy.address], timeout_s=0.3)

    began = time.monotonic()
    assert client.start_workflow("order") == "wf-ok"
    assert time.monotonic() - began < 3.0
    paused.wait_calls("StartWorkflow", 1)
    first_id = paused.calls_of("StartWorkflow")[0].request.request_id
    assert healthy.calls_of("StartWorkflow")[0].request.request_id == first_id

    # The next call starts at the replica that answered instead of waiting out the paused one.
    assert client.start_workflow("order") == "wf-ok"
    assert len(paused.calls_of("StartWorkflow")) == 1


def test_replica_that_accepts_tcp_but_never_speaks_is_skipped(make_server, make_client):
    # Like a SIGSTOPped process: the kernel completes the TCP handshake, nothing answers.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        silent = f"127.0.0.1:{listener.getsockname()[1]}"
        healthy = make_server()
        healthy.on("StartWorkflow", started("wf-ok"))
        client = make_client([silent, healthy.address], timeout_s=0.3)

        began = time.monotonic()
        assert client.start_workflow("order") == "wf-ok"
        assert time.monotonic() - began < 3.0
    finally:
        listener.close()


def test_closed_client_refuses_calls(make_server):
    server = make_server()
    client = OrchestratorClient(server.address)
    client.close()
    client.close()  # idempotent
    with pytest.raises(RuntimeError):
        client.get_workflow("w")


def test_addresses_and_arguments_are_validated():
    with pytest.raises(ValueError):
        OrchestratorClient(" , ")
    client = OrchestratorClient("a:1, b:2,a:1")
    try:
        assert client.addresses == ("a:1", "b:2")
        with pytest.raises(ValueError):
            client.start_workflow("x", idempotency_strategy="SOMETIMES")
        with pytest.raises(ValueError):
            client.list_workflows(status="SLEEPING")
        with pytest.raises(ValueError):
            client.start_workflow("x", {"bad": float("nan")})
    finally:
        client.close()


# --------------------------------------------------------------------------------------------
# Data conversion


def test_workflow_view_decodes_json_and_statuses(make_server, make_client):
    server = make_server()
    wf = workflows_pb2.Workflow(
        workflow_id="wf-1",
        workflow_name="order",
        workflow_version=2,
        status=workflows_pb2.WORKFLOW_STATUS_COMPLETED,
        input_json='{"qty": 2}',
        output_json="",
        variables_json='{"v": [1, 2]}',
        tasks=[
            workflows_pb2.Task(
                task_id="t1",
                reference_task_name="pay",
                status=workflows_pb2.TASK_STATUS_FAILED,
                seq=1,
            ),
            workflows_pb2.Task(
                task_id="t2",
                reference_task_name="pay",
                status=workflows_pb2.TASK_STATUS_COMPLETED,
                output_json='{"paid": true}',
                seq=2,
                retried_task_id="t1",
            ),
        ],
    )
    server.on("GetWorkflow", reply(workflows_pb2.GetWorkflowResponse(workflow=wf)))
    server.on("ListWorkflows", reply(workflows_pb2.ListWorkflowsResponse(workflows=[wf])))
    client = make_client(server.address)

    got = client.get_workflow("wf-1")
    assert got.status == "COMPLETED" and got.is_terminal
    assert got.input == {"qty": 2}
    assert got.output == {}
    assert got.variables == {"v": [1, 2]}
    assert [t.status for t in got.tasks] == ["FAILED", "COMPLETED"]
    latest = got.task_by_ref("pay")
    assert latest is not None and latest.task_id == "t2" and latest.output == {"paid": True}

    listed = client.list_workflows(name="order", status="completed", limit=5)
    assert [w.workflow_id for w in listed] == ["wf-1"]
    request = server.calls_of("ListWorkflows")[0].request
    assert request.status == workflows_pb2.WORKFLOW_STATUS_COMPLETED
    assert request.workflow_name == "order" and request.limit == 5


def test_definitions_round_trip_as_json(make_server, make_client):
    server = make_server()
    definition = {"name": "order", "version": 3, "tasks": []}
    server.on(
        "RegisterWorkflowDef",
        reply(definitions_pb2.RegisterWorkflowDefResponse(name="order", version=3)),
    )
    server.on(
        "GetWorkflowDef",
        reply(definitions_pb2.GetWorkflowDefResponse(definition_json=json.dumps(definition))),
    )
    server.on("RegisterTaskDefs", reply(definitions_pb2.RegisterTaskDefsResponse(names=["a", "b"])))
    client = make_client(server.address)

    assert client.register_workflow_def(definition, overwrite=True) == ("order", 3)
    sent = server.calls_of("RegisterWorkflowDef")[0].request
    assert json.loads(sent.definition_json) == definition and sent.overwrite
    assert client.get_workflow_def("order") == definition
    assert client.register_task_defs([{"name": "a"}, '{"name": "b"}']) == ["a", "b"]
    sent_defs = server.calls_of("RegisterTaskDefs")[0].request.task_def_json
    assert [json.loads(d) for d in sent_defs] == [{"name": "a"}, {"name": "b"}]


def test_cluster_status_lists_every_field_with_int_numbers(make_server, make_client):
    server = make_server()
    server.on(
        "GetClusterStatus",
        reply(
            cluster_pb2.GetClusterStatusResponse(
                replicas=[
                    cluster_pb2.ReplicaStatus(node_id="n1", role="LEADER", applied_sequence=9),
                    cluster_pb2.ReplicaStatus(node_id="n2", role="UNREACHABLE"),
                ],
                leader_id="n1",
            )
        ),
    )
    client = make_client(server.address)

    rows = client.cluster_status()

    assert [r["node_id"] for r in rows] == ["n1", "n2"]
    assert rows[0]["applied_sequence"] == 9
    assert rows[1]["applied_sequence"] == 0 and rows[1]["serving"] is False
    assert set(rows[0]) == {f.name for f in cluster_pb2.ReplicaStatus.DESCRIPTOR.fields}


def test_wait_for_workflow_returns_terminal_workflow(make_server, make_client):
    server = make_server()
    running = workflows_pb2.Workflow(workflow_id="w", status=workflows_pb2.WORKFLOW_STATUS_RUNNING)
    done = workflows_pb2.Workflow(workflow_id="w", status=workflows_pb2.WORKFLOW_STATUS_FAILED)
    server.on(
        "GetWorkflow",
        script(
            reply(workflows_pb2.GetWorkflowResponse(workflow=running)),
            fail(grpc.StatusCode.UNAVAILABLE),
            reply(workflows_pb2.GetWorkflowResponse(workflow=done)),
        ),
    )
    client = make_client(server.address)

    assert client.wait_for_workflow("w", timeout_s=WAIT_S, poll_interval_s=0.01).status == "FAILED"


def test_wait_for_workflow_times_out(make_server, make_client):
    server = make_server()
    running = workflows_pb2.Workflow(workflow_id="w", status=workflows_pb2.WORKFLOW_STATUS_RUNNING)
    server.on("GetWorkflow", reply(workflows_pb2.GetWorkflowResponse(workflow=running)))
    client = make_client(server.address)

    with pytest.raises(TimeoutError):
        client.wait_for_workflow("w", timeout_s=0.2, poll_interval_s=0.02)


# --------------------------------------------------------------------------------------------
# Starts made at once by several threads share StartWorkflows calls


def _wait_queued(client: OrchestratorClient, n: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while len(client._starts._queue) < n:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"expected {n} starts queued"
        time.sleep(0.005)


def _start_in_threads(
    client: OrchestratorClient, names: list[str]
) -> tuple[dict[str, Any], list[threading.Thread]]:
    results: dict[str, Any] = {}

    def start(name: str) -> None:
        try:
            results[name] = client.start_workflow(name)
        except Exception as exc:
            results[name] = exc

    threads = [threading.Thread(target=start, args=(n,)) for n in names]
    for t in threads:
        t.start()
    return results, threads


def _one_by_name(request: Any, context: grpc.ServicerContext) -> Message:
    return workflows_pb2.StartWorkflowResponse(workflow_id=f"wf-{request.name}", created=True)


def test_starts_queued_behind_a_call_go_together_each_with_its_own_outcome(
    make_server, make_client
):
    server = make_server()
    gate = threading.Event()
    server.on("StartWorkflow", block_until(gate, _one_by_name))

    def batch(request: Any, context: grpc.ServicerContext) -> Message:
        results = []
        for item in request.items:
            if item.name == "missing":
                results.append(
                    workflows_pb2.StartWorkflowResult(
                        code=grpc.StatusCode.NOT_FOUND.value[0], message="no such definition"
                    )
                )
            else:
                results.append(workflows_pb2.StartWorkflowResult(workflow_id=f"wf-{item.name}"))
        return workflows_pb2.StartWorkflowsResponse(results=results)

    server.on("StartWorkflows", batch)
    client = make_client([server.address])
    first, first_threads = _start_in_threads(client, ["first"])
    server.wait_calls("StartWorkflow", 1)
    names = ["a", "b", "missing", "c"]
    results, threads = _start_in_threads(client, names)
    _wait_queued(client, len(names))
    gate.set()
    for t in first_threads + threads:
        t.join(WAIT_S)
    assert first == {"first": "wf-first"}, "the first start went alone, at once"
    (call,) = server.calls_of("StartWorkflows")
    assert sorted(i.name for i in call.request.items) == sorted(names)
    assert len({i.request_id for i in call.request.items}) == len(names)
    assert [results[n] for n in ("a", "b", "c")] == ["wf-a", "wf-b", "wf-c"]
    assert isinstance(results["missing"], NotFoundError)
    assert len(server.calls_of("StartWorkflow")) == 1


def test_a_failed_batch_call_fails_every_start_in_it(make_server, make_client):
    server = make_server()
    gate = threading.Event()
    server.on("StartWorkflow", block_until(gate, _one_by_name))
    server.on("StartWorkflows", fail(grpc.StatusCode.INVALID_ARGUMENT, "bad batch"))
    client = make_client([server.address])
    _, first_threads = _start_in_threads(client, ["first"])
    server.wait_calls("StartWorkflow", 1)
    results, threads = _start_in_threads(client, ["a", "b"])
    _wait_queued(client, 2)
    gate.set()
    for t in first_threads + threads:
        t.join(WAIT_S)
    assert all(isinstance(results[n], InvalidArgumentError) for n in ("a", "b"))
    # The turn was passed on: a later start is served.
    assert client.start_workflow("later") == "wf-later"


def test_starts_fall_back_to_one_call_each_on_a_server_without_startworkflows(
    make_server, make_client
):
    server = make_server()
    gate = threading.Event()

    def one(request: Any, context: grpc.ServicerContext) -> Message:
        if request.name == "first":
            gate.wait(WAIT_S)
        return _one_by_name(request, context)

    server.on("StartWorkflow", one)  # and no StartWorkflows: the fake answers UNIMPLEMENTED
    client = make_client([server.address])
    _, first_threads = _start_in_threads(client, ["first"])
    server.wait_calls("StartWorkflow", 1)
    results, threads = _start_in_threads(client, ["a", "b", "c"])
    _wait_queued(client, 3)
    gate.set()
    for t in first_threads + threads:
        t.join(WAIT_S)
    assert results == {"a": "wf-a", "b": "wf-b", "c": "wf-c"}
    assert len(server.calls_of("StartWorkflows")) == 1
    assert client._starts is not None and client._starts._unbatched
    # From now on every start is its own StartWorkflow call.
    results, threads = _start_in_threads(client, ["d", "e"])
    for t in threads:
        t.join(WAIT_S)
    assert results == {"d": "wf-d", "e": "wf-e"}
    assert len(server.calls_of("StartWorkflows")) == 1


def test_batch_starts_off_sends_every_start_alone(make_server, make_client):
    server = make_server()
    server.on("StartWorkflow", _one_by_name)
    client = make_client([server.address], batch_starts=False)
    results, threads = _start_in_threads(client, [f"n{i}" for i in range(8)])
    for t in threads:
        t.join(WAIT_S)
    assert results == {f"n{i}": f"wf-n{i}" for i in range(8)}
    assert len(server.calls_of("StartWorkflow")) == 8 and not server.calls_of("StartWorkflows")


# --------------------------------------------------------------------------------------------
# Worker


class TaskQueue:
    """A fake TaskService: polls lease from a queue, reports are recorded."""

    def __init__(self, server: FakeServer) -> None:
        self.pending: queue.Queue[workflows_pb2.Task] = queue.Queue()
        self.server = server
        server.on("PollTasks", self._poll)
        server.on("CompleteTask", reply(tasks_pb2.CompleteTaskResponse()))
        server.on("FailTask", reply(tasks_pb2.FailTaskResponse()))
        server.on("HeartbeatTask", reply(tasks_pb2.HeartbeatTaskResponse(lease_expires_ms=99)))

    def add(self, task_id: str, task_type: str = "double", **input: Any) -> None:
        self.pending.put(
            workflows_pb2.Task(
                task_id=task_id,
                task_type=task_type,
                status=workflows_pb2.TASK_STATUS_IN_PROGRESS,
                input_json=json.dumps(input),
                response_timeout_seconds=60,
            )
        )

    def _poll(self, request: Any, context: grpc.ServicerContext) -> Message:
        tasks: list[workflows_pb2.Task] = []
        try:
            tasks.append(self.pending.get(timeout=request.timeout_ms / 1000.0))
            while len(tasks) < request.count:
                tasks.append(self.pending.get_nowait())
        except queue.Empty:
            pass
        return tasks_pb2.PollTasksResponse(tasks=tasks)


@pytest.fixture
def task_queue(make_server) -> TaskQueue:
    return TaskQueue(make_server())


@pytest.fixture
def make_worker(make_client) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def make(address: str, **kwargs: Any) -> Worker:
        kwargs.setdefault("poll_timeout_ms", 100)
        worker = Worker(make_client(address, retry_budget_s=2.0), worker_id="w-test", **kwargs)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop(timeout_s=WAIT_S)


def test_worker_completes_tasks_and_stops(task_queue, make_worker):
    worker = make_worker(task_queue.server.address, concurrency=3)

    @worker.task("double")
    def double(task: Task) -> dict[str, Any]:
        return {"y": task.input["x"] * 2}

    for i in range(5):
        task_queue.add(f"t{i}", x=i)
    worker.start()

    calls = task_queue.server.wait_calls("CompleteTask", 5)
    worker.stop(timeout_s=WAIT_S)

    outputs = {c.request.task_id: json.loads(c.request.output_json) for c in calls}
    assert outputs == {f"t{i}": {"y": i * 2} for i in range(5)}
    assert all(c.request.worker_id == "w-test" for c in calls)
    assert all(c.request.request_id for c in calls)
    polls = task_queue.server.calls_of("PollTasks")
    # Two pollers share the 3 slots: each poll asks for at most ceil(3 / 2), so one poll can
    # still wait at the server while the other's tasks run. (Which poller's call reaches the
    # server first is a race, so no order is assumed.)
    assert max(p.request.count for p in polls) == 2
    assert all(1 <= p.request.count <= 2 for p in polls)
    stats = worker.stats
    assert (stats.polled, stats.completed, stats.failed, stats.running) == (5, 5, 0, 0)
    assert worker.stopping


def test_a_handler_slot_is_free_while_its_result_is_reported(task_queue, make_worker):
    # One handler thread: the second task runs while the first one's report is still waiting
    # for the server, and stop() waits for that report.
    gate = threading.Event()
    task_queue.server.on("CompleteTask", block_until(gate, reply(tasks_pb2.CompleteTaskResponse())))
    worker = make_worker(task_queue.server.address, concurrency=1)
    ran: dict[str, threading.Event] = {"t0": threading.Event(), "t1": threading.Event()}

    @worker.task("double")
    def double(task: Task) -> dict[str, Any]:
        ran[task.task_id].set()
        return {"y": task.input["x"] * 2}

    task_queue.add("t0", x=0)
    task_queue.add("t1", x=1)
    worker.start()
    task_queue.server.wait_calls("CompleteTask", 1)
    assert ran["t1"].wait(WAIT_S), "the second task waited for the first one's report"
    assert worker.stats.running == 2 and worker.stats.completed == 0
    gate.set()
    worker.stop(timeout_s=WAIT_S)
    calls = task_queue.server.calls_of("CompleteTask")
    assert sorted(c.request.task_id for c in calls) == ["t0", "t1"]
    stats = worker.stats
    assert (stats.completed, stats.running) == (2, 0)


def test_worker_fails_task_when_handler_raises(task_queue, make_worker):
    worker = make_worker(task_queue.server.address)

    def handler(task: Task) -> dict[str, Any]:
        if task.input["kind"] == "crash":
            raise KeyError("missing sku")
        if task.input["kind"] == "terminal":
            raise TaskFailure("card declined", terminal=True, output={"code": 51})
        return {"ok": True}

    worker.register("double", handler)
    task_queue.add("crash", kind="crash")
    task_queue.add("terminal", kind="terminal")
    task_queue.add("fine", kind="fine")
    worker.start()

    fails = {c.request.task_id: c.request for c in task_queue.server.wait_calls("FailTask", 2)}
    task_queue.server.wait_calls("CompleteTask", 1)
    worker.stop(timeout_s=WAIT_S)

    assert fails["crash"].reason == str(KeyError("missing sku"))
    assert not fails["crash"].terminal
    assert fails["terminal"].reason == "card declined" and fails["terminal"].terminal
    assert json.loads(fails["terminal"].output_json) == {"code": 51}
    assert (worker.stats.completed, worker.stats.failed) == (1, 2)


def test_worker_stop_waits_for_running_tasks_to_report(task_queue, make_worker):
    worker = make_worker(task_queue.server.address, concurrency=2)
    entered = threading.Event()
    proceed = threading.Event()

    @worker.task("double")
    def slow(task: Task) -> dict[str, Any]:
        entered.set()
        assert proceed.wait(WAIT_S)
        return {"done": True}

    task_queue.add("t1")
    worker.start()
    assert entered.wait(WAIT_S)

    stopper = threading.Thread(target=worker.stop, kwargs={"timeout_s": WAIT_S})
    stopper.start()
    # stop() cannot finish while the handler runs; it must still be waiting after the poller,
    # which a 100 ms poll timeout lets go almost at once.
    for reg in worker._registrations.values():
        assert reg.pollers
        for poller in reg.pollers:
            poller.join(WAIT_S)
            assert not poller.is_alive()
    assert stopper.is_alive()
    assert task_queue.server.calls_of("CompleteTask") == []

    proceed.set()
    stopper.join(WAIT_S)
    assert not stopper.is_alive()
    # The report happened before stop() returned.
    assert [c.request.task_id for c in task_queue.server.calls_of("CompleteTask")] == ["t1"]
    assert worker.stats.completed == 1 and worker.stats.running == 0


def test_worker_heartbeats_long_running_tasks(task_queue, make_worker):
    worker = make_worker(task_queue.server.address, heartbeat_interval_s=0.05)

    @worker.task("double")
    def long_running(task: Task, ctx: TaskContext) -> dict[str, Any]:
        task_queue.server.wait_calls("HeartbeatTask", 2)
        return {"lease": ctx.lease_expires_ms}

    task_queue.add("t1")
    worker.start()

    (complete,) = task_queue.server.wait_calls("CompleteTask", 1)
    assert json.loads(complete.request.output_json) == {"lease": 99}
    beats = task_queue.server.calls_of("HeartbeatTask")
    assert {b.request.task_id for b in beats} == {"t1"}
    assert all(b.request.worker_id == "w-test" for b in beats)


def test_late_report_is_dropped_not_retried(task_queue, make_worker, caplog):
    task_queue.server.on("CompleteTask", fail(grpc.StatusCode.FAILED_PRECONDITION, "lease expired"))
    worker = make_worker(task_queue.server.address)
    worker.register("double", lambda task: {"late": True})
    task_queue.add("t1")

    with caplog.at_level(logging.WARNING, logger="orchestrator_client.worker"):
        worker.start()
        task_queue.server.wait_calls("CompleteTask", 1)
        worker.stop(timeout_s=WAIT_S)

    assert len(task_queue.server.calls_of("CompleteTask")) == 1
    assert worker.stats.lost == 1 and worker.stats.completed == 0
    assert any("lease lost" in r.getMessage() for r in caplog.records)


def test_worker_fails_task_whose_output_is_not_json(task_queue, make_worker):
    worker = make_worker(task_queue.server.address)
    worker.register("double", lambda task: {"when": object()})
    task_queue.add("t1")
    worker.start()

    (failed,) = task_queue.server.wait_calls("FailTask", 1)
    assert "not valid JSON" in failed.request.reason
    assert task_queue.server.calls_of("CompleteTask") == []


def test_worker_poller_backs_off_when_cluster_is_unreachable(make_server, make_worker):
    server = make_server()
    server.on("PollTasks", fail(grpc.StatusCode.PERMISSION_DENIED, "no"))
    worker = make_worker(server.address)
    worker.register("double", lambda task: None)
    worker.start()

    server.wait_calls("PollTasks", 1)
    worker.stop(timeout_s=WAIT_S)
    # After an error the poller pauses (0.5 s) instead of spinning; stop() cut the pause short.
    assert len(server.calls_of("PollTasks")) <= 2
    assert worker.stats.poll_errors >= 1


def test_each_caller_of_a_failed_batch_start_gets_its_own_error_object():
    from orchestrator_client._coalescer import StartCoalescer, StartSlot

    failure = UnavailableError(grpc.StatusCode.UNAVAILABLE, "no leader", op="StartWorkflows")

    class FailingClient:
        def _start_batch(self, requests: Any) -> Any:
            raise failure

    coalescer = StartCoalescer(FailingClient())  # type: ignore[arg-type]
    slots = [
        StartSlot(workflows_pb2.StartWorkflowRequest(request_id=f"r{i}", name="wf"))
        for i in range(3)
    ]
    coalescer._queue, coalescer._sending = list(slots), True
    coalescer._send()
    errors = [s.outcome for s in slots]
    assert len({id(e) for e in errors}) == 3, "one object per caller, never one shared"
    assert all(type(e) is UnavailableError and e.code == failure.code for e in errors)
    assert [e.request_id for e in errors] == ["r0", "r1", "r2"]
    assert all(str(e) == str(failure) for e in errors)


def test_the_method_table_is_derived_from_the_service_descriptors():
    from orchestrator_client._rpc import RPCS, rpc_of

    start = rpc_of(workflows_pb2.StartWorkflowRequest())
    assert start.name == "StartWorkflow"
    assert start.path == "/orchestrator.v1.WorkflowService/StartWorkflow"
    assert start.response_type is workflows_pb2.StartWorkflowResponse
    assert rpc_of(cluster_pb2.GetReplicaStatusRequest()).response_type is cluster_pb2.ReplicaStatus
    # Every RPC of the five services, as the fake server finds them on its own.
    assert {r.path for r in RPCS} == set(METHODS)
    assert all(rpc_of(r.request_type()) is r for r in RPCS)


def test_two_rpcs_taking_one_request_type_are_refused():
    from orchestrator_client._rpc import Rpc, _by_request

    one = Rpc("A", "/s/A", tasks_pb2.PollTasksRequest, tasks_pb2.PollTasksResponse)
    other = Rpc("B", "/s/B", tasks_pb2.PollTasksRequest, tasks_pb2.PollTasksResponse)
    with pytest.raises(RuntimeError, match="both take PollTasksRequest"):
        _by_request([one, other])
