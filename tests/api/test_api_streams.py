"""SubscriptionService through gRPC on the one-replica server (api/streams.py): streams from
an offset, consumer groups and acks, the in-flight window, filters, the retention gap, the
stream cap beside unary calls, and shutdown."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from orchestrator_client import OrchestratorClient
from orchestrator_client.v1 import events_pb2 as epb
from orchestrator_client.v1 import events_pb2_grpc

from orchestrator.api.streams import OLDEST_OFFSET_KEY
from orchestrator.core import limits
from orchestrator.server import ReplicaServer


@pytest.fixture(scope="module")
def client(server: ReplicaServer) -> Iterator[OrchestratorClient]:
    c = OrchestratorClient(server.grpc_addr, timeout_s=5.0, retry_budget_s=10.0)
    yield c
    c.close()


@pytest.fixture
def stub(server: ReplicaServer) -> Iterator[events_pb2_grpc.SubscriptionServiceStub]:
    channel = grpc.insecure_channel(server.grpc_addr)
    yield events_pb2_grpc.SubscriptionServiceStub(channel)
    channel.close()


def _name() -> str:
    return f"st_{uuid.uuid4().hex[:8]}"


def _publish(client: OrchestratorClient, name: str, n: int) -> list[int]:
    return [client.publish_event(name, {"i": i}) for i in range(n)]


class Reader:
    """One stream read on one thread into a queue, so a stream that sends fewer than a test
    asks for cannot hang it."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.queue: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self.queue.put(message)
        except grpc.RpcError:
            pass

    def take(self, n: int, timeout_s: float = 5.0) -> list[Any]:
        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < n:
            try:
                got.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return got


def _take(call: Any, n: int, timeout_s: float = 5.0) -> list[Any]:
    return Reader(call).take(n, timeout_s)


def _ack(stub: Any, stream: str, group: str, offset: int) -> int:
    req = epb.AckRequest(request_id=uuid.uuid4().hex, stream=stream, group=group, offset=offset)
    return int(stub.Ack(req).committed)


def test_a_stream_sends_from_an_offset_and_then_what_is_published(
    client: OrchestratorClient, stub: Any
) -> None:
    name = _name()
    offsets = _publish(client, name, 3)
    call = stub.SubscribeEvents(epb.SubscribeEventsRequest(from_offset=offsets[1], names=[name]))
    reader = Reader(call)
    assert [e.offset for e in reader.take(2)] == offsets[1:]
    later = _publish(client, name, 2)  # the stream is woken by their apply
    assert [e.offset for e in reader.take(2)] == later
    call.cancel()


def test_a_group_resumes_after_its_committed_offset(client: OrchestratorClient, stub: Any) -> None:
    name, group = _name(), _name()
    offsets = _publish(client, name, 4)
    req = epb.SubscribeEventsRequest(group=group, from_offset=offsets[0], names=[name])
    call = stub.SubscribeEvents(req)
    assert [e.offset for e in _take(call, 4)] == offsets
    call.cancel()
    assert _ack(stub, "events", group, offsets[1]) == offsets[1]
    assert _ack(stub, "events", group, offsets[0]) == offsets[1]  # never backwards
    again = stub.SubscribeEvents(req)
    assert [e.offset for e in _take(again, 2)] == offsets[2:]
    again.cancel()
    got = stub.GetConsumerGroup(epb.GetConsumerGroupRequest(stream="events", group=group))
    assert got.committed == offsets[1] and got.last_offset >= offsets[3]


def test_a_slow_consumer_holds_at_most_max_in_flight(client: OrchestratorClient, stub: Any) -> None:
    # The server sends max_in_flight records past the committed offset, then waits for acks:
    # what it holds for a consumer that never acks stays bounded, however much is published.
    name, group = _name(), _name()
    offsets = _publish(client, name, 20)
    req = epb.SubscribeEventsRequest(
        group=group, from_offset=offsets[0], names=[name], max_in_flight=5
    )
    call = stub.SubscribeEvents(req)
    reader = Reader(call)
    assert [e.offset for e in reader.take(20, timeout_s=1.5)] == offsets[:5]
    _ack(stub, "events", group, offsets[2])  # three done: three more come
    assert [e.offset for e in reader.take(20, timeout_s=1.5)] == offsets[5:8]
    call.cancel()


