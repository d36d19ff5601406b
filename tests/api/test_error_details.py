"""Structured error details and the sequence trailer, as a client in another language sees them:
raw gRPC stubs, the google.rpc.Status decoded by grpc_status (never through our client).

Every non-OK status carries ErrorInfo (reason, domain orchestrator.v1), RetryInfo when a retry
after a pause is the advice, and a LeaderHint when another replica should be asked
(protos/orchestrator/v1/errors.proto); every unary answer carries x-orchestrator-seq. The
server here is the fake replica n1 of a three-replica configuration; a test that takes its
leadership away gives it back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from orchestrator_client.v1 import cluster_pb2 as cpb
from orchestrator_client.v1 import cluster_pb2_grpc, errors_pb2, events_pb2_grpc
from orchestrator_client.v1 import definitions_pb2 as dpb
from orchestrator_client.v1 import events_pb2 as epb
from orchestrator_client.v1 import workflows_pb2 as wpb

from orchestrator.api import admission, errors, service
from orchestrator.api.errors import DETAILS_KEY, LEADER_KEY, SEQ_KEY, Leader
from orchestrator.config import AdmissionSettings
from orchestrator.core import limits
from orchestrator.core.errors import Code
from orchestrator.replication.api import MembershipIncomplete, NotLeader, OutcomeUnknown, Overloaded
from orchestrator.server import ReplicaServer
from tests.api.test_api_admission import _Aborted, _Context, _Details
from tests.cluster_support import api_stubs, wait_for
from tests.fakes import fake_server
from tests.replication.test_prevote import _FailedForward
from tests.security.security_support import secure_fake

FLOW = "details_flow"


class Decoded(NamedTuple):
    reason: str
    metadata: dict[str, str]
    retry_ms: int | None
    hint: errors_pb2.LeaderHint | None


def decode_status(status: Any) -> Decoded:
    """The details of a google.rpc.Status: exactly one ErrorInfo, at most one of the others."""
    infos, retries, hints = [], [], []
    for detail in status.details:
        for kind, into in (
            (error_details_pb2.ErrorInfo, infos),
            (error_details_pb2.RetryInfo, retries),
            (errors_pb2.LeaderHint, hints),
        ):
            if detail.Is(kind.DESCRIPTOR):
                msg = kind()
                detail.Unpack(msg)
                into.append(msg)
    assert len(infos) == 1 and len(retries) <= 1 and len(hints) <= 1, status
    assert len(status.details) == len(infos) + len(retries) + len(hints), status
    assert infos[0].domain == "orchestrator.v1"
    retry_ms = retries[0].retry_delay.ToMilliseconds() if retries else None
    return Decoded(infos[0].reason, dict(infos[0].metadata), retry_ms, hints[0] if hints else None)


def decoded(err: grpc.RpcError) -> Decoded:
    """The error's details, read as any gRPC client would (the status must match the call's)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, f"no details: {err}"
    return decode_status(status)


def seq_of(call: Any) -> int:
    return int(dict(call.trailing_metadata())[SEQ_KEY])


def failing(fn: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, timeout=5, **kwargs)
    return info.value


def rid() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[ReplicaServer]:
    with fake_server(tmp_path_factory.mktemp("details"), n=3) as srv:
        yield srv


@pytest.fixture(scope="module")
def stubs(server: ReplicaServer) -> Iterator[Any]:
    ch = grpc.insecure_channel(server.grpc_addr)
    out = api_stubs(ch)
    out.cluster = cluster_pb2_grpc.ClusterServiceStub(ch)
    out.subs = events_pb2_grpc.SubscriptionServiceStub(ch)
    out.channel = ch
    out.defs.RegisterTaskDefs(
        dpb.RegisterTaskDefsRequest(request_id=rid(), task_def_json=[json.dumps({"name": "d_t"})]),
        timeout=5,
    )
    flow = {"name": FLOW, "tasks": [{"name": "d_t", "taskReferenceName": "a"}]}
    out.defs.RegisterWorkflowDef(
        dpb.RegisterWorkflowDefRequest(request_id=rid(), definition_json=json.dumps(flow)),
        timeout=5,
    )
    yield out
    ch.close()


@pytest.fixture
def follower(server: ReplicaServer) -> Iterator[Any]:
    """n1 as a follower that knows no leader; it leads again afterwards."""
    server.replica.lose_leadership()
    try:
        yield server.replica
    finally:
        server.replica.regain_leadership()
        wait_for(server.replica.leader_ready, 10, "the fake replica to lead again")


def _start(stubs: Any) -> tuple[wpb.StartWorkflowResponse, Any]:
    return stubs.wfs.StartWorkflow.with_call(
        wpb.StartWorkflowRequest(request_id=rid(), name=FLOW), timeout=5
    )


