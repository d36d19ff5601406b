"""WorkflowService: start (one, a batch, or one and wait for its end), terminate, get, list and
search workflows (the operator's actions, and the wait, are in operations.py)."""

from __future__ import annotations

from typing import Any

import grpc
from orchestrator_client.v1 import workflows_pb2 as wpb
from orchestrator_client.v1 import workflows_pb2_grpc

from ..core import commands as C
from ..core import limits, queries
from ..core.definitions import check_task_to_domain
from ..core.machine import Outcome
from ..core.state import State
from ..history.search import SearchQuery
from . import operations as ops
from . import rpc, views
from . import search as hs
from . import validation as v
from .errors import ApiError, invalid, quote
from .ids import new_workflow_id
from .operations import Operations

_STRATEGY = {
    wpb.IDEMPOTENCY_STRATEGY_UNSPECIFIED: "FAIL",
    wpb.IDEMPOTENCY_STRATEGY_FAIL: "FAIL",
    wpb.IDEMPOTENCY_STRATEGY_RETURN_EXISTING: "RETURN_EXISTING",
    wpb.IDEMPOTENCY_STRATEGY_FAIL_ON_RUNNING: "FAIL_ON_RUNNING",
}


def start_cmd(request: wpb.StartWorkflowRequest) -> C.Command:
    rid = v.request_id(request.request_id)
    strategy = _STRATEGY.get(request.idempotency_strategy)
    if strategy is None:
        raise invalid(f"idempotency_strategy: unknown value {request.idempotency_strategy}")
    if request.version < 0:
        raise invalid("version: must be >= 0 (0 means the latest)")
    v.at_most(request.correlation_id, "correlation_id", limits.MAX_NAME_LENGTH)
    v.at_most(request.idempotency_key, "idempotency_key", limits.MAX_NAME_LENGTH)
    if not 0 <= request.priority <= limits.MAX_PRIORITY:
        raise invalid(f"priority: must be between 0 and {limits.MAX_PRIORITY}")
    return C.StartWorkflow(
        request_id=rid,
        workflow_id=new_workflow_id(),
        name=v.name(request.name, "name"),
        version=request.version,
        input=v.json_object(request.input_json, "input_json"),
        correlation_id=request.correlation_id,
        idempotency_key=request.idempotency_key,
        idempotency_strategy=strategy,
        priority=request.priority,
        task_to_domain=check_task_to_domain(dict(request.task_to_domain), "task_to_domain"),
    )


