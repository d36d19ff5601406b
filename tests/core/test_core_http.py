"""HTTP tasks in the core: phase one marks the task pending with the checked request, HttpResult
(phase two) commits the response. The core never makes a request; here the results are given by
hand, as the leader's runtime (runtime/http.py) would propose them."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.core import queries
from orchestrator.core.commands import HttpResult, ScriptResult
from orchestrator.core.definitions import normalize_workflow_def
from orchestrator.core.errors import Code, Rejected
from orchestrator.core.machine import pending_scripts
from tests.core_helpers import Harness, check_invariants, state_without_seq

JSON = Any
OK = {"statusCode": 200, "headers": {}, "body": {"id": 7}, "reasonPhrase": "OK"}


def http_task(name: str = "call", **req: JSON) -> dict[str, JSON]:
    request = {"uri": "${workflow.input.url}", "method": "POST", "body": {"n": 1}, **req}
    return {
        "name": name,
        "taskReferenceName": "call",
        "type": "HTTP",
        "inputParameters": {"http_request": request},
    }


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.leader_epoch(1)
    h.register_task_defs({"name": "after", "retryCount": 0, "responseTimeoutSeconds": 10})
    return h


def start(h: Harness, wt: JSON, url: JSON = "http://example.com/x") -> tuple[str, str]:
    after = {"name": "after", "taskReferenceName": "after"}
    after["inputParameters"] = {"id": "${call.output.response.body.id}"}
    h.register_workflow({"name": "web", "version": 1, "tasks": [wt, after]})
    wf_id = h.start("web", {"url": url})
    return wf_id, h.tasks_of(wf_id)[0].task_id


def result(h: Harness, tid: str, response: JSON = None, **kw: Any) -> Any:
    fence = kw.pop("fence", None)
    if fence is None:
        fence = h.task(tid).script.fence
    epoch = kw.pop("epoch", h.state.epoch)
    return h.apply_one(HttpResult(task_id=tid, fence=fence, epoch=epoch, response=response, **kw))


def test_http_waits_with_its_request_then_a_2xx_completes_it(h: Harness) -> None:
    wf_id, tid = start(h, http_task())
    task = h.task(tid)
    assert task.status == "IN_PROGRESS"
    assert task.script.lang == "http"
    assert task.script.input == {
        "uri": "http://example.com/x",
        "method": "POST",
        "body": {"n": 1},
        "headers": {},
        "connectionTimeOut": 10_000,
        "readTimeOut": 10_000,
    }
    fence = task.script.fence
    assert queries.pending_http(h.state) == [(tid, fence)]
    assert pending_scripts(h.state) == [], "the script executor leaves HTTP requests alone"
    assert queries.script_job(h.state, tid) is None
    job = queries.http_job(h.state, tid)
    assert job is not None and job.fence == fence and job.request["method"] == "POST"

    assert result(h, tid, OK).code is Code.OK
    assert h.task(tid).status == "COMPLETED"
    assert h.task(tid).output == {"response": OK}
    assert h.tasks_of(wf_id)[1].input == {"id": 7}
    assert queries.pending_http(h.state) == []
    check_invariants(h.state)
    again = result(h, tid, OK, fence=fence)
    assert again.code is Code.FAILED_PRECONDITION, "a result is accepted once"


def test_stale_fence_epoch_or_a_script_result_is_refused_and_changes_nothing(h: Harness) -> None:
    _, tid = start(h, http_task())
    fence = h.task(tid).script.fence
    before = state_without_seq(h.state)
    for kw in ({"fence": fence + 1}, {"fence": fence - 1}, {"epoch": 0}):
        out = result(h, tid, OK, **kw)
        assert out.code is Code.FAILED_PRECONDITION, (kw, out)
        assert state_without_seq(h.state) == before
    out = h.apply_one(ScriptResult(task_id=tid, fence=fence, epoch=1, ok=True, value=1))
    assert out.code is Code.FAILED_PRECONDITION, "a script result cannot end an HTTP task"
    assert state_without_seq(h.state) == before


def test_non_2xx_fails_and_retries_by_the_task_definition_of_its_name(h: Harness) -> None:
    h.register_task_defs({"name": "call", "retryCount": 1, "retryDelaySeconds": 0})
    wf_id, tid = start(h, http_task())
    bad = {"statusCode": 503, "headers": {}, "body": "busy", "reasonPhrase": "Service Unavailable"}
    assert result(h, tid, bad).code is Code.OK
    first = h.task(tid)
    assert first.status == "FAILED"
    assert first.output == {"response": bad}
    assert "HTTP 503 Service Unavailable" in first.reason_for_incompletion
    retry = h.tasks_of(wf_id)[1]
    assert retry.reference_task_name == "call" and retry.retry_count == 1
    assert retry.status == "IN_PROGRESS" and retry.script.lang == "http"
    assert h.effects.scripts_ready == [retry.task_id]
    assert result(h, retry.task_id, error="timed out").code is Code.OK
    wf = h.wf(wf_id)
    assert wf.status == "FAILED" and "timed out" in wf.reason_for_incompletion
    check_invariants(h.state)


def test_without_a_task_definition_an_http_task_is_not_retried(h: Harness) -> None:
    wf_id, tid = start(h, http_task("unregistered"))
    result(h, tid, {"statusCode": 500, "reasonPhrase": "Internal Server Error"})
    assert len(h.tasks_of(wf_id)) == 1
    assert h.wf(wf_id).status == "FAILED"


def test_a_refused_request_fails_terminally_despite_retries(h: Harness) -> None:
    h.register_task_defs({"name": "call", "retryCount": 3, "retryDelaySeconds": 0})
    wf_id, tid = start(h, http_task(), url="http://127.0.0.1:1/")
    err = "127.0.0.1 is a loopback address, not in http_allow"
    assert result(h, tid, error=err, terminal=True).code is Code.OK
    task = h.task(tid)
    assert task.status == "FAILED_WITH_TERMINAL_ERROR"
    assert "http_allow" in task.reason_for_incompletion
    assert len(h.tasks_of(wf_id)) == 1
    assert h.wf(wf_id).status == "FAILED"


def test_a_request_that_resolves_wrong_fails_the_task_at_its_start(h: Harness) -> None:
    wf_id, tid = start(h, http_task(), url="ftp://example.com/")
    task = h.task(tid)
    assert task.status == "FAILED_WITH_TERMINAL_ERROR"
    assert "http_request.uri" in task.reason_for_incompletion
    assert h.wf(wf_id).status == "FAILED"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ("not an object", "http_request (c): required"),
        ({"method": "GET"}, "http_request.uri"),
        ({"uri": "file:///etc/passwd"}, "http_request.uri"),
        ({"uri": "http://x", "method": "TRACE"}, "http_request.method"),
        ({"uri": "http://x", "headers": {"a": 1}}, "http_request.headers"),
        ({"uri": "http://x", "readTimeOut": 600_000}, "http_request.readTimeOut"),
        ({"uri": "http://x", "redirect": True}, "unknown field(s) redirect"),
    ],
)
def test_registration_checks_the_literal_request_naming_the_field(
    h: Harness, request_: JSON, field: str
) -> None:
    wt = {"name": "c", "taskReferenceName": "c", "type": "HTTP"}
    wt["inputParameters"] = {"http_request": request_}
    with pytest.raises(Rejected) as err:
        normalize_workflow_def({"name": "bad", "version": 1, "tasks": [wt]})
    assert field in err.value.message and "(c)" in err.value.message
