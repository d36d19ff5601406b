"""Task limits and priorities (processors/flow.py): a task definition's concurrentExecLimit and
rateLimitPerFrequency / rateLimitFrequencyInSeconds per queue, exact in cluster time, and queues
that hand out higher priorities first, with aging.

Given a state, when a command is applied, then this outcome and this state. Pure core only.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.core import limits
from orchestrator.core.commands import CompleteTask
from orchestrator.core.errors import Code
from orchestrator.core.queries import has_work
from orchestrator.core.state import State
from tests.core_helpers import Harness, check_invariants

JSON = Any

LIMITED: dict[str, JSON] = {
    "name": "lim",
    "retryCount": 1,
    "retryDelaySeconds": 0,
    "responseTimeoutSeconds": 30,
}
ONE_LIM: dict[str, JSON] = {
    "name": "one_lim",
    "version": 1,
    "tasks": [{"name": "lim", "taskReferenceName": "l"}],
}


def setup(h: Harness, **limits_: int) -> Harness:
    h.register_task_defs({**LIMITED, **limits_})
    h.register_workflow(ONE_LIM)
    return h


@pytest.fixture
def h(led: Harness) -> Harness:
    return led


def start(h: Harness, n: int, **kw: Any) -> list[str]:
    return [f"{h.start('one_lim', **kw)}-0" for _ in range(n)]


def park(h: Harness, rid: str, n: int = 1, queue: str = "lim", ms: int = 20_000, **kw: Any) -> Any:
    cmd = h.poll_cmd(queue, n, request_id=rid, park_until_ms=h.clock_ms + ms, **kw)
    return h.ok(cmd).result


def filled(h: Harness, rid: str) -> list[str]:
    rec = h.state.requests.get(rid)
    assert rec is not None, f"poll {rid} was not filled"
    return list(rec.outcome["result"]["task_ids"])


def in_progress(h: Harness, queue: str = "lim") -> int:
    return sum(
        1
        for t in h.state.tasks.values()
        if t.task_type == queue.partition("@")[0] and t.status == "IN_PROGRESS"
    )


# ============================================================ task definitions


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("concurrentExecLimit", -1, "between 0 and"),
        ("concurrentExecLimit", "3", "must be an integer"),
        ("concurrentExecLimit", True, "must be an integer"),
        ("rateLimitPerFrequency", -5, "between 0 and"),
        ("rateLimitPerFrequency", 10**9, "between 0 and"),
        ("rateLimitFrequencyInSeconds", 0, "between 1 and"),
        ("rateLimitFrequencyInSeconds", 1.5, "must be an integer"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(
    h: Harness, field: str, value: JSON, message: str
) -> None:
    outcome = h.register_task_defs({**LIMITED, field: value}, check=False)
    assert outcome.code is Code.INVALID_ARGUMENT
    assert f"task_def_json[0].{field}" in outcome.message and message in outcome.message


def test_limits_are_optional_and_kept_as_given(h: Harness) -> None:
    h.register_task_defs({**LIMITED, "concurrentExecLimit": None, "rateLimitPerFrequency": 0})
    assert "concurrentExecLimit" not in h.state.task_defs["lim"]  # null: not given
    h.register_task_defs({**LIMITED, "rateLimitPerFrequency": 3, "rateLimitFrequencyInSeconds": 5})
    td = h.state.task_defs["lim"]
    assert (td["rateLimitPerFrequency"], td["rateLimitFrequencyInSeconds"]) == (3, 5)


def test_an_inline_task_definition_may_not_carry_a_limit(h: Harness) -> None:
    inline = {**LIMITED, "concurrentExecLimit": 2}
    bad = {
        "name": "inline",
        "version": 1,
        "tasks": [{"name": "lim", "taskReferenceName": "l", "taskDefinition": inline}],
    }
    outcome = h.register_workflow(bad, check=False)
    assert outcome.code is Code.INVALID_ARGUMENT
    assert "taskDefinition (l).concurrentExecLimit" in outcome.message
    assert "registered task definition" in outcome.message
    # Conductor's exports carry zeros: those mean no limit and are accepted.
    zeros = {**LIMITED, "concurrentExecLimit": 0, "rateLimitPerFrequency": 0}
    bad["tasks"][0]["taskDefinition"] = {**zeros, "rateLimitFrequencyInSeconds": 1}
    h.register_workflow(bad)


# ============================================================ concurrentExecLimit


def test_a_poll_leases_no_more_than_the_concurrency_limit(h: Harness) -> None:
    setup(h, concurrentExecLimit=2)
    ids = start(h, 4)
    assert h.poll("lim", 4) == ids[:2]
    assert h.poll("lim", 4) == [], "both slots are taken: the tasks stay SCHEDULED"
    assert [h.task(t).status for t in ids[2:]] == ["SCHEDULED", "SCHEDULED"]
    assert not has_work(h.state, "lim", "any"), "no capacity: no work for a poll"
    h.complete(ids[0])
    assert has_work(h.state, "lim", "any")
    assert "lim" in h.effects.ready_types, "a freed slot makes the queue ready"
    assert h.poll("lim", 4) == [ids[2]]
    check_invariants(h.state)


def test_a_parked_poll_gets_the_slot_in_the_entry_that_frees_it(h: Harness) -> None:
    setup(h, concurrentExecLimit=1)
    first, second = start(h, 2)
    assert h.poll("lim") == [first]
    assert park(h, "p1") == {"task_ids": [], "parked": True}
    check_invariants(h.state)
    h.complete(first)
    assert filled(h, "p1") == [second], "filled in the completion's own entry"
    assert "p1" in h.effects.polls_settled
    assert in_progress(h) == 1
    check_invariants(h.state)


def test_a_parked_poll_is_not_settled_empty_while_the_queue_is_full(h: Harness) -> None:
    setup(h, concurrentExecLimit=1)
    (first,) = start(h, 1)
    assert h.poll("lim") == [first]
    park(h, "p1")
    start(h, 1)  # a task is made ready, but there is no slot for it
    assert "p1" in h.state.parked and "p1" not in h.state.requests
    check_invariants(h.state)


@pytest.mark.parametrize("how", ["fail", "lease_timeout", "terminate"])
def test_a_task_that_ends_otherwise_frees_its_slot(h: Harness, how: str) -> None:
    setup(h, concurrentExecLimit=1)
    first, second = start(h, 2)
    assert h.poll("lim") == [first]
    if how == "fail":  # retried: the retry is a new task queued behind the second
        h.fail(first)
    elif how == "lease_timeout":
        h.tick(30_000)
        assert h.task(first).status == "TIMED_OUT"
    else:
        h.terminate(h.task(first).workflow_id)
    assert h.poll("lim") == [second]
    assert in_progress(h) == 1
    check_invariants(h.state)


def test_each_task_domain_has_its_own_budget(h: Harness) -> None:
    setup(h, concurrentExecLimit=1)
    blue = start(h, 2, task_to_domain={"lim": "blue"})
    plain = start(h, 2)
    assert h.poll("lim", 2, domain="blue") == blue[:1]
    assert h.poll("lim", 2) == plain[:1]
    assert h.poll("lim", 2, domain="blue") == []
    assert h.state.leased == {"lim@blue": 1, "lim": 1}
    check_invariants(h.state)


def test_a_raised_limit_serves_a_parked_poll_in_the_registration_entry(h: Harness) -> None:
    setup(h, concurrentExecLimit=1)
    first, second, third = start(h, 3)
    assert h.poll("lim") == [first]
    park(h, "p1", n=5)
    h.register_task_defs({**LIMITED, "concurrentExecLimit": 3})
    assert filled(h, "p1") == [second, third]
    check_invariants(h.state)


def test_a_lowered_limit_holds_from_the_next_poll(h: Harness) -> None:
    setup(h, concurrentExecLimit=3)
    ids = start(h, 5)
    assert h.poll("lim", 2) == ids[:2]
    h.register_task_defs({**LIMITED, "concurrentExecLimit": 1})
    assert h.poll("lim", 3) == [], "two in progress: over the new limit of one"
    h.complete(ids[0])
    assert h.poll("lim", 3) == [], "one in progress: at the limit"
    h.complete(ids[1])
    assert h.poll("lim", 3) == [ids[2]]
    h.register_task_defs({**LIMITED})  # no limit any more
    assert h.poll("lim", 3) == ids[3:]
    check_invariants(h.state)


def test_the_leased_counts_are_rebuilt_from_a_snapshot(h: Harness) -> None:
    setup(h, concurrentExecLimit=2)
    ids = start(h, 3)
    h.poll("lim", 3)
    loaded = State.from_snapshot_bytes(h.state.snapshot_bytes())
    assert loaded.leased == h.state.leased == {"lim": 2}
    after = Harness(loaded, h.clock_ms)
    assert after.poll("lim") == []
    after.complete(ids[0])
    assert after.poll("lim") == [ids[2]]


# ============================================================ rate limits


def test_a_poll_leases_no_more_than_the_rate_window_allows(h: Harness) -> None:
    setup(h, rateLimitPerFrequency=2, rateLimitFrequencyInSeconds=10)
    ids = start(h, 5)
    t0 = h.clock_ms
    assert h.poll("lim", 5) == ids[:2]
    assert h.state.timers["rate:lim"] == t0 + 10_000, "the window is full: a timer for it"
    h.complete(ids[0])  # ending a task frees no rate budget
    assert h.poll("lim", 5) == []
    assert not has_work(h.state, "lim", "any")
    h.advance(9_999)
    assert h.poll("lim", 5) == [], "the first leases are still in the window"
    h.advance(1)
    assert h.poll("lim", 5) == ids[2:4], "both left the window at t0 + 10 s"
    check_invariants(h.state)


def test_the_window_slides(h: Harness) -> None:
    setup(h, rateLimitPerFrequency=2, rateLimitFrequencyInSeconds=10)
    ids = start(h, 4)
    t0 = h.clock_ms
    assert h.poll("lim") == ids[:1]
    h.advance(4_000)
    assert h.poll("lim", 3) == ids[1:2]
    assert h.state.timers["rate:lim"] == t0 + 10_000, "when the oldest lease leaves"
    h.tick_at(t0 + 10_000)
    assert h.poll("lim", 3) == ids[2:3], "one left the window, one is still in it"
    assert h.state.timers["rate:lim"] == t0 + 14_000
    check_invariants(h.state)


def test_the_rate_timer_fills_a_parked_poll_when_the_window_opens(h: Harness) -> None:
    setup(h, rateLimitPerFrequency=1, rateLimitFrequencyInSeconds=5)
    first, second = start(h, 2)
    t0 = h.clock_ms
    assert h.poll("lim") == [first]
    park(h, "p1", ms=30_000)
    h.tick_at(t0 + 4_999)
    assert "p1" in h.state.parked
    h.tick_at(t0 + 5_000)
    assert filled(h, "p1") == [second], "filled by the Tick that moved the window"
    assert h.state.timers["rate:lim"] == t0 + 10_000
    check_invariants(h.state)


def test_the_rate_timer_makes_the_queue_ready_for_waiting_polls(h: Harness) -> None:
    setup(h, rateLimitPerFrequency=1, rateLimitFrequencyInSeconds=5)
    start(h, 2)
    h.poll("lim")
    h.tick(5_000)
    assert h.effects.ready_types == ["lim"], "the dispatcher wakes the polls waiting for it"


def test_a_raised_rate_limit_serves_at_once_and_a_lowered_one_arms_its_timer(h: Harness) -> None:
    setup(h, rateLimitPerFrequency=1, rateLimitFrequencyInSeconds=60)
    ids = start(h, 4)
    t0 = h.clock_ms
    assert h.poll("lim") == ids[:1]
    park(h, "p1", n=3)
    h.register_task_defs({**LIMITED, "rateLimitPerFrequency": 3, "rateLimitFrequencyInSeconds": 60})
    assert filled(h, "p1") == ids[1:3]
    h.advance(1_000)
    h.register_task_defs({**LIMITED, "rateLimitPerFrequency": 2, "rateLimitFrequencyInSeconds": 60})
    assert h.poll("lim") == []
    # Three leases at t0 in the window, two allowed: open when the second of them leaves.
    assert h.state.timers["rate:lim"] == t0 + 60_000
    check_invariants(h.state)


def test_rate_windows_survive_a_snapshot(h: Harness) -> None:
    setup(h, rateLimitPerFrequency=2, rateLimitFrequencyInSeconds=10)
    ids = start(h, 3)
    h.poll("lim", 3)
    data = h.state.snapshot_bytes()
    loaded = State.from_snapshot_bytes(data)
    assert loaded.snapshot_bytes() == data
    assert loaded.lease_times == {"lim": [h.clock_ms, h.clock_ms]}
    after = Harness(loaded, h.clock_ms)
    assert after.poll("lim") == []
    after.advance(10_000)
    assert after.poll("lim") == [ids[2]]


def test_a_rate_and_a_concurrency_limit_hold_together(h: Harness) -> None:
    setup(h, concurrentExecLimit=1, rateLimitPerFrequency=2, rateLimitFrequencyInSeconds=10)
    ids = start(h, 4)
    assert h.poll("lim", 4) == ids[:1]
    h.complete(ids[0])
    assert h.poll("lim", 4) == ids[1:2]
    h.complete(ids[1])
    assert h.poll("lim", 4) == [], "the rate window is full"
    h.advance(10_000)
    assert h.poll("lim", 4) == ids[2:3], "and the concurrency limit holds"
    check_invariants(h.state)


# ============================================================ priorities


def test_priority_is_checked_at_start(h: Harness) -> None:
    for bad in (-1, 100, "5", True):
        outcome = h.apply_one(h.start_cmd("one_step", priority=bad))
        assert outcome.code is Code.INVALID_ARGUMENT and "priority" in outcome.message
    h.start("one_step", priority=limits.MAX_PRIORITY)


def test_higher_priorities_go_first_and_equal_ones_in_order(h: Harness) -> None:
    setup(h)
    low = start(h, 2, priority=1)
    high = start(h, 2, priority=7)
    mid = start(h, 1, priority=3)
    assert h.poll("lim", 5) == [*high, *mid, *low]
    check_invariants(h.state)


def test_a_waiting_task_ages_past_newer_higher_priorities(h: Harness) -> None:
    setup(h)
    (old,) = start(h, 1, priority=0)
    h.advance(5 * limits.PRIORITY_AGING_MS)
    (newer,) = start(h, 1, priority=5)  # same effective priority: the older goes first
    (newest,) = start(h, 1, priority=6)  # higher: it goes first
    assert h.poll("lim", 3) == [newest, old, newer]


def test_the_workflows_children_carry_its_priority(h: Harness) -> None:
    setup(h)
    parent_def = {
        "name": "parent_lim",
        "version": 1,
        "tasks": [
            {
                "name": "sub",
                "taskReferenceName": "s",
                "type": "SUB_WORKFLOW",
                "subWorkflowParam": {"name": "one_lim"},
            }
        ],
    }
    h.register_workflow(parent_def)
    (low,) = start(h, 1, priority=2)
    parent = h.start("parent_lim", priority=9)
    child = h.task(f"{parent}-0").sub_workflow_id
    assert h.wf(child).priority == 9
    assert h.poll("lim", 2) == [f"{child}-0", low]


def test_priority_queues_survive_a_snapshot_and_old_ones_load(h: Harness) -> None:
    setup(h)
    start(h, 2, priority=1)
    h.advance(3_000)
    start(h, 2, priority=4)
    data = h.state.snapshot_bytes()
    loaded = State.from_snapshot_bytes(data)
    assert loaded.snapshot_bytes() == data
    assert [list(q) for q in loaded.queues.values()] == [list(q) for q in h.state.queues.values()]
    # A snapshot written before priorities held bare task ids in FIFO order.
    import json

    snap = json.loads(data)
    snap["queues"] = {k: [row[0] for row in rows] for k, rows in snap["queues"].items()}
    del snap["lease_times"]
    old = State.from_snapshot(snap)
    ids = [row[0] for row in json.loads(data)["queues"]["lim"]]
    by_priority = {p: list(sub) for p, sub in old.queues["lim"].by_priority.items()}
    assert by_priority == {1: ids[:2], 4: ids[2:]}
    check_invariants(old)
    assert Harness(old, h.clock_ms).poll("lim", 4) == [*ids[2:], *ids[:2]]


def test_a_lease_costs_one_look_per_priority_waiting(h: Harness) -> None:
    # Many tasks of few priorities: the queue keeps them per priority, oldest first.
    setup(h)
    for p in (1, 2, 3):
        start(h, 30, priority=p)
    queue = h.state.queues["lim"]
    assert sorted(queue.by_priority) == [1, 2, 3] and len(queue) == 90
    leased = h.poll("lim", 90)
    assert [h.wf(h.task(t).workflow_id).priority for t in leased] == [3] * 30 + [2] * 30 + [1] * 30


def test_a_completion_riding_polls_sees_the_slot_it_freed(h: Harness) -> None:
    setup(h, concurrentExecLimit=1)
    first, second = start(h, 2)
    assert h.poll("lim") == [first]
    done = CompleteTask(request_id="c1", task_id=first, output={})
    outs = h.apply(done, h.poll_cmd("lim", 1, request_id="ride"))
    assert outs[1].result == {"task_ids": [second]}
