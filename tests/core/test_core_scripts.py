"""Scripts in the core: phase one marks the task pending, ScriptResult (phase two) commits it.

The core never evaluates JavaScript or jq: a task that needs a script is IN_PROGRESS with a
`script` marker and appears in Effects.scripts_ready; the leader's runtime evaluates it in the
sandbox and proposes ScriptResult(task_id, fence, epoch, ...). Here the results are given by
hand, so these tests need no sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.commands import ScriptResult
from orchestrator.core.definitions import normalize_workflow_def, script_sources
from orchestrator.core.errors import Code
from orchestrator.core.machine import pending_scripts
from orchestrator.core.state import State
from tests.core_helpers import Harness, check_invariants, outcome_key, replay, state_without_seq

JSON = Any
ROOT = Path(__file__).resolve().parents[2]


def inline(ref: str, expression: str, **inputs: JSON) -> dict[str, JSON]:
    return {
        "name": ref,
        "taskReferenceName": ref,
        "type": "INLINE",
        "inputParameters": {"evaluatorType": "javascript", "expression": expression, **inputs},
    }


def simple(name: str, ref: str, **kw: JSON) -> dict[str, JSON]:
    return {"name": name, "taskReferenceName": ref, **kw}


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.leader_epoch(1)
    h.register_task_defs(
        {"name": "task_a", "retryCount": 0, "retryDelaySeconds": 0, "responseTimeoutSeconds": 10}
    )
    return h


def result(h: Harness, tid: str, ok: bool = True, value: JSON = None, **kw: Any) -> Any:
    fence = kw.pop("fence", None)
    if fence is None:
        fence = h.task(tid).script.fence
    cmd = ScriptResult(
        task_id=tid,
        fence=fence,
        epoch=kw.pop("epoch", h.state.epoch),
        ok=ok,
        value=value,
        error=kw.pop("error", ""),
    )
    return h.apply_one(cmd)


def start_inline(h: Harness, **wt: JSON) -> tuple[str, str]:
    h.register_workflow(
        {
            "name": "calc",
            "version": 1,
            "tasks": [
                dict(inline("calc", "$.value * 2", value="${workflow.input.v}"), **wt),
                simple("task_a", "a", inputParameters={"r": "${calc.output.result}"}),
            ],
        }
    )
    wf_id = h.start("calc", {"v": 21})
    return wf_id, h.tasks_of(wf_id)[0].task_id


def test_inline_waits_for_its_script_then_continues_as_if_a_worker_completed_it(
    h: Harness,
) -> None:
    wf_id, tid = start_inline(h)
    task = h.task(tid)
    assert task.status == "IN_PROGRESS"
    assert task.script.lang == "js"
    assert task.script.source == "$.value * 2"
    assert task.input["value"] == 21
    assert h.effects.scripts_ready == [tid]
    assert pending_scripts(h.state) == [(tid, task.script.fence)]
    assert not h.state.queues, "nothing is pollable while the script is pending"
    check_invariants(h.state)

    out = result(h, tid, value=42)
    assert out.code is Code.OK, out
    assert h.task(tid).status == "COMPLETED"
    assert h.task(tid).output == {"result": 42}
    assert h.task(tid).script is None
    assert pending_scripts(h.state) == []
    nxt = h.tasks_of(wf_id)[1]
    assert nxt.reference_task_name == "a" and nxt.input == {"r": 42}
    assert h.queued("task_a") == [nxt.task_id]
    check_invariants(h.state)


def test_a_failed_script_fails_the_task_with_the_reason_and_retries_per_retry_count(
    h: Harness,
) -> None:
    wf_id, tid = start_inline(h, retryCount=1)
    out = result(h, tid, ok=False, error="time limit exceeded (4 s)")
    assert out.code is Code.OK
    first = h.task(tid)
    assert first.status == "FAILED"
    assert "time limit exceeded" in first.reason_for_incompletion
    assert first.output == {"error": "time limit exceeded (4 s)"}
    retry = h.tasks_of(wf_id)[1]
    assert retry.reference_task_name == "calc" and retry.retry_count == 1
    assert retry.script.fence > (first.script.fence if first.script is not None else -1)
    assert h.effects.scripts_ready == [retry.task_id]
    result(h, retry.task_id, ok=False, error="again")
    wf = h.wf(wf_id)
    assert wf.status == "FAILED"
    assert "calc" in wf.reason_for_incompletion and "again" in wf.reason_for_incompletion
    check_invariants(h.state)


def test_stale_results_are_rejected_and_change_nothing(h: Harness) -> None:
    _, tid = start_inline(h)
    fence = h.task(tid).script.fence
    before = state_without_seq(h.state)
    for kw in ({"fence": fence + 1}, {"fence": fence - 1}, {"epoch": 0}):
        out = result(h, tid, value=1, **kw)
        assert out.code is Code.FAILED_PRECONDITION, (kw, out)
        assert state_without_seq(h.state) == before
    out = result(h, "no-such-task", value=1, fence=fence)
    assert out.code is Code.FAILED_PRECONDITION
    assert state_without_seq(h.state) == before

    assert result(h, tid, value=42).code is Code.OK
    after = state_without_seq(h.state)
    dup = result(h, tid, value=43, fence=fence)
    assert dup.code is Code.FAILED_PRECONDITION, "a duplicate result is not applied twice"
    assert "late or duplicate" in dup.message
    assert state_without_seq(h.state) == after
    assert h.task(tid).output == {"result": 42}


def test_a_result_for_a_terminated_workflow_is_rejected(h: Harness) -> None:
    wf_id, tid = start_inline(h)
    fence = h.task(tid).script.fence
    h.terminate(wf_id)
    assert h.task(tid).status == "CANCELED"
    assert h.task(tid).script is None
    assert result(h, tid, value=1, fence=fence).code is Code.FAILED_PRECONDITION
    assert pending_scripts(h.state) == []


def test_a_newer_leader_epoch_fences_out_the_old_leaders_results(h: Harness) -> None:
    _, tid = start_inline(h)
    h.leader_epoch(2)
    assert result(h, tid, value=1, epoch=1).code is Code.FAILED_PRECONDITION
    assert result(h, tid, value=1, epoch=2).code is Code.OK


def test_jq_result_and_result_list(h: Harness) -> None:
    h.register_workflow(
        {
            "name": "jq",
            "version": 1,
            "tasks": [
                {
                    "name": "jq",
                    "taskReferenceName": "jq",
                    "type": "JSON_JQ_TRANSFORM",
                    "inputParameters": {"queryExpression": ".xs[]", "xs": [1, 2]},
                }
            ],
        }
    )
    wf_id = h.start("jq")
    tid = h.tasks_of(wf_id)[0].task_id
    assert h.task(tid).script.lang == "jq"
    result(h, tid, value=[1, 2])
    assert h.task(tid).output == {"result": 1, "resultList": [1, 2]}
    assert h.wf(wf_id).status == "COMPLETED"


def test_switch_javascript_selects_the_case_from_the_committed_value(h: Harness) -> None:
    h.register_workflow(
        {
            "name": "sw",
            "version": 1,
            "tasks": [
                {
                    "name": "sw",
                    "taskReferenceName": "sw",
                    "type": "SWITCH",
                    "evaluatorType": "javascript",
                    "expression": "$.n > 1 ? 'big' : 'small'",
                    "inputParameters": {"n": 5},
                    "decisionCases": {"big": [simple("task_a", "a")]},
                }
            ],
        }
    )
    wf_id = h.start("sw")
    sw = h.tasks_of(wf_id)[0]
    assert sw.status == "IN_PROGRESS" and sw.script.source.startswith("$.n")
    result(h, sw.task_id, value="big")
    assert h.task(sw.task_id).output == {"evaluationResult": ["big"], "selectedCase": "big"}
    assert [t.reference_task_name for t in h.tasks_of(wf_id)] == ["sw", "a"]


def test_loop_condition_in_full_javascript_is_asked_once_per_iteration(h: Harness) -> None:
    cond = "$.loop.iteration < $.max && Math.max(1, 2) == 2"
    h.register_workflow(
        {
            "name": "loop",
            "version": 1,
            "tasks": [
                {
                    "name": "loop",
                    "taskReferenceName": "loop",
                    "type": "DO_WHILE",
                    "inputParameters": {"max": 2},
                    "loopCondition": cond,
                    "loopOver": [simple("task_a", "a")],
                }
            ],
        }
    )
    wf_id = h.start("loop")
    loop_id = h.tasks_of(wf_id)[0].task_id
    h.complete(h.poll_one("task_a"), {"x": 1})
    marker = h.task(loop_id).script
    assert marker.iteration == 1 and marker.source == cond
    assert marker.input["loop"]["iteration"] == 1 and marker.input["a"] == {"x": 1}
    assert marker.input["max"] == 2
    first_fence = marker.fence
    assert h.effects.scripts_ready == [loop_id]
    check_invariants(h.state)
    assert result(h, loop_id, value=True).code is Code.OK
    assert h.task(loop_id).script is None
    h.complete(h.poll_one("task_a"), {"x": 2})
    marker = h.task(loop_id).script
    assert marker.iteration == 2 and marker.fence > first_fence
    # The first iteration's result again (say, a retried proposal): stale.
    assert result(h, loop_id, value=True, fence=first_fence).code is Code.FAILED_PRECONDITION
    assert result(h, loop_id, value=0).code is Code.OK
    assert h.task(loop_id).status == "COMPLETED"
    assert h.wf(wf_id).status == "COMPLETED"
    assert h.task(loop_id).output["iteration"] == 2


def test_restricted_loop_conditions_stay_on_the_pure_path(h: Harness) -> None:
    h.register_workflow(
        {
            "name": "loop",
            "version": 1,
            "tasks": [
                {
                    "name": "loop",
                    "taskReferenceName": "loop",
                    "type": "DO_WHILE",
                    "loopCondition": "$.loop['iteration'] < 2",
                    "loopOver": [simple("task_a", "a")],
                }
            ],
        }
    )
    wf_id = h.start("loop")
    h.complete(h.poll_one("task_a"))
    assert h.effects.scripts_ready == []
    h.complete(h.poll_one("task_a"))
    assert h.wf(wf_id).status == "COMPLETED"


def test_script_sources_name_the_field_and_reference() -> None:
    defn = normalize_workflow_def(
        {
            "name": "all",
            "tasks": [
                inline("i", "$.x"),
                inline("vp", "x")
                | {"inputParameters": {"evaluatorType": "value-param", "expression": "x"}},
                {
                    "name": "sw",
                    "taskReferenceName": "sw",
                    "type": "SWITCH",
                    "evaluatorType": "graaljs",
                    "expression": "$.k",
                    "decisionCases": {
                        "a": [
                            {
                                "name": "jq",
                                "taskReferenceName": "jq",
                                "type": "JSON_JQ_TRANSFORM",
                                "inputParameters": {"queryExpression": ".a"},
                            }
                        ]
                    },
                },
                {
                    "name": "l",
                    "taskReferenceName": "l",
                    "type": "DO_WHILE",
                    "loopCondition": "$.l.iteration < foo()",
                    "loopOver": [inline("dyn", "${workflow.input.script}")],
                },
                {
                    "name": "l2",
                    "taskReferenceName": "l2",
                    "type": "DO_WHILE",
                    "loopCondition": "$.l2['iteration'] < 3",
                    "loopOver": [{"name": "n", "taskReferenceName": "n", "type": "NOOP"}],
                },
            ],
        }
    )
    assert script_sources(defn) == [
        ("tasks[0].inputParameters.expression (i)", "js", "$.x"),
        ("tasks[2].expression (sw)", "js", "$.k"),
        ("tasks[2].decisionCases.a[0].inputParameters.queryExpression (jq)", "jq", ".a"),
        ("tasks[3].loopCondition (l)", "js", "$.l.iteration < foo()"),
    ]


def scripted_log() -> list[Any]:
    """A log with every kind of script, answered by hand, plus a snapshot taken mid-flight."""
    h = Harness()
    h.leader_epoch(1)
    h.register_task_defs(
        {"name": "task_a", "retryCount": 0, "retryDelaySeconds": 0, "responseTimeoutSeconds": 10}
    )
    h.register_workflow(
        {
            "name": "mix",
            "version": 1,
            "tasks": [
                inline("i", "$.v + 1", v="${workflow.input.v}"),
                {
                    "name": "loop",
                    "taskReferenceName": "loop",
                    "type": "DO_WHILE",
                    "loopCondition": "[1, 2].indexOf($.loop.iteration) >= 0",
                    "loopOver": [simple("task_a", "a")],
                },
            ],
        }
    )
    for n in range(3):
        wf_id = h.start("mix", {"v": n})
        while h.wf(wf_id).status == "RUNNING":
            for tid, fence in pending_scripts(h.state):
                task = h.task(tid)
                value: JSON = task.script.iteration < 3 if task.type == "DO_WHILE" else n + 1
                h.ok(ScriptResult(task_id=tid, fence=fence, epoch=1, ok=True, value=value))
            for tid in h.poll("task_a", 10):
                h.complete(tid, {"n": n})
        assert h.wf(wf_id).status == "COMPLETED"
    return h.log


def test_replay_and_snapshots_are_unaffected_by_scripts(tmp_path: Path) -> None:
    log = scripted_log()
    st1, outs1 = replay(log)
    st2, outs2 = replay(log)
    assert st1.snapshot_bytes() == st2.snapshot_bytes()
    assert [outcome_key(o) for o in outs1] == [outcome_key(o) for o in outs2]
    # Restore from a snapshot taken while a script is pending, then go on: same end state.
    for cut in range(1, len(log)):
        st, _ = replay(log[:cut])
        if pending_scripts(st):
            break
    restored = State.from_snapshot_bytes(st.snapshot_bytes())
    end, _ = replay(log[cut:], restored)
    assert end.snapshot_bytes() == st1.snapshot_bytes()
    # And in two processes with different hash seeds.
    log_path = tmp_path / "log.json"
    log_path.write_text(json.dumps(log))
    snaps = []
    for seed in ("0", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "client")])
        code = (
            "import json,sys\n"
            "from orchestrator.core.machine import apply_batch\n"
            "from orchestrator.core.state import State\n"
            "st = State()\n"
            "for now, cmds in json.load(open(sys.argv[1])):\n"
            "    apply_batch(st, now, cmds)\n"
            "sys.stdout.write(st.digest())\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, str(log_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        snaps.append(proc.stdout)
    assert snaps[0] == snaps[1] == st1.digest()
