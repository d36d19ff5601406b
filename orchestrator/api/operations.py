"""The operator's actions on workflows (Conductor's pause, resume, restart, retry, rerun, skip
and remove, and a saga's compensate), one at a time or in bulk, and ExecuteWorkflow's wait for
the end.

Each action is one replicated command, idempotent by its request id. Restart, retry, rerun and
compensate also act on a workflow that has left memory for the durable history: the leader attaches the
archived document to the command (`restore`), and apply puts the workflow back before acting.
What decides is still the state machine; the leader only reads what its own history holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from typing import Any

import grpc
from orchestrator_client.v1 import workflows_pb2 as wpb

from ..core import commands as C
from ..core import limits, queries
from ..core.records import WF_TERMINAL
from ..core.state import State
from . import search as hs
from . import validation as v
from . import views
from .errors import ApiError, invalid, item_status, outcome_status, quote
from .service import ServiceBase

# At most this many workflows per BulkAction call (a list, or one page of a search).
MAX_BULK_ITEMS = 1000
# ExecuteWorkflow's wait: the default and the most a call may ask for.
DEFAULT_EXECUTE_WAIT_MS = 10_000
MAX_EXECUTE_WAIT_MS = 60_000

Build = Callable[[str, str], C.Command]  # (request id, workflow id) -> the command


def item_request_id(request_id: str, workflow_id: str) -> str:
    """A bulk item's request id: the same for the same call and workflow (a retried call is
    deduplicated item by item), within the request id length limit."""
    digest = hashlib.sha256(f"{request_id}\n{workflow_id}".encode()).hexdigest()
    return f"bulk-{digest[:48]}"


def _json_or_none(text: str, field: str) -> dict[str, Any] | None:
    return v.json_object(text, field) if text else None


class Operations(ServiceBase):
    """WorkflowService's operator actions and ExecuteWorkflow's wait (a base of WorkflowService)."""

    def _act(
        self,
        context: grpc.ServicerContext,
        request: Any,
        method: str,
        build: Build,
        restorable: bool = False,
    ) -> Any:
        def validated() -> C.Command:
            return build(
                v.request_id(request.request_id), v.name(request.workflow_id, "workflow_id")
            )

        return self._mutate(
            context,
            request,
            method,
            validated,
            lambda o: _RESPONSES[method](),
            self._attach(method, restorable),
        )

    def _attach(self, method: str, restorable: bool) -> Callable[[C.Command], C.Command]:
        if restorable:
            return self._with_restore
        return lambda cmd: self._known(cmd, method)

    def _with_restore(self, cmd: Any) -> C.Command:
        """`cmd` with the archived document of its workflow when that is only in history."""
        wid = cmd.workflow_id
        # In memory: a retry of an applied restore finds it there too, no document needed.
        in_memory, doc = self._where(wid)
        if in_memory or doc is None:
            return cmd  # nowhere: the state machine answers NOT_FOUND
        return dataclasses.replace(cmd, restore=hs.restorable(doc, wid))

    def _where(self, wid: str) -> tuple[bool, dict[str, Any] | None]:
        """(whether the workflow is in memory, else its archived document or None)."""
        in_memory, seq = self.replica.read(
            lambda st: (queries.workflow(st, wid) is not None, queries.applied_seq(st))
        )
        return (True, None) if in_memory else (False, hs.archived_doc(self.history, wid, seq))

    def _known(self, cmd: Any, method: str) -> C.Command:
        """`cmd`, once the leader knows where its workflow is. Apply removes from history
        whatever it is told to, so RemoveWorkflow of an id found nowhere is refused here; the
        other actions on a workflow that has ended and left memory are refused naming its
        status (in memory the state machine does the same)."""
        early = self._precheck(cmd)
        if early is not None and early.ok:
            return cmd  # applied already (a retry): its first outcome answers
        wid = cmd.workflow_id
        in_memory, doc = self._where(wid)
        if in_memory:
            return cmd
        if doc is None:
            if method == "RemoveWorkflow":
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"workflow {quote(wid)} not found")
            return cmd  # the state machine answers NOT_FOUND
        if method == "RemoveWorkflow":
            return cmd
        status = doc.get("workflow", {}).get("status", "ended")
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"workflow {quote(wid)} is {status} (archived in history): "
            f"{method.removesuffix('Workflow')} does not apply",
        )

    def PauseWorkflow(
        self, request: wpb.PauseWorkflowRequest, context: grpc.ServicerContext
    ) -> Any:
        return self._act(context, request, "PauseWorkflow", _pause)

    def ResumeWorkflow(
        self, request: wpb.ResumeWorkflowRequest, context: grpc.ServicerContext
    ) -> Any:
        return self._act(context, request, "ResumeWorkflow", _resume)

    def RestartWorkflow(
        self, request: wpb.RestartWorkflowRequest, context: grpc.ServicerContext
    ) -> Any:
        return self._act(
            context, request, "RestartWorkflow", _restart(request.use_latest_definition), True
        )

    def RetryWorkflow(
        self, request: wpb.RetryWorkflowRequest, context: grpc.ServicerContext
    ) -> Any:
        return self._act(
            context, request, "RetryWorkflow", _retry(request.resume_subworkflow_tasks), True
        )

    def RerunWorkflow(
        self, request: wpb.RerunWorkflowRequest, context: grpc.ServicerContext
    ) -> Any:
        def build(rid: str, wid: str) -> C.Command:
            return C.RerunWorkflow(
                request_id=rid,
                workflow_id=wid,
                task_id=v.at_most(request.task_id, "task_id", limits.MAX_NAME_LENGTH),
                task_input=_json_or_none(request.task_input_json, "task_input_json"),
                workflow_input=_json_or_none(request.workflow_input_json, "workflow_input_json"),
            )

        return self._act(context, request, "RerunWorkflow", build, True)

    def SkipTask(self, request: wpb.SkipTaskRequest, context: grpc.ServicerContext) -> Any:
        def build(rid: str, wid: str) -> C.Command:
            return C.SkipTask(
                request_id=rid,
                workflow_id=wid,
                task_reference_name=v.name(request.task_reference_name, "task_reference_name"),
                output=v.json_object(request.output_json, "output_json"),
            )

        return self._act(context, request, "SkipTask", build)

    def RemoveWorkflow(
        self, request: wpb.RemoveWorkflowRequest, context: grpc.ServicerContext
    ) -> Any:
        return self._act(context, request, "RemoveWorkflow", _remove)

    def CompensateWorkflow(
        self, request: wpb.CompensateWorkflowRequest, context: grpc.ServicerContext
    ) -> Any:
        return self._act(context, request, "CompensateWorkflow", _compensate(request.reason), True)

    # ---- bulk

    def BulkAction(self, request: wpb.BulkActionRequest, context: grpc.ServicerContext) -> Any:
        def go() -> Any:
            rid = v.request_id(request.request_id)
            build, restorable = _bulk_action(request)
            ids = [v.name(w, f"workflow_ids[{i}]") for i, w in enumerate(request.workflow_ids)]
            if len(ids) > MAX_BULK_ITEMS:
                raise invalid(f"workflow_ids: at most {MAX_BULK_ITEMS}")
            q = None if ids else hs.query(request.search, max_page=MAX_BULK_ITEMS)
            if not self.replica.leader_ready():
                return self._forward(context, "BulkAction", request)
            out = wpb.BulkActionResponse()
            if q is not None:
                min_seq = self.replica.read(queries.applied_seq)
                page = hs.search(self.history, self.replica, q, min_seq)
                ids = [wf.workflow_id for wf in page.workflows]
                if page.next_after is not None:
                    out.next_page_token = views.page_token([q.sort, *page.next_after])
            attach = self._attach(_BULK_METHOD[request.action], restorable)
            cmds = [build(item_request_id(rid, wid), wid) for wid in ids]
            statuses = self._run_items(context, cmds, attach)
            for wid, status in zip(ids, statuses, strict=True):
                out.results.add(workflow_id=wid, code=status.code, message=status.message)
            return out

        return self._run(context, go)

    def _run_items(
        self,
        context: grpc.ServicerContext,
        cmds: list[C.Command],
        attach: Callable[[C.Command], C.Command],
    ) -> list[Any]:
        """Each command's status (ItemStatus), proposed in batches of MAX_BATCH_ITEMS."""
        statuses: list[Any] = [None] * len(cmds)
        seqs = [0]
        for start in range(0, len(cmds), limits.MAX_BATCH_ITEMS):
            pending: list[tuple[int, C.Command]] = []
            for i in range(start, min(start + limits.MAX_BATCH_ITEMS, len(cmds))):
                try:
                    cmd = attach(cmds[i])
                except ApiError as err:
                    statuses[i] = item_status(err.status, err.message)
                    continue
                early = self._precheck(cmd)
                if early is None:
                    pending.append((i, cmd))
                else:
                    statuses[i] = outcome_status(early)
                    seqs.append(early.seq)
            futures = self._submit_many([cmd for _, cmd in pending]) if pending else []
            for (i, cmd), fut in zip(pending, futures, strict=True):
                outcome = self._await(context, cmd, fut)
                statuses[i] = outcome_status(outcome)
                seqs.append(outcome.seq)
        self._set_seq(context, max(seqs))
        return statuses

    # ---- synchronous execution (ExecuteWorkflow, in workflows.py, starts; this waits)

    def _wait_end(
        self, context: grpc.ServicerContext, wid: str, wait_ms: int, include_tasks: bool
    ) -> tuple[wpb.Workflow, bool]:
        """The workflow once it ends, or as it is when the wait (or the call) runs out."""
        left = context.time_remaining()
        wait_s = wait_ms / 1000 if left is None else min(wait_ms / 1000, max(0.0, left - 0.1))
        deadline = time.monotonic() + wait_s

        def look(st: State) -> tuple[wpb.Workflow | None, bool, int]:
            wf = queries.workflow(st, wid)
            seq = queries.applied_seq(st)
            if wf is None:
                return None, True, seq
            ended = wf.status in WF_TERMINAL
            if not ended and time.monotonic() < deadline and context.is_active():
                return None, False, seq  # built only once it is answered
            tasks = queries.workflow_tasks(st, wf) if include_tasks else None
            return views.workflow_pb(wf, tasks), ended, seq

        while True:
            found, ended, seq = self.replica.read(look)
            self._set_seq(context, seq)  # the caller's next read sees at least this
            if found is not None:
                return found, ended
            if ended:  # already archived: history has it
                doc = hs.archived_doc(self.history, wid, seq)
                if doc is None:
                    raise ApiError(grpc.StatusCode.NOT_FOUND, f"workflow {quote(wid)} not found")
                return hs.archived_pb(doc, include_tasks), True
            self.replica.wait_applied(seq + 1, max(0.0, deadline - time.monotonic()))