# ---- the sequence on every unary answer


def test_every_kind_of_unary_answer_carries_the_sequence(stubs: Any) -> None:
    started, call = _start(stubs)
    write_seq = seq_of(call)
    assert write_seq > 0
    wid = started.workflow_id
    _, call = stubs.wfs.GetWorkflow.with_call(wpb.GetWorkflowRequest(workflow_id=wid), timeout=5)
    assert seq_of(call) >= write_seq
    _, call = stubs.defs.ListWorkflowDefs.with_call(dpb.ListWorkflowDefsRequest(), timeout=5)
    assert seq_of(call) >= write_seq
    # The status RPCs answer from local status, and still name the sequence.
    status, call = stubs.cluster.GetReplicaStatus.with_call(
        cpb.GetReplicaStatusRequest(), timeout=5
    )
    assert seq_of(call) >= write_seq and status.applied_sequence >= write_seq
    _, call = stubs.cluster.GetClusterStatus.with_call(cpb.GetClusterStatusRequest(), timeout=5)
    assert seq_of(call) >= write_seq
    # An error too, with its details beside it.
    err = failing(stubs.wfs.GetWorkflow, wpb.GetWorkflowRequest(workflow_id="no-such-wf"))
    assert seq_of(err) >= write_seq
    assert decoded(err).reason == "NOT_FOUND"


def test_a_stream_names_the_sequence_in_its_initial_metadata(stubs: Any) -> None:
    _, call = _start(stubs)
    write_seq = seq_of(call)
    stream = stubs.subs.SubscribeEvents(epb.SubscribeEventsRequest(from_offset=10**9))
    try:
        initial = dict(stream.initial_metadata())
        assert int(initial[SEQ_KEY]) >= write_seq
    finally:
        stream.cancel()


# ---- rejections


def test_rejections_name_their_code_as_the_reason(stubs: Any) -> None:
    err = failing(stubs.wfs.StartWorkflow, wpb.StartWorkflowRequest(request_id="", name=FLOW))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert decoded(err) == Decoded("INVALID_ARGUMENT", {}, None, None)
    assert seq_of(err) > 0
    err = failing(
        stubs.wfs.StartWorkflow, wpb.StartWorkflowRequest(request_id=rid(), name="no_such_flow")
    )
    assert err.code() is grpc.StatusCode.NOT_FOUND
    assert decoded(err).reason == "NOT_FOUND"
    key = rid()
    stubs.wfs.StartWorkflow(
        wpb.StartWorkflowRequest(request_id=rid(), name=FLOW, idempotency_key=key), timeout=5
    )
    err = failing(
        stubs.wfs.StartWorkflow,
        wpb.StartWorkflowRequest(request_id=rid(), name=FLOW, idempotency_key=key),
    )
    assert err.code() is grpc.StatusCode.ALREADY_EXISTS
    assert decoded(err).reason == "ALREADY_EXISTS"


def test_an_undecodable_request_has_details_too(stubs: Any) -> None:
    raw = stubs.channel.unary_unary(
        "/orchestrator.v1.WorkflowService/GetWorkflow",
        request_serializer=None,
        response_deserializer=wpb.GetWorkflowResponse.FromString,
    )
    err = failing(raw, b"\xff\xff\xff\xff")
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert decoded(err).reason == "INVALID_ARGUMENT"


