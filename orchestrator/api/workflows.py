"""WorkflowService: start (one or a batch), terminate, get and list workflows."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
from orchestrator_client.v1 import workflows_pb2 as wpb
from orchestrator_client.v1 import workflows_pb2_grpc

from ..core import commands as C
from ..core import limits, queries
from ..core.definitions import check_task_to_domain
from ..core.machine import Outcome
from ..core.state import State
from . import rpc, views
from . import validation as v
from .errors import ApiError, invalid, quote
from .service import ServiceBase

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
    if not 0 <= request.priority <= 99:
        raise invalid("priority: must be between 0 and 99")
    return C.StartWorkflow(
        request_id=rid,
        workflow_id=str(uuid.uuid4()),
        name=v.name(request.name, "name"),
        version=request.version,
        input=v.json_object(request.input_json, "input_json"),
        correlation_id=request.correlation_id,
        idempotency_key=request.idempotency_key,
        idempotency_strategy=strategy,
        priority=request.priority,
        task_to_domain=check_task_to_domain(dict(request.task_to_domain), "task_to_domain"),
    )


class WorkflowService(ServiceBase, workflows_pb2_grpc.WorkflowServiceServicer):
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
                workflow_id=o.result["workflow_id"], created=o.result["created"]
            ),
        )

    def StartWorkflows(
        self, request: wpb.StartWorkflowsRequest, context: grpc.ServicerContext
    ) -> Any:
        def on_ok(result: wpb.StartWorkflowResult, outcome: Outcome) -> None:
            result.workflow_id = outcome.result["workflow_id"]
            result.created = outcome.result["created"]

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
            context, request, "TerminateWorkflow", build, lambda o: wpb.TerminateWorkflowResponse()
        )

    def GetWorkflow(self, request: wpb.GetWorkflowRequest, context: grpc.ServicerContext) -> Any:
        def fn(st: State) -> Any:
            wf = queries.workflow(st, v.name(request.workflow_id, "workflow_id"))
            if wf is None:
                raise ApiError(
                    grpc.StatusCode.NOT_FOUND, f"workflow {quote(request.workflow_id)} not found"
                )
            return wpb.GetWorkflowResponse(
                workflow=views.workflow_pb(
                    wf, queries.workflow_tasks(st, wf) if request.include_tasks else None
                )
            )

        return self._read(context, fn)

    def ListWorkflows(
        self, request: wpb.ListWorkflowsRequest, context: grpc.ServicerContext
    ) -> Any:
        def fn(st: State) -> Any:
            if request.page_size:
                size = views.page_size(request.page_size)
            else:
                size = views.page_size(request.limit, "limit")
            status = ""
            if request.status:
                if request.status not in wpb.WorkflowStatus.values():
                    raise invalid(f"status: unknown value {request.status}")
                status = wpb.WorkflowStatus.Name(request.status).removeprefix("WORKFLOW_STATUS_")
            after = views.page_after(request.page_token, (int, str))
            found = queries.list_workflows(
                st,
                request.workflow_name,
                status,
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
