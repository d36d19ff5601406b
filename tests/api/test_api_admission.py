"""Admission control (api/admission.py): long polls and calls in flight are bounded per replica,
beyond a bound the answer is RESOURCE_EXHAUSTED at once with a retry hint, and health and status
keep answering under any load."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from orchestrator_client.v1 import cluster_pb2, cluster_pb2_grpc
from orchestrator_client.v1 import definitions_pb2 as dpb
from orchestrator_client.v1 import tasks_pb2 as tpb
from orchestrator_client.v1 import workflows_pb2 as wpb

from orchestrator import config
from orchestrator.api import admission
from orchestrator.api.errors import FORWARDED_KEY, RETRY_AFTER_KEY
from orchestrator.server import ReplicaServer
from tests.cluster_support import api_stubs, wait_for

IDLE_POLLS = 300


@pytest.fixture(scope="module")
def channel(server: ReplicaServer) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(server.grpc_addr)
    yield ch
    ch.close()


def _long_poll(stubs: Any, i: int) -> Any:
    request = tpb.PollTasksRequest(
        request_id=uuid.uuid4().hex, task_type="adm_idle", worker_id=f"w{i}", timeout_ms=20_000
    )
    # Every other one as a follower forwards it: it counts on the leader like any other.
    md = ((FORWARDED_KEY, "1"),) if i % 2 else ()
    return stubs.tasks.PollTasks.future(request, timeout=30, metadata=md)


def test_idle_long_polls_beyond_the_bound_are_refused_and_health_still_answers(
    server: ReplicaServer, channel: grpc.Channel
) -> None:
    settings = server.cfg.admission
    stubs = api_stubs(channel)
    assert settings.max_long_polls < IDLE_POLLS
    # The bounds hold threads for every admitted call, with room to answer the rest.
    assert settings.max_in_flight + settings.max_status_calls < admission.pool_workers(settings)
    polls = [_long_poll(stubs, i) for i in range(IDLE_POLLS)]
    try:
        refused = IDLE_POLLS - settings.max_long_polls
        wait_for(lambda: sum(f.done() for f in polls) >= refused, 20, "the refusals")
        done = [f for f in polls if f.done()]
        assert len(done) == refused  # the admitted ones are still waiting
        for f in done:
            assert f.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, f.details()
            assert "max_long_polls" in f.details()
            assert dict(f.trailing_metadata() or ())[RETRY_AFTER_KEY] == str(
                settings.retry_after_ms
            )

        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        status = cluster_pb2_grpc.ClusterServiceStub(channel).GetClusterStatus(
            cluster_pb2.GetClusterStatusRequest(), timeout=5
        )
        assert status.leader_id == "n1"
        _register_and_start(stubs)
    finally:
        for f in polls:
            f.cancel()
    # The slots come back when the polls end: a long poll is admitted again.
    short = tpb.PollTasksRequest(request_id="adm-after", task_type="adm_idle", timeout_ms=10)
    wait_for(lambda: _admitted(lambda: stubs.tasks.PollTasks(short, timeout=5)), 10, "a slot")


def _admitted(call: Callable[[], Any]) -> bool:
    try:
        call()
    except grpc.RpcError as err:
        if err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
            return False
        raise
    return True


def _register_and_start(stubs: Any) -> None:
    stubs.defs.RegisterTaskDefs(
        dpb.RegisterTaskDefsRequest(
            request_id="adm-td", task_def_json=[json.dumps({"name": "adm_t"})]
        ),
        timeout=5,
    )
    stubs.defs.RegisterWorkflowDef(
        dpb.RegisterWorkflowDefRequest(
            request_id="adm-wf",
            definition_json=json.dumps(
                {"name": "adm_flow", "tasks": [{"name": "adm_t", "taskReferenceName": "a"}]}
            ),
        ),
        timeout=5,
    )
    started = stubs.wfs.StartWorkflow(
        wpb.StartWorkflowRequest(request_id="adm-start", name="adm_flow"), timeout=5
    )
    assert started.workflow_id


# ---- the interceptor alone, with small bounds


class _Context:
    """What a handler sees of grpc.ServicerContext here: trailers and abort."""

    def __init__(self) -> None:
        self.trailers: tuple[tuple[str, str], ...] = ()

    def set_trailing_metadata(self, trailers: tuple[tuple[str, str], ...]) -> None:
        self.trailers = trailers

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _Aborted(code, details)


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _held_calls(
    gate: admission.Admission, method: str, request: Any, n: int
) -> tuple[list[threading.Thread], threading.Event, list[Any]]:
    """n calls of `method` whose handler waits for the returned event; their results."""
    release = threading.Event()
    started = threading.Semaphore(0)
    results: list[Any] = []

    def behaviour(req: Any, ctx: Any) -> str:
        started.release()
        release.wait(10)
        return "ok"

    handler = gate.intercept_service(
        lambda _: grpc.unary_unary_rpc_method_handler(behaviour), _Details(method)
    )

    def call() -> None:
        try:
            results.append(handler.unary_unary(request, _Context()))
        except _Aborted as exc:
            results.append(exc)
            started.release()

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    for _ in range(n):
        assert started.acquire(timeout=10)
    return threads, release, results


def _call(gate: admission.Admission, method: str, request: Any = None) -> Any:
    handler = gate.intercept_service(
        lambda _: grpc.unary_unary_rpc_method_handler(lambda req, ctx: "ok"), _Details(method)
    )
    ctx = _Context()
    try:
        return handler.unary_unary(request, ctx)
    except _Aborted as exc:
        assert dict(ctx.trailers)[RETRY_AFTER_KEY] == "50"
        return exc


SMALL = config.AdmissionSettings(
    max_in_flight=3, max_long_polls=2, max_status_calls=1, retry_after_ms=50
)
START = "/orchestrator.v1.WorkflowService/StartWorkflow"


def test_calls_beyond_max_in_flight_are_refused_before_decoding_and_status_has_its_own() -> None:
    gate = admission.Admission(SMALL)
    threads, release, results = _held_calls(gate, START, None, 3)
    try:
        refused = _call(gate, START)
        assert isinstance(refused, _Aborted)
        assert refused.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_in_flight" in refused.details
        # Refused in the interceptor: the request is never decoded.
        handler = gate.intercept_service(
            lambda _: grpc.unary_unary_rpc_method_handler(
                lambda req, ctx: "ok", request_deserializer=_never_called
            ),
            _Details(START),
        )
        handler.request_deserializer(b"\xff")
        # Health and cluster status are admitted from their own capacity.
        assert _call(gate, admission.HEALTH_CHECK) == "ok"
        assert _call(gate, "/orchestrator.v1.ClusterService/GetClusterStatus") == "ok"
    finally:
        release.set()
        for t in threads:
            t.join()
    assert results == ["ok"] * 3
    assert gate.calls.used == 0
    assert _call(gate, START) == "ok"


def _never_called(data: bytes) -> Any:
    raise AssertionError("a refused call's request was decoded")


def test_long_polls_have_their_own_bound_and_polls_that_never_wait_do_not_count() -> None:
    gate = admission.Admission(SMALL)
    long_poll = tpb.PollTasksRequest(task_type="t", timeout_ms=1000)
    threads, release, _ = _held_calls(gate, admission.POLL_TASKS, long_poll, 2)
    try:
        refused = _call(gate, admission.POLL_TASKS, long_poll)
        assert isinstance(refused, _Aborted) and "max_long_polls" in refused.details
        assert gate.calls.used == 2  # the refused poll took no call slot either
        assert _call(gate, admission.POLL_TASKS, tpb.PollTasksRequest(task_type="t")) == "ok"
        assert _call(gate, START) == "ok"
    finally:
        release.set()
        for t in threads:
            t.join()
    assert (gate.calls.used, gate.long_polls.used) == (0, 0)


def test_an_execution_waiting_for_its_workflow_holds_a_long_poll_slot() -> None:
    gate = admission.Admission(SMALL)
    execute = wpb.ExecuteWorkflowRequest(start=wpb.StartWorkflowRequest(name="f"))
    threads, release, _ = _held_calls(gate, admission.EXECUTE_WORKFLOW, execute, 2)
    try:
        refused = _call(gate, admission.EXECUTE_WORKFLOW, execute)
        assert isinstance(refused, _Aborted) and "max_long_polls" in refused.details
        long_poll = tpb.PollTasksRequest(task_type="t", timeout_ms=1000)
        assert isinstance(_call(gate, admission.POLL_TASKS, long_poll), _Aborted)
        assert _call(gate, START) == "ok"
    finally:
        release.set()
        for t in threads:
            t.join()
    assert (gate.calls.used, gate.long_polls.used) == (0, 0)


def test_the_status_capacity_is_bounded_too() -> None:
    gate = admission.Admission(SMALL)
    threads, release, _ = _held_calls(gate, admission.HEALTH_CHECK, None, 1)
    try:
        refused = _call(gate, admission.HEALTH_CHECK)
        assert isinstance(refused, _Aborted) and "max_status_calls" in refused.details
        assert _call(gate, START) == "ok"
    finally:
        release.set()
        for t in threads:
            t.join()


def test_admission_is_configured_under_admission(tmp_path: Any) -> None:
    path = tmp_path / "cluster.json"
    raw: dict[str, Any] = {
        "password": "pw",
        "replicas": [{"id": "n1", "grpc": "127.0.0.1:1", "raft": "127.0.0.1:2"}],
    }
    path.write_text(json.dumps(raw))
    assert config.load(str(path)).admission == config.AdmissionSettings()
    path.write_text(json.dumps(dict(raw, admission={"max_in_flight": 300, "max_long_polls": 250})))
    loaded = config.load(str(path)).admission
    assert (loaded.max_in_flight, loaded.max_long_polls) == (300, 250)
    assert admission.pool_workers(loaded) >= 300 + loaded.max_status_calls
    for bad in (
        {"max_calls": 7},
        {"max_in_flight": 0},
        {"max_in_flight": "7"},
        {"max_in_flight": 10, "max_long_polls": 11},
    ):
        path.write_text(json.dumps(dict(raw, admission=bad)))
        with pytest.raises(config.ConfigError, match="admission"):
            config.load(str(path))