_RESPONSES: dict[str, Callable[[], Any]] = {
    "PauseWorkflow": wpb.PauseWorkflowResponse,
    "ResumeWorkflow": wpb.ResumeWorkflowResponse,
    "RestartWorkflow": wpb.RestartWorkflowResponse,
    "RetryWorkflow": wpb.RetryWorkflowResponse,
    "RerunWorkflow": wpb.RerunWorkflowResponse,
    "SkipTask": wpb.SkipTaskResponse,
    "RemoveWorkflow": wpb.RemoveWorkflowResponse,
    "CompensateWorkflow": wpb.CompensateWorkflowResponse,
}


def _pause(rid: str, wid: str) -> C.Command:
    return C.PauseWorkflow(request_id=rid, workflow_id=wid)


def _resume(rid: str, wid: str) -> C.Command:
    return C.ResumeWorkflow(request_id=rid, workflow_id=wid)


def _remove(rid: str, wid: str) -> C.Command:
    return C.RemoveWorkflow(request_id=rid, workflow_id=wid)


def _restart(use_latest_definition: bool) -> Build:
    def build(rid: str, wid: str) -> C.Command:
        return C.RestartWorkflow(
            request_id=rid, workflow_id=wid, use_latest_definition=use_latest_definition
        )

    return build


