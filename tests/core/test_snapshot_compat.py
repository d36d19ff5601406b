"""A replica restarts from a snapshot written by the previous format.

tests/core/data/snapshot_v1.json was written by the schema-1 core (make_snapshot_v1.py there
shows the workload); continuation_v1.json holds further batches with the outcomes that core
gave for them and what a client could see at load and at the end. Today's core must load the
old snapshot and answer every command of the continuation alike.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.core.machine import apply_batch
from orchestrator.core.state import State
from tests.core.data.make_snapshot_v1 import CONTINUATION, SNAPSHOT, observe, outcome_json
from tests.core_helpers import check_invariants

JSON = Any


@pytest.fixture(scope="module")
def continuation() -> JSON:
    return json.loads(CONTINUATION.read_text())


def _seen(st: State) -> JSON:
    seen = json.loads(json.dumps(observe(st)))
    # Shown since the schema-1 core (workflow-level limits): when it last started running,
    # never before its creation; the rest is what that core showed.
    for wf in seen["workflows"]:
        started = int(wf.pop("start_time_ms", 0))
        assert started >= int(wf.get("create_time_ms", 0)), wf["workflow_id"]
    return seen


def _run(st: State, continuation: JSON) -> list[JSON]:
    outcomes: list[JSON] = []
    for now_ms, cmds in continuation["batches"]:
        outs, _ = apply_batch(st, now_ms, json.loads(json.dumps(cmds)))
        outcomes.extend(json.loads(json.dumps(outcome_json(o))) for o in outs)
    return outcomes


def test_the_checked_in_snapshot_is_schema_1() -> None:
    assert json.loads(SNAPSHOT.read_bytes())["schema"] == 1


def test_a_schema_1_snapshot_loads_to_what_its_core_showed(continuation: JSON) -> None:
    st = State.from_snapshot_bytes(SNAPSHOT.read_bytes())
    assert _seen(st) == continuation["at_load"]
    check_invariants(st)


def _check_continuation(st: State, continuation: JSON) -> None:
    outcomes = _run(st, continuation)
    assert len(outcomes) == len(continuation["outcomes"])
    for i, (got, want) in enumerate(zip(outcomes, continuation["outcomes"], strict=True)):
        assert got == want, f"outcome {i} differs"
    assert _seen(st) == continuation["at_end"]
    check_invariants(st)


def test_the_continuation_gives_the_outcomes_and_results_of_the_schema_1_core(
    continuation: JSON,
) -> None:
    _check_continuation(State.from_snapshot_bytes(SNAPSHOT.read_bytes()), continuation)


def test_a_loaded_schema_1_snapshot_survives_a_round_trip_in_the_current_format(
    continuation: JSON,
) -> None:
    loaded = State.from_snapshot_bytes(SNAPSHOT.read_bytes())
    assert json.loads(loaded.snapshot_bytes())["schema"] == 2
    again = State.from_snapshot_bytes(loaded.snapshot_bytes())
    assert again.snapshot_bytes() == loaded.snapshot_bytes()
    assert _seen(again) == continuation["at_load"]
    _check_continuation(again, continuation)