def test_an_expired_offset_names_the_oldest_kept(
    stubs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"d_{rid()[:8]}"
    monkeypatch.setattr(limits, "MAX_EVENTS", 3)
    offsets = [
        stubs.channel.unary_unary(
            "/orchestrator.v1.EventService/PublishEvent",
            request_serializer=epb.PublishEventRequest.SerializeToString,
            response_deserializer=epb.PublishEventResponse.FromString,
        )(epb.PublishEventRequest(request_id=rid(), name=name, payload_json="{}"), timeout=5).offset
        for _ in range(5)
    ]
    call = stubs.subs.SubscribeEvents(epb.SubscribeEventsRequest(from_offset=offsets[0]))
    with pytest.raises(grpc.RpcError) as info:
        list(call)
    assert info.value.code() is grpc.StatusCode.OUT_OF_RANGE
    got = decoded(info.value)
    assert got.reason == "OFFSET_EXPIRED"
    assert got.metadata == {"oldest_offset": str(offsets[2])}


def test_a_stream_ended_by_shutdown_says_shutting_down(tmp_path: Any) -> None:
    with fake_server(tmp_path) as srv:
        channel = grpc.insecure_channel(srv.grpc_addr)
        stream = events_pb2_grpc.SubscriptionServiceStub(channel).SubscribeEvents(
            epb.SubscribeEventsRequest(from_offset=10**9)
        )
        assert SEQ_KEY in dict(stream.initial_metadata())  # open: the stream is being served
        srv.stop(grace_s=5.0)
        with pytest.raises(grpc.RpcError) as info:
            list(stream)
        channel.close()
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert decoded(info.value).reason == "SHUTTING_DOWN"


# ---- a replica that cannot serve


def test_a_follower_that_knows_no_leader_says_no_leader_with_a_retry_delay(
    stubs: Any, follower: Any
) -> None:
    err = failing(stubs.wfs.StartWorkflow, wpb.StartWorkflowRequest(request_id=rid(), name=FLOW))
    assert err.code() is grpc.StatusCode.UNAVAILABLE
    got = decoded(err)
    assert got.reason == "NO_LEADER" and got.retry_ms == errors.RETRY_SHORTLY_MS
    assert got.hint is None and LEADER_KEY not in dict(err.trailing_metadata())
    assert seq_of(err) > 0


def test_a_follower_whose_leader_is_unreachable(
    server: ReplicaServer, stubs: Any, follower: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """n1 names n2 as its leader, but nothing listens there: a forwarded write says the leader
    is unreachable (no hint), a NOT_FOUND it cannot confirm may be stale, and a read behind
    the caller's sequence points at n2."""
    n2 = next(m for m in server.replica.members() if m.node_id == "n2")
    monkeypatch.setattr(follower, "leader_addr", lambda: n2.raft)
    monkeypatch.setattr(service, "READ_WAIT_S", 0.05)
    err = failing(stubs.wfs.StartWorkflow, wpb.StartWorkflowRequest(request_id=rid(), name=FLOW))
    got = decoded(err)
    assert (err.code(), got.reason) == (grpc.StatusCode.UNAVAILABLE, "LEADER_UNREACHABLE")
    assert got.hint is None and got.retry_ms == errors.RETRY_SHORTLY_MS

    err = failing(stubs.wfs.GetWorkflow, wpb.GetWorkflowRequest(workflow_id="never-started"))
    got = decoded(err)
    assert (err.code(), got.reason) == (grpc.StatusCode.NOT_FOUND, "POSSIBLY_STALE_READ")
    assert int(got.metadata["applied_seq"]) == seq_of(err) > 0
    assert "could not confirm with the leader" in err.details()

    ahead = seq_of(err) + 1000
    err = failing(
        stubs.wfs.GetWorkflow,
        wpb.GetWorkflowRequest(workflow_id="never-started"),
        metadata=((errors.MIN_SEQ_KEY, str(ahead)),),
    )
    got = decoded(err)
    assert (err.code(), got.reason) == (grpc.StatusCode.UNAVAILABLE, "REPLICA_BEHIND")
    assert got.metadata == {"applied_seq": str(seq_of(err)), "min_seq": str(ahead)}
    assert got.retry_ms == errors.RETRY_SHORTLY_MS
    assert got.hint == errors_pb2.LeaderHint(address=n2.grpc, replica_id="n2")
    assert dict(err.trailing_metadata())[LEADER_KEY] == n2.grpc


def test_a_not_found_with_a_sequence_is_not_second_guessed(stubs: Any, follower: Any) -> None:
    # The caller named what it saw: this replica has applied it, so its NOT_FOUND is definite.
    err = failing(
        stubs.wfs.GetWorkflow,
        wpb.GetWorkflowRequest(workflow_id="never-started"),
        metadata=((errors.MIN_SEQ_KEY, "1"),),
    )
    assert decoded(err).reason == "NOT_FOUND"


# ---- the interceptors: overload and authentication


def test_an_overloaded_replica_says_overloaded_with_its_retry_delay() -> None:
    settings = AdmissionSettings(
        max_in_flight=1, max_long_polls=1, max_status_calls=1, retry_after_ms=70
    )
    gate = admission.Admission(settings)
    assert gate.calls.acquire()
    handler = gate.intercept_service(
        lambda _: grpc.unary_unary_rpc_method_handler(lambda req, ctx: "ok"),
        _Details("/orchestrator.v1.WorkflowService/GetWorkflow"),
    )
    ctx = _Context()
    with pytest.raises(_Aborted) as info:
        handler.unary_unary(None, ctx)
    from google.rpc import status_pb2

    status = status_pb2.Status.FromString(dict(ctx.trailers)[DETAILS_KEY])
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert status.message == info.value.details
    got = decode_status(status)
    assert got == Decoded("OVERLOADED", {"limit": "admission.max_in_flight"}, 70, None)
    assert dict(ctx.trailers)[errors.RETRY_AFTER_KEY] == "70"


def test_authentication_refusals_have_details(tmp_path: Any) -> None:
    from orchestrator.tools.access import local_access

    with secure_fake(tmp_path) as srv:
        ch = grpc.secure_channel(srv.grpc_addr, srv.access.credentials())
        try:
            stub = api_stubs(ch).wfs
            err = failing(stub.GetWorkflow, wpb.GetWorkflowRequest(workflow_id="w"))
            assert (err.code(), decoded(err).reason) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "UNAUTHENTICATED",
            )
            reader = local_access(srv.cfg, "reader").metadata()
            err = failing(
                stub.StartWorkflow,
                wpb.StartWorkflowRequest(request_id=rid(), name=FLOW),
                metadata=reader,
            )
            assert (err.code(), decoded(err).reason) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "PERMISSION_DENIED",
            )
        finally:
            ch.close()


