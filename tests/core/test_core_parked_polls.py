"""Lease at schedule time: a long poll that finds nothing parks in the replicated state, and the
command that makes a task of its type ready leases it to the poll in the same apply.

Given a state, when a command is applied, then this outcome and this state. Pure core only.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.core import limits
from orchestrator.core.commands import CancelPoll, PollTasks
from orchestrator.core.errors import Code
from orchestrator.core.records import ParkedPoll
from orchestrator.core.state import State
from tests.core_helpers import Harness, check_invariants, replay, state_without_seq

JSON = Any


@pytest.fixture
def h(led: Harness) -> Harness:
    return led


def park(
    h: Harness, task_type: str, rid: str, n: int = 1, worker: str = "w", ms: int = 5000
) -> Any:
    cmd = h.poll_cmd(task_type, n, worker, request_id=rid, park_until_ms=h.clock_ms + ms)
    outcome = h.ok(cmd)
    check_invariants(h.state)
    return outcome


# ============================================================ parking


def test_a_poll_that_finds_nothing_parks_until_its_expiry(h: Harness) -> None:
    outcome = park(h, "task_c", "p1", n=2, worker="w-1", ms=5000)
    assert outcome.result == {"task_ids": [], "parked": True}
    assert h.state.parked == {
        "p1": ParkedPoll(
            queue="task_c",
            worker_id="w-1",
            count=2,
            epoch=1,
            expires_ms=h.clock_ms + 5000,
            fp=h.state.parked["p1"].fp,
        )
    }
    assert h.state.timers["poll:p1"] == h.clock_ms + 5000
    assert h.effects.timers_changed, "the leader's timer must learn the new deadline"
    assert "p1" not in h.state.requests, "nothing leased: no outcome to record yet"


def test_a_parking_poll_leases_at_once_when_work_is_ready(h: Harness) -> None:
    wf_id = h.start("one_step")
    outcome = park(h, "task_c", "p1")
    assert outcome.result == {"task_ids": [f"{wf_id}-0"]}
    assert h.state.parked == {}
    assert "p1" in h.state.requests


def test_a_poll_without_park_until_never_parks(h: Harness) -> None:
    assert h.ok(h.poll_cmd("task_c", request_id="p1")).result == {"task_ids": []}
    assert h.state.parked == {} and "poll:p1" not in h.state.timers


def test_a_poll_whose_wait_already_ended_does_not_park(h: Harness) -> None:
    # Committed later than the proposer hoped: the wait it asked for is over.
    cmd = h.poll_cmd("task_c", request_id="p1", park_until_ms=h.clock_ms - 1)
    assert h.ok(cmd).result == {"task_ids": []}
    assert h.state.parked == {}


def test_a_negative_park_until_is_rejected(h: Harness) -> None:
    outcome = h.apply_one(h.poll_cmd("task_c", request_id="p1", park_until_ms=-1))
    assert outcome.code is Code.INVALID_ARGUMENT and "park_until_ms" in outcome.message


def test_the_parked_lifetime_is_bounded_by_the_longest_poll(h: Harness) -> None:
    park(h, "task_c", "p1", ms=10 * limits.MAX_POLL_TIMEOUT_MS)
    assert h.state.parked["p1"].expires_ms == h.clock_ms + limits.MAX_POLL_TIMEOUT_MS


def test_a_stale_epoch_poll_does_not_park(h: Harness) -> None:
    cmd = h.poll_cmd("task_c", request_id="p1", park_until_ms=h.clock_ms + 5000, epoch=0)
    outcome = h.apply_one(cmd)
    assert outcome.code is Code.FAILED_PRECONDITION
    assert h.state.parked == {}


def test_beyond_the_parked_limit_a_poll_is_answered_empty_without_parking(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_PARKED_POLLS", 1)
    park(h, "task_c", "p1")
    outcome = park(h, "task_c", "p2")
    assert outcome.result == {"task_ids": []}
    assert list(h.state.parked) == ["p1"]


# ============================================================ filled when a task becomes ready


def test_starting_a_workflow_leases_its_first_task_to_the_parked_poll(h: Harness) -> None:
    park(h, "task_c", "p1", worker="w-1", ms=5000)
    h.advance(40)
    wf_id = h.start("one_step")
    tid = f"{wf_id}-0"
    task = h.task(tid)
    assert task.status == "IN_PROGRESS" and task.worker_id == "w-1"
    assert task.poll_count == 1 and task.start_time_ms == h.clock_ms
    assert h.state.timers[f"lease:{tid}"] == h.clock_ms + 10_000 == task.lease_expires_ms
    assert h.queued("task_c") == []
    assert h.state.parked == {} and "poll:p1" not in h.state.timers
    assert h.effects.polls_settled == ["p1"]
    assert h.state.requests["p1"].outcome["result"] == {"task_ids": [tid]}
    check_invariants(h.state)


def test_completing_a_task_leases_the_next_one_to_the_parked_poll(h: Harness) -> None:
    wf_id = h.start("two_step", {"x": 1})
    a = h.poll_one("task_a")
    park(h, "task_b", "pb", worker="w-b")
    h.complete(a, {"y": 7})
    b = h.last_task(wf_id)
    assert b.reference_task_name == "b" and b.status == "IN_PROGRESS"
    assert b.worker_id == "w-b" and b.input == {"y": 7}
    assert h.state.requests["pb"].outcome["result"] == {"task_ids": [b.task_id]}
    assert h.effects.polls_settled == ["pb"]
    check_invariants(h.state)


def test_parked_polls_are_filled_oldest_first_and_a_task_is_leased_once(h: Harness) -> None:
    park(h, "task_c", "p1", worker="w-1")
    park(h, "task_c", "p2", worker="w-2")
    first, second, third = (h.start("one_step") for _ in range(3))
    assert h.task(f"{first}-0").worker_id == "w-1"
    assert h.task(f"{second}-0").worker_id == "w-2"
    assert h.task(f"{third}-0").status == "SCHEDULED"
    assert h.queued("task_c") == [f"{third}-0"]
    assert list(h.state.parked) == []
    check_invariants(h.state)


def test_polls_of_other_types_stay_parked(h: Harness) -> None:
    park(h, "task_a", "pa")
    park(h, "task_c", "pc")
    h.start("one_step")
    assert list(h.state.parked) == ["pa"]
    assert h.effects.polls_settled == ["pc"]


def test_a_parked_poll_takes_up_to_count_tasks_made_ready_by_one_command(h: Harness) -> None:
    fork = {
        "name": "fork_c",
        "version": 1,
        "tasks": [
            {
                "name": "f",
                "taskReferenceName": "f",
                "type": "FORK_JOIN",
                "forkTasks": [
                    [{"name": "task_c", "taskReferenceName": "c1"}],
                    [{"name": "task_c", "taskReferenceName": "c2"}],
                    [{"name": "task_c", "taskReferenceName": "c3"}],
                ],
            },
            {"name": "j", "taskReferenceName": "j", "type": "JOIN"},
        ],
    }
    h.register_workflow(fork)
    park(h, "task_c", "p1", n=2, worker="w-1")
    park(h, "task_c", "p2", n=5, worker="w-2")
    wf_id = h.start("fork_c")
    by_ref = {t.reference_task_name: t for t in h.tasks_of(wf_id)}
    assert [by_ref[r].worker_id for r in ("c1", "c2", "c3")] == ["w-1", "w-1", "w-2"]
    assert h.state.requests["p1"].outcome["result"]["task_ids"] == [
        by_ref["c1"].task_id,
        by_ref["c2"].task_id,
    ]
    assert h.state.requests["p2"].outcome["result"]["task_ids"] == [by_ref["c3"].task_id]
    assert h.effects.polls_settled == ["p1", "p2"]
    check_invariants(h.state)


def test_a_retry_made_ready_by_its_timer_is_leased_to_the_parked_poll(h: Harness) -> None:
    h.register_task_defs(
        {"name": "slow", "retryCount": 1, "retryDelaySeconds": 5, "responseTimeoutSeconds": 10}
    )
    h.register_workflow(
        {"name": "slow_wf", "version": 1, "tasks": [{"name": "slow", "taskReferenceName": "s"}]}
    )
    wf_id = h.start("slow_wf")
    h.fail(h.poll_one("slow"))
    park(h, "slow", "p1", worker="w-r", ms=30_000)
    h.tick(5000)  # the retry's ready timer fires: the task is leased in the same Tick
    retry = h.last_task(wf_id)
    assert retry.retry_count == 1 and retry.status == "IN_PROGRESS"
    assert retry.worker_id == "w-r"
    assert h.state.requests["p1"].outcome["result"] == {"task_ids": [retry.task_id]}
    check_invariants(h.state)


# ============================================================ retries of the same poll


def test_a_retried_poll_returns_the_tasks_its_parked_attempt_was_given(h: Harness) -> None:
    park(h, "task_c", "p1", worker="w-1")
    wf_id = h.start("one_step")
    before = state_without_seq(h.state)
    # The retry reaches a new leader: newer epoch, a different remaining wait.
    h.leader_epoch(2)
    retry = h.poll_cmd("task_c", 1, "w-1", request_id="p1", park_until_ms=h.clock_ms + 900)
    again = h.apply_one(retry)
    assert again.ok and again.result == {"task_ids": [f"{wf_id}-0"], "deduplicated": True}
    assert h.state.parked == {}
    assert before.replace(b'"epoch":1', b'"epoch":2') == state_without_seq(h.state)


def test_a_retried_poll_that_is_still_parked_keeps_its_place(h: Harness) -> None:
    park(h, "task_c", "p1", worker="w-1", ms=5000)
    park(h, "task_c", "p2", worker="w-2", ms=5000)
    h.advance(1000)
    park(h, "task_c", "p1", worker="w-1", ms=3000)
    assert list(h.state.parked) == ["p1", "p2"]
    assert h.state.parked["p1"].expires_ms == h.clock_ms + 3000
    assert h.state.timers["poll:p1"] == h.clock_ms + 3000
    wf_id = h.start("one_step")
    assert h.task(f"{wf_id}-0").worker_id == "w-1"


def test_a_retry_in_the_entry_that_made_work_ready_is_answered_once(h: Harness) -> None:
    park(h, "task_c", "p1", worker="w-1")
    retry = h.poll_cmd("task_c", 1, "w-1", request_id="p1", park_until_ms=h.clock_ms + 900)
    start, again = h.apply(h.start_cmd("one_step"), retry)
    tid = f"{start.result['workflow_id']}-0"
    assert again.result == {"task_ids": [tid]}
    assert h.state.parked == {} and "poll:p1" not in h.state.timers
    assert h.state.requests["p1"].outcome["result"] == {"task_ids": [tid]}
    assert h.effects.polls_settled == ["p1"]
    check_invariants(h.state)


def test_a_parked_polls_request_id_cannot_be_reused_for_another_request(h: Harness) -> None:
    park(h, "task_c", "p1", worker="w-1")
    other = h.apply_one(
        h.poll_cmd("task_a", 1, "w-1", request_id="p1", park_until_ms=h.clock_ms + 5000)
    )
    assert other.code is Code.INVALID_ARGUMENT and "already used" in other.message
    complete = h.complete("whatever", request_id="p1", check=False)
    assert complete.code is Code.INVALID_ARGUMENT
    assert h.state.parked["p1"].queue == "task_c"
    assert "p1" not in h.state.requests
    check_invariants(h.state)


# ============================================================ expiry, cancel, new leader


def test_an_expired_parked_poll_is_dropped_by_the_tick_and_captures_nothing(h: Harness) -> None:
    park(h, "task_c", "p1", ms=5000)
    assert h.tick(4999).ok and "p1" in h.state.parked
    assert h.tick(1).result == {"fired": 1}
    assert h.state.parked == {} and "poll:p1" not in h.state.timers
    assert h.effects.polls_settled == ["p1"]
    assert "p1" not in h.state.requests, "an expired poll leased nothing: not recorded"
    wf_id = h.start("one_step")
    assert h.queued("task_c") == [f"{wf_id}-0"]
    check_invariants(h.state)


def test_polls_expiring_at_the_same_time_share_one_tick(h: Harness) -> None:
    park(h, "task_a", "p1", ms=1000)
    park(h, "task_b", "p2", ms=1000)
    park(h, "task_c", "p3", ms=1500)
    assert h.tick(1500).result == {"fired": 3}
    assert h.effects.polls_settled == ["p1", "p2", "p3"]
    assert h.state.parked == {}


def test_a_cancelled_poll_is_dropped(h: Harness) -> None:
    park(h, "task_c", "p1")
    outcome = h.ok(CancelPoll(poll_request_id="p1", epoch=h.epoch))
    assert outcome.result == {"cancelled": True}
    assert h.state.parked == {} and "poll:p1" not in h.state.timers
    assert h.effects.polls_settled == ["p1"]
    assert h.ok(CancelPoll(poll_request_id="p1", epoch=h.epoch)).result == {"cancelled": False}
    wf_id = h.start("one_step")
    assert h.queued("task_c") == [f"{wf_id}-0"]
    check_invariants(h.state)


def test_a_cancel_after_the_fill_changes_nothing(h: Harness) -> None:
    park(h, "task_c", "p1", worker="w-1")
    wf_id = h.start("one_step")
    before = state_without_seq(h.state)
    assert h.ok(CancelPoll(poll_request_id="p1", epoch=h.epoch)).result == {"cancelled": False}
    assert state_without_seq(h.state) == before
    assert h.task(f"{wf_id}-0").worker_id == "w-1"


def test_a_stale_epoch_cancel_is_rejected(h: Harness) -> None:
    park(h, "task_c", "p1")
    outcome = h.apply_one(CancelPoll(poll_request_id="p1", epoch=0))
    assert outcome.code is Code.FAILED_PRECONDITION
    assert "p1" in h.state.parked


def test_a_new_leader_epoch_drops_every_parked_poll(h: Harness) -> None:
    park(h, "task_a", "p1")
    park(h, "task_c", "p2")
    h.leader_epoch(2)
    assert h.state.parked == {}
    assert not any(k.startswith("poll:") for k in h.state.timers)
    assert h.effects.polls_settled == ["p1", "p2"]
    wf_id = h.start("one_step")
    assert h.queued("task_c") == [f"{wf_id}-0"], "an old leader's poll captures nothing"
    check_invariants(h.state)
    # The caller's retry on the new leader parks again under the new epoch.
    park(h, "task_a", "p1")
    assert h.state.parked["p1"].epoch == 2


def test_the_same_leader_epoch_again_keeps_parked_polls(h: Harness) -> None:
    park(h, "task_c", "p1")
    h.leader_epoch(1)
    assert "p1" in h.state.parked


# ============================================================ replicas agree


def test_parked_polls_survive_a_snapshot_and_replay_identically(h: Harness) -> None:
    park(h, "task_a", "p1", ms=3000)
    park(h, "task_c", "p2", ms=2000)
    h.start("one_step")
    data = h.state.snapshot_bytes()
    restored = State.from_snapshot_bytes(data)
    assert restored.parked == h.state.parked
    assert restored.next_due_ms() == h.state.next_due_ms() == h.clock_ms + 3000
    assert restored.snapshot_bytes() == data
    replayed, _ = replay(h.log)
    assert replayed.snapshot_bytes() == data


def test_a_snapshot_without_parked_polls_loads(h: Harness) -> None:
    import json

    snap = json.loads(h.state.snapshot_bytes())
    del snap["parked"]
    assert State.from_snapshot(snap).parked == {}


def test_poll_tasks_decodes_without_park_until(h: Harness) -> None:
    wf_id = h.start("one_step")
    raw = PollTasks(request_id="old", task_type="task_c", worker_id="w", count=1, epoch=1).to_dict()
    del raw["park_until_ms"]  # a log entry written before parking existed
    assert h.ok(raw).result == {"task_ids": [f"{wf_id}-0"]}
