"""The web UI's way to the API: this replica's own public gRPC port, called with the user's
bearer token, so roles, validation, forwarding to the leader and leader hints are the API's.

One channel per UI (gRPC multiplexes the users' calls); the token travels as call metadata,
never in the channel, so one user's calls never carry another's credentials.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from orchestrator_client._details import error_details
from orchestrator_client.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    definitions_pb2,
    definitions_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)

from ..api.errors import MIN_SEQ_KEY, SEQ_KEY

# A page answers within this, or shows the API's DEADLINE_EXCEEDED.
CALL_TIMEOUT_S = 10.0
# Definitions and handlers are listed page by page up to this many.
MAX_LISTED = 2000


@dataclass(frozen=True)
class ApiError(Exception):
    """A call the API refused (or could not answer): its status, as the API gave it."""

    code: str
    message: str
    reason: str = ""

    def __str__(self) -> str:
        why = f" ({self.reason})" if self.reason and self.reason != self.code else ""
        return f"{self.code}{why}: {self.message}"


def _reason(trailers: Any) -> str:
    """ErrorInfo.reason from the status details, read as the Python client reads them; ""
    when the server sent none."""
    return error_details(trailers).reason or ""


class Gateway:
    """Typed calls to one replica's API as a given user (token) at a given freshness (min_seq)."""

    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None) -> None:
        self.address = address
        self.channel = (
            grpc.insecure_channel(address)
            if credentials is None
            else grpc.secure_channel(address, credentials)
        )
        self.cluster = cluster_pb2_grpc.ClusterServiceStub(self.channel)
        self.workflows = workflows_pb2_grpc.WorkflowServiceStub(self.channel)
        self.definitions = definitions_pb2_grpc.DefinitionServiceStub(self.channel)
        self.events = events_pb2_grpc.EventServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def call(self, method: Any, request: Any, token: str, min_seq: int = 0) -> tuple[Any, int]:
        """`method(request)` as the token's holder; (response, the sequence it answered at)."""
        md: list[tuple[str, str]] = []
        if token:
            md.append(("authorization", f"Bearer {token}"))
        if min_seq > 0:
            md.append((MIN_SEQ_KEY, str(min_seq)))
        try:
            response, call = method.with_call(request, metadata=md, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
            details = exc.details() if hasattr(exc, "details") else str(exc)
            trailers = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else ()
            raise ApiError(code.name, str(details or ""), _reason(trailers)) from None
        return response, _seq(call.trailing_metadata())

    # Reads.

    def cluster_status(self, token: str) -> Any:
        return self.call(
            self.cluster.GetClusterStatus, cluster_pb2.GetClusterStatusRequest(), token
        )[0]

    def search(self, token: str, min_seq: int, **query: Any) -> Any:
        req = workflows_pb2.SearchWorkflowsRequest(**query)
        return self.call(self.workflows.SearchWorkflows, req, token, min_seq)[0]

    def workflow(self, token: str, workflow_id: str, min_seq: int) -> Any:
        req = workflows_pb2.GetWorkflowRequest(workflow_id=workflow_id, include_tasks=True)
        return self.call(self.workflows.GetWorkflow, req, token, min_seq)[0].workflow

    def workflow_def(self, token: str, name: str, version: int) -> str:
        req = definitions_pb2.GetWorkflowDefRequest(name=name, version=version)
        return str(self.call(self.definitions.GetWorkflowDef, req, token)[0].definition_json)

    def workflow_defs(self, token: str) -> list[Any]:
        return self._pages(
            self.definitions.ListWorkflowDefs,
            definitions_pb2.ListWorkflowDefsRequest,
            "definitions",
            token,
        )

    def task_defs(self, token: str) -> list[str]:
        return self._pages(
            self.definitions.ListTaskDefs,
            definitions_pb2.ListTaskDefsRequest,
            "task_def_json",
            token,
        )

    def event_handlers(self, token: str) -> list[str]:
        req = events_pb2.ListEventHandlersRequest()
        return list(self.call(self.events.ListEventHandlers, req, token)[0].handler_json)

    def _pages(self, method: Any, request: Any, field: str, token: str) -> list[Any]:
        out: list[Any] = []
        page = ""
        while len(out) < MAX_LISTED:
            resp = self.call(method, request(page_size=200, page_token=page), token)[0]
            out.extend(getattr(resp, field))
            page = resp.next_page_token
            if not page:
                break
        return out[:MAX_LISTED]

    # Operator actions: each takes the form's request id, so a form sent twice (a reload, a
    # double click) is one action; returns the sequence the write was applied at.

    def act(
        self, token: str, action: str, workflow_id: str, request_id: str, form: dict[str, str]
    ) -> int:
        spec = ACTIONS.get(action)
        if spec is None:
            raise ApiError("INVALID_ARGUMENT", f"no action {action!r}")
        rpc, request_type, fields = spec
        kwargs = {f: form.get(f, "") for f in fields}
        if "use_latest_definition" in kwargs:
            kwargs["use_latest_definition"] = form.get("use_latest_definition") == "on"  # type: ignore[assignment]
        req = request_type(
            request_id=request_id or str(uuid.uuid4()), workflow_id=workflow_id, **kwargs
        )
        return self.call(getattr(self.workflows, rpc), req, token)[1]


# action -> (RPC, request message, form fields it takes besides the workflow id)
ACTIONS: dict[str, tuple[str, Any, tuple[str, ...]]] = {
    "pause": ("PauseWorkflow", workflows_pb2.PauseWorkflowRequest, ()),
    "resume": ("ResumeWorkflow", workflows_pb2.ResumeWorkflowRequest, ()),
    "terminate": ("TerminateWorkflow", workflows_pb2.TerminateWorkflowRequest, ("reason",)),
    "retry": ("RetryWorkflow", workflows_pb2.RetryWorkflowRequest, ()),
    "restart": (
        "RestartWorkflow",
        workflows_pb2.RestartWorkflowRequest,
        ("use_latest_definition",),
    ),
    "rerun": ("RerunWorkflow", workflows_pb2.RerunWorkflowRequest, ("task_id",)),
    "compensate": ("CompensateWorkflow", workflows_pb2.CompensateWorkflowRequest, ("reason",)),
    "skip": ("SkipTask", workflows_pb2.SkipTaskRequest, ("task_reference_name",)),
    "remove": ("RemoveWorkflow", workflows_pb2.RemoveWorkflowRequest, ()),
}


def _seq(trailers: Any) -> int:
    for key, value in trailers or ():
        if key == SEQ_KEY:
            try:
                return int(value)
            except (TypeError, ValueError):
                return 0
    return 0
