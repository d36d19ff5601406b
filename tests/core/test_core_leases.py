"""Leases bound to the polling principal: only it may complete, fail or heartbeat the task; a
parked poll's lease is bound alike; "" binds nothing; snapshots keep the owner."""

from __future__ import annotations

from orchestrator.core.commands import CompleteTask, FailTask, HeartbeatTask, PollTasks
from orchestrator.core.errors import Code
from orchestrator.core.records import TaskStatus
from orchestrator.core.state import State
from tests.core_helpers import Harness, state_without_requests


def poll(h: Harness, principal: str, **kw: object) -> list[str]:
    cmd = PollTasks(
        request_id=h.new_id("poll"),
        task_type="task_c",
        worker_id="w",
        count=1,
        epoch=h.epoch,
        principal=principal,
        **kw,  # type: ignore[arg-type]
    )
    return list(h.ok(cmd).result.get("task_ids", []))


def test_only_the_leasing_principal_may_report(led: Harness) -> None:
    h = led
    h.start("one_step")
    (tid,) = poll(h, "alice")
    assert h.state.tasks[tid].lease_owner == "alice"
    before = state_without_requests(h.state)
    for cmd in (
        CompleteTask(request_id=h.new_id(), task_id=tid, principal="mallory"),
        FailTask(request_id=h.new_id(), task_id=tid, principal="mallory"),
        HeartbeatTask(request_id=h.new_id(), task_id=tid, principal="mallory"),
    ):
        out = h.apply_one(cmd)
        assert out.code is Code.PERMISSION_DENIED, cmd
        assert "mallory may not" in out.message
    assert state_without_requests(h.state) == before
    h.ok(HeartbeatTask(request_id=h.new_id(), task_id=tid, principal="alice"))
    h.ok(CompleteTask(request_id=h.new_id(), task_id=tid, principal="alice"))
    assert h.state.tasks[tid].status is TaskStatus.COMPLETED


def test_an_unauthenticated_lease_or_caller_binds_nothing(led: Harness) -> None:
    h = led
    h.start("one_step")
    (tid,) = poll(h, "")
    h.ok(CompleteTask(request_id=h.new_id(), task_id=tid, principal="bob"))
    h.start("one_step")
    (tid2,) = poll(h, "alice")
    h.ok(CompleteTask(request_id=h.new_id(), task_id=tid2, principal=""))


def test_a_parked_poll_leases_for_its_principal_and_the_owner_survives_a_snapshot(
    led: Harness,
) -> None:
    h = led
    assert poll(h, "alice", park_until_ms=h.clock_ms + 5_000) == []
    h.start("one_step")
    (tid,) = [t for t, task in h.state.tasks.items() if task.task_type == "task_c"]
    assert h.state.tasks[tid].lease_owner == "alice"
    loaded = State.from_snapshot_bytes(h.state.snapshot_bytes())
    assert loaded.tasks[tid].lease_owner == "alice"
    assert loaded.snapshot_bytes() == h.state.snapshot_bytes()
    h.state = loaded
    out = h.apply_one(CompleteTask(request_id=h.new_id(), task_id=tid, principal="eve"))
    assert out.code is Code.PERMISSION_DENIED


def test_the_principal_is_part_of_the_request(led: Harness) -> None:
    h = led
    h.start("one_step")
    (tid,) = poll(h, "alice")
    h.ok(CompleteTask(request_id="c-1", task_id=tid, principal="alice"))
    replay = h.apply_one(CompleteTask(request_id="c-1", task_id=tid, principal="mallory"))
    assert replay.code is Code.INVALID_ARGUMENT, "another caller's reuse of the id is refused"
