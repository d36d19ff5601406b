"""The client's error surface from the server's structured details: `.reason`, `.retry_delay`
and `.leader` (the trailers when a server sends no details), and the retry plan following the
LeaderHint detail before the x-orchestrator-leader trailer; sync and asyncio."""

from __future__ import annotations

import asyncio
import pickle
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from orchestrator_client import (
    NotFoundError,
    OrchestratorClient,
    ResourceExhaustedError,
    UnavailableError,
)
from orchestrator_client._details import ErrorDetails, error_details
from orchestrator_client.aio import AsyncOrchestratorClient
from orchestrator_client.errors import OrchestratorError
from orchestrator_client.v1 import errors_pb2

from tests.client.test_client_unit import LEADER_KEY, RETRY_AFTER_KEY, FakeServer, started
from tests.fakes import fake_server

DETAILS_KEY = "grpc-status-details-bin"


def details_bin(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    retry_ms: int | None = None,
    leader: str = "",
) -> bytes:
    status = status_pb2.Status(code=code.value[0], message=message)
    packed: list[Message] = [
        error_details_pb2.ErrorInfo(reason=reason, domain="orchestrator.v1", metadata={"k": "v"})
    ]
    if retry_ms is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromMilliseconds(retry_ms)
        packed.append(retry)
    if leader:
        packed.append(errors_pb2.LeaderHint(address=leader, replica_id="n9"))
    for message_ in packed:
        item = any_pb2.Any()
        item.Pack(message_)
        status.details.append(item)
    return status.SerializeToString()


def failing_with(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    retry_ms: int | None = None,
    leader: str = "",
    trailers: tuple[tuple[str, str], ...] = (),
) -> Callable[[Any, grpc.ServicerContext], Message]:
    """A behaviour that aborts as the server does: the trailers and the details beside them."""
    blob = details_bin(code, message, reason, retry_ms, leader)

    def behaviour(request: Any, context: grpc.ServicerContext) -> Message:
        context.set_trailing_metadata((*trailers, (DETAILS_KEY, blob)))
        context.abort(code, message)
        raise AssertionError("unreachable")

    return behaviour


@pytest.fixture
def servers() -> Iterator[Callable[[], FakeServer]]:
    made: list[FakeServer] = []

    def make() -> FakeServer:
        made.append(FakeServer())
        return made[-1]

    yield make
    for s in made:
        s.stop()


# ---- decoding


def test_the_details_decode_and_win_over_the_trailers() -> None:
    blob = details_bin(grpc.StatusCode.UNAVAILABLE, "m", "NOT_LEADER", 150, "h2:1")
    got = error_details(((LEADER_KEY, "h3:1"), (RETRY_AFTER_KEY, "900"), (DETAILS_KEY, blob)))
    assert got == ErrorDetails("NOT_LEADER", 0.15, "h2:1")
    # A server without details: the trailers.
    assert error_details(((LEADER_KEY, "h3:1"), (RETRY_AFTER_KEY, "900"))) == ErrorDetails(
        None, 0.9, "h3:1"
    )
    # Details without a hint: the trailer still names the leader (a replica naming itself).
    blob = details_bin(grpc.StatusCode.UNAVAILABLE, "m", "NO_LEADER", 100)
    assert error_details(((LEADER_KEY, "h1:1"), (DETAILS_KEY, blob))) == ErrorDetails(
        "NO_LEADER", 0.1, "h1:1"
    )
    assert error_details(((DETAILS_KEY, b"\xff\x00garbage"),)) == ErrorDetails()
    assert error_details(None) == ErrorDetails()


def test_the_error_fields_survive_pickling() -> None:
    err = UnavailableError(
        grpc.StatusCode.UNAVAILABLE,
        "no leader",
        op="StartWorkflow",
        reason="NO_LEADER",
        retry_delay=0.1,
        leader="h2:1",
    )
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is UnavailableError
    assert (back.reason, back.retry_delay, back.leader) == ("NO_LEADER", 0.1, "h2:1")
    plain = OrchestratorError(grpc.StatusCode.INTERNAL, "x")
    assert (plain.reason, plain.retry_delay, plain.leader) == (None, None, None)


# ---- the retry plan and the raised errors, against scripted fake replicas


def test_the_leader_hint_detail_is_followed_before_the_trailer(
    servers: Callable[[], FakeServer],
) -> None:
    follower, leader, stale = servers(), servers(), servers()
    follower.on(
        "StartWorkflow",
        failing_with(
            grpc.StatusCode.UNAVAILABLE,
            "not the leader",
            "NOT_LEADER",
            leader=leader.address,
            trailers=((LEADER_KEY, stale.address),),
        ),
    )
    leader.on("StartWorkflow", started("wf-9"))
    stale.on("StartWorkflow", started("wf-stale"))
    with OrchestratorClient([follower.address], retry_budget_s=5) as client:
        assert client.start_workflow("order") == "wf-9"
    assert not stale.calls_of("StartWorkflow")