def _retry(resume_subworkflow_tasks: bool) -> Build:
    def build(rid: str, wid: str) -> C.Command:
        return C.RetryWorkflow(
            request_id=rid, workflow_id=wid, resume_subworkflow_tasks=resume_subworkflow_tasks
        )

    return build


def _compensate(reason: str) -> Build:
    why = v.at_most(reason, "reason", limits.MAX_REASON_LENGTH)

    def build(rid: str, wid: str) -> C.Command:
        return C.CompensateWorkflow(request_id=rid, workflow_id=wid, reason=why)

    return build


_BULK_METHOD = {
    wpb.BULK_ACTION_TYPE_PAUSE: "PauseWorkflow",
    wpb.BULK_ACTION_TYPE_RESUME: "ResumeWorkflow",
    wpb.BULK_ACTION_TYPE_RESTART: "RestartWorkflow",
    wpb.BULK_ACTION_TYPE_RETRY: "RetryWorkflow",
    wpb.BULK_ACTION_TYPE_TERMINATE: "TerminateWorkflow",
    wpb.BULK_ACTION_TYPE_REMOVE: "RemoveWorkflow",
    wpb.BULK_ACTION_TYPE_COMPENSATE: "CompensateWorkflow",
}


def _bulk_action(request: wpb.BulkActionRequest) -> tuple[Build, bool]:
    """(the command of one item, whether it may bring a workflow back from history)."""
    action = request.action
    if action == wpb.BULK_ACTION_TYPE_TERMINATE:
        reason = v.at_most(request.reason, "reason", limits.MAX_REASON_LENGTH)
        return (
            lambda rid, wid: C.TerminateWorkflow(request_id=rid, workflow_id=wid, reason=reason)
        ), False
    if action == wpb.BULK_ACTION_TYPE_RESTART:
        return _restart(request.use_latest_definition), True
    if action == wpb.BULK_ACTION_TYPE_RETRY:
        return _retry(request.resume_subworkflow_tasks), True
    if action == wpb.BULK_ACTION_TYPE_COMPENSATE:
        return _compensate(request.reason), True
    simple = {
        wpb.BULK_ACTION_TYPE_PAUSE: _pause,
        wpb.BULK_ACTION_TYPE_RESUME: _resume,
        wpb.BULK_ACTION_TYPE_REMOVE: _remove,
    }.get(action)
    if simple is None:
        raise invalid(f"action: unknown value {action}")
    return simple, False
