"""The conformance suite: every case in cases.py, run against the pure core (milliseconds each)."""

from __future__ import annotations

from typing import Any

import pytest

from .cases import CASES
from .driver import Run

JSON = Any


def test_the_suite_is_big_enough_and_every_case_names_what_it_follows() -> None:
    assert len(CASES) >= 40
    names = [c["name"] for c in CASES]
    assert len(set(names)) == len(names), "case names are unique"
    for c in CASES:
        assert c.get("follows"), c["name"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: JSON) -> None:
    run = Run(case)
    wf = run.run()
    exp = case["expect"]
    assert wf.status == exp["status"], (
        wf.status,
        wf.reason_for_incompletion,
        run.sequence(),
    )
    if "tasks" in exp:
        assert run.sequence() == exp["tasks"]
    if "output" in exp:
        assert wf.output == exp["output"]
    for k, v in exp.get("outputIncludes", {}).items():
        assert wf.output.get(k) == v, (k, wf.output)
    for k in exp.get("outputHasKeys", ()):
        assert k in wf.output, (k, wf.output)
    if "outputKeysEqual" in exp:
        a, b = exp["outputKeysEqual"]
        assert wf.output[a] == wf.output[b], wf.output
    if "reasonIncludes" in exp:
        assert exp["reasonIncludes"] in wf.reason_for_incompletion
    if "variables" in exp:
        assert wf.variables == exp["variables"]
    if "children" in exp:
        assert [c.status for c in run.children()] == exp["children"]
    if "elapsedMsAtLeast" in exp:
        assert run.elapsed_ms >= exp["elapsedMsAtLeast"]
