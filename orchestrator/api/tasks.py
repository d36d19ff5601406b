"""TaskService: workers poll for tasks (long polls wait in the dispatcher) and report results."""

from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import grpc
from orchestrator_client.v1 import tasks_pb2 as tpb
from orchestrator_client.v1 import tasks_pb2_grpc

from ..core import commands as C
from ..core import limits, queries
from ..core.machine import Outcome
from . import identity, rpc, views
from . import validation as v
from .errors import ApiError, invalid, not_committed_in_time, outcome_error
from .service import ServiceBase


def poll_args(request: tpb.PollTasksRequest, prefix: str = "") -> tuple[str, str, str, int]:
    """A poll's request id, task type, domain and count, checked; errors name the field."""
    try:
        rid = v.request_id(request.request_id)
        task_type = v.name(request.task_type, "task_type")
        domain = v.name(request.domain, "domain") if request.domain else ""
    except ApiError as err:
        raise invalid(prefix + err.message) from None
    count = request.count or 1
    if not 1 <= count <= limits.MAX_POLL_COUNT:
        raise invalid(f"{prefix}count: must be between 1 and {limits.MAX_POLL_COUNT}")
    if not 0 <= request.timeout_ms <= limits.MAX_POLL_TIMEOUT_MS:
        raise invalid(f"{prefix}timeout_ms: must be between 0 and {limits.MAX_POLL_TIMEOUT_MS}")
    if len(request.worker_id) > limits.MAX_NAME_LENGTH:
        raise invalid(f"{prefix}worker_id: at most {limits.MAX_NAME_LENGTH} characters")
    return rid, task_type, domain, count


def complete_cmd(request: tpb.CompleteTaskRequest) -> C.Command:
    return C.CompleteTask(
        request_id=v.request_id(request.request_id),
        task_id=v.task_ref(request),
        workflow_id=request.workflow_id,
        reference_task_name=request.reference_task_name,
        output=v.json_object(request.output_json, "output_json"),
        worker_id=request.worker_id[: limits.MAX_NAME_LENGTH],
        principal=identity.current().name,
    )


class TaskService(ServiceBase, tasks_pb2_grpc.TaskServiceServicer):
    SERVICE = rpc.TASKS

    def _leased_tasks(self, outcome: Outcome, worker_id: str) -> tuple[list[Any], int]:
        """The tasks a poll's outcome leased, as still leased to `worker_id`; and the seq read."""
        task_ids = outcome.result.get("task_ids", [])
        return self.replica.read(
            lambda st: (
                [views.task_pb(t) for t in queries.leased_tasks(st, task_ids, worker_id)],
                queries.applied_seq(st),
            )
        )

    def PollTasks(self, request: tpb.PollTasksRequest, context: grpc.ServicerContext) -> Any:
        def go() -> Any:
            rid, task_type, domain, count = poll_args(request)
            if not self.replica.leader_ready():
                return self._forward(context, "PollTasks", request)
            remaining = context.time_remaining()
            wait_s = request.timeout_ms / 1000.0
            if remaining is not None:
                wait_s = max(0.0, min(wait_s, remaining - 0.5))
            dispatcher = self.node.dispatcher
            # A caller that goes away wakes its parked poll, which is then cancelled.
            context.add_callback(lambda: dispatcher.wake(rid))
            try:
                outcome = dispatcher.poll(
                    rid,
                    task_type,
                    request.worker_id,
                    count,
                    wait_s,
                    context.is_active,
                    domain,
                    identity.current().name,
                )
            except FutureTimeout:
                raise not_committed_in_time(self.node.leader()) from None
            if not outcome.ok:
                raise outcome_error(outcome, self.node.leader(), epoch_fenced=True)
            self.node.after_commit("PollTasks", rid)
            tasks, seq = self._leased_tasks(outcome, request.worker_id)
            self._set_seq(context, max(seq, outcome.seq))
            return tpb.PollTasksResponse(tasks=tasks)

        return self._run(context, go)

    def CompleteTask(self, request: tpb.CompleteTaskRequest, context: grpc.ServicerContext) -> Any:
        return self._mutate(
            context,
            request,
            "CompleteTask",
            lambda: complete_cmd(request),
            lambda o: tpb.CompleteTaskResponse(),
        )

    def CompleteTasks(
        self, request: tpb.CompleteTasksRequest, context: grpc.ServicerContext
    ) -> Any:
        polls = request.polls

        def riding_polls() -> list[C.Command]:
            """The polls riding behind the completions: they lease what those made ready before
            the parked polls get it (those are filled at the end of the entry)."""
            if len(polls) > limits.MAX_RIDING_POLLS:
                raise invalid(f"polls: at most {limits.MAX_RIDING_POLLS}")
            cmds: list[C.Command] = []
            for i, poll in enumerate(polls):
                rid, task_type, domain, count = poll_args(poll, f"polls[{i}].")
                if poll.timeout_ms:
                    raise invalid(
                        f"polls[{i}].timeout_ms: must be 0 (a poll riding a completion never waits)"
                    )
                cmds.append(
                    C.PollTasks(
                        request_id=rid,
                        task_type=task_type,
                        domain=domain,
                        worker_id=poll.worker_id,
                        count=count,
                        epoch=self.replica.leader_term,
                        principal=identity.current().name,
                    )
                )
            return cmds

        def respond(statuses: list[Any], polled: list[Outcome]) -> Any:
            resp = tpb.CompleteTasksResponse(statuses=statuses)
            for poll, outcome in zip(polls, polled, strict=True):
                # Not ok: a stale epoch (leadership moved); the tasks stay for other polls.
                tasks = self._leased_tasks(outcome, poll.worker_id)[0] if outcome.ok else []
                resp.polled.append(tpb.PollTasksResponse(tasks=tasks))
            return resp

        return self._batch_mutate(
            context,
            request,
            "CompleteTasks",
            "results",
            complete_cmd,
            tpb.ItemStatus,
            lambda result, outcome: None,
            respond,
            riding_polls,
        )

    def FailTask(self, request: tpb.FailTaskRequest, context: grpc.ServicerContext) -> Any:
        def build() -> C.Command:
            reason = v.at_most(request.reason, "reason", limits.MAX_REASON_LENGTH)
            return C.FailTask(
                request_id=v.request_id(request.request_id),
                task_id=v.task_ref(request),
                workflow_id=request.workflow_id,
                reference_task_name=request.reference_task_name,
                reason=reason,
                terminal=request.terminal,
                output=v.json_object(request.output_json, "output_json"),
                worker_id=request.worker_id[: limits.MAX_NAME_LENGTH],
                principal=identity.current().name,
            )

        return self._mutate(context, request, "FailTask", build, lambda o: tpb.FailTaskResponse())

    def HeartbeatTask(
        self, request: tpb.HeartbeatTaskRequest, context: grpc.ServicerContext
    ) -> Any:
        def build() -> C.Command:
            return C.HeartbeatTask(
                request_id=v.request_id(request.request_id),
                task_id=v.name(request.task_id, "task_id"),
                worker_id=request.worker_id[: limits.MAX_NAME_LENGTH],
                principal=identity.current().name,
            )

        return self._mutate(
            context,
            request,
            "HeartbeatTask",
            build,
            lambda o: tpb.HeartbeatTaskResponse(lease_expires_ms=o.result["lease_expires_ms"]),
        )
