"""Property: under a random mix of starts (random priorities and domains), polls (some parked),
completions, failures, lease timeouts, time passing, limits changed by re-registration, new
leader epochs and snapshot/restore, the task limits hold at every step and no task is stranded.

Checked against a model kept here from the events each step applied, not from flow.py:
- no lease takes a queue beyond its concurrentExecLimit, nor its rate window (leases within the
  last rateLimitFrequencyInSeconds) beyond rateLimitPerFrequency;
- never stranded: whenever a queue has a ready task and its limits allow a lease, a poll gets one
  and no poll of it stays parked; while only its rate window holds it back, its rate timer is
  due when the window lets the next lease through;
- priorities with aging: a task is never leased while a task of the queue that outranks it
  whenever the lease happens still waits: one of priority p queued (q - p) * PRIORITY_AGING_MS
  or more before it (q its priority; ties to the older), or one that beats it even so.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from orchestrator.core import events as E
from orchestrator.core.commands import CompleteTask, FailTask
from orchestrator.core.limits import PRIORITY_AGING_MS
from orchestrator.core.state import State
from tests.core_helpers import Harness, check_invariants, replay

JSON = Any
# name -> (concurrentExecLimit, rateLimitPerFrequency, rateLimitFrequencyInSeconds). A rate
# limited type keeps its window length and a rate limit (a window counts the leases made while
# the limit is in force: docs/workflow-language.md); the counts change at random.
TYPES: dict[str, tuple[int, int, int]] = {
    "conc": (2, 0, 0),
    "rate": (0, 3, 5),
    "both": (1, 2, 3),
    "free": (0, 0, 0),
}
DOMAINS = ["", "", "blue"]


def task_def(name: str, conc: int, rate: int, freq: int) -> dict[str, JSON]:
    td: dict[str, JSON] = {
        "name": name,
        "retryCount": 1,
        "retryDelaySeconds": 0,
        "responseTimeoutSeconds": 4,
        "concurrentExecLimit": conc,
        "rateLimitPerFrequency": rate,
    }
    if freq:
        td["rateLimitFrequencyInSeconds"] = freq
    return td


class Recording(Harness):
    """A Harness that keeps the events of every batch of a step (a step may apply several)."""

    def __init__(self) -> None:
        super().__init__()
        self.step_events: list[E.Event] = []

    def apply(self, *cmds: Any, now_ms: int | None = None) -> list[Any]:
        outcomes = super().apply(*cmds, now_ms=now_ms)
        self.step_events.extend(self.effects.events)
        return outcomes


class Model:
    """The limits in force and every lease made, by queue."""

    def __init__(self) -> None:
        self.limits = dict(TYPES)
        self.leases: dict[str, list[int]] = {}

    def of(self, queue: str) -> tuple[int, int, int]:
        return self.limits[queue.partition("@")[0]]

    def in_window(self, queue: str, now: int) -> list[int]:
        _, rate, freq = self.of(queue)
        return [t for t in self.leases.get(queue, []) if t > now - freq * 1000] if rate else []

    def room(self, st: State, queue: str) -> int:
        conc, rate, _ = self.of(queue)
        room = 10**9
        if conc:
            room = conc - running(st, queue)
        if rate:
            room = min(room, rate - len(self.in_window(queue, st.clock_ms)))
        return room

    def reopens_at(self, queue: str, now: int) -> int:
        """When the rate window lets the next lease through."""
        _, rate, freq = self.of(queue)
        window = self.in_window(queue, now)
        return window[len(window) - rate] + freq * 1000


def running(st: State, queue: str) -> int:
    name, _, domain = queue.partition("@")
    return sum(
        1
        for t in st.tasks.values()
        if t.status == "IN_PROGRESS" and t.task_type == name and t.domain == domain
    )


def waiting(st: State) -> dict[str, tuple[str, int, int]]:
    """Ready task id -> (queue, priority, queued at)."""
    return {
        tid: (queue, p, at)
        for queue, ready in st.queues.items()
        for p, sub in ready.by_priority.items()
        for tid, at in sub.items()
    }


def check_step(h: Recording, model: Model, before: dict[str, tuple[str, int, int]]) -> None:
    st, now = h.state, h.clock_ms
    leased = [ev for ev in h.step_events if isinstance(ev, E.TaskLeased)]
    h.step_events = []
    for ev in leased:
        model.leases.setdefault(ev.queue, []).append(now)
    after = waiting(st)
    for queue in dict.fromkeys(ev.queue for ev in leased):
        conc, rate, freq = model.of(queue)
        if conc:
            assert running(st, queue) <= conc, f"{queue}: {running(st, queue)} > {conc} leased"
        if rate:
            n = len(model.in_window(queue, now))
            assert n <= rate, f"{queue}: {n} leases in {freq} s > {rate}"
    for ev in leased:
        if ev.task_id not in before:
            continue
        _, p_y, s = before[ev.task_id]
        for tid, (queue, p_x, t) in after.items():
            if queue != ev.queue or t >= now:
                continue
            # Whatever the time of the lease, X's effective priority is then at least Y's (a
            # tie goes to the older: X when it was queued first), or above it.
            d = s - t
            overtaken = d >= (p_y - p_x + (d <= 0)) * PRIORITY_AGING_MS
            assert not overtaken, (
                f"{ev.task_id} (priority {p_y}, queued {s}) leased before {tid} "
                f"(priority {p_x}, queued {t})"
            )
    check_stranding(h, model)
    check_invariants(st)


def check_stranding(h: Harness, model: Model) -> None:
    st, now = h.state, h.clock_ms
    for queue, ready in st.queues.items():
        if not ready:
            continue
        room = model.room(st, queue)
        if room > 0:
            parked = [rid for rid, p in st.parked.items() if p.queue == queue]
            assert not parked, f"{queue} could lease, yet polls {parked} stay parked"
            probe = Harness(State.from_snapshot_bytes(st.snapshot_bytes()), now)
            name, _, domain = queue.partition("@")
            got = probe.poll(name, 1, domain=domain, epoch=st.epoch)
            assert got, f"{queue} has ready tasks and room {room}, but a poll got none"
            continue
        conc, rate, _ = model.of(queue)
        if rate and (not conc or running(st, queue) < conc):  # only the rate window holds it
            due = model.reopens_at(queue, now)
            assert st.timers.get("rate:" + queue) == due, (
                f"{queue}: rate timer {st.timers.get('rate:' + queue)}, window opens at {due}"
            )


def active(st: State) -> list[str]:
    return [tid for tid, t in st.tasks.items() if t.status == "IN_PROGRESS"]


def step(h: Recording, model: Model, data: Any) -> None:
    draw = data.draw
    kind = draw(
        hst.sampled_from(["start", "start", "poll", "poll", "park", "done", "time", "misc"])
    )
    if kind == "start":
        name = draw(hst.sampled_from(sorted(TYPES)))
        domain = draw(hst.sampled_from(DOMAINS))
        for _ in range(draw(hst.integers(1, 3))):
            h.start(
                f"wf_{name}",
                priority=draw(hst.sampled_from([0, 0, 5, 50, 99])),
                task_to_domain={name: domain} if domain else {},
            )
    elif kind in ("poll", "park"):
        name = draw(hst.sampled_from(sorted(TYPES)))
        cmd = h.poll_cmd(
            name,
            draw(hst.integers(1, 4)),
            domain=draw(hst.sampled_from(DOMAINS)),
            park_until_ms=h.clock_ms + draw(hst.integers(1, 9_000)) if kind == "park" else 0,
        )
        h.ok(cmd)
    elif kind == "done":
        ids = active(h.state)
        if ids:
            tid = draw(hst.sampled_from(ids))
            if draw(hst.booleans()):
                h.ok(CompleteTask(request_id=h.new_id("c"), task_id=tid, output={}))
            else:
                h.ok(FailTask(request_id=h.new_id("f"), task_id=tid, reason="x"))
        else:
            h.tick()
    elif kind == "time":  # lease timeouts, rate windows, parked polls' expiry
        h.tick(draw(hst.sampled_from([1, 400, 1_000, 2_500, 5_000])))
    else:
        misc = draw(hst.sampled_from(["limits", "limits", "snapshot", "epoch"]))
        if misc == "limits":
            name = draw(hst.sampled_from(["conc", "rate", "both"]))
            _, rate, freq = model.limits[name]
            conc = draw(hst.integers(0, 3))
            rate = draw(hst.integers(1, 4)) if rate else 0
            model.limits[name] = (conc, rate, freq)
            h.register_task_defs(task_def(name, conc, rate, freq))
        elif misc == "snapshot":
            data_ = h.state.snapshot_bytes()
            h.state = State.from_snapshot_bytes(data_)
            assert h.state.snapshot_bytes() == data_
        else:
            h.leader_epoch(h.state.epoch + 1)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=hst.data())
def test_limits_hold_and_nothing_is_stranded(data: Any) -> None:
    h = Recording()
    h.leader_epoch(1)
    model = Model()
    h.register_task_defs(*(task_def(n, *lim) for n, lim in TYPES.items()))
    for name in TYPES:
        wf = {
            "name": f"wf_{name}",
            "version": 1,
            "tasks": [{"name": name, "taskReferenceName": "t"}],
        }
        h.register_workflow(wf)
    for _ in range(data.draw(hst.integers(10, 60))):
        before = waiting(h.state)
        step(h, model, data)
        check_step(h, model, before)
    # The limits' state is replicated state like any other: a replay gives it byte for byte.
    replayed, _ = replay(h.log)
    assert replayed.snapshot_bytes() == h.state.snapshot_bytes()
    assert replayed.leased == h.state.leased


def test_a_low_priority_task_is_leased_within_the_aging_bound_under_sustained_load() -> None:
    # One slot; every 100 ms a priority-99 task arrives and the slot's task completes: the
    # priority-90 task queued first must go before any task queued (99 - 90) s after it.
    h = Harness()
    h.leader_epoch(1)
    h.register_task_defs(task_def("conc", 1, 0, 0))
    h.register_workflow(
        {"name": "w", "version": 1, "tasks": [{"name": "conc", "taskReferenceName": "t"}]}
    )
    low = f"{h.start('w', priority=90)}-0"
    queued_at = h.clock_ms
    busy = f"{h.start('w', priority=99)}-0"
    assert h.poll("conc") == [busy]
    leased_at = None
    for _ in range(200):
        h.advance(100)
        h.start("w", priority=99)
        h.complete(busy)
        (busy,) = h.poll("conc")
        if busy == low:
            leased_at = h.clock_ms
            break
    assert leased_at is not None, "starved"
    bound = (99 - 90) * PRIORITY_AGING_MS
    assert bound <= leased_at - queued_at <= bound + 100, leased_at - queued_at
