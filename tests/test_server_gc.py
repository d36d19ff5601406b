"""The collector policy of a replica process (server.FreezeAfterFull)."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from orchestrator import server


class FakeCollector:
    def __init__(self) -> None:
        self.frozen = 100
        self.calls: list[str] = []

    def get_freeze_count(self) -> int:
        return self.frozen

    def freeze(self) -> None:
        self.calls.append("freeze")

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")


def full(policy: server.FreezeAfterFull, generation: int = 2) -> None:
    policy("start", {"generation": generation})
    policy("stop", {"generation": generation, "collected": 0})


def test_freezes_after_full_collections_only() -> None:
    fake = FakeCollector()
    policy = server.FreezeAfterFull(fake, clock=lambda: 0.0)
    full(policy, 0)
    full(policy, 1)
    assert fake.calls == []
    full(policy)
    assert fake.calls == ["freeze"]


def test_thaws_once_grown_and_due_then_refreezes_after_the_long_walk() -> None:
    fake = FakeCollector()
    now = [0.0]
    policy = server.FreezeAfterFull(fake, clock=lambda: now[0])
    fake.frozen = 1000  # grown 10x, but within the first interval: keep freezing
    full(policy)
    assert fake.calls == ["freeze"]
    now[0] = server.RESCAN_MIN_S
    full(policy)
    assert fake.calls[-1] == "unfreeze"
    fake.frozen = 600  # the walk freed cycles; what survives is the new base
    full(policy)
    assert fake.calls[-1] == "freeze" and policy.rescans == 1 and policy.base == 600
    fake.frozen = 1100  # grown < 2x since the walk, and not due again
    now[0] += server.RESCAN_MIN_S - 1
    full(policy)
    assert fake.calls[-1] == "freeze"
    fake.frozen = 1300
    now[0] += 1
    full(policy)
    assert fake.calls[-1] == "unfreeze"


def test_the_leader_waits_for_four_times_the_growth() -> None:
    fake, now, leading = FakeCollector(), [0.0], [True]
    policy = server.FreezeAfterFull(fake, clock=lambda: now[0], leading=lambda: leading[0])
    now[0] = server.RESCAN_MIN_S
    fake.frozen = 300  # 3x: a follower would thaw now
    full(policy)
    assert fake.calls == ["freeze"]
    leading[0] = False
    full(policy)
    assert fake.calls[-1] == "unfreeze"
    fake, now[0] = FakeCollector(), 0.0
    policy = server.FreezeAfterFull(fake, clock=lambda: now[0], leading=lambda: True)
    now[0] = server.RESCAN_MIN_S
    fake.frozen = 401  # more than 4x: the leader thaws too
    full(policy)
    assert fake.calls == ["unfreeze"]


def test_a_cycle_among_frozen_objects_is_freed_by_the_rescan() -> None:
    class Node:
        other: Any = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    policy = server.FreezeAfterFull(clock=lambda: 0.0)
    gc.freeze()  # a and b survive a full collection and are frozen
    try:
        del a, b
        gc.collect()
        assert gone() is not None  # frozen: the collector does not see the cycle
        policy.rescanned_at = -server.RESCAN_MIN_S
        policy.base = 1
        full(policy)  # after a full collection with the count grown: thaw
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
