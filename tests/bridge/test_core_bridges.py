"""The bridges' replicated marks (core/processors/bridges.py): a broker message enters the log
once whatever the retries, a sink's mark only moves forward, and both survive a snapshot."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.core import limits, queries
from orchestrator.core.commands import AdvanceSink, IngestEvent, PublishEvent
from orchestrator.core.errors import Code
from orchestrator.core.machine import Outcome
from orchestrator.core.state import State
from tests.core_helpers import Harness, replay

JSON = Any


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    harness.leader_epoch(1)
    return harness


def ingest(
    h: Harness, seq: int, name: str = "orders.created", payload: JSON = None, **kw: Any
) -> Outcome:
    kw.setdefault("request_id", h.new_id("ingest"))
    kw.setdefault("source", "nats")
    cmd = IngestEvent(seq=seq, name=name, payload={"n": seq} if payload is None else payload, **kw)
    return h.apply_one(cmd)


def test_a_message_past_the_mark_is_appended_once_and_moves_the_mark(h: Harness) -> None:
    first = ingest(h, 3, correlation_key="o-3")
    assert first.code is Code.OK and first.result == {"offset": 1, "mark": 3}
    record = h.state.event_log[1]
    assert (record["name"], record["payload"], record["correlationKey"]) == (
        "orders.created",
        {"n": 3},
        "o-3",
    )
    assert record["source"] == "nats" and record["sink"] == ""
    assert queries.source_mark(h.state, "nats") == 3
    # A new leader proposing the same message (another request id) adds nothing.
    again = ingest(h, 3)
    assert again.code is Code.OK and again.result == {"offset": 0, "duplicate": True, "mark": 3}
    assert ingest(h, 2).result["duplicate"] is True
    assert list(h.state.event_log) == [1]
    assert ingest(h, 4).result == {"offset": 2, "mark": 4}


def test_a_retried_request_is_answered_with_its_first_result(h: Harness) -> None:
    assert ingest(h, 1, request_id="in-1").result == {"offset": 1, "mark": 1}
    assert ingest(h, 1, request_id="in-1").result == {"offset": 1, "mark": 1, "deduplicated": True}


def test_sources_have_marks_of_their_own(h: Harness) -> None:
    ingest(h, 5, source="a")
    assert ingest(h, 1, source="b").result == {"offset": 2, "mark": 1}
    assert h.state.source_marks == {"a": 5, "b": 1}


@pytest.mark.parametrize(
    ("name", "payload", "key", "why"),
    [
        ("bad name", {}, "", "name"),
        ("e", [1], "", "payload"),
        ("e", {"x": "y" * limits.MAX_JSON_BYTES}, "", "payload"),
        ("e", {}, "k" * (limits.MAX_CORRELATION_KEY_LENGTH + 1), "correlation_key"),
    ],
)
def test_a_refused_message_moves_the_mark_without_an_event(
    h: Harness, name: str, payload: JSON, key: str, why: str
) -> None:
    out = ingest(h, 7, name=name, payload=payload, correlation_key=key)
    assert out.code is Code.OK and out.result["offset"] == 0
    assert out.result["refused"].startswith(why)
    assert h.state.event_log == {} and h.state.source_marks == {"nats": 7}
    assert ingest(h, 8).result == {"offset": 1, "mark": 8}, "the next message still enters"


@pytest.mark.parametrize(
    ("source", "seq"), [("", 1), ("bad source", 1), ("nats", 0), ("nats", True)]
)
def test_a_malformed_ingest_is_rejected_and_changes_nothing(
    h: Harness, source: str, seq: JSON
) -> None:
    out = ingest(h, seq, source=source)
    assert out.code is Code.INVALID_ARGUMENT
    assert h.state.source_marks == {} and h.state.event_log == {}


def test_an_ingested_event_fires_handlers_like_a_published_one(h: Harness) -> None:
    h.register_workflow(
        {
            "name": "gate",
            "version": 1,
            "tasks": [{"name": "approve", "taskReferenceName": "approve", "type": "HUMAN"}],
        }
    )
    from orchestrator.core.commands import RegisterEventHandler

    spec = {
        "name": "on_order",
        "event": "orders.created",
        "actions": [{"action": "start_workflow", "start_workflow": {"name": "gate"}}],
    }
    h.ok(RegisterEventHandler(h.new_id("handler"), spec))
    ingest(h, 1)
    assert h.state.event_log[1]["actions"][0]["code"] == Code.OK.value
    assert "event-1-0" in h.state.workflows


def publish(h: Harness, sink: str = "") -> int:
    out = h.ok(PublishEvent(h.new_id("event"), "e", {}))
    offset: int = out.result["offset"]
    if sink:
        h.state.event_log[offset]["sink"] = sink  # as an EVENT task with an external sink sets it
    return offset


def advance(h: Harness, offset: JSON, sink: str = "nats") -> Outcome:
    return h.apply_one(AdvanceSink(h.new_id("sink"), sink, offset))


def test_a_sink_mark_moves_forward_only_and_never_past_the_log(h: Harness) -> None:
    for _ in range(3):
        publish(h)
    assert advance(h, 2).result == {"mark": 2}
    assert advance(h, 1).result == {"mark": 2}, "never backwards"
    assert h.state.sink_marks == {"nats": 2}
    past = advance(h, 4)
    assert past.code is Code.INVALID_ARGUMENT and "past the log's last offset 3" in past.message
    assert advance(h, 0).code is Code.INVALID_ARGUMENT
    assert advance(h, 3).result == {"mark": 3} and h.state.sink_marks == {"nats": 3}


def test_sink_batch_lists_the_records_of_the_prefix_after_the_mark(h: Harness) -> None:
    offsets = [publish(h, sink) for sink in ("", "nats:a", "conductor:x", "nats:b", "nats:c")]
    batch = queries.sink_batch(h.state, "nats", "nats:", 0, 100)
    assert [r["offset"] for r in batch["records"]] == [offsets[1], offsets[3], offsets[4]]
    assert (batch["mark"], batch["first"], batch["last"]) == (0, 1, 5)
    advance(h, 2)
    batch = queries.sink_batch(h.state, "nats", "nats:", 0, 2)
    assert [r["offset"] for r in batch["records"]] == [4]
    assert (batch["mark"], batch["first"], batch["last"]) == (2, 3, 4)
    done = queries.sink_batch(h.state, "nats", "nats:", 5, 100)
    assert (done["first"], done["last"], done["records"]) == (6, 5, [])


def test_sink_batch_shows_events_dropped_before_the_sink_looked(h: Harness) -> None:
    for _ in range(4):
        publish(h, "nats:a")
    del h.state.event_log[1], h.state.event_log[2]  # as retention drops the oldest
    batch = queries.sink_batch(h.state, "nats", "nats:", 0, 100)
    assert (batch["first"], batch["oldest"]) == (1, 3), "offsets 1 and 2 were never seen"
    assert [r["offset"] for r in batch["records"]] == [3, 4]


def test_marks_survive_a_snapshot_and_older_snapshots_load_without_them(h: Harness) -> None:
    ingest(h, 9)
    advance(h, 1)
    loaded = State.from_snapshot_bytes(h.state.snapshot_bytes())
    assert (loaded.source_marks, loaded.sink_marks) == ({"nats": 9}, {"nats": 1})
    old = h.state.to_snapshot()
    del old["source_marks"], old["sink_marks"]
    older = State.from_snapshot(old)
    assert (older.source_marks, older.sink_marks) == ({}, {})


def test_replicas_replaying_the_same_log_agree(h: Harness) -> None:
    for seq in (1, 2, 2, 5, 3):
        ingest(h, seq)
    advance(h, 2)
    st, _ = replay(h.log)
    assert st.snapshot_bytes() == h.state.snapshot_bytes()
