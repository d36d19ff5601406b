"""The gRPC API on a single-replica server in this process: validation, codes, long polls.

Bad input must be answered with a status naming the problem and must not reach Raft (the
replica's log does not grow).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from orchestrator_client.v1 import (
    definitions_pb2 as dpb,
)
from orchestrator_client.v1 import (
    tasks_pb2 as tpb,
)
from orchestrator_client.v1 import (
    workflows_pb2 as wpb,
)

from orchestrator.server import ReplicaServer
from tests.cluster_support import api_stubs, wait_for


@pytest.fixture(scope="module")
def stubs(server: ReplicaServer) -> Iterator[Any]:
    ch = grpc.insecure_channel(server.grpc_addr)
    ns = api_stubs(ch)
    ns.health = health_pb2_grpc.HealthStub(ch)
    ns.defs.RegisterTaskDefs(
        dpb.RegisterTaskDefsRequest(
            request_id="setup-td",
            task_def_json=[
                json.dumps({"name": "api_t", "retryCount": 0, "responseTimeoutSeconds": 60})
            ],
        )
    )
    ns.defs.RegisterWorkflowDef(
        dpb.RegisterWorkflowDefRequest(
            request_id="setup-wf",
            definition_json=json.dumps(
                {"name": "api_flow", "tasks": [{"name": "api_t", "taskReferenceName": "a"}]}
            ),
        )
    )
    yield ns
    ch.close()


def rid() -> str:
    return uuid.uuid4().hex


def _raft_log_len(server: ReplicaServer) -> int:
    return server.replica.status().log_len


@pytest.mark.parametrize(
    "call, code, fragment",
    [
        (
            lambda s: s.defs.RegisterWorkflowDef(
                dpb.RegisterWorkflowDefRequest(request_id=rid(), definition_json="{not json")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "definition_json: malformed JSON",
        ),
        (
            lambda s: s.defs.RegisterWorkflowDef(
                dpb.RegisterWorkflowDefRequest(
                    request_id=rid(), definition_json=json.dumps({"name": "x"})
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "tasks: required",
        ),
        (
            lambda s: s.defs.RegisterWorkflowDef(
                dpb.RegisterWorkflowDefRequest(
                    request_id=rid(),
                    definition_json=json.dumps(
                        {
                            "name": "x",
                            "tasks": [
                                {"name": "api_t", "taskReferenceName": "a"},
                                {"name": "api_t", "taskReferenceName": "a"},
                            ],
                        }
                    ),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "tasks[1].taskReferenceName: duplicate reference 'a'",
        ),
        (
            lambda s: s.defs.RegisterWorkflowDef(
                dpb.RegisterWorkflowDefRequest(
                    request_id=rid(),
                    definition_json=json.dumps(
                        {
                            "name": "x",
                            "tasks": [{"name": "api_t", "taskReferenceName": "a", "type": "BOGUS"}],
                        }
                    ),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown task type 'BOGUS'",
        ),
        (
            lambda s: s.defs.RegisterWorkflowDef(
                dpb.RegisterWorkflowDefRequest(request_id="", definition_json="{}")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "request_id: required",
        ),
        (
            lambda s: s.defs.RegisterTaskDefs(
                dpb.RegisterTaskDefsRequest(
                    request_id=rid(),
                    task_def_json=[json.dumps({"name": "t", "retryLogic": "SOMETIMES"})],
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "task_def_json[0].retryLogic",
        ),
        (
            lambda s: s.wfs.StartWorkflow(
                wpb.StartWorkflowRequest(request_id=rid(), name="no_such_flow")
            ),
            grpc.StatusCode.NOT_FOUND,
            "'no_such_flow' is not registered",
        ),
        (
            lambda s: s.wfs.StartWorkflow(
                wpb.StartWorkflowRequest(request_id=rid(), name="api_flow", input_json="[1, 2]")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input_json: must be a JSON object",
        ),
        (
            lambda s: s.wfs.StartWorkflow(
                wpb.StartWorkflowRequest(request_id=rid(), name="api_flow", input_json='{"a": ')
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input_json: malformed JSON",
        ),
        (
            lambda s: s.wfs.StartWorkflow(
                wpb.StartWorkflowRequest(
                    request_id=rid(),
                    name="api_flow",
                    input_json=json.dumps({"blob": "x" * (300 * 1024)}),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input_json: 307",
        ),
        (
            lambda s: s.wfs.StartWorkflow(wpb.StartWorkflowRequest(request_id=rid(), name="")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "name: required",
        ),
        (
            lambda s: s.wfs.GetWorkflow(wpb.GetWorkflowRequest(workflow_id="nope")),
            grpc.StatusCode.NOT_FOUND,
            "workflow nope not found",
        ),
        (
            lambda s: s.wfs.TerminateWorkflow(
                wpb.TerminateWorkflowRequest(request_id=rid(), workflow_id="nope")
            ),
            grpc.StatusCode.NOT_FOUND,
            "workflow nope not found",
        ),
        (
            lambda s: s.tasks.CompleteTask(
                tpb.CompleteTaskRequest(request_id=rid(), task_id="nope")
            ),
            grpc.StatusCode.NOT_FOUND,
            "task nope not found",
        ),
        (
            lambda s: s.tasks.PollTasks(
                tpb.PollTasksRequest(request_id=rid(), task_type="api_t", count=1000)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "count: must be between 1 and 100",
        ),
        (
            lambda s: s.tasks.PollTasks(
                tpb.PollTasksRequest(request_id=rid(), task_type="api_t", timeout_ms=999_999)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "timeout_ms",
        ),
        (
            lambda s: s.defs.GetWorkflowDef(dpb.GetWorkflowDefRequest(name="api_flow", version=7)),
            grpc.StatusCode.NOT_FOUND,
            "has no version 7",
        ),
        (
            lambda s: s.defs.RegisterWorkflowDef(
                dpb.RegisterWorkflowDefRequest(
                    request_id=rid(),
                    definition_json=json.dumps(
                        {
                            "name": "bad_js",
                            "tasks": [
                                {"name": "api_t", "taskReferenceName": "a"},
                                {
                                    "name": "calc",
                                    "taskReferenceName": "calc",
                                    "type": "INLINE",
                                    "inputParameters": {
                                        "evaluatorType": "javascript",
                                        "expression": "$.a +* 2",
                                    },
                                },
                            ],
                        }
                    ),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "tasks[1].inputParameters.expression (calc): the JavaScript does not compile: "
            "SyntaxError",
        ),
        (
            lambda s: s.defs.RegisterWorkflowDef(
                dpb.RegisterWorkflowDefRequest(
                    request_id=rid(),
                    definition_json=json.dumps(
                        {
                            "name": "bad_jq",
                            "tasks": [
                                {
                                    "name": "l",
                                    "taskReferenceName": "l",
                                    "type": "DO_WHILE",
                                    "loopCondition": "$.l.iteration < 3 && ok()",
                                    "loopOver": [
                                        {
                                            "name": "j",
                                            "taskReferenceName": "j",
                                            "type": "JSON_JQ_TRANSFORM",
                                            "inputParameters": {"queryExpression": ".a | [.b"},
                                        }
                                    ],
                                }
                            ],
                        }
                    ),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "tasks[0].loopOver[0].inputParameters.queryExpression (j): the jq does not compile",
        ),
    ],
)
def test_bad_input_is_rejected_without_reaching_raft(
    server: ReplicaServer, stubs: Any, call: Any, code: Any, fragment: str
) -> None:
    before = _raft_log_len(server)
    with pytest.raises(grpc.RpcError) as info:
        call(stubs)
    assert info.value.code() == code, info.value.details()
    assert fragment in info.value.details()
    assert _raft_log_len(server) == before, "bad input must not be proposed to Raft"


def test_reused_request_id_with_a_different_request(server: ReplicaServer, stubs: Any) -> None:
    r = rid()
    first = stubs.wfs.StartWorkflow(
        wpb.StartWorkflowRequest(request_id=r, name="api_flow", input_json='{"n": 1}')
    )
    again = stubs.wfs.StartWorkflow(
        wpb.StartWorkflowRequest(request_id=r, name="api_flow", input_json='{"n": 1}')
    )
    assert again.workflow_id == first.workflow_id
    before = _raft_log_len(server)
    with pytest.raises(grpc.RpcError) as info:
        stubs.wfs.StartWorkflow(
            wpb.StartWorkflowRequest(request_id=r, name="api_flow", input_json='{"n": 2}')
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "already used for a different request" in info.value.details()
    assert _raft_log_len(server) == before


def test_idempotency_key_fail_strategy(stubs: Any) -> None:
    key = rid()
    stubs.wfs.StartWorkflow(
        wpb.StartWorkflowRequest(request_id=rid(), name="api_flow", idempotency_key=key)
    )
    with pytest.raises(grpc.RpcError) as info:
        stubs.wfs.StartWorkflow(
            wpb.StartWorkflowRequest(request_id=rid(), name="api_flow", idempotency_key=key)
        )
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    again = stubs.wfs.StartWorkflow(
        wpb.StartWorkflowRequest(
            request_id=rid(),
            name="api_flow",
            idempotency_key=key,
            idempotency_strategy=wpb.IDEMPOTENCY_STRATEGY_RETURN_EXISTING,
        )
    )
    assert not again.created


def test_long_poll_is_held_until_a_task_is_ready(stubs: Any) -> None:
    # Drain what earlier tests scheduled.
    while stubs.tasks.PollTasks(
        tpb.PollTasksRequest(request_id=rid(), task_type="api_t", worker_id="d", count=100)
    ).tasks:
        pass
    result: dict[str, Any] = {}
    polling = threading.Event()

    def poll() -> None:
        polling.set()
        result["resp"] = stubs.tasks.PollTasks(
            tpb.PollTasksRequest(
                request_id=rid(), task_type="api_t", worker_id="lp", count=1, timeout_ms=20_000
            ),
            timeout=30,
        )

    t = threading.Thread(target=poll)
    t.start()
    polling.wait(5)
    started = stubs.wfs.StartWorkflow(wpb.StartWorkflowRequest(request_id=rid(), name="api_flow"))
    t.join(30)
    tasks = result["resp"].tasks
    assert [x.workflow_id for x in tasks] == [started.workflow_id]
    assert tasks[0].status == wpb.TASK_STATUS_IN_PROGRESS and tasks[0].worker_id == "lp"
    # A late duplicate result is refused once the first one is applied.
    stubs.tasks.CompleteTask(
        tpb.CompleteTaskRequest(
            request_id=rid(), task_id=tasks[0].task_id, output_json='{"ok": true}'
        )
    )
    with pytest.raises(grpc.RpcError) as info:
        stubs.tasks.CompleteTask(
            tpb.CompleteTaskRequest(
                request_id=rid(), task_id=tasks[0].task_id, output_json='{"ok": 2}'
            )
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_empty_long_poll_times_out_empty(stubs: Any) -> None:
    resp = stubs.tasks.PollTasks(
        tpb.PollTasksRequest(
            request_id=rid(), task_type="nobody_schedules_this", count=5, timeout_ms=200
        )
    )
    assert list(resp.tasks) == []


def test_retried_poll_returns_the_tasks_it_leased(stubs: Any) -> None:
    stubs.wfs.StartWorkflow(wpb.StartWorkflowRequest(request_id=rid(), name="api_flow"))
    r = rid()
    first = stubs.tasks.PollTasks(
        tpb.PollTasksRequest(
            request_id=r, task_type="api_t", worker_id="rp", count=1, timeout_ms=5000
        )
    )
    again = stubs.tasks.PollTasks(
        tpb.PollTasksRequest(
            request_id=r, task_type="api_t", worker_id="rp", count=1, timeout_ms=5000
        )
    )
    assert [t.task_id for t in first.tasks] == [t.task_id for t in again.tasks] and len(
        first.tasks
    ) == 1


def test_health_serving_and_sequence_trailer(stubs: Any) -> None:
    assert (
        stubs.health.Check(health_pb2.HealthCheckRequest()).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    _, call = stubs.defs.ListTaskDefs.with_call(dpb.ListTaskDefsRequest())
    md = dict(call.trailing_metadata())
    assert int(md["x-orchestrator-seq"]) > 0


def test_scripts_run_in_the_sandbox_and_their_results_are_committed(stubs: Any) -> None:
    defn = {
        "name": "api_scripts",
        "tasks": [
            {
                "name": "calc",
                "taskReferenceName": "calc",
                "type": "INLINE",
                "inputParameters": {
                    "evaluatorType": "graaljs",
                    "expression": "(function () { return $.n * 2; })()",
                    "n": "${workflow.input.n}",
                },
            },
            {
                "name": "jq",
                "taskReferenceName": "jq",
                "type": "JSON_JQ_TRANSFORM",
                "inputParameters": {"queryExpression": ".v + 1", "v": "${calc.output.result}"},
            },
        ],
        "outputParameters": {"r": "${jq.output.result}"},
    }
    stubs.defs.RegisterWorkflowDef(
        dpb.RegisterWorkflowDefRequest(request_id=rid(), definition_json=json.dumps(defn))
    )
    wf_id = stubs.wfs.StartWorkflow(
        wpb.StartWorkflowRequest(request_id=rid(), name="api_scripts", input_json='{"n": 20}')
    ).workflow_id

    def done() -> bool:
        wf = stubs.wfs.GetWorkflow(wpb.GetWorkflowRequest(workflow_id=wf_id)).workflow
        return wf.status == wpb.WORKFLOW_STATUS_COMPLETED

    wait_for(done, 30, "the script workflow to complete")
    wf = stubs.wfs.GetWorkflow(wpb.GetWorkflowRequest(workflow_id=wf_id)).workflow
    assert json.loads(wf.output_json) == {"r": 41}


def test_human_task_completed_by_workflow_and_reference(stubs: Any) -> None:
    stubs.defs.RegisterWorkflowDef(
        dpb.RegisterWorkflowDefRequest(
            request_id=rid(),
            definition_json=json.dumps(
                {
                    "name": "api_human",
                    "tasks": [{"name": "ok", "taskReferenceName": "ok", "type": "HUMAN"}],
                }
            ),
        )
    )
    wid = stubs.wfs.StartWorkflow(
        wpb.StartWorkflowRequest(request_id=rid(), name="api_human")
    ).workflow_id
    with pytest.raises(grpc.RpcError) as info:
        stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(request_id=rid(), workflow_id=wid))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "workflow_id and reference_task_name" in info.value.details()
    stubs.tasks.CompleteTask(
        tpb.CompleteTaskRequest(
            request_id=rid(), workflow_id=wid, reference_task_name="ok", output_json='{"yes": 1}'
        )
    )
    wf = stubs.wfs.GetWorkflow(wpb.GetWorkflowRequest(workflow_id=wid)).workflow
    assert wf.status == wpb.WORKFLOW_STATUS_COMPLETED and json.loads(wf.output_json) == {"yes": 1}