def test_a_consumer_without_a_group_that_does_not_read_is_held_by_flow_control(
    client: OrchestratorClient, stub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without a group nothing waits for acks: what bounds the server is gRPC's flow control (a
    # send completes only once the transport took it, and the stream's generator is pulled only
    # then). 24 MiB published to a stream nobody reads: the server builds a bounded part of
    # it, and all of it once the consumer reads.
    import orchestrator.api.streams as streams

    built = [0]
    real = streams._event

    def counting(record: Any) -> Any:
        built[0] += 1
        return real(record)

    monkeypatch.setattr(streams, "_event", counting)
    name, n = _name(), 96
    call = stub.SubscribeEvents(epb.SubscribeEventsRequest(names=[name]))
    blob = "x" * (limits.MAX_JSON_BYTES - 1024)
    offsets = [client.publish_event(name, {"i": i, "blob": blob}) for i in range(n)]
    # The server has built what it could: wait until its count stops moving for a while.
    last, still_since = -1, time.monotonic()
    deadline = time.monotonic() + 30
    while time.monotonic() - still_since < 1.0:
        assert time.monotonic() < deadline, "the server kept building messages for 30 s"
        if built[0] != last:
            last, still_since = built[0], time.monotonic()
        time.sleep(0.05)
    held = built[0]
    assert 0 < held < n // 2, f"the server built {held} of {n} 248 KiB messages unread"
    got = Reader(call).take(n, timeout_s=30)
    assert [e.offset for e in got] == offsets  # and everything arrives once read
    call.cancel()


def test_watch_workflows_filters_by_name_status_and_correlation(
    client: OrchestratorClient, stub: Any
) -> None:
    wf_name = _name()
    client.register_workflow_def(
        {
            "name": wf_name,
            "version": 1,
            "tasks": [{"name": "st_wait", "taskReferenceName": "w", "type": "HUMAN"}],
        }
    )
    start = stub.GetConsumerGroup(epb.GetConsumerGroupRequest(stream="workflows", group="x"))
    ids = [client.start_workflow(wf_name, correlation_id=f"c{i}") for i in range(2)]
    client.terminate_workflow(ids[1], reason="test")
    req = epb.WatchWorkflowsRequest(from_offset=start.last_offset + 1, names=[wf_name])
    changes = _take(stub.WatchWorkflows(req), 3)
    assert [(c.workflow_id, c.status) for c in changes] == [
        (ids[0], "RUNNING"),
        (ids[1], "RUNNING"),
        (ids[1], "TERMINATED"),
    ]
    assert changes[0].name == wf_name and changes[0].version == 1 and changes[0].time_ms > 0
    only = epb.WatchWorkflowsRequest(
        from_offset=start.last_offset + 1, statuses=["TERMINATED"], correlation_id="c1"
    )
    assert [(c.workflow_id, c.status) for c in _take(stub.WatchWorkflows(only), 1)] == [
        (ids[1], "TERMINATED")
    ]


def test_a_start_behind_retention_fails_out_of_range_naming_the_oldest(
    client: OrchestratorClient, stub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _name()
    monkeypatch.setattr(limits, "MAX_EVENTS", 3)
    offsets = _publish(client, name, 5)
    call = stub.SubscribeEvents(epb.SubscribeEventsRequest(from_offset=offsets[0]))
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    assert err.value.code() is grpc.StatusCode.OUT_OF_RANGE
    assert f"oldest kept is {offsets[2]}" in err.value.details()
    trailers = dict(err.value.trailing_metadata())
    assert trailers[OLDEST_OFFSET_KEY] == str(offsets[2])


def test_bad_requests_are_invalid_argument(stub: Any) -> None:
    for req in (
        epb.SubscribeEventsRequest(group="a/b"),
        epb.SubscribeEventsRequest(from_offset=-1),
        epb.SubscribeEventsRequest(max_in_flight=100_000),
    ):
        with pytest.raises(grpc.RpcError) as err:
            list(stub.SubscribeEvents(req))
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        list(stub.WatchWorkflows(epb.WatchWorkflowsRequest(statuses=["DONE"])))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "DONE" in err.value.details()
    for ack in (
        epb.AckRequest(request_id="r1", stream="orders", group="g", offset=1),
        epb.AckRequest(request_id="r2", stream="events", group="", offset=1),
        epb.AckRequest(request_id="r3", stream="events", group="g", offset=10**9),
    ):
        with pytest.raises(grpc.RpcError) as err:
            stub.Ack(ack)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_streams_beyond_the_cap_are_refused_and_unary_calls_still_answer(
    server: ReplicaServer, client: OrchestratorClient, stub: Any
) -> None:
    cap = server.cfg.admission.max_streams
    calls = [
        stub.SubscribeEvents(epb.SubscribeEventsRequest(from_offset=10**9)) for _ in range(cap)
    ]
    deadline = time.monotonic() + 10
    while server.admission.streams.used < cap and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.admission.streams.used == cap
    with pytest.raises(grpc.RpcError) as err:
        list(stub.SubscribeEvents(epb.SubscribeEventsRequest()))
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_streams" in err.value.details()
    # Every stream holds a thread, yet unary calls have theirs.
    for _ in range(20):
        client.publish_event(_name(), {})
    for call in calls:
        call.cancel()
    deadline = time.monotonic() + 10
    while server.admission.streams.used and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.admission.streams.used == 0


def test_open_streams_end_at_once_on_shutdown(tmp_path: Any) -> None:
    from tests.fakes import fake_server

    with fake_server(tmp_path) as srv:
        channel = grpc.insecure_channel(srv.grpc_addr)
        stub = events_pb2_grpc.SubscriptionServiceStub(channel)
        call = stub.SubscribeEvents(epb.SubscribeEventsRequest(from_offset=10**9))
        deadline = time.monotonic() + 10
        while srv.admission.streams.used < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        srv.stop(grace_s=5.0)
        with pytest.raises(grpc.RpcError) as err:
            list(call)
        # Ended by the close, not cancelled after the 5 s grace period.
        assert time.monotonic() - started < 3.0
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in err.value.details()
        channel.close()
