"""The client's subscriptions (client/orchestrator_client/_streams.py) against the one-replica
server: the iterator with auto-ack and explicit ack, the callback consumer (at least once when
its handler fails), a dead address in the list, and the retention gap."""

from __future__ import annotations

import pickle
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from orchestrator_client import Delivery, OrchestratorClient, OrchestratorError, StreamGapError

from orchestrator.core import limits
from orchestrator.server import ReplicaServer
from tests.fakes import fake_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[ReplicaServer]:
    with fake_server(tmp_path_factory.mktemp("client_streams")) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: ReplicaServer) -> Iterator[OrchestratorClient]:
    c = OrchestratorClient(server.grpc_addr, timeout_s=5.0, retry_budget_s=10.0)
    yield c
    c.close()


def _name() -> str:
    return f"cs_{uuid.uuid4().hex[:8]}"


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_the_iterator_auto_acks_what_the_loop_finished(client: OrchestratorClient) -> None:
    name, group = _name(), _name()
    offsets = [client.publish_event(name, {"i": i}) for i in range(3)]
    with client.subscribe_events(group, names=[name]) as sub:
        first = next(sub)
        assert first["payload"] == {"i": 0} and first.offset == offsets[0]
        second = next(sub)  # pulling the next acked the first
        assert second.offset == offsets[1]
        assert client.get_consumer_group("events", group)["committed"] == offsets[0]
    # Closing acked the last one pulled.
    assert client.get_consumer_group("events", group)["committed"] == offsets[1]
    with client.subscribe_events(group, names=[name]) as again:
        assert next(again).offset == offsets[2]


def test_without_auto_ack_unacked_records_come_again(client: OrchestratorClient) -> None:
    name, group = _name(), _name()
    offsets = [client.publish_event(name, {}) for _ in range(2)]
    with client.subscribe_events(group, names=[name], auto_ack=False) as sub:
        assert [next(sub).offset for _ in range(2)] == offsets
    with client.subscribe_events(group, names=[name], auto_ack=False) as sub:
        d = next(sub)
        assert d.offset == offsets[0]
        d.ack()
    with client.subscribe_events(group, names=[name], auto_ack=False) as sub:
        assert next(sub).offset == offsets[1]


def test_the_consumer_redelivers_after_a_failing_handler(client: OrchestratorClient) -> None:
    name, group = _name(), _name()
    offsets = [client.publish_event(name, {"i": i}) for i in range(5)]
    seen: list[int] = []
    failed = threading.Event()
    done = threading.Event()

    def handle(d: Delivery) -> None:
        if d.offset == offsets[2] and not failed.is_set():
            failed.set()
            raise RuntimeError("handler failed once")
        seen.append(d.offset)
        if d.offset == offsets[-1]:
            done.set()

    consumer = client.consume_events(group, handle, names=[name])
    assert done.wait(10)
    consumer.stop()
    assert consumer.error is None
    assert seen == offsets  # the failed one again, nothing skipped, in order
    assert client.get_consumer_group("events", group)["committed"] == offsets[-1]


def test_a_dead_address_is_passed_over(server: ReplicaServer) -> None:
    c = OrchestratorClient([_dead_address(), server.grpc_addr], timeout_s=2.0, retry_budget_s=10.0)
    try:
        name = _name()
        offset = c.publish_event(name, {})
        for _ in range(2):  # whichever address a subscription starts at
            with c.subscribe_events(_name(), names=[name]) as sub:
                assert next(sub).offset == offset
    finally:
        c.close()


def test_watch_workflows_sees_a_start_and_an_end(client: OrchestratorClient) -> None:
    wf = _name()
    client.register_workflow_def(
        {
            "name": wf,
            "version": 1,
            "tasks": [{"name": "cs_wait", "taskReferenceName": "w", "type": "HUMAN"}],
        }
    )
    wf_id = client.start_workflow(wf)
    client.terminate_workflow(wf_id, reason="done")
    with client.watch_workflows(_name(), names=[wf]) as sub:
        changes = [next(sub) for _ in range(2)]
    assert [(c["workflow_id"], c["status"]) for c in changes] == [
        (wf_id, "RUNNING"),
        (wf_id, "TERMINATED"),
    ]


def test_a_gap_is_raised_naming_the_oldest_offset(
    client: OrchestratorClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_EVENTS", 2)
    name = _name()
    offsets = [client.publish_event(name, {}) for _ in range(4)]
    sub = client.subscribe_events(from_offset=offsets[0])
    started = time.monotonic()
    with pytest.raises(StreamGapError) as err:
        next(sub)
    assert err.value.oldest_offset == offsets[2] and err.value.reason == "OFFSET_EXPIRED"
    again = pickle.loads(pickle.dumps(err.value))
    assert (again.oldest_offset, again.reason, again.code) == (
        offsets[2],
        "OFFSET_EXPIRED",
        err.value.code,
    )
    assert time.monotonic() - started < 5
    with client.subscribe_events(from_offset=err.value.oldest_offset) as sub:
        assert next(sub).offset == offsets[2]


def test_a_loop_body_that_raises_leaves_its_record_unacked(client: OrchestratorClient) -> None:
    name, group = _name(), _name()
    offset = client.publish_event(name, {})
    with pytest.raises(RuntimeError), client.subscribe_events(group, names=[name]) as sub:
        for _ in sub:
            raise RuntimeError("the body failed")
    assert client.get_consumer_group("events", group)["committed"] == 0
    with client.subscribe_events(group, names=[name]) as sub:
        assert next(sub).offset == offset


def test_a_refused_subscription_says_why(client: OrchestratorClient) -> None:
    with pytest.raises(OrchestratorError) as err, client.watch_workflows(statuses=["NOPE"]) as sub:
        next(sub)
    assert err.value.code.name == "INVALID_ARGUMENT" and err.value.reason == "INVALID_ARGUMENT"
    assert "NOPE" in err.value.details
