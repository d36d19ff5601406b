"""Durable subscriptions in the core: the workflow change feed and consumer groups
(processors/subscriptions.py, subscription_appliers.py)."""

from __future__ import annotations

import pytest

from orchestrator.core import limits
from orchestrator.core.commands import AckEvents, PublishEvent
from orchestrator.core.errors import Code
from orchestrator.core.machine import Outcome
from orchestrator.core.processors import subscriptions as S
from orchestrator.core.state import State
from orchestrator.core.subscription_appliers import record_size
from tests.core_helpers import Harness, check_invariants


def ack(h: Harness, stream: str, group: str, offset: int) -> Outcome:
    return h.apply_one(AckEvents(h.new_id("ack"), stream, group, offset))


def publish(h: Harness, n: int) -> None:
    for i in range(n):
        h.ok(PublishEvent(h.new_id("ev"), "e", {"i": i}))


def statuses(h: Harness, wf_id: str) -> list[str]:
    return [r["status"] for r in _feed(h) if r["workflowId"] == wf_id]


def _feed(h: Harness) -> list[dict[str, object]]:
    return S.read_stream(h.state, "workflows", 1, limits.MAX_WORKFLOW_CHANGES)


def test_the_feed_records_a_start_and_an_end(h: Harness) -> None:
    wf = h.start("one_step", correlation_id="c-1")
    h.complete(h.poll_one("task_c"))
    assert statuses(h, wf) == ["RUNNING", "COMPLETED"]
    first, last = (r for r in _feed(h) if r["workflowId"] == wf)
    assert first["name"] == "one_step" and first["version"] == 1
    assert first["correlationId"] == "c-1"
    assert last["offset"] == first["offset"] + 1 == h.state.feed_offset
    assert last["time"] == h.state.clock_ms
    check_invariants(h.state)


def test_a_terminate_and_a_reterminate_are_fed(h: Harness) -> None:
    wf = h.start("one_step")
    h.terminate(wf)
    assert statuses(h, wf) == ["RUNNING", "TERMINATED"]
    failed = h.start("one_step")
    h.fail(h.poll_one("task_c"), terminal=True)
    assert statuses(h, failed)[-1] == "FAILED"
    h.terminate(failed)
    assert statuses(h, failed)[-1] == "TERMINATED"


def test_a_refused_start_feeds_nothing(h: Harness) -> None:
    before = (dict(h.state.workflow_feed), h.state.feed_offset, h.state.feed_bytes)
    assert h.apply_one(h.start_cmd("no_such_workflow")).code is not Code.OK
    assert (h.state.workflow_feed, h.state.feed_offset, h.state.feed_bytes) == before


def test_the_feed_is_bounded_by_count_and_by_size(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_WORKFLOW_CHANGES", 3)
    for _ in range(3):
        h.start("one_step")
    assert list(h.state.workflow_feed) == [1, 2, 3]
    h.start("one_step")
    assert list(h.state.workflow_feed) == [2, 3, 4]
    size = sum(record_size(r) for r in h.state.workflow_feed.values())
    assert h.state.feed_bytes == size
    monkeypatch.setattr(limits, "MAX_WORKFLOW_FEED_BYTES", size)
    h.start("one_step", correlation_id="x" * 100)
    assert h.state.feed_bytes <= size and list(h.state.workflow_feed)[-1] == 5
    assert S.oldest_offset(h.state, "workflows") == next(iter(h.state.workflow_feed))


def test_acks_move_forward_only(h: Harness) -> None:
    publish(h, 5)
    assert ack(h, "events", "billing", 3).result == {"committed": 3}
    assert ack(h, "events", "billing", 2).result == {"committed": 3}
    assert ack(h, "events", "billing", 5).result == {"committed": 5}
    assert S.committed(h.state, "events", "billing") == 5
    # The same name on the other stream is another group.
    assert S.committed(h.state, "workflows", "billing") == 0


def test_an_ack_past_the_last_offset_or_malformed_is_refused(h: Harness) -> None:
    publish(h, 2)
    out = ack(h, "events", "g", 3)
    assert out.code is Code.INVALID_ARGUMENT and "last offset 2" in out.message
    assert ack(h, "orders", "g", 1).code is Code.INVALID_ARGUMENT
    assert ack(h, "events", "a/b", 1).code is Code.INVALID_ARGUMENT
    assert ack(h, "events", "g", -1).code is Code.INVALID_ARGUMENT
    assert h.state.consumer_groups == {}


def test_groups_are_bounded(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_CONSUMER_GROUPS", 2)
    publish(h, 1)
    ack(h, "events", "a", 1)
    ack(h, "workflows", "a", 0)
    out = ack(h, "events", "c", 1)
    assert out.code is Code.RESOURCE_EXHAUSTED and "MAX_CONSUMER_GROUPS" in out.message
    assert ack(h, "events", "a", 1).ok  # an existing group still acks


def test_read_stream_from_an_offset(h: Harness) -> None:
    publish(h, 4)
    assert [r["offset"] for r in S.read_stream(h.state, "events", 2, 2)] == [2, 3]
    assert [r["offset"] for r in S.read_stream(h.state, "events", 4, 10)] == [4]
    assert S.read_stream(h.state, "events", 5, 10) == []


def test_a_snapshot_keeps_the_feed_and_the_groups(h: Harness) -> None:
    h.start("one_step")
    publish(h, 1)
    ack(h, "events", "g", 1)
    loaded = State.from_snapshot_bytes(h.state.snapshot_bytes())
    assert loaded.digest() == h.state.digest()
    assert loaded.workflow_feed == h.state.workflow_feed
    assert (loaded.feed_offset, loaded.feed_bytes) == (h.state.feed_offset, h.state.feed_bytes)
    assert loaded.consumer_groups == {"events/g": 1}


def test_a_snapshot_written_before_subscriptions_loads_empty(h: Harness) -> None:
    h.start("one_step")
    snap = h.state.to_snapshot()
    for key in ("workflow_feed", "feed_offset", "consumer_groups"):
        del snap[key]
    loaded = State.from_snapshot(snap)
    assert (loaded.workflow_feed, loaded.feed_offset, loaded.feed_bytes) == ({}, 0, 0)
    assert loaded.consumer_groups == {}
