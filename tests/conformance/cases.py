"""Conformance cases: Conductor workflow definitions with scripted workers and expected results.

Each case names the Conductor documentation or behaviour it follows (``follows``). Docs paths are
in conductor-oss/conductor ``docs/documentation/configuration/workflowdef/...`` unless stated.
The driver (driver.py) explains the fields.
"""

from __future__ import annotations

from typing import Any

JSON = Any
OPS = "docs/documentation/configuration/workflowdef/operators"
SYS = "docs/documentation/configuration/workflowdef/systemtasks"
# Sagas are this project's (issue 17), documented in its docs/workflow-language.md.
SAGAS = "docs/workflow-language.md, Sagas"


def S(name: str, ref: str | None = None, **kw: JSON) -> dict[str, JSON]:
    return {"name": name, "taskReferenceName": ref or name, "type": "SIMPLE", **kw}


def T(ttype: str, ref: str, **kw: JSON) -> dict[str, JSON]:
    return {"name": ref, "taskReferenceName": ref, "type": ttype, **kw}


def W(name: str, *tasks: JSON, **kw: JSON) -> dict[str, JSON]:
    return {"name": name, "version": 1, "tasks": list(tasks), **kw}


CASES: list[dict[str, JSON]] = [
    # ------------------------------------------------------------ SIMPLE and wiring
    {
        "name": "simple_sequence_with_wiring",
        "follows": "workflowdef/index.md: tasks run in order; ${ref.output.x} wiring; "
        "outputParameters build the workflow output",
        "workflow": W(
            "seq",
            S("t_a", "a", inputParameters={"x": "${workflow.input.x}"}),
            S("t_b", "b", inputParameters={"y": "${a.output.y}", "s": "y=${a.output.y}"}),
            outputParameters={"fromB": "${b.output}", "y": "${a.output.y}"},
        ),
        "input": {"x": 1},
        "workers": {"a": {"complete": {"y": 7}}, "b": {"echo": True}},
        "expect": {
            "status": "COMPLETED",
            "output": {"fromB": {"y": 7, "s": "y=7"}, "y": 7},
            "tasks": [["a", "COMPLETED"], ["b", "COMPLETED"]],
        },
    },
    {
        "name": "output_defaults_to_last_task_output",
        "follows": "workflowdef/index.md: without outputParameters the output is the last task's",
        "workflow": W("last", S("t_a", "a"), S("t_b", "b")),
        "workers": {"b": {"complete": {"done": True}}},
        "expect": {"status": "COMPLETED", "output": {"done": True}},
    },
    {
        "name": "retry_then_complete",
        "follows": "taskdef.md retryCount: a FAILED attempt is retried as a new task",
        "taskDefs": [{"name": "flaky", "retryCount": 2, "retryDelaySeconds": 0}],
        "workflow": W("retry", S("flaky", "f")),
        "workers": {"f": {"fail": 2, "then": {"ok": 1}}},
        "expect": {
            "status": "COMPLETED",
            "tasks": [["f", "FAILED"], ["f", "FAILED"], ["f", "COMPLETED"]],
        },
    },
    {
        "name": "retries_exhausted_fail_the_workflow",
        "follows": "DeciderService.retry: retries exhausted on a non-optional task -> FAILED",
        "taskDefs": [{"name": "bad", "retryCount": 1, "retryDelaySeconds": 0}],
        "workflow": W("exhaust", S("bad", "x"), S("t_after", "after")),
        "workers": {"x": {"fail": "always"}},
        "expect": {
            "status": "FAILED",
            "tasks": [["x", "FAILED"], ["x", "FAILED"]],
            "reasonIncludes": "x",
        },
    },
    {
        "name": "terminal_error_is_not_retried",
        "follows": "Task.Status FAILED_WITH_TERMINAL_ERROR is not retriable",
        "taskDefs": [{"name": "bad", "retryCount": 3, "retryDelaySeconds": 0}],
        "workflow": W("terminal", S("bad", "x")),
        "workers": {"x": {"fail": "terminal"}},
        "expect": {"status": "FAILED", "tasks": [["x", "FAILED_WITH_TERMINAL_ERROR"]]},
    },
    {
        "name": "never_answered_lease_times_out",
        "follows": "taskdef.md responseTimeoutSeconds: no update -> TIMED_OUT, retried; "
        "exhausted -> workflow TIMED_OUT",
        "taskDefs": [
            {"name": "slow", "retryCount": 1, "retryDelaySeconds": 0, "responseTimeoutSeconds": 2}
        ],
        "workflow": W("lease", S("slow", "s")),
        "workers": {"s": {"never": True}},
        "expect": {
            "status": "TIMED_OUT",
            "tasks": [["s", "TIMED_OUT"], ["s", "TIMED_OUT"]],
            "elapsedMsAtLeast": 4000,
        },
    },
    {
        "name": "optional_task_failure_completes_with_errors",
        "follows": "WorkflowTask.optional: failure -> COMPLETED_WITH_ERRORS, the workflow continues",
        "workflow": W("opt", S("t_a", "a", optional=True), S("t_b", "b")),
        "workers": {"a": {"fail": "always"}},
        "expect": {
            "status": "COMPLETED",
            "tasks": [["a", "COMPLETED_WITH_ERRORS"], ["b", "COMPLETED"]],
        },
    },
    {
        "name": "retry_count_override_on_the_workflow_task",
        "follows": "WorkflowTask.retryCount overrides TaskDef.retryCount",
        "taskDefs": [{"name": "flaky", "retryCount": 5, "retryDelaySeconds": 0}],
        "workflow": W("override", S("flaky", "f", retryCount=1)),
        "workers": {"f": {"fail": "always"}},
        "expect": {"status": "FAILED", "tasks": [["f", "FAILED"], ["f", "FAILED"]]},
    },
    {
        "name": "start_delay_postpones_the_first_poll",
        "follows": "WorkflowTask.startDelay: seconds before the task becomes pollable",
        "workflow": W("delay", S("t_a", "a", startDelay=3)),
        "expect": {"status": "COMPLETED", "elapsedMsAtLeast": 3000},
    },
    {
        "name": "task_def_input_template_fills_missing_inputs",
        "follows": "taskdef.md inputTemplate: defaults for missing/null task inputs",
        "taskDefs": [{"name": "tmpl", "retryCount": 0, "inputTemplate": {"mode": "fast", "n": 1}}],
        "workflow": W("tmpl", S("tmpl", "t", inputParameters={"n": 2})),
        "workers": {"t": {"echo": True}},
        "expect": {"status": "COMPLETED", "output": {"mode": "fast", "n": 2}},
    },
    {
        "name": "workflow_input_template_fills_missing_input",
        "follows": "workflowdef/index.md inputTemplate: default workflow input (putIfAbsent)",
        "workflow": W(
            "wtmpl",
            S("t_a", "a", inputParameters={"r": "${workflow.input.region}"}),
            inputTemplate={"region": "eu"},
        ),
        "workers": {"a": {"echo": True}},
        "expect": {"status": "COMPLETED", "output": {"r": "eu"}},
    },
    {
        "name": "inline_task_definition",
        "follows": "WorkflowTask.taskDefinition: an inline TaskDef needs no registration",
        "workflow": W(
            "inline",
            S(
                "adhoc",
                "a",
                taskDefinition={"name": "adhoc", "retryCount": 1, "retryDelaySeconds": 0},
            ),
        ),
        "workers": {"a": {"fail": 1, "then": {"v": 1}}},
        "expect": {"status": "COMPLETED", "tasks": [["a", "FAILED"], ["a", "COMPLETED"]]},
    },
    {
        "name": "task_id_parameter_and_escape",
        "follows": "ParametersUtils: ${CPEWF_TASK_ID} is the task's id; $${x} is a literal ${x}",
        "workflow": W(
            "sysparams",
            S("t_a", "a", inputParameters={"id": "${CPEWF_TASK_ID}", "lit": "$${workflow.input}"}),
            outputParameters={
                "lit": "${a.output.lit}",
                "id": "${a.output.id}",
                "same": "${a.taskId}",
            },
        ),
        "workers": {"a": {"echo": True}},
        "expect": {
            "status": "COMPLETED",
            "outputIncludes": {"lit": "${workflow.input}"},
            "outputKeysEqual": ["id", "same"],
        },
    },
    {
        "name": "recursive_descent_and_list_indexing",
        "follows": "JsonPath in ${...}: list indexing [n] and recursive descent .. "
        "(kitchensink ${get_es_1.output..status})",
        "workflow": W(
            "paths",
            S("t_a", "a"),
            outputParameters={
                "second": "${a.output.items[1].id}",
                "last": "${a.output.items[-1].id}",
                "all": "${a.output..id}",
                "star": "${a.output.items[*].id}",
            },
        ),
        "workers": {
            "a": {"complete": {"items": [{"id": 1}, {"id": 2}, {"id": 3, "sub": {"id": 4}}]}}
        },
        "expect": {
            "status": "COMPLETED",
            "output": {"second": 2, "last": 3, "all": [1, 2, 3, 4], "star": [1, 2, 3]},
        },
    },
    {
        "name": "nested_expression",
        "follows": "ParametersUtils: ${workflow.input.${workflow.input.key}} resolves inside first",
        "workflow": W(
            "nested",
            S("t_a", "a", inputParameters={"v": "${workflow.input.${workflow.input.key}}"}),
        ),
        "input": {"key": "b", "b": "chosen"},
        "workers": {"a": {"echo": True}},
        "expect": {"status": "COMPLETED", "output": {"v": "chosen"}},
    },
    # ------------------------------------------------------------ SWITCH / DECISION
    {
        "name": "switch_value_param_selects_a_case",
        "follows": f"{OPS}/switch-task.md: value-param evaluator; output evaluationResult, "
        "selectedCase",
        "workflow": W(
            "sw",
            T(
                "SWITCH",
                "sw",
                evaluatorType="value-param",
                expression="kind",
                inputParameters={"kind": "${workflow.input.kind}"},
                decisionCases={"fedex": [S("t_a", "ship_fedex")], "ups": [S("t_b", "ship_ups")]},
                defaultCase=[S("t_c", "ship_other")],
            ),
            S("t_d", "after"),
            outputParameters={"sw": "${sw.output}"},
        ),
        "input": {"kind": "ups"},
        "expect": {
            "status": "COMPLETED",
            "output": {"sw": {"evaluationResult": ["ups"], "selectedCase": "ups"}},
            "tasks": [["sw", "COMPLETED"], ["ship_ups", "COMPLETED"], ["after", "COMPLETED"]],
        },
    },
    {
        "name": "switch_default_case",
        "follows": f"{OPS}/switch-task.md: no matching case -> defaultCase",
        "workflow": W(
            "swd",
            T(
                "SWITCH",
                "sw",
                expression="kind",
                inputParameters={"kind": "${workflow.input.kind}"},
                decisionCases={"a": [S("t_a", "in_a")]},
                defaultCase=[S("t_c", "in_default")],
            ),
        ),
        "input": {"kind": "zzz"},
        "expect": {
            "status": "COMPLETED",
            "tasks": [["sw", "COMPLETED"], ["in_default", "COMPLETED"]],
        },
    },
    {
        "name": "switch_without_default_and_no_match_continues",
        "follows": f"{OPS}/switch-task.md: an empty/missing default case schedules nothing",
        "workflow": W(
            "swn",
            T(
                "SWITCH",
                "sw",
                expression="kind",
                inputParameters={"kind": "${workflow.input.missing}"},
                decisionCases={"a": [S("t_a", "in_a")]},
            ),
            S("t_b", "after"),
        ),
        "expect": {
            "status": "COMPLETED",
            "tasks": [["sw", "COMPLETED"], ["after", "COMPLETED"]],
        },
    },
    {
        "name": "switch_on_a_boolean_matches_its_string_case",
        "follows": "SwitchTaskMapper: the evaluated value is compared as a string "
        "(String.valueOf), so true matches case 'true'",
        "workflow": W(
            "swb",
            T(
                "SWITCH",
                "sw",
                expression="flag",
                inputParameters={"flag": "${workflow.input.flag}"},
                decisionCases={"true": [S("t_a", "yes")], "false": [S("t_b", "no")]},
            ),
        ),
        "input": {"flag": True},
        "expect": {"status": "COMPLETED", "tasks": [["sw", "COMPLETED"], ["yes", "COMPLETED"]]},
    },
    {
        "name": "decision_legacy_case_value_param",
        "follows": "DECISION (deprecated): caseValueParam names the input holding the case",
        "workflow": W(
            "dec",
            T(
                "DECISION",
                "d",
                caseValueParam="c",
                inputParameters={"c": "${workflow.input.c}"},
                decisionCases={"x": [S("t_a", "in_x")]},
                defaultCase=[S("t_b", "in_default")],
            ),
        ),
        "input": {"c": "x"},
        "expect": {"status": "COMPLETED", "tasks": [["d", "COMPLETED"], ["in_x", "COMPLETED"]]},
    },
    {
        "name": "switch_inside_switch",
        "follows": f"{OPS}/switch-task.md: cases hold any task list, including another SWITCH",
        "workflow": W(
            "sw2",
            T(
                "SWITCH",
                "outer",
                expression="a",
                inputParameters={"a": "${workflow.input.a}"},
                decisionCases={
                    "1": [
                        T(
                            "SWITCH",
                            "inner",
                            expression="b",
                            inputParameters={"b": "${workflow.input.b}"},
                            decisionCases={"2": [S("t_a", "deep")]},
                        )
                    ]
                },
            ),
            S("t_b", "after"),
        ),
        "input": {"a": 1, "b": "2"},
        "expect": {
            "status": "COMPLETED",
            "tasks": [
                ["outer", "COMPLETED"],
                ["inner", "COMPLETED"],
                ["deep", "COMPLETED"],
                ["after", "COMPLETED"],
            ],
        },
    },
    {
        "name": "exclusive_join_takes_the_scheduled_branch",
        "follows": "ExclusiveJoin.java: the first joinOn reference that was scheduled; its output",
        "workflow": W(
            "xj",
            T(
                "SWITCH",
                "sw",
                expression="k",
                inputParameters={"k": "${workflow.input.k}"},
                decisionCases={"a": [S("t_a", "ta")], "b": [S("t_b", "tb")]},
            ),
            T("EXCLUSIVE_JOIN", "xj", joinOn=["ta", "tb"]),
            outputParameters={"joined": "${xj.output}"},
        ),
        "input": {"k": "b"},
        "workers": {"tb": {"complete": {"from": "b"}}},
        "expect": {
            "status": "COMPLETED",
            "output": {"joined": {"from": "b"}},
            "tasks": [["sw", "COMPLETED"], ["tb", "COMPLETED"], ["xj", "COMPLETED"]],
        },
    },
    {
        "name": "exclusive_join_falls_back_to_the_default_task",
        "follows": "ExclusiveJoin.java: no joinOn task scheduled -> defaultExclusiveJoinTask",
        "workflow": W(
            "xjd",
            T(
                "SWITCH",
                "sw",
                expression="k",
                inputParameters={"k": "${workflow.input.k}"},
                decisionCases={"a": [S("t_a", "ta")]},
                defaultCase=[S("t_c", "tdef")],
            ),
            T("EXCLUSIVE_JOIN", "xj", joinOn=["ta"], defaultExclusiveJoinTask=["tdef"]),
        ),
        "input": {"k": "nope"},
        "workers": {"tdef": {"complete": {"from": "default"}}},
        "expect": {"status": "COMPLETED", "output": {"from": "default"}},
    },
    # ------------------------------------------------------------ FORK_JOIN / JOIN
    {
        "name": "fork_join_output_is_a_map_of_joined_outputs",
        "follows": f"{OPS}/fork-task.md + join-task.md: branches run in parallel; JOIN output "
        "= {ref: output}",
        "workflow": W(
            "fork",
            T("FORK_JOIN", "fork", forkTasks=[[S("t_a", "a")], [S("t_b", "b")]]),
            T("JOIN", "join", joinOn=["a", "b"]),
            outputParameters={"j": "${join.output}"},
        ),
        "workers": {"a": {"complete": {"v": "a"}}, "b": {"complete": {"v": "b"}}},
        "expect": {
            "status": "COMPLETED",
            "output": {"j": {"a": {"v": "a"}, "b": {"v": "b"}}},
            "tasks": [
                ["fork", "COMPLETED"],
                ["a", "COMPLETED"],
                ["b", "COMPLETED"],
                ["join", "COMPLETED"],
            ],
        },
    },
    {
        "name": "fork_with_multi_step_branches",
        "follows": f"{OPS}/fork-task.md: each forkTasks entry is a sequence",
        "workflow": W(
            "fork2",
            T(
                "FORK_JOIN",
                "fork",
                forkTasks=[
                    [S("t_a", "a1"), S("t_a", "a2", inputParameters={"p": "${a1.output.v}"})],
                    [S("t_b", "b1")],
                ],
            ),
            T("JOIN", "join", joinOn=["a2", "b1"]),
            outputParameters={"j": "${join.output}"},
        ),
        "workers": {"a1": {"complete": {"v": 5}}, "a2": {"echo": True}},
        "expect": {
            "status": "COMPLETED",
            "output": {"j": {"a2": {"p": 5}, "b1": {}}},
            # The JOIN is scheduled as soon as the fork's branches started, and ends last.
            "tasks": [
                ["fork", "COMPLETED"],
                ["a1", "COMPLETED"],
                ["b1", "COMPLETED"],
                ["join", "COMPLETED"],
                ["a2", "COMPLETED"],
            ],
        },
    },
    {
        "name": "join_with_an_optional_failed_task_completes_with_errors",
        "follows": "Join.java: optional joined task failed -> JOIN COMPLETED_WITH_ERRORS",
        "workflow": W(
            "forkopt",
            T("FORK_JOIN", "fork", forkTasks=[[S("t_a", "a", optional=True)], [S("t_b", "b")]]),
            T("JOIN", "join", joinOn=["a", "b"]),
        ),
        "workers": {"a": {"fail": "always"}},
        "expect": {
            "status": "COMPLETED",
            "tasks": [
                ["fork", "COMPLETED"],
                ["a", "COMPLETED_WITH_ERRORS"],
                ["b", "COMPLETED"],
                ["join", "COMPLETED_WITH_ERRORS"],
            ],
        },
    },
    {
        "name": "failed_branch_fails_the_workflow_and_cancels_the_rest",
        "follows": "DeciderService: a non-optional task failure fails the workflow; pending "
        "tasks are CANCELED",
        "workflow": W(
            "forkfail",
            T("FORK_JOIN", "fork", forkTasks=[[S("t_a", "a")], [S("t_b", "b")]]),
            T("JOIN", "join", joinOn=["a", "b"]),
        ),
        "workers": {"a": {"fail": "always"}, "b": {"never": True}},
        "expect": {
            "status": "FAILED",
            "tasks": [
                ["fork", "COMPLETED"],
                ["a", "FAILED"],
                ["b", "CANCELED"],
                ["join", "CANCELED"],
            ],
        },
    },
    {
        "name": "join_on_a_subset_lets_the_other_branch_finish_later",
        "follows": "join-task.md: JOIN waits only for joinOn; the workflow completes when every "
        "task has ended",
        "workflow": W(
            "subset",
            T("FORK_JOIN", "fork", forkTasks=[[S("t_a", "a")], [T("WAIT", "gate")]]),
            T("JOIN", "join", joinOn=["a"]),
            S("t_b", "after"),
        ),
        "api": {"gate": {"complete": {"opened": True}}},
        "expect": {
            "status": "COMPLETED",
            "tasks": [
                ["fork", "COMPLETED"],
                ["a", "COMPLETED"],
                ["gate", "COMPLETED"],
                ["join", "COMPLETED"],
                ["after", "COMPLETED"],
            ],
        },
    },
    {
        "name": "dynamic_fork_with_task_list_and_input_map",
        "follows": f"{OPS}/dynamic-fork-task.md: dynamicForkTasksParam + "
        "dynamicForkTasksInputParamName; the JOIN joins every forked task",
        "workflow": W(
            "dynfork",
            S("t_a", "prep"),
            T(
                "FORK_JOIN_DYNAMIC",
                "df",
                dynamicForkTasksParam="tasks",
                dynamicForkTasksInputParamName="inputs",
                inputParameters={"tasks": "${prep.output.tasks}", "inputs": "${prep.output.in}"},
            ),
            T("JOIN", "join"),
        ),
        "extraTaskNames": ["img"],
        "workers": {
            "prep": {
                "complete": {
                    "tasks": [
                        {"name": "img", "taskReferenceName": "img_1"},
                        {"name": "img", "taskReferenceName": "img_2"},
                    ],
                    "in": {"img_1": {"n": 1}, "img_2": {"n": 2}},
                }
            },
            "img": {"echo": True},
        },
        "expect": {
            "status": "COMPLETED",
            "output": {"img_1": {"n": 1}, "img_2": {"n": 2}},
            "tasks": [
                ["prep", "COMPLETED"],
                ["df", "COMPLETED"],
                ["img_1", "COMPLETED"],
                ["img_2", "COMPLETED"],
                ["join", "COMPLETED"],
            ],
        },
    },
    {
        "name": "dynamic_fork_with_fork_task_name_and_inputs",
        "follows": "ForkJoinDynamicTaskMapper.getDynamicTasksSimple: forkTaskName + "
        "forkTaskInputs; references _<name>_<i>, input __index",
        "workflow": W(
            "dynfork2",
            T(
                "FORK_JOIN_DYNAMIC",
                "df",
                inputParameters={"forkTaskName": "img", "forkTaskInputs": [{"u": "x"}, "y"]},
            ),
            T("JOIN", "join"),
        ),
        "extraTaskNames": ["img"],
        "workers": {"img": {"echo": True}},
        "expect": {
            "status": "COMPLETED",
            "output": {"_img_0": {"u": "x", "__index": 0}, "_img_1": {"input": "y", "__index": 1}},
            "tasks": [
                ["df", "COMPLETED"],
                ["_img_0", "COMPLETED"],
                ["_img_1", "COMPLETED"],
                ["join", "COMPLETED"],
            ],
        },
    },
    {
        "name": "dynamic_fork_of_nothing_joins_at_once",
        "follows": "ForkJoinDynamicTaskMapper: an empty list forks nothing; JOIN has nothing to "
        "wait for",
        "workflow": W(
            "dynempty",
            T(
                "FORK_JOIN_DYNAMIC",
                "df",
                inputParameters={"forkTaskName": "img", "forkTaskInputs": []},
            ),
            T("JOIN", "join"),
            S("t_a", "after"),
        ),
        "extraTaskNames": ["img"],
        "expect": {
            "status": "COMPLETED",
            "tasks": [["df", "COMPLETED"], ["join", "COMPLETED"], ["after", "COMPLETED"]],
        },
    },
    {
        "name": "dynamic_fork_with_bad_input_fails_the_workflow",
        "follows": "ForkJoinDynamicTaskMapper: input that is not a task list -> "
        "TerminateWorkflowException (workflow FAILED)",
        "workflow": W(
            "dynbad",
            T(
                "FORK_JOIN_DYNAMIC",
                "df",
                dynamicForkTasksParam="tasks",
                dynamicForkTasksInputParamName="inputs",
                inputParameters={"tasks": "not a list", "inputs": {}},
            ),
            T("JOIN", "join"),
        ),
        "expect": {
            "status": "FAILED",
            "tasks": [["df", "FAILED_WITH_TERMINAL_ERROR"]],
            "reasonIncludes": "must be a list",
        },
    },
    # ------------------------------------------------------------ DO_WHILE
    {
        "name": "do_while_counts_iterations",
        "follows": f"{OPS}/do-while-task.md: body runs, then loopCondition; refs get __N; "
        "output has iteration and per-iteration outputs",
        "workflow": W(
            "loop",
            T(
                "DO_WHILE",
                "loop",
                inputParameters={"value": "${workflow.input.n}"},
                loopCondition="if ($.loop['iteration'] < $.value) { true; } else { false; }",
                loopOver=[S("t_a", "a")],
            ),
            outputParameters={"loop": "${loop.output}"},
        ),
        "input": {"n": 3},
        "workers": {"a": {"outputs": [{"i": 1}, {"i": 2}, {"i": 3}]}},
        "expect": {
            "status": "COMPLETED",
            "output": {
                "loop": {
                    "iteration": 3,
                    "1": {"a": {"i": 1}},
                    "2": {"a": {"i": 2}},
                    "3": {"a": {"i": 3}},
                }
            },
            "tasks": [
                ["loop", "COMPLETED"],
                ["a__1", "COMPLETED"],
                ["a__2", "COMPLETED"],
                ["a__3", "COMPLETED"],
            ],
        },
    },
    {
        "name": "do_while_condition_on_body_output",
        "follows": f"{OPS}/do-while-task.md: loopCondition reads body outputs as $.ref['field']; "
        "${ref.output} inside the loop is the latest iteration",
        "workflow": W(
            "loop2",
            T(
                "DO_WHILE",
                "loop",
                loopCondition="$.a['more'] == true",
                loopOver=[
                    S("t_a", "a"),
                    S("t_b", "b", inputParameters={"fromA": "${a.output.n}"}),
                ],
            ),
            outputParameters={"lastB": "${b.output}"},
        ),
        "workers": {
            "a": {"outputs": [{"n": 1, "more": True}, {"n": 2, "more": False}]},
            "b": {"echo": True},
        },
        "expect": {
            "status": "COMPLETED",
            "output": {"lastB": {"fromA": 2}},
            "tasks": [
                ["loop", "COMPLETED"],
                ["a__1", "COMPLETED"],
                ["b__1", "COMPLETED"],
                ["a__2", "COMPLETED"],
                ["b__2", "COMPLETED"],
            ],
        },
    },
    {
        "name": "do_while_over_items",
        "follows": f"{OPS}/do-while-task.md items: one iteration per item; "
        "${loop.output.loopItem} and ${loop.output.loopIndex}",
        "workflow": W(
            "items",
            T(
                "DO_WHILE",
                "loop",
                items="${workflow.input.list}",
                loopOver=[
                    S(
                        "t_a",
                        "a",
                        inputParameters={
                            "item": "${loop.output.loopItem}",
                            "i": "${loop.output.loopIndex}",
                        },
                    )
                ],
            ),
            outputParameters={"n": "${loop.output.iteration}", "last": "${a.output}"},
        ),
        "input": {"list": ["x", "y", "z"]},
        "workers": {"a": {"echo": True}},
        "expect": {
            "status": "COMPLETED",
            "output": {"n": 3, "last": {"item": "z", "i": 2}},
            "tasks": [
                ["loop", "COMPLETED"],
                ["a__1", "COMPLETED"],
                ["a__2", "COMPLETED"],
                ["a__3", "COMPLETED"],
            ],
        },
    },
    {
        "name": "do_while_over_no_items_runs_nothing",
        "follows": "conductor-oss DO_WHILE items: an empty list means no iteration",
        "workflow": W(
            "noitems",
            T("DO_WHILE", "loop", items=[], loopOver=[S("t_a", "a")]),
            S("t_b", "after"),
        ),
        "expect": {"status": "COMPLETED", "tasks": [["loop", "COMPLETED"], ["after", "COMPLETED"]]},
    },
    {
        "name": "do_while_keep_last_n",
        "follows": "conductor-oss DO_WHILE keepLastN: older iterations are removed (here also "
        "when the loop ends, so exactly N remain)",
        "workflow": W(
            "keep",
            T(
                "DO_WHILE",
                "loop",
                inputParameters={"keepLastN": 2},
                loopCondition="$.loop['iteration'] < 4",
                loopOver=[S("t_a", "a")],
            ),
            outputParameters={"loop": "${loop.output}"},
        ),
        "expect": {
            "status": "COMPLETED",
            "output": {"loop": {"iteration": 4, "3": {"a": {}}, "4": {"a": {}}}},
            "tasks": [["loop", "COMPLETED"], ["a__3", "COMPLETED"], ["a__4", "COMPLETED"]],
        },
    },
    {
        "name": "loop_inside_a_loop",
        "follows": "conductor-oss nested DO_WHILE: inner references carry both iteration suffixes",
        "workflow": W(
            "nestloop",
            T(
                "DO_WHILE",
                "outer",
                loopCondition="$.outer['iteration'] < 2",
                loopOver=[
                    T(
                        "DO_WHILE",
                        "inner",
                        loopCondition="$.inner['iteration'] < 2",
                        loopOver=[S("t_a", "a")],
                    )
                ],
            ),
        ),
        "expect": {
            "status": "COMPLETED",
            "tasks": [
                ["outer", "COMPLETED"],
                ["inner__1", "COMPLETED"],
                ["a__1__1", "COMPLETED"],
                ["a__1__2", "COMPLETED"],
                ["inner__2", "COMPLETED"],
                ["a__2__1", "COMPLETED"],
                ["a__2__2", "COMPLETED"],
            ],
        },
    },
    {
        "name": "failure_inside_a_loop_fails_the_workflow",
        "follows": f"{OPS}/do-while-task.md: a failed body task fails the loop and the workflow",
        "workflow": W(
            "loopfail",
            T(
                "DO_WHILE",
                "loop",
                loopCondition="$.loop['iteration'] < 5",
                loopOver=[S("t_a", "a")],
            ),
        ),
        "workers": {"a__2": {"fail": "always"}},
        "expect": {
            "status": "FAILED",
            "tasks": [["loop", "CANCELED"], ["a__1", "COMPLETED"], ["a__2", "FAILED"]],
        },
    },
    {
        "name": "switch_inside_a_loop",
        "follows": f"{OPS}/do-while-task.md: loopOver holds any operators",
        "workflow": W(
            "loopsw",
            T(
                "DO_WHILE",
                "loop",
                loopCondition="$.loop['iteration'] < 2",
                loopOver=[
                    T(
                        "SWITCH",
                        "sw",
                        expression="i",
                        inputParameters={"i": "${loop.output.iteration}"},
                        decisionCases={"1": [S("t_a", "first")]},
                        defaultCase=[S("t_b", "later")],
                    )
                ],
            ),
        ),
        "expect": {
            "status": "COMPLETED",
            "tasks": [
                ["loop", "COMPLETED"],
                ["sw__1", "COMPLETED"],
                ["first__1", "COMPLETED"],
                ["sw__2", "COMPLETED"],
                ["later__2", "COMPLETED"],
            ],
        },
    },
    # ------------------------------------------------------------ SUB_WORKFLOW / START_WORKFLOW
    {
        "name": "sub_workflow_by_name_mirrors_completion",
        "follows": f"{OPS}/sub-workflow-task.md: the task waits for the child; output = child "
        "output + subWorkflowId",
        "register": [
            W(
                "child",
                S("t_a", "c1", inputParameters={"v": "${workflow.input.v}"}),
                outputParameters={"got": "${c1.output.r}"},
            )
        ],
        "workflow": W(
            "parent",
            T(
                "SUB_WORKFLOW",
                "sub",
                subWorkflowParam={"name": "child", "version": 1},
                inputParameters={"v": "${workflow.input.v}"},
            ),
            outputParameters={"got": "${sub.output.got}"},
        ),
        "input": {"v": 3},
        "workers": {"c1": {"complete": {"r": "child-result"}}},
        "expect": {
            "status": "COMPLETED",
            "output": {"got": "child-result"},
            "tasks": [["sub", "COMPLETED"]],
            "children": ["COMPLETED"],
        },
    },
    {
        "name": "sub_workflow_failure_fails_the_parent_task",
        "follows": f"{OPS}/sub-workflow-task.md: child FAILED -> task FAILED -> parent FAILED",
        "register": [W("child", S("t_a", "c1"))],
        "workflow": W("parent", T("SUB_WORKFLOW", "sub", subWorkflowParam={"name": "child"})),
        "workers": {"c1": {"fail": "always"}},
        "expect": {"status": "FAILED", "tasks": [["sub", "FAILED"]], "children": ["FAILED"]},
    },
    {
        "name": "sub_workflow_retry_starts_a_new_child",
        "follows": "Conductor sub-workflow failure propagation: a SUB_WORKFLOW retry starts a "
        "new child with a new deterministic id",
        "register": [W("child", S("t_a", "c1"))],
        "workflow": W(
            "parent",
            T("SUB_WORKFLOW", "sub", subWorkflowParam={"name": "child"}, retryCount=1),
        ),
        "workers": {"c1": {"fail": 1, "then": {"ok": True}}},
        "expect": {
            "status": "COMPLETED",
            "tasks": [["sub", "FAILED"], ["sub", "COMPLETED"]],
            "children": ["FAILED", "COMPLETED"],
        },
    },
    {
        "name": "sub_workflow_with_inline_definition",
        "follows": f"{OPS}/sub-workflow-task.md: subWorkflowParam.workflowDefinition inline",
        "workflow": W(
            "parent",
            T(
                "SUB_WORKFLOW",
                "sub",
                subWorkflowParam={
                    "name": "inline_child",
                    "workflowDefinition": W(
                        "inline_child", S("t_a", "c1"), outputParameters={"x": "${c1.output.x}"}
                    ),
                },
            ),
        ),
        "workers": {"c1": {"complete": {"x": 42}}},
        "expect": {"status": "COMPLETED", "outputIncludes": {"x": 42}, "children": ["COMPLETED"]},
    },
    {
        "name": "start_workflow_is_fire_and_forget",
        "follows": f"{OPS}/start-workflow-task.md: COMPLETED once the child started; output "
        "workflowId",
        "register": [W("child", T("HUMAN", "approve"))],
        "workflow": W(
            "parent",
            T(
                "START_WORKFLOW",
                "start",
                inputParameters={"startWorkflow": {"name": "child", "input": {"a": 1}}},
            ),
            S("t_a", "after"),
        ),
        "expect": {
            "status": "COMPLETED",
            "tasks": [["start", "COMPLETED"], ["after", "COMPLETED"]],
            "children": ["RUNNING"],
        },
    },
    {
        "name": "terminating_the_parent_terminates_the_child",
        "follows": "SubWorkflow.cancel: ending the parent terminates a running child",
        "register": [W("child", T("HUMAN", "approve"))],
        "workflow": W(
            "parent",
            T(
                "FORK_JOIN",
                "fork",
                forkTasks=[
                    [T("SUB_WORKFLOW", "sub", subWorkflowParam={"name": "child"})],
                    [
                        S("t_a", "a"),
                        T(
                            "TERMINATE",
                            "stop",
                            inputParameters={
                                "terminationStatus": "TERMINATED",
                                "terminationReason": "stop it",
                            },
                        ),
                    ],
                ],
            ),
            T("JOIN", "join", joinOn=["sub", "stop"]),
        ),
        "expect": {
            "status": "TERMINATED",
            "reasonIncludes": "stop it",
            "children": ["TERMINATED"],
        },
    },
    # ------------------------------------------------------------ DYNAMIC, SET_VARIABLE, TERMINATE, NOOP
    {
        "name": "dynamic_task_name_from_input",
        "follows": f"{OPS}/dynamic-task.md: dynamicTaskNameParam names the input holding the task",
        "workflow": W(
            "dyn",
            T(
                "DYNAMIC",
                "d",
                dynamicTaskNameParam="taskToExecute",
                inputParameters={"taskToExecute": "${workflow.input.which}", "p": 1},
            ),
        ),
        "extraTaskNames": ["ship_ups"],
        "input": {"which": "ship_ups"},
        "workers": {"d": {"echo": True}},
        "expect": {
            "status": "COMPLETED",
            "output": {"taskToExecute": "ship_ups", "p": 1},
            "tasks": [["d", "COMPLETED"]],
        },
    },
    {
        "name": "set_variable_then_read_it",
        "follows": f"{OPS}/set-variable-task.md: ${{workflow.variables.x}}",
        "workflow": W(
            "vars",
            T("SET_VARIABLE", "set", inputParameters={"x": "${workflow.input.x}", "k": "v"}),
            S("t_a", "a", inputParameters={"x": "${workflow.variables.x}"}),
            variables={"pre": 1},
        ),
        "input": {"x": 9},
        "workers": {"a": {"echo": True}},
        "expect": {
            "status": "COMPLETED",
            "output": {"x": 9},
            "variables": {"pre": 1, "x": 9, "k": "v"},
        },
    },
    {
        "name": "terminate_completed_with_workflow_output",
        "follows": f"{OPS}/terminate-task.md: terminationStatus, workflowOutput; later tasks "
        "are not scheduled",
        "workflow": W(
            "term",
            S("t_a", "a"),
            T(
                "TERMINATE",
                "stop",
                inputParameters={
                    "terminationStatus": "COMPLETED",
                    "workflowOutput": {"r": "${a.output.v}"},
                },
            ),
            S("t_b", "never_runs"),
        ),
        "workers": {"a": {"complete": {"v": 1}}},
        "expect": {
            "status": "COMPLETED",
            "output": {"r": 1},
            "tasks": [["a", "COMPLETED"], ["stop", "COMPLETED"]],
        },
    },
    {
        "name": "terminate_failed_with_reason",
        "follows": f"{OPS}/terminate-task.md: terminationStatus FAILED with terminationReason",
        "workflow": W(
            "termf",
            T(
                "SWITCH",
                "sw",
                expression="ok",
                inputParameters={"ok": "${workflow.input.ok}"},
                decisionCases={
                    "false": [
                        T(
                            "TERMINATE",
                            "stop",
                            inputParameters={
                                "terminationStatus": "FAILED",
                                "terminationReason": "not ok",
                            },
                        )
                    ]
                },
            ),
            S("t_a", "a"),
        ),
        "input": {"ok": False},
        "expect": {
            "status": "FAILED",
            "reasonIncludes": "not ok",
            "tasks": [["sw", "COMPLETED"], ["stop", "COMPLETED"]],
        },
    },
    {
        "name": "noop_does_nothing",
        "follows": f"{SYS}/noop-task.md",
        "workflow": W("noop", T("NOOP", "n"), S("t_a", "a")),
        "expect": {"status": "COMPLETED", "tasks": [["n", "COMPLETED"], ["a", "COMPLETED"]]},
    },
    # ------------------------------------------------------------ scripts (sandboxed, two-phase)
    {
        "name": "inline_javascript_result",
        "follows": f"{SYS}/inline-task.md: evaluatorType javascript, inputs visible as $, "
        "the script's value is output.result",
        "workflow": W(
            "inline_js",
            T(
                "INLINE",
                "calc",
                inputParameters={
                    "evaluatorType": "javascript",
                    "expression": "$.value * 2",
                    "value": "${workflow.input.v}",
                },
            ),
            S("t_a", "a", inputParameters={"doubled": "${calc.output.result}"}),
            outputParameters={"doubled": "${a.output.doubled}"},
        ),
        "input": {"v": 21},
        "workers": {"a": {"echo": True}},
        "expect": {
            "status": "COMPLETED",
            "output": {"doubled": 42},
            "tasks": [["calc", "COMPLETED"], ["a", "COMPLETED"]],
        },
    },
    {
        "name": "inline_graaljs_function_with_return_builds_an_object",
        "follows": f"{SYS}/inline-task.md: graaljs; an immediately invoked function, and a "
        "top-level return as GraalJS accepts it; objects and lists come out as JSON",
        "workflow": W(
            "inline_graal",
            T(
                "INLINE",
                "iife",
                inputParameters={
                    "evaluatorType": "graaljs",
                    "expression": "(function () { return {n: $.items.length, "
                    "first: $.items[0], up: $.items.map(function (x) "
                    "{ return x.toUpperCase(); })}; })()",
                    "items": ["a", "b"],
                },
            ),
            T(
                "INLINE",
                "ret",
                inputParameters={
                    "evaluatorType": "graaljs",
                    "expression": "if ($.n > 1) { return 'many'; } return 'one';",
                    "n": "${iife.output.result.n}",
                },
            ),
            outputParameters={"obj": "${iife.output.result}", "word": "${ret.output.result}"},
        ),
        "expect": {
            "status": "COMPLETED",
            "output": {"obj": {"n": 2, "first": "a", "up": ["A", "B"]}, "word": "many"},
        },
    },
    {
        "name": "inline_value_param_needs_no_script",
        "follows": f"{SYS}/inline-task.md: evaluatorType value-param returns the named input",
        "workflow": W(
            "inline_vp",
            T(
                "INLINE",
                "vp",
                inputParameters={
                    "evaluatorType": "value-param",
                    "expression": "pick",
                    "pick": "${workflow.input.p}",
                },
            ),
            outputParameters={"r": "${vp.output.result}"},
        ),
        "input": {"p": {"k": [1, 2]}},
        "expect": {"status": "COMPLETED", "output": {"r": {"k": [1, 2]}}},
    },
    {
        "name": "inline_script_error_fails_the_task_with_the_reason",
        "follows": f"{SYS}/inline-task.md / Inline.java: an evaluation error marks the task FAILED "
        "with the message as reasonForIncompletion and output.error",
        "workflow": W(
            "inline_err",
            T(
                "INLINE",
                "boom",
                inputParameters={
                    "evaluatorType": "javascript",
                    "expression": "throw new Error('no such customer')",
                },
            ),
            S("t_a", "a"),
        ),
        "expect": {
            "status": "FAILED",
            "tasks": [["boom", "FAILED"]],
            "reasonIncludes": "no such customer",
        },
    },
    {
        "name": "inline_endless_loop_hits_the_time_limit",
        "follows": "ScriptEvaluator's time limit: a script that never ends fails its task",
        "workflow": W(
            "inline_loop",
            T(
                "INLINE",
                "spin",
                inputParameters={"evaluatorType": "javascript", "expression": "while (true) {}"},
            ),
        ),
        "expect": {
            "status": "FAILED",
            "tasks": [["spin", "FAILED"]],
            "reasonIncludes": "time limit exceeded",
        },
    },
    {
        "name": "json_jq_transform_result_and_result_list",
        "follows": f"{SYS}/json-jq-transform-task.md: queryExpression over the inputs; output "
        "result (first) and resultList (all)",
        "workflow": W(
            "jq",
            T(
                "JSON_JQ_TRANSFORM",
                "merge",
                inputParameters={
                    "key1": {"value1": ["a", "b"]},
                    "key2": {"value2": ["c", "d"]},
                    "queryExpression": "{ key3: (.key1.value1 + .key2.value2) }",
                },
            ),
            T(
                "JSON_JQ_TRANSFORM",
                "each",
                inputParameters={
                    "list": "${merge.output.result.key3}",
                    "queryExpression": ".list[]",
                },
            ),
            outputParameters={
                "merged": "${merge.output.result}",
                "first": "${each.output.result}",
                "all": "${each.output.resultList}",
            },
        ),
        "expect": {
            "status": "COMPLETED",
            "output": {
                "merged": {"key3": ["a", "b", "c", "d"]},
                "first": "a",
                "all": ["a", "b", "c", "d"],
            },
        },
    },
    {
        "name": "json_jq_transform_runtime_error_fails_the_task",
        "follows": "JsonJqTransform.java: a jq error marks the task FAILED with output.error",
        "workflow": W(
            "jq_err",
            T(
                "JSON_JQ_TRANSFORM",
                "bad",
                inputParameters={"x": "text", "queryExpression": ".x + 1"},
            ),
        ),
        "expect": {
            "status": "FAILED",
            "tasks": [["bad", "FAILED"]],
            "reasonIncludes": "cannot be added",
        },
    },
    {
        "name": "switch_javascript_selects_a_case",
        "follows": f"{OPS}/switch-task.md: evaluatorType javascript, expression over $ "
        "(inputParameters) chooses decisionCases[value]",
        "workflow": W(
            "switch_js",
            T(
                "SWITCH",
                "route",
                evaluatorType="javascript",
                expression="$.amount > 100 ? 'big' : 'small'",
                inputParameters={"amount": "${workflow.input.amount}"},
                decisionCases={"big": [S("t_a", "a")], "small": [S("t_b", "b")]},
            ),
        ),
        "input": {"amount": 250},
        "expect": {
            "status": "COMPLETED",
            "tasks": [["route", "COMPLETED"], ["a", "COMPLETED"]],
        },
    },
    {
        "name": "switch_graaljs_default_case_and_output",
        "follows": f"{OPS}/switch-task.md: no matching case runs defaultCase; output "
        "evaluationResult and selectedCase, the evaluated value even for the default case "
        "(SwitchTaskMapper)",
        "workflow": W(
            "switch_graal",
            T(
                "SWITCH",
                "route",
                evaluatorType="graaljs",
                expression="$.country.toLowerCase()",
                inputParameters={"country": "${workflow.input.country}"},
                decisionCases={"de": [S("t_a", "a")]},
                defaultCase=[S("t_b", "b")],
            ),
            outputParameters={"sel": "${route.output}"},
        ),
        "input": {"country": "FR"},
        "expect": {
            "status": "COMPLETED",
            "output": {"sel": {"evaluationResult": ["fr"], "selectedCase": "fr"}},
            "tasks": [["route", "COMPLETED"], ["b", "COMPLETED"]],
        },
    },
    {
        "name": "decision_case_expression",
        "follows": "DECISION (deprecated SWITCH): caseExpression is JavaScript over $",
        "workflow": W(
            "decision_js",
            T(
                "DECISION",
                "d",
                caseExpression="$.n % 2 == 0 ? 'even' : 'odd'",
                inputParameters={"n": "${workflow.input.n}"},
                decisionCases={"even": [S("t_a", "a")], "odd": [S("t_b", "b")]},
            ),
        ),
        "input": {"n": 7},
        "expect": {"status": "COMPLETED", "tasks": [["d", "COMPLETED"], ["b", "COMPLETED"]]},
    },
    {
        "name": "do_while_full_javascript_loop_condition",
        "follows": f"{OPS}/do-while-task.md: loopCondition is JavaScript (here with a function, "
        "an array method and body outputs), evaluated after every iteration",
        "workflow": W(
            "loop_js",
            T(
                "DO_WHILE",
                "loop",
                inputParameters={"stops": "${workflow.input.stops}"},
                loopCondition="(function () { var seen = $.a.n; "
                "return $.stops.indexOf(seen) < 0 && $.loop.iteration < 10; })()",
                loopOver=[S("t_a", "a")],
            ),
            outputParameters={"iterations": "${loop.output.iteration}"},
        ),
        "input": {"stops": [3]},
        "workers": {"a": {"outputs": [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]}},
        "expect": {
            "status": "COMPLETED",
            "output": {"iterations": 3},
            "tasks": [
                ["loop", "COMPLETED"],
                ["a__1", "COMPLETED"],
                ["a__2", "COMPLETED"],
                ["a__3", "COMPLETED"],
            ],
        },
    },
    {
        "name": "do_while_javascript_condition_error_fails_the_loop",
        "follows": f"{OPS}/do-while-task.md: a loopCondition that throws fails the DO_WHILE task",
        "workflow": W(
            "loop_js_err",
            T(
                "DO_WHILE",
                "loop",
                loopCondition="$.a.missing.field.trim() == 'x'",
                loopOver=[S("t_a", "a")],
            ),
        ),
        "expect": {
            "status": "FAILED",
            "tasks": [["loop", "FAILED_WITH_TERMINAL_ERROR"], ["a__1", "COMPLETED"]],
            "reasonIncludes": "TypeError",
        },
    },
    # ------------------------------------------------------------ WAIT / HUMAN
    {
        "name": "wait_for_a_duration",
        "follows": f"{SYS}/wait-task.md: duration '2 minutes 10 seconds'",
        "workflow": W(
            "waitd",
            T("WAIT", "w", inputParameters={"duration": "2 minutes 10 seconds"}),
            S("t_a", "a"),
        ),
        "expect": {
            "status": "COMPLETED",
            "tasks": [["w", "COMPLETED"], ["a", "COMPLETED"]],
            "elapsedMsAtLeast": 130_000,
        },
    },
    {
        "name": "wait_until_a_date",
        "follows": f"{SYS}/wait-task.md: until 'yyyy-MM-dd HH:mm z'",
        "workflow": W("waitu", T("WAIT", "w", inputParameters={"until": "1970-01-01 00:30 UTC"})),
        "expect": {"status": "COMPLETED", "elapsedMsAtLeast": 800_000},
    },
    {
        "name": "wait_completed_through_the_api",
        "follows": f"{SYS}/wait-task.md: without duration/until it waits for a task update",
        "workflow": W(
            "waitapi", T("WAIT", "w"), S("t_a", "a", inputParameters={"s": "${w.output.s}"})
        ),
        "api": {"w": {"complete": {"s": "signal"}}},
        "workers": {"a": {"echo": True}},
        "expect": {"status": "COMPLETED", "output": {"s": "signal"}},
    },
    {
        "name": "human_failed_through_the_api",
        "follows": f"{SYS}/human-task.md: IN_PROGRESS until completed or failed by the API",
        "workflow": W("human", T("HUMAN", "approve"), S("t_a", "a")),
        "api": {"approve": {"fail": "rejected by reviewer"}},
        "expect": {
            "status": "FAILED",
            "tasks": [["approve", "FAILED"]],
            "reasonIncludes": "rejected by reviewer",
        },
    },
    {
        "name": "human_completed_through_the_api",
        "follows": f"{SYS}/human-task.md",
        "workflow": W(
            "human2", T("HUMAN", "approve"), outputParameters={"by": "${approve.output.by}"}
        ),
        "api": {"approve": {"complete": {"by": "alice"}}},
        "expect": {"status": "COMPLETED", "output": {"by": "alice"}},
    },
    {
        "name": "event_task_answers_a_wait_for_event_by_correlation_key",
        "follows": f"{SYS}/event-task.md: the EVENT task publishes its input (sink "
        "conductor:<name>); docs/workflow-language.md, Message correlation (Zeebe's message "
        "catch): the event with the waiting task's key completes it with its payload",
        "workflow": W(
            "corr",
            T(
                "FORK_JOIN",
                "fork",
                forkTasks=[
                    [
                        T(
                            "WAIT_FOR_EVENT",
                            "reply",
                            inputParameters={
                                "event": "conf.reply",
                                "correlationKey": "${workflow.input.order}",
                            },
                        )
                    ],
                    [
                        S("t_a", "a"),
                        T(
                            "EVENT",
                            "send",
                            inputParameters={
                                "sink": "conductor:conf.reply",
                                "correlationKey": "${workflow.input.order}",
                                "stock": "${a.output.stock}",
                            },
                        ),
                    ],
                ],
            ),
            T("JOIN", "join", joinOn=["reply", "send"]),
            outputParameters={
                "stock": "${reply.output.payload.stock}",
                "key": "${reply.output.correlationKey}",
                "event": "${send.output.event}",
            },
        ),
        "input": {"order": "o-42"},
        "workers": {"a": {"complete": {"stock": 3}}},
        "expect": {
            "status": "COMPLETED",
            "output": {"stock": 3, "key": "o-42", "event": "conf.reply"},
            "tasks": [
                ["fork", "COMPLETED"],
                ["reply", "COMPLETED"],
                ["a", "COMPLETED"],
                ["join", "COMPLETED"],
                ["send", "COMPLETED"],
            ],
        },
    },
    # ------------------------------------------------------------ failure handling, timeouts
    {
        "name": "failure_workflow_started_on_failure",
        "follows": "workflowdef/index.md failureWorkflow: started when the workflow fails, with "
        "the failed workflow's id and reason in its input (saga compensation cookbook)",
        "register": [
            W(
                "undo",
                T(
                    "INLINE",
                    "why",
                    inputParameters={
                        "evaluatorType": "value-param",
                        "expression": "reason",
                        "reason": "${workflow.input.failureStatus}",
                    },
                ),
            )
        ],
        "workflow": W("saga", S("t_a", "charge"), S("t_b", "ship"), failureWorkflow="undo"),
        "workers": {"ship": {"fail": "always", "reason": "no courier"}},
        "expect": {
            "status": "FAILED",
            "tasks": [["charge", "COMPLETED"], ["ship", "FAILED"]],
            "reasonIncludes": "no courier",
            "children": ["COMPLETED"],
        },
    },
    {
        "name": "permissive_task_failure_fails_the_workflow_at_the_end",
        "follows": "WorkflowTask.permissive (conductor-oss): a permissive task's failure lets the "
        "following tasks run; the workflow fails when it completes",
        "workflow": W("perm", S("t_a", "a", permissive=True), S("t_b", "b")),
        "workers": {"a": {"fail": "always", "reason": "soft failure"}},
        "expect": {
            "status": "FAILED",
            "tasks": [["a", "FAILED"], ["b", "COMPLETED"]],
            "reasonIncludes": "soft failure",
        },
    },
    {
        "name": "workflow_timeout_seconds",
        "follows": "workflowdef/index.md timeoutSeconds + timeoutPolicy TIME_OUT_WF: the workflow "
        "is TIMED_OUT when it runs longer",
        "workflow": W("slowwf", T("HUMAN", "approve"), timeoutSeconds=60),
        "expect": {
            "status": "TIMED_OUT",
            "tasks": [["approve", "CANCELED"]],
            "reasonIncludes": "timeoutSeconds (60s)",
            "elapsedMsAtLeast": 60_000,
        },
    },
    {
        "name": "task_poll_timeout",
        "follows": "taskdef.md pollTimeoutSeconds: a task nobody polls in time is TIMED_OUT "
        "(timeoutPolicy TIME_OUT_WF)",
        "taskDefs": [{"name": "t_unpolled", "retryCount": 0, "pollTimeoutSeconds": 20}],
        "workflow": W("pollto", S("t_unpolled", "u")),
        "unpolled": ["t_unpolled"],
        "expect": {
            "status": "TIMED_OUT",
            "tasks": [["u", "TIMED_OUT"]],
            "elapsedMsAtLeast": 20_000,
        },
    },
    # ------------------------------------------------------------ Conductor semantics (issue 14)
    {
        "name": "switch_reports_a_boolean_as_text",
        "follows": 'SwitchTaskMapper: evalResult = "" + value; evaluationResult [evalResult] '
        'and selectedCase evalResult (the string "true", not true)',
        "workflow": W(
            "sw_bool_text",
            T(
                "SWITCH",
                "sw",
                evaluatorType="value-param",
                expression="flag",
                inputParameters={"flag": "${workflow.input.flag}"},
                decisionCases={"true": [S("t_a", "yes")]},
                defaultCase=[S("t_b", "no")],
            ),
            outputParameters={"sw": "${sw.output}"},
        ),
        "input": {"flag": True},
        "expect": {
            "status": "COMPLETED",
            "output": {"sw": {"evaluationResult": ["true"], "selectedCase": "true"}},
            "tasks": [["sw", "COMPLETED"], ["yes", "COMPLETED"]],
        },
    },
    {
        "name": "switch_default_case_reports_the_number_as_java_prints_it",
        "follows": "SwitchTaskMapper: selectedCase is the evaluated value also when defaultCase "
        "runs; a double prints as Java's Double.toString (1.5, 2.0)",
        "workflow": W(
            "sw_num_default",
            T(
                "SWITCH",
                "sw",
                evaluatorType="value-param",
                expression="n",
                inputParameters={"n": "${workflow.input.n}"},
                decisionCases={"2": [S("t_a", "two")]},
                defaultCase=[S("t_b", "other")],
            ),
            outputParameters={"sw": "${sw.output}"},
        ),
        "input": {"n": 2.0},
        "expect": {
            "status": "COMPLETED",
            "output": {"sw": {"evaluationResult": ["2.0"], "selectedCase": "2.0"}},
            "tasks": [["sw", "COMPLETED"], ["other", "COMPLETED"]],
        },
    },
    {
        "name": "switch_javascript_result_is_reported_as_text",
        "follows": "SwitchTaskMapper with the javascript evaluator: a boolean result is the "
        'string "true" in evaluationResult and selectedCase, and selects case "true"',
        "workflow": W(
            "sw_js_text",
            T(
                "SWITCH",
                "sw",
                evaluatorType="javascript",
                expression="$.n > 1",
                inputParameters={"n": "${workflow.input.n}"},
                decisionCases={"true": [S("t_a", "big")]},
                defaultCase=[S("t_b", "small")],
            ),
            outputParameters={"sw": "${sw.output}"},
        ),
        "input": {"n": 5},
        "expect": {
            "status": "COMPLETED",
            "output": {"sw": {"evaluationResult": ["true"], "selectedCase": "true"}},
            "tasks": [["sw", "COMPLETED"], ["big", "COMPLETED"]],
        },
    },
    {
        "name": "switch_matching_case_without_tasks_runs_the_default_case",
        "follows": "SwitchTaskMapper: selectedTasks null or empty -> workflowTask.getDefaultCase()",
        "workflow": W(
            "sw_empty_case",
            T(
                "SWITCH",
                "sw",
                evaluatorType="value-param",
                expression="kind",
                inputParameters={"kind": "${workflow.input.kind}"},
                decisionCases={"ups": [], "fedex": [S("t_a", "fedex")]},
                defaultCase=[S("t_b", "fallback")],
            ),
        ),
        "input": {"kind": "ups"},
        "expect": {
            "status": "COMPLETED",
            "tasks": [["sw", "COMPLETED"], ["fallback", "COMPLETED"]],
        },
    },
    {
        "name": "decision_reports_case_output",
        "follows": "DecisionTaskMapper: output caseOutput [caseValue], the value as a string",
        "workflow": W(
            "dec_output",
            T(
                "DECISION",
                "d",
                caseValueParam="c",
                inputParameters={"c": "${workflow.input.c}"},
                decisionCases={"7": [S("t_a", "seven")]},
            ),
            outputParameters={"d": "${d.output}"},
        ),
        "input": {"c": 7},
        "expect": {
            "status": "COMPLETED",
            "output": {"d": {"caseOutput": ["7"]}},
            "tasks": [["d", "COMPLETED"], ["seven", "COMPLETED"]],
        },
    },
    {
        "name": "forks_create_a_task_of_type_fork",
        "follows": "ForkJoinTaskMapper and ForkJoinDynamicTaskMapper: the task they create has "
        'taskType TASK_TYPE_FORK ("FORK"), COMPLETED at once',
        "workflow": W(
            "fork_type",
            T("FORK_JOIN", "fk", forkTasks=[[S("t_a", "a")], [S("t_b", "b")]]),
            T("JOIN", "jn", joinOn=["a", "b"]),
            T(
                "FORK_JOIN_DYNAMIC",
                "df",
                inputParameters={"forkTaskName": "t_c", "forkTaskInputs": [{"n": 1}]},
            ),
            T("JOIN", "dj"),
            outputParameters={"static": "${fk.taskType}", "dynamic": "${df.taskType}"},
        ),
        "extraTaskNames": ["t_c"],
        "expect": {
            "status": "COMPLETED",
            "output": {"static": "FORK", "dynamic": "FORK"},
            "tasks": [
                ["fk", "COMPLETED"],
                ["a", "COMPLETED"],
                ["b", "COMPLETED"],
                ["jn", "COMPLETED"],
                ["df", "COMPLETED"],
                ["_t_c_0", "COMPLETED"],
                ["dj", "COMPLETED"],
            ],
        },
    },
    {
        "name": "terminate_failed_keeps_the_failure_note_and_passes_its_task",
        "follows": "WorkflowExecutor.endExecution/terminate/terminateWorkflow: TERMINATE with "
        "FAILED sets failedTaskId to the TERMINATE task, the output is its output "
        "(DeciderService.updateWorkflowOutput), the failure workflow gets failureTaskId and "
        "the failed workflow with that output, then conductor.failure_workflow is added",
        "register": [
            W(
                "verify",
                T(
                    "SWITCH",
                    "check",
                    evaluatorType="javascript",
                    expression="(function () { var f = $.in.failedWorkflow; "
                    "var stop = f.tasks.filter(function (t) { "
                    "return t.referenceTaskName == 'stop'; })[0]; "
                    "return $.in.failureTaskId == stop.taskId && f.output.r == 1 "
                    "&& f.output['conductor.failure_workflow'] === undefined ? 'ok' : 'bad'; })()",
                    inputParameters={"in": "${workflow.input}"},
                    decisionCases={"ok": [T("NOOP", "fine")]},
                    defaultCase=[
                        T(
                            "TERMINATE",
                            "wrong",
                            inputParameters={
                                "terminationStatus": "FAILED",
                                "terminationReason": "unexpected failure workflow input",
                            },
                        )
                    ],
                ),
            )
        ],
        "workflow": W(
            "term_fail_note",
            S("t_a", "a"),
            T(
                "TERMINATE",
                "stop",
                inputParameters={
                    "terminationStatus": "FAILED",
                    "terminationReason": "out of stock",
                    "workflowOutput": {"r": "${a.output.v}"},
                },
            ),
            S("t_b", "never_runs"),
            failureWorkflow="verify",
        ),
        "workers": {"a": {"complete": {"v": 1}}},
        "expect": {
            "status": "FAILED",
            "tasks": [["a", "COMPLETED"], ["stop", "COMPLETED"]],
            "reasonIncludes": "out of stock",
            "outputIncludes": {"r": 1},
            "outputHasKeys": ["conductor.failure_workflow"],
            "children": ["COMPLETED"],
        },
    },
    {
        "name": "terminate_wraps_a_non_map_workflow_output",
        "follows": f"{OPS}/terminate-task.md and Terminate.getInputFromParam: a workflowOutput "
        "that is not a map is the task's (and so the workflow's) output under \"output\"",
        "workflow": W(
            "term_wrap",
            S("t_a", "a"),
            T(
                "TERMINATE",
                "stop",
                inputParameters={
                    "terminationStatus": "COMPLETED",
                    "workflowOutput": "${a.output.v}",
                },
            ),
            outputParameters={"ignored": "${a.output.v}"},
        ),
        "workers": {"a": {"complete": {"v": ["x", 1]}}},
        "expect": {"status": "COMPLETED", "output": {"output": ["x", 1]}},
    },
    {
        "name": "failure_workflow_without_a_failed_task_gets_no_failure_task_id",
        "follows": "WorkflowExecutor.terminateWorkflow: failureTaskId only when failedTaskId is "
        "set; a workflow timeout (checkWorkflowTimeout) names no task",
        "register": [
            W(
                "verify_timeout",
                T(
                    "SWITCH",
                    "check",
                    evaluatorType="javascript",
                    expression="!('failureTaskId' in $.in) && $.in.failureStatus == 'TIMED_OUT' "
                    "? 'ok' : 'bad'",
                    inputParameters={"in": "${workflow.input}"},
                    decisionCases={"ok": [T("NOOP", "fine")]},
                    defaultCase=[
                        T(
                            "TERMINATE",
                            "wrong",
                            inputParameters={"terminationStatus": "FAILED"},
                        )
                    ],
                ),
            )
        ],
        "workflow": W(
            "timeout_no_task",
            T("HUMAN", "approve"),
            timeoutSeconds=2,
            failureWorkflow="verify_timeout",
        ),
        "expect": {
            "status": "TIMED_OUT",
            "tasks": [["approve", "CANCELED"]],
            "children": ["COMPLETED"],
        },
    },
    # ------------------------------------------------------------ sagas (not Conductor's)
    {
        "name": "saga_sequential_compensates_in_reverse",
        "follows": SAGAS + ": a failure undoes the completed steps that declare compensateWith, "
        "latest first, one at a time; steps without one are skipped; COMPENSATED",
        "workflow": W(
            "saga_seq",
            S("reserve", "r", compensateWith=S("unreserve", "ur")),
            S("notify", "n"),
            S("charge", "c", compensateWith=[S("refund", "rf"), T("NOOP", "note")]),
            S("ship", "s"),
        ),
        "workers": {"s": {"fail": "terminal", "reason": "no stock"}},
        "expect": {
            "status": "COMPENSATED",
            "reasonIncludes": "no stock",
            "tasks": [
                ["r", "COMPLETED"],
                ["n", "COMPLETED"],
                ["c", "COMPLETED"],
                ["s", "FAILED_WITH_TERMINAL_ERROR"],
                ["rf", "COMPLETED"],
                ["note", "COMPLETED"],
                ["ur", "COMPLETED"],
            ],
        },
    },
    {
        "name": "saga_across_a_fork_undoes_each_branch_in_reverse",
        "follows": SAGAS + ": reverse completion order across the whole workflow, so each fork "
        "branch is undone in reverse; a step without compensateWith (the gate) is skipped",
        # The right branch waits at a HUMAN gate the API opens once the left branch is done,
        # so the completion order (l1, l2, r1) is the same on the core and on a cluster whose
        # workers run both branches at once.
        "workflow": W(
            "saga_fork",
            T(
                "FORK_JOIN",
                "fork",
                forkTasks=[
                    [
                        S("work", "l1", compensateWith=S("undo", "ul1")),
                        S("work", "l2", compensateWith=S("undo", "ul2")),
                    ],
                    [
                        T("HUMAN", "gate"),
                        S("work", "r1", compensateWith=S("undo", "ur1")),
                        S("work", "r2"),
                    ],
                ],
            ),
            T("JOIN", "join", joinOn=["l2", "r2"]),
        ),
        "workers": {"r2": {"fail": "terminal"}},
        "api": {"gate": {"complete": {}}},
        "expect": {
            "status": "COMPENSATED",
            "tasks": [
                ["fork", "COMPLETED"],
                ["l1", "COMPLETED"],
                ["gate", "COMPLETED"],
                ["join", "CANCELED"],
                ["l2", "COMPLETED"],
                ["r1", "COMPLETED"],
                ["r2", "FAILED_WITH_TERMINAL_ERROR"],
                ["ur1", "COMPLETED"],
                ["ul2", "COMPLETED"],
                ["ul1", "COMPLETED"],
            ],
        },
    },
    {
        "name": "saga_compensation_failing_fails_the_workflow",
        "follows": SAGAS + ": a compensation is retried by its own retry policy; failing for "
        "good, the workflow ends FAILED naming it, and the steps after it are not undone",
        "taskDefs": [{"name": "refund", "retryCount": 1, "retryDelaySeconds": 1}],
        "workflow": W(
            "saga_fail",
            S("reserve", "r", compensateWith=S("unreserve", "ur")),
            S("charge", "c", compensateWith=S("refund", "rf")),
            S("ship", "s"),
        ),
        "workers": {"s": {"fail": "terminal"}, "rf": {"fail": "always", "reason": "bank down"}},
        "expect": {
            "status": "FAILED",
            "reasonIncludes": "compensation failed: task rf",
            "tasks": [
                ["r", "COMPLETED"],
                ["c", "COMPLETED"],
                ["s", "FAILED_WITH_TERMINAL_ERROR"],
                ["rf", "FAILED"],
                ["rf", "FAILED"],
            ],
        },
    },
]