class WorkflowService(Operations, workflows_pb2_grpc.WorkflowServiceServicer):
    SERVICE = rpc.WORKFLOWS

    def StartWorkflow(
        self, request: wpb.StartWorkflowRequest, context: grpc.ServicerContext
    ) -> Any:
        return self._mutate(
            context,
            request,
            "StartWorkflow",
            lambda: start_cmd(request),
            lambda o: wpb.StartWorkflowResponse(
                workflow_id=o.result["workflow_id"],
                created=o.result["created"],
                queued=o.result.get("queued", False),
            ),
        )

    def StartWorkflows(
        self, request: wpb.StartWorkflowsRequest, context: grpc.ServicerContext
    ) -> Any:
        def on_ok(result: wpb.StartWorkflowResult, outcome: Outcome) -> None:
            result.workflow_id = outcome.result["workflow_id"]
            result.created = outcome.result["created"]
            result.queued = outcome.result.get("queued", False)

        return self._batch_mutate(
            context,
            request,
            "StartWorkflows",
            "workflows",
            start_cmd,
            wpb.StartWorkflowResult,
            on_ok,
            lambda results, _: wpb.StartWorkflowsResponse(results=results),
        )

    def TerminateWorkflow(
        self, request: wpb.TerminateWorkflowRequest, context: grpc.ServicerContext
    ) -> Any:
        def build() -> C.Command:
            reason = v.at_most(request.reason, "reason", limits.MAX_REASON_LENGTH)
            return C.TerminateWorkflow(
                request_id=v.request_id(request.request_id),
                workflow_id=v.name(request.workflow_id, "workflow_id"),
                reason=reason,
            )

        return self._mutate(
            context,
            request,
            "TerminateWorkflow",
            build,
            lambda o: wpb.TerminateWorkflowResponse(),
            self._attach("TerminateWorkflow", False),
        )

    def ExecuteWorkflow(
        self, request: wpb.ExecuteWorkflowRequest, context: grpc.ServicerContext
    ) -> Any:
        def validated() -> C.Command:
            if not request.HasField("start"):
                raise invalid("start: required")
            wait_ms = request.wait_timeout_ms
            if not 0 <= wait_ms <= ops.MAX_EXECUTE_WAIT_MS:
                raise invalid(f"wait_timeout_ms: between 0 and {ops.MAX_EXECUTE_WAIT_MS}")
            try:
                return start_cmd(request.start)
            except ApiError as err:
                raise ApiError(err.status, f"start.{err.message}") from None

        def respond(outcome: Outcome) -> wpb.ExecuteWorkflowResponse:
            wait_ms = request.wait_timeout_ms or ops.DEFAULT_EXECUTE_WAIT_MS
            wf, ended = self._wait_end(
                context, outcome.result["workflow_id"], wait_ms, request.include_tasks
            )
            return wpb.ExecuteWorkflowResponse(
                workflow=wf, ended=ended, created=outcome.result["created"]
            )

        return self._mutate(context, request, "ExecuteWorkflow", validated, respond)

    def GetWorkflow(self, request: wpb.GetWorkflowRequest, context: grpc.ServicerContext) -> Any:
        def go() -> Any:
            wid = v.name(request.workflow_id, "workflow_id")

            def fn(st: State) -> wpb.Workflow | None:
                wf = queries.workflow(st, wid)
                if wf is None:
                    return None
                tasks = queries.workflow_tasks(st, wf) if request.include_tasks else None
                return views.workflow_pb(wf, tasks)

            found, seq = self._fresh_read(context, fn)
            if found is None:  # evicted from memory: the durable history has it, if anyone
                doc = hs.archived_doc(self.history, wid, seq)
                if doc is None:
                    raise ApiError(grpc.StatusCode.NOT_FOUND, f"workflow {quote(wid)} not found")
                found = hs.archived_pb(doc, request.include_tasks)
            self._set_seq(context, seq)
            return wpb.GetWorkflowResponse(workflow=found)

        return self._run(context, go)

    def ListWorkflows(
        self, request: wpb.ListWorkflowsRequest, context: grpc.ServicerContext
    ) -> Any:
        if request.page_size:
            size_of: tuple[int, str] = (request.page_size, "page_size")
        else:
            size_of = (request.limit, "limit")

        def status_of() -> str:
            if not request.status:
                return ""
            if request.status not in wpb.WorkflowStatus.values():
                raise invalid(f"status: unknown value {request.status}")
            return wpb.WorkflowStatus.Name(request.status).removeprefix("WORKFLOW_STATUS_")

        if self.history is not None:
            return self._list_by_search(context, request, size_of, status_of)

        def fn(st: State) -> Any:
            size = views.page_size(*size_of)
            after = views.page_after(request.page_token, (int, str))
            found = queries.list_workflows(
                st,
                request.workflow_name,
                status_of(),
                size + 1,
                (after[0], after[1]) if after else None,
            )
            out = wpb.ListWorkflowsResponse()
            out.next_page_token = views.fill_page(
                out.workflows,
                found,
                size,
                lambda wf: views.workflow_pb(wf, None),
                lambda wf: [wf.create_time_ms, wf.workflow_id],
            )
            return out

        return self._read(context, fn)

    def _list_by_search(
        self,
        context: grpc.ServicerContext,
        request: wpb.ListWorkflowsRequest,
        size_of: tuple[int, str],
        status_of: Any,
    ) -> Any:
        """ListWorkflows over memory and the durable history: a search by name and status,
        newest first (its page tokens keep their shape, [create time, workflow id])."""

        def go() -> Any:
            size = views.page_size(*size_of)
            status = status_of()
            after = views.page_after(request.page_token, (int, str))
            q = SearchQuery(
                name=request.workflow_name,
                statuses=(status,) if status else (),
                page_size=size,
                after=(after[0], after[1]) if after else None,
                with_total=False,
            )
            _, seq = self._fresh_read(context, queries.applied_seq)
            page = hs.search(self.history, self.replica, q, seq)
            out = wpb.ListWorkflowsResponse()
            out.next_page_token = hs.fill(out.workflows, page, "create_time")
            self._set_seq(context, seq)
            return out

        return self._run(context, go)

    def SearchWorkflows(
        self, request: wpb.SearchWorkflowsRequest, context: grpc.ServicerContext
    ) -> Any:
        def go() -> Any:
            q = hs.query(request)
            _, seq = self._fresh_read(context, queries.applied_seq)
            page = hs.search(self.history, self.replica, q, seq)
            self._set_seq(context, seq)
            return hs.response(page, q)

        return self._run(context, go)