def test_a_definite_error_names_its_reason(servers: Callable[[], FakeServer]) -> None:
    replica = servers()
    replica.on(
        "GetWorkflow",
        failing_with(grpc.StatusCode.NOT_FOUND, "wf not found here", "POSSIBLY_STALE_READ"),
    )
    with OrchestratorClient([replica.address]) as client, pytest.raises(NotFoundError) as info:
        client.get_workflow("wf-1")
    assert info.value.reason == "POSSIBLY_STALE_READ"
    assert info.value.retry_delay is None and info.value.leader is None


def test_an_exhausted_budget_keeps_the_last_details(servers: Callable[[], FakeServer]) -> None:
    replica = servers()
    replica.on(
        "StartWorkflow",
        failing_with(grpc.StatusCode.UNAVAILABLE, "no leader", "NO_LEADER", retry_ms=100),
    )
    client = OrchestratorClient([replica.address], retry_budget_s=0.3)
    with client, pytest.raises(UnavailableError) as info:
        client.start_workflow("order")
    assert (info.value.reason, info.value.retry_delay, info.value.leader) == (
        "NO_LEADER",
        0.1,
        None,
    )


def test_backpressure_waits_the_retry_info_delay(servers: Callable[[], FakeServer]) -> None:
    replica = servers()
    replica.on(
        "StartWorkflow",
        failing_with(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", "OVERLOADED", retry_ms=300),
    )
    began = time.monotonic()
    client = OrchestratorClient([replica.address], retry_budget_s=0.5)
    with client, pytest.raises(ResourceExhaustedError) as info:
        client.start_workflow("order")
    calls = replica.calls_of("StartWorkflow")
    # 0.3-0.36 s between attempts (the delay, jittered): two attempts fit in the budget.
    assert len(calls) == 2, len(calls)
    assert time.monotonic() - began >= 0.3
    assert (info.value.reason, info.value.retry_delay) == ("OVERLOADED", 0.3)


def test_a_limit_of_the_state_is_final_and_definite(servers: Callable[[], FakeServer]) -> None:
    replica = servers()
    # Any RPC may meet a limit (a consumer group's Ack does); the client does not decide which.
    replica.on(
        "StartWorkflow",
        failing_with(grpc.StatusCode.RESOURCE_EXHAUSTED, "at most N of them", "LIMIT_EXCEEDED"),
    )
    client = OrchestratorClient([replica.address], retry_budget_s=5)
    with client, pytest.raises(OrchestratorError) as info:
        client.start_workflow("order")
    assert len(replica.calls_of("StartWorkflow")) == 1  # not retried
    assert type(info.value) is OrchestratorError  # not "the budget ran out"
    assert info.value.reason == "LIMIT_EXCEEDED" and not info.value.outcome_unknown


def test_the_asyncio_client_follows_the_hint_and_names_the_reason(
    servers: Callable[[], FakeServer],
) -> None:
    follower, leader = servers(), servers()
    follower.on(
        "StartWorkflow",
        failing_with(
            grpc.StatusCode.UNAVAILABLE, "not the leader", "NOT_LEADER", leader=leader.address
        ),
    )
    leader.on("StartWorkflow", started("wf-a"))
    leader.on("GetWorkflow", failing_with(grpc.StatusCode.NOT_FOUND, "wf-x not found", "NOT_FOUND"))

    async def go() -> None:
        async with AsyncOrchestratorClient([follower.address], retry_budget_s=5) as client:
            assert await client.start_workflow("order") == "wf-a"
            with pytest.raises(NotFoundError) as info:
                await client.get_workflow("wf-x")
            assert info.value.reason == "NOT_FOUND"

    asyncio.run(go())


# ---- against the real server


def test_a_real_replica_names_its_reasons(tmp_path: Any) -> None:
    with fake_server(tmp_path) as srv, OrchestratorClient(srv.grpc_addr, retry_budget_s=0.3) as c:
        with pytest.raises(NotFoundError) as info:
            c.get_workflow("never-started")
        assert info.value.reason == "NOT_FOUND"
        srv.replica.lose_leadership()
        try:
            with pytest.raises(UnavailableError) as unavailable:
                c.register_task_defs([{"name": "t"}])
        finally:
            srv.replica.regain_leadership()
        assert unavailable.value.reason == "NO_LEADER"
        assert unavailable.value.retry_delay == 0.1 and unavailable.value.leader is None
