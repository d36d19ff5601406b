"""The execution graph: one box per task of the definition (with its latest run), lanes for
fork branches, switch cases, loop iterations and dynamic forks; SVG with everything escaped."""

from __future__ import annotations

import re
from typing import Any

from orchestrator.web import graph
from orchestrator.web.graph import Box, Seq, Split, TaskRun, boxes, build, svg


def run(ref: str, status: str = "COMPLETED", seq: int = 0, **kw: Any) -> TaskRun:
    return TaskRun(f"t-{ref}-{seq}", ref, kw.pop("task_type", "SIMPLE"), status, seq, **kw)


def simple(ref: str) -> dict[str, Any]:
    return {"name": ref, "taskReferenceName": ref, "type": "SIMPLE"}


def refs(root: Seq) -> list[str]:
    return [b.ref for b in boxes(root)]


def drawn(svg_text: str) -> dict[str, str]:
    """data-ref -> data-status of every node drawn."""
    return dict(
        re.findall(r'<g class="node [^"]*" data-ref="([^"]*)" data-status="([^"]*)"', svg_text)
    )


def test_sequential_tasks_stack_with_their_runs_status() -> None:
    definition = {"tasks": [simple("a"), simple("b"), simple("c")]}
    root = build(definition, [run("a", seq=1), run("b", "IN_PROGRESS", seq=2)])
    assert [type(i) for i in root.items] == [Box, Box, Box]
    assert drawn(svg(root)) == {"a": "COMPLETED", "b": "IN_PROGRESS", "c": "NOT_RUN"}


def test_fork_join_branches_side_by_side() -> None:
    definition = {
        "tasks": [
            {
                "type": "FORK_JOIN",
                "taskReferenceName": "fork",
                "forkTasks": [[simple("x1"), simple("x2")], [simple("y")]],
            },
            {"type": "JOIN", "taskReferenceName": "join", "joinOn": ["x2", "y"]},
        ]
    }
    root = build(definition, [run("fork", task_type="FORK", seq=1), run("x1", seq=2)])
    fork = root.items[0]
    assert isinstance(fork, Split) and fork.kind == "fork"
    assert [label for label, _ in fork.lanes] == ["branch 1", "branch 2"]
    assert [refs(lane) for _, lane in fork.lanes] == [["x1", "x2"], ["y"]]
    assert refs(root) == ["fork", "x1", "x2", "y", "join"]
    # Branches sit side by side: the two lanes' first boxes share a row, at different x.
    text = svg(root)
    x1 = re.search(r'data-ref="x1".*?<rect x="([\d.]+)" y="([\d.]+)"', text)
    y = re.search(r'data-ref="y".*?<rect x="([\d.]+)" y="([\d.]+)"', text)
    assert x1 and y and x1.group(2) == y.group(2) and x1.group(1) != y.group(1)


def test_switch_cases_and_default_are_lanes() -> None:
    definition = {
        "tasks": [
            {
                "type": "SWITCH",
                "taskReferenceName": "sw",
                "decisionCases": {"ups": [simple("ups")], "dhl": [simple("dhl")]},
                "defaultCase": [],
            }
        ]
    }
    root = build(definition, [run("sw", seq=1, task_type="SWITCH"), run("dhl", seq=2)])
    sw = root.items[0]
    assert isinstance(sw, Split) and sw.kind == "switch"
    assert [label for label, _ in sw.lanes] == ["ups", "dhl", "default"]
    assert drawn(svg(root)) == {"sw": "COMPLETED", "ups": "NOT_RUN", "dhl": "COMPLETED"}


def test_do_while_iterations_from_the_runs_references() -> None:
    definition = {
        "tasks": [
            {
                "type": "DO_WHILE",
                "taskReferenceName": "loop",
                "loopOver": [simple("step"), simple("check")],
            }
        ]
    }
    runs = [
        run("loop", "IN_PROGRESS", 1, task_type="DO_WHILE"),
        run("step__1", seq=2),
        run("check__1", seq=3),
        run("step__2", "FAILED", seq=4),
        run("step__2", "IN_PROGRESS", seq=5),  # a retry: the latest attempt counts
    ]
    root = build(definition, runs)
    loop = root.items[0]
    assert isinstance(loop, Split) and loop.kind == "loop"
    assert [label for label, _ in loop.lanes] == ["#1", "#2"]
    nodes = drawn(svg(root))
    assert nodes == {
        "loop": "IN_PROGRESS",
        "step__1": "COMPLETED",
        "check__1": "COMPLETED",
        "step__2": "IN_PROGRESS",
        "check__2": "NOT_RUN",
    }
    assert "(2 attempts)" in svg(root)


