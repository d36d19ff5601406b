"""DefinitionService: register and read workflow and task definitions."""

from __future__ import annotations

import json
from typing import Any

import grpc
from orchestrator_client.v1 import definitions_pb2 as dpb
from orchestrator_client.v1 import definitions_pb2_grpc

from ..core import commands as C
from ..core import limits, queries
from ..core.definitions import normalize_task_def, normalize_workflow_def
from ..core.state import State
from ..runtime.sandbox import default_sandbox
from ..runtime.scripts import SandboxDown, check_definition_scripts
from . import rpc, views
from . import validation as v
from .errors import ApiError, invalid, quote
from .service import ServiceBase


class DefinitionService(ServiceBase, definitions_pb2_grpc.DefinitionServiceServicer):
    SERVICE = rpc.DEFINITIONS

    def RegisterWorkflowDef(
        self, request: dpb.RegisterWorkflowDefRequest, context: grpc.ServicerContext
    ) -> Any:
        def build() -> C.Command:
            rid = v.request_id(request.request_id)
            raw = v.json_object(
                request.definition_json, "definition_json", max_bytes=limits.MAX_DEFINITION_BYTES
            )
            if not raw:
                raise invalid("definition_json: required")
            defn = normalize_workflow_def(raw)
            # Scripts are compiled here, in the sandbox, before proposing: never in apply.
            try:
                check_definition_scripts(defn, default_sandbox())
            except SandboxDown as exc:
                raise ApiError(grpc.StatusCode.UNAVAILABLE, str(exc)) from None
            return C.RegisterWorkflowDef(
                request_id=rid, definition=defn, overwrite=request.overwrite
            )

        return self._mutate(
            context,
            request,
            "RegisterWorkflowDef",
            build,
            lambda o: dpb.RegisterWorkflowDefResponse(
                name=o.result["name"], version=o.result["version"]
            ),
        )

    def RegisterTaskDefs(
        self, request: dpb.RegisterTaskDefsRequest, context: grpc.ServicerContext
    ) -> Any:
        def build() -> C.Command:
            rid = v.request_id(request.request_id)
            if not request.task_def_json:
                raise invalid("task_def_json: at least one task definition is required")
            defs = [
                normalize_task_def(
                    v.json_object(text, f"task_def_json[{i}]"), f"task_def_json[{i}]"
                )
                for i, text in enumerate(request.task_def_json)
            ]
            return C.RegisterTaskDefs(request_id=rid, task_defs=defs)

        return self._mutate(
            context,
            request,
            "RegisterTaskDefs",
            build,
            lambda o: dpb.RegisterTaskDefsResponse(names=o.result["names"]),
        )

    def GetWorkflowDef(
        self, request: dpb.GetWorkflowDefRequest, context: grpc.ServicerContext
    ) -> Any:
        def fn(st: State) -> Any:
            name = v.name(request.name, "name")
            if not queries.workflow_def_exists(st, name):
                raise ApiError(
                    grpc.StatusCode.NOT_FOUND,
                    f"workflow definition {quote(request.name)!r} is not registered",
                )
            defn = queries.workflow_def(st, name, request.version)
            if defn is None:
                raise ApiError(
                    grpc.StatusCode.NOT_FOUND,
                    f"workflow definition {quote(request.name)!r} has no version {request.version}",
                )
            return dpb.GetWorkflowDefResponse(definition_json=json.dumps(defn))

        return self._read(context, fn)

    def ListWorkflowDefs(
        self, request: dpb.ListWorkflowDefsRequest, context: grpc.ServicerContext
    ) -> Any:
        def fn(st: State) -> Any:
            size = views.page_size(request.page_size)
            after = views.page_after(request.page_token, (str, int))
            out = dpb.ListWorkflowDefsResponse()
            out.next_page_token = views.fill_page(
                out.definitions,
                (d for d in queries.workflow_defs(st) if after is None or [d[0], d[1]] > after),
                size,
                lambda d: dpb.WorkflowDefSummary(
                    name=d[0], version=d[1], definition_json=json.dumps(d[2])
                ),
                lambda d: [d[0], d[1]],
            )
            return out

        return self._read(context, fn)

    def GetTaskDef(self, request: dpb.GetTaskDefRequest, context: grpc.ServicerContext) -> Any:
        def fn(st: State) -> Any:
            td = queries.task_def(st, v.name(request.name, "name"))
            if td is None:
                raise ApiError(
                    grpc.StatusCode.NOT_FOUND,
                    f"task definition {quote(request.name)!r} is not registered",
                )
            return dpb.GetTaskDefResponse(task_def_json=json.dumps(td))

        return self._read(context, fn)

    def ListTaskDefs(self, request: dpb.ListTaskDefsRequest, context: grpc.ServicerContext) -> Any:
        def fn(st: State) -> Any:
            size = views.page_size(request.page_size)
            after = views.page_after(request.page_token, (str,))
            out = dpb.ListTaskDefsResponse()
            out.next_page_token = views.fill_page(
                out.task_def_json,
                (td for td in queries.task_defs(st) if after is None or [td["name"]] > after),
                size,
                json.dumps,
                lambda td: [td["name"]],
            )
            return out

        return self._read(context, fn)
