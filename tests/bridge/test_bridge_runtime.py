"""The bridge runtime (orchestrator/bridge/base.py, runner.py) on an in-memory replica and an
in-memory broker: leader only, resumes from the replicated marks, backs off when the broker
fails, never sends a record twice into the log nor skips one out of it."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from orchestrator.bridge.base import Inbound
from orchestrator.bridge.runner import BridgeRunner
from orchestrator.bridge.settings import BridgeSettings, StreamSettings, parse_bridges
from orchestrator.core import engine
from orchestrator.core.commands import PublishEvent
from orchestrator.core.processors.eventlog import append_event
from orchestrator.tools.verify import wait_for
from tests.fakes import FakeReplica

JSON = Any
SETTINGS = BridgeSettings(
    "nats", "nats", "nats://unused:1", StreamSettings("IN", ("in.>",)), StreamSettings()
)


class FakeBroker:
    """Messages by sequence; `fail_connects` connections refused first; `fail_publish` makes
    the next publish raise once."""

    def __init__(self) -> None:
        self.messages_: list[Inbound] = []
        self.published: list[tuple[str, JSON, str]] = []
        self.fail_connects = 0
        self.fail_publish = False
        self.connects = 0
        self.closes = 0
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        with self.lock:
            start = len(self.messages_)
            for i in range(start, start + n):
                self.messages_.append(Inbound(i + 1, "in.created", {"i": i}, f"k{i}"))

    def __call__(self, settings: BridgeSettings) -> FakeBroker:
        return self

    async def connect(self) -> None:
        self.connects += 1
        if self.fail_connects:
            self.fail_connects -= 1
            raise ConnectionRefusedError("broker down")

    async def close(self) -> None:
        self.closes += 1

    async def messages(self, after: int) -> AsyncIterator[Inbound]:
        nxt = after + 1
        while True:
            with self.lock:
                ready = [m for m in self.messages_ if m.seq >= nxt]
            for m in ready:
                yield m
                nxt = m.seq + 1
            await asyncio.sleep(0.01)

    async def publish(self, subject: str, record: dict[str, JSON], msg_id: str) -> None:
        if self.fail_publish:
            self.fail_publish = False
            raise ConnectionResetError("lost the broker")
        self.published.append((subject, record["payload"], msg_id))


@pytest.fixture
def replica() -> Iterator[FakeReplica]:
    rep = FakeReplica()
    wait_for(rep.leader_ready, 10, "the fake replica to lead")
    try:
        yield rep
    finally:
        rep.stop()


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def runner(replica: FakeReplica, broker: FakeBroker) -> Iterator[BridgeRunner]:
    r = BridgeRunner(replica, (SETTINGS,), broker)
    r.start()
    try:
        yield r
    finally:
        r.stop()


def ingested(replica: FakeReplica) -> list[int]:
    return replica.read(
        lambda st: [e["payload"]["i"] for e in st.event_log.values() if e.get("source")]
    )


def test_the_leader_ingests_every_message_once_in_order(
    replica: FakeReplica, broker: FakeBroker, runner: BridgeRunner
) -> None:
    broker.add(20)
    wait_for(lambda: len(ingested(replica)) == 20, 10, "20 messages in the log")
    assert ingested(replica) == list(range(20))
    assert replica.read(lambda st: st.source_marks) == {"nats": 20}
    record = replica.read(lambda st: st.event_log[1])
    assert (record["name"], record["correlationKey"], record["source"]) == (
        "in.created",
        "k0",
        "nats",
    )
    assert runner.counters["nats"].ingested == 20


def test_a_follower_ingests_nothing_and_a_new_term_resumes_at_the_mark(
    replica: FakeReplica, broker: FakeBroker, runner: BridgeRunner
) -> None:
    broker.add(5)
    wait_for(lambda: len(ingested(replica)) == 5, 10, "5 messages in the log")
    replica.lose_leadership()
    wait_for(lambda: broker.closes >= 1, 10, "the session to end with leadership")
    broker.add(5)
    threading.Event().wait(0.5)
    assert len(ingested(replica)) == 5, "a follower's bridge proposed nothing"
    replica.regain_leadership()
    wait_for(lambda: len(ingested(replica)) == 10, 10, "the rest after leadership came back")
    assert ingested(replica) == list(range(10))


def test_a_broker_that_is_down_is_retried_with_back_off(
    replica: FakeReplica, broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker.fail_connects = 3
    broker.add(3)
    runner = BridgeRunner(replica, (SETTINGS,), broker)
    runner.start()
    try:
        wait_for(lambda: len(ingested(replica)) == 3, 20, "the messages once the broker is up")
    finally:
        runner.stop()
    assert broker.connects == 4 and runner.counters["nats"].errors == 3


def publish_to_sink(replica: FakeReplica, n: int, sink: str) -> None:
    for i in range(n):
        cmd = PublishEvent(f"p-{uuid.uuid4()}", "out", {"i": i, "sink": sink})
        assert replica.propose(cmd).result(10).ok


@pytest.fixture(autouse=True)
def event_task_sinks(monkeypatch: pytest.MonkeyPatch) -> None:
    """PublishEvent records the payload's "sink" in the record, as an EVENT task with an
    external sink does (processors/event_task.py), in the same apply."""

    def publish(ctx: Any, cmd: PublishEvent) -> dict[str, JSON]:
        sink = cmd.payload.get("sink", "")
        return append_event(ctx, cmd.name, cmd.payload, cmd.correlation_key, sink=sink)

    monkeypatch.setitem(engine.PROCESSORS, PublishEvent, publish)


def test_the_sink_publishes_its_records_and_moves_its_mark(
    replica: FakeReplica, broker: FakeBroker, runner: BridgeRunner
) -> None:
    publish_to_sink(replica, 3, "nats:ship.x")
    publish_to_sink(replica, 2, "other:y")
    wait_for(lambda: replica.read(lambda st: st.sink_marks.get("nats")) == 5, 10, "the mark")
    assert [(s, p["i"]) for s, p, _ in broker.published] == [("ship.x", i) for i in range(3)]
    assert [m for _, _, m in broker.published] == [f"orchestrator-nats-{o}" for o in (1, 2, 3)]


def test_a_failed_publish_is_sent_again_from_the_mark(
    replica: FakeReplica, broker: FakeBroker, runner: BridgeRunner
) -> None:
    publish_to_sink(replica, 2, "nats:a")
    wait_for(lambda: replica.read(lambda st: st.sink_marks.get("nats")) == 2, 10, "the mark")
    broker.fail_publish = True
    publish_to_sink(replica, 2, "nats:a")
    wait_for(lambda: replica.read(lambda st: st.sink_marks.get("nats")) == 4, 20, "the re-send")
    assert [p["i"] for _, p, _ in broker.published] == [0, 1, 0, 1]
    assert runner.counters["nats"].errors == 1


def test_events_retention_dropped_before_the_sink_looked_are_counted(
    replica: FakeReplica, broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_to_sink(replica, 4, "nats:a")
    replica.read(lambda st: (st.event_log.pop(1), st.event_log.pop(2)))  # as retention does
    only_sink = BridgeSettings("nats", "nats", "nats://unused:1", None, StreamSettings())
    runner = BridgeRunner(replica, (only_sink,), broker)
    runner.start()
    try:
        wait_for(lambda: replica.read(lambda st: st.sink_marks.get("nats")) == 4, 10, "the mark")
    finally:
        runner.stop()
    assert runner.counters["nats"].dropped_unsent == 2
    assert [p["i"] for _, p, _ in broker.published] == [2, 3]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ({"kind": "kafka", "url": "nats://x:1", "sink": {}}, "kind"),
        ({"kind": "nats", "url": "http://x", "sink": {}}, "url"),
        ({"kind": "nats", "url": "nats://x:1"}, "a 'source', a 'sink' or both"),
        ({"kind": "nats", "url": "nats://x:1", "source": {"subjects": ["a"]}}, "source.stream"),
        ({"kind": "nats", "url": "nats://x:1", "sink": {}, "extra": 1}, "unknown"),
    ],
)
def test_bridge_settings_are_checked(raw: JSON, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_bridges([raw])


def test_bridge_settings_default_the_name_to_the_kind() -> None:
    (b,) = parse_bridges([{"kind": "nats", "url": "nats://x:1", "sink": {}}])
    assert (b.name, b.sink_prefix, b.source) == ("nats", "nats:", None)
    with pytest.raises(ValueError, match="names two bridges"):
        parse_bridges([{"kind": "nats", "url": "nats://x:1", "sink": {}}] * 2)
    with pytest.raises(ValueError, match="one bridge of kind 'nats' may have a sink"):
        parse_bridges(
            [
                {"name": "a", "kind": "nats", "url": "nats://x:1", "sink": {}},
                {"name": "b", "kind": "nats", "url": "nats://y:1", "sink": {}},
            ]
        )
    (other,) = parse_bridges([{"name": "eu", "kind": "nats", "url": "nats://x:1", "sink": {}}])
    assert other.sink_prefix == "nats:", "EVENT tasks name the kind, the name keys the marks"


@pytest.mark.parametrize(
    ("data", "payload"),
    [
        (b'{"a": 1}', {"a": 1}),
        (b"", {}),
        (b"[1, 2]", {"data": [1, 2]}),
        (b"plain text", {"data": "plain text"}),
        (b'{"a": NaN}', {"data": '{"a": NaN}'}),
        (b"\xff\x00", {"data_base64": "/wA="}),
    ],
)
def test_a_nats_message_becomes_a_json_object_payload(data: bytes, payload: JSON) -> None:
    from orchestrator.bridge.nats import _payload

    assert _payload(data) == payload