def test_nested_loops_carry_every_enclosing_iteration() -> None:
    inner = {"type": "DO_WHILE", "taskReferenceName": "inner", "loopOver": [simple("a")]}
    definition = {
        "tasks": [{"type": "DO_WHILE", "taskReferenceName": "outer", "loopOver": [inner]}]
    }
    runs = [
        run("outer", seq=1),
        run("inner__1", seq=2),
        run("a__1__1", seq=3),
        run("a__1__2", seq=4),
    ]
    nodes = drawn(svg(build(definition, runs)))
    assert nodes["a__1__1"] == nodes["a__1__2"] == "COMPLETED"
    assert nodes["inner__1"] == "COMPLETED"


def test_many_iterations_draw_the_latest_only() -> None:
    definition = {
        "tasks": [{"type": "DO_WHILE", "taskReferenceName": "l", "loopOver": [simple("s")]}]
    }
    runs = [run(f"s__{n}", seq=n) for n in range(1, graph.MAX_LANES + 11)]
    loop = build(definition, runs).items[0]
    assert isinstance(loop, Split)
    assert loop.hidden == 10 and len(loop.lanes) == graph.MAX_LANES
    assert loop.lanes[0][0] == "#11"


def test_dynamic_fork_takes_the_runs_the_definition_does_not_name() -> None:
    definition = {
        "tasks": [
            {"type": "FORK_JOIN_DYNAMIC", "taskReferenceName": "df"},
            {"type": "JOIN", "taskReferenceName": "join"},
        ]
    }
    runs = [
        run("df", seq=1, task_type="FORK"),
        run("_resize_0", seq=2),
        run("_resize_1", "FAILED", 3),
    ]
    root = build(definition, runs)
    df = root.items[0]
    assert isinstance(df, Split) and df.kind == "dynamic"
    assert [label for label, _ in df.lanes] == ["_resize_0", "_resize_1"]
    assert drawn(svg(root))["_resize_1"] == "FAILED"


def test_sub_workflow_box_links_to_the_child() -> None:
    definition = {"tasks": [{"type": "SUB_WORKFLOW", "taskReferenceName": "ship"}]}
    child = run("ship", "IN_PROGRESS", 1, task_type="SUB_WORKFLOW", sub_workflow_id="wf/1-sub")
    text = svg(build(definition, [child]))
    assert '<a href="/workflows/wf%2F1-sub">' in text
    assert graph.sub_workflow_id('{"subWorkflowId": "c-1"}') == "c-1"
    assert graph.sub_workflow_id("not json subWorkflowId") == ""


def test_without_a_definition_every_run_is_drawn_in_order() -> None:
    root = build(None, [run("b", seq=2), run("a", seq=1)])
    assert refs(root) == ["a", "b"]


def test_hostile_names_are_escaped_in_the_svg() -> None:
    evil = '"><script>alert(1)</script><x y="'
    definition = {"tasks": [simple(evil)]}
    text = svg(build(definition, [run(evil, status='<img src=x onerror="1">', seq=1)]))
    assert "<script>" not in text and "<img" not in text
    assert "&lt;script&gt;" in text
    # Status classes keep only letters and underscores.
    assert re.search(r'class="node st-[a-z_]*"', text)
    assert 'onerror="1"' not in text


def test_malformed_definitions_draw_what_they_can() -> None:
    definition = {
        "tasks": [
            "not a task",
            {"type": "FORK_JOIN", "taskReferenceName": "f", "forkTasks": "nope"},
            {"type": "SWITCH", "taskReferenceName": "s", "decisionCases": ["x"]},
            {"type": "DO_WHILE", "taskReferenceName": "d", "loopOver": None},
        ]
    }
    root = build(definition, [])
    assert refs(root) == ["f", "s", "d"]
    assert svg(root).startswith("<svg")