# ---- what the server's error builders put in the details (the reasons no wire test above reaches)


def _details(err: errors.ApiError) -> Decoded:
    from google.rpc import status_pb2

    status = status_pb2.Status.FromString(err.details())
    assert status.code == err.status.value[0] and status.message == err.message
    return decode_status(status)


N2 = Leader("h2:50051", "n2")
HERE = Leader("h1:50051", "n1", here=True)


def test_each_reason_and_its_companions() -> None:
    hint = errors_pb2.LeaderHint(address="h2:50051", replica_id="n2")
    fenced = errors.leader_moved("leadership moved", N2)
    assert _details(fenced) == Decoded("NOT_LEADER", {}, None, hint)
    # Naming itself (a leader not ready yet): the trailer as before, no hint to come back.
    assert _details(errors.no_leader(HERE)) == Decoded("NO_LEADER", {}, 100, None)
    assert errors.no_leader(HERE).trailers == ((LEADER_KEY, "h1:50051"),)
    cases = {
        "OUTCOME_UNKNOWN": errors.proposal_error(OutcomeUnknown("lost"), N2),
        "NOT_APPLIED": errors.proposal_error(NotLeader("not leading"), N2),
        "MEMBERSHIP_INCOMPLETE": errors.proposal_error(MembershipIncomplete("half"), N2),
    }
    for reason, err in cases.items():
        assert err.status is grpc.StatusCode.UNAVAILABLE
        assert _details(err) == Decoded(reason, {}, None, hint)
    assert _details(errors.not_committed_in_time(None)).reason == "OUTCOME_UNKNOWN"
    full = errors.proposal_error(Overloaded("queue full"), N2)
    assert full.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _details(full) == Decoded("OVERLOADED", {}, errors.RETRY_LATER_MS, None)
    assert dict(full.trailers)[errors.RETRY_AFTER_KEY] == str(errors.RETRY_LATER_MS)
    limit = errors.rejection(Code.RESOURCE_EXHAUSTED, "at most 10000 consumer groups")
    assert (limit.status, _details(limit)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        Decoded("LIMIT_EXCEEDED", {}, None, None),
    )
    precondition = errors.rejection(Code.FAILED_PRECONDITION, "the lease was lost")
    assert _details(precondition).reason == "FAILED_PRECONDITION"


def test_a_forwarded_failure_relays_the_leaders_details() -> None:
    theirs = errors.behind("behind", N2, 7, 9)
    trailers = (*theirs.trailers, (SEQ_KEY, "7"), (DETAILS_KEY, theirs.details()))
    relayed = service._forward_error(
        _FailedForward(grpc.StatusCode.UNAVAILABLE, "behind", trailers), "h3:1", "n3"
    )
    assert relayed.details() == theirs.details()
    assert dict(relayed.trailers) == {LEADER_KEY: "h2:50051", SEQ_KEY: "7"}
    # A leader that never answered: no hint, retry shortly.
    gone = service._forward_error(
        _FailedForward(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), "h2:50051"
    )
    assert _details(gone) == Decoded("LEADER_UNREACHABLE", {}, errors.RETRY_SHORTLY_MS, None)
    # Details that do not describe the status passed on (a code changed on the way) are not.
    timed_out = errors.ApiError(grpc.StatusCode.DEADLINE_EXCEEDED, "slow", ((SEQ_KEY, "3"),))
    changed = service._forward_error(
        _FailedForward(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "slow",
            ((SEQ_KEY, "3"), (DETAILS_KEY, timed_out.details())),
        ),
        "h2:50051",
    )
    assert changed.status is grpc.StatusCode.UNAVAILABLE
    assert _details(changed).reason == "UNAVAILABLE"
