"""The Raft thread wakes the runtime's threads only when they have something to do.

Each wake-up is a thread switch on the thread that applies every entry; waking the timer, the
script executor and every waiting poll for each applied entry cost the leader (and each
follower) a switch per entry for nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from orchestrator.core.machine import Effects
from orchestrator.runtime.dispatcher import Dispatcher, _Call
from orchestrator.runtime.scripts import ScriptExecutor
from orchestrator.runtime.timer import Timer
from tests.cluster_support import wait_for
from tests.fakes import FakeReplica

_started: list[FakeReplica] = []


@pytest.fixture(autouse=True)
def _stop_replicas() -> Iterator[None]:
    yield
    while _started:
        _started.pop().stop()


def _replica(leader: bool) -> FakeReplica:
    """A replica whose leader epoch (when leading) is applied already: no entry is in flight."""
    replica = FakeReplica(lead=leader)
    _started.append(replica)
    if leader:
        wait_for(replica.leader_ready, 10, "the fake replica to lead")
    return replica


def test_the_timer_wakes_only_for_a_deadline_sooner_than_it_sleeps_until() -> None:
    replica = _replica(leader=True)
    timer = Timer(replica)
    changed = Effects(timers_changed=True)
    # Sleeping with no deadline known: a first deadline wakes it.
    replica.state.set_timer("lease:a", 5_000)
    timer.on_applied(changed)
    assert timer._wake.is_set()
    # Armed for 5 000: a later deadline does not wake it, a sooner one does.
    timer._wake.clear()
    timer._armed_ms = 5_000
    replica.state.set_timer("lease:b", 9_000)
    timer.on_applied(changed)
    assert not timer._wake.is_set()
    replica.state.set_timer("lease:c", 1_000)
    timer.on_applied(changed)
    assert timer._wake.is_set()
    # An entry that changed no timer wakes nothing.
    timer._wake.clear()
    timer._armed_ms = None
    timer.on_applied(Effects())
    assert not timer._wake.is_set()


def test_a_followers_timer_and_script_executor_sleep_through_applied_entries() -> None:
    replica = _replica(leader=False)
    replica.state.set_timer("lease:a", 1_000)
    timer = Timer(replica)
    scripts = ScriptExecutor(replica, sandbox=SimpleNamespace(size=1), threads=1)
    try:
        replica._notify(Effects(timers_changed=True))
        assert not timer._wake.is_set()
        assert not scripts._wake.is_set()
        # Scripts made ready still wake the executor (it is the leader that evaluates them).
        scripts.on_applied(Effects(scripts_ready=["t1"]))
        assert scripts._wake.is_set()
    finally:
        scripts._pool.shutdown(wait=False)


def test_a_new_leader_term_wakes_the_script_executor_once() -> None:
    replica = _replica(leader=True)
    scripts = ScriptExecutor(replica, sandbox=SimpleNamespace(size=1), threads=1)
    try:
        scripts.on_applied(Effects(timers_changed=True))
        assert scripts._wake.is_set(), "a term it has not scanned yet"
        scripts._wake.clear()
        scripts._scanned_term = replica.leader_term
        scripts.on_applied(Effects(timers_changed=True))
        assert not scripts._wake.is_set()
    finally:
        scripts._pool.shutdown(wait=False)


def test_a_parked_poll_is_woken_by_its_own_settling_not_by_work_of_its_type() -> None:
    replica = _replica(leader=True)
    dispatcher = Dispatcher(replica)
    waiting, parked = _Call("r-wait", "t"), _Call("r-park", "t")
    parked.parked = True
    for call in (waiting, parked):
        dispatcher._register(call)
    dispatcher.on_applied(Effects(ready_types=["t"]))
    assert waiting.event.is_set() and not parked.event.is_set()
    dispatcher.on_applied(Effects(polls_settled=["r-park"]))
    assert parked.event.is_set()
