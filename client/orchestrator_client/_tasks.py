"""The task calls of OrchestratorClient: the worker protocol (poll, complete, fail, heartbeat)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import grpc

from orchestrator_client._codec import encode_document, new_request_id
from orchestrator_client._rpc import MAX_BATCH, MAX_RIDING_POLLS, rpc_of
from orchestrator_client._transport import Transport, TransportCore
from orchestrator_client._views import Task
from orchestrator_client.errors import OrchestratorError
from orchestrator_client.v1 import tasks_pb2

# Polls riding a CompleteTasks call are recorded as operations of their own RPC.
_POLL_OP: Final = rpc_of(tasks_pb2.PollTasksRequest()).name


# The requests, built alike by the sync calls below and the asyncio client (aio.py).
def poll_request(
    task_type: str, worker_id: str, count: int, timeout_ms: int, domain: str, request_id: str | None
) -> tasks_pb2.PollTasksRequest:
    """A PollTasksRequest (see TaskCalls.poll_tasks); ValueError for a bad count or wait."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if timeout_ms < 0:
        raise ValueError("timeout_ms must not be negative")
    return tasks_pb2.PollTasksRequest(
        request_id=request_id or new_request_id(),
        task_type=task_type,
        worker_id=worker_id,
        count=count,
        timeout_ms=timeout_ms,
        domain=domain,
    )


def complete_request(
    task_id: str,
    output: Mapping[str, Any] | None,
    worker_id: str,
    workflow_id: str,
    reference_task_name: str,
    request_id: str | None,
) -> tasks_pb2.CompleteTaskRequest:
    """A CompleteTaskRequest (see TaskCalls.complete_task)."""
    return tasks_pb2.CompleteTaskRequest(
        request_id=request_id or new_request_id(),
        task_id=task_id,
        output_json=encode_document(output),
        worker_id=worker_id,
        workflow_id=workflow_id,
        reference_task_name=reference_task_name,
    )


def fail_request(
    task_id: str,
    reason: str,
    terminal: bool,
    output: Mapping[str, Any] | None,
    worker_id: str,
    workflow_id: str,
    reference_task_name: str,
    request_id: str | None,
) -> tasks_pb2.FailTaskRequest:
    """A FailTaskRequest (see TaskCalls.fail_task)."""
    return tasks_pb2.FailTaskRequest(
        request_id=request_id or new_request_id(),
        task_id=task_id,
        reason=reason,
        terminal=terminal,
        output_json=encode_document(output),
        worker_id=worker_id,
        workflow_id=workflow_id,
        reference_task_name=reference_task_name,
    )


def signal_request(
    workflow_id: str,
    reference: str,
    output: Mapping[str, Any] | None,
    failed: bool,
    reason: str,
    request_id: str | None,
) -> tasks_pb2.CompleteTaskRequest | tasks_pb2.FailTaskRequest:
    """The request of a signal (see TaskCalls.signal_task): the task named by workflow and
    reference, completed or failed."""
    if failed:
        reason = reason or "failed by a signal"
        return fail_request("", reason, False, output, "", workflow_id, reference, request_id)
    return complete_request("", output, "", workflow_id, reference, request_id)


def heartbeat_request(
    task_id: str, worker_id: str, request_id: str | None
) -> tasks_pb2.HeartbeatTaskRequest:
    """A HeartbeatTaskRequest (see TaskCalls.heartbeat_task)."""
    return tasks_pb2.HeartbeatTaskRequest(
        request_id=request_id or new_request_id(), task_id=task_id, worker_id=worker_id
    )


def complete_tasks_request(
    results: Sequence[tuple[str, str]],
    worker_id: str,
    request_ids: Sequence[str] | None,
    polls: Sequence[tasks_pb2.PollTasksRequest] = (),
) -> tuple[tasks_pb2.CompleteTasksRequest, list[str]]:
    """A CompleteTasksRequest of ``(task_id, output_json)`` results, and its items' request ids
    (see TaskCalls._complete_call); ValueError for no results, too many, or ids not matching."""
    if not results or len(results) > MAX_BATCH:
        raise ValueError(f"complete_tasks takes 1 to {MAX_BATCH} results")
    rids = list(request_ids) if request_ids is not None else [new_request_id() for _ in results]
    if len(rids) != len(results):
        raise ValueError("request_ids must match results one to one")
    items = [
        tasks_pb2.CompleteTaskRequest(
            request_id=rid, task_id=task_id, output_json=output_json, worker_id=worker_id
        )
        for rid, (task_id, output_json) in zip(rids, results, strict=True)
    ]
    return tasks_pb2.CompleteTasksRequest(items=items, polls=polls), rids


def riding_poll_requests(
    polls: Mapping[str, int],
    worker_id: str,
    domain: str,
    poll_request_ids: Mapping[str, str] | None,
) -> list[tasks_pb2.PollTasksRequest]:
    """The polls of complete_tasks_and_poll, one per task type (see
    TaskCalls.complete_tasks_and_poll); ValueError for none, too many, or a count below 1."""
    if not polls or len(polls) > MAX_RIDING_POLLS or any(n < 1 for n in polls.values()):
        raise ValueError(
            f"polls takes 1 to {MAX_RIDING_POLLS} task types, each with a count of at least 1"
        )
    ids = poll_request_ids or {}
    return [
        tasks_pb2.PollTasksRequest(
            request_id=ids.get(task_type) or new_request_id(),
            task_type=task_type,
            worker_id=worker_id,
            count=count,
            domain=domain,
        )
        for task_type, count in polls.items()
    ]


class RidingPolls:
    """The polls riding one CompleteTasks call, each recorded as a PollTasks operation of its
    own: opened at construction, then ``failed`` with the call, or ``settled`` from the answer
    that ``answers_of`` saw (no I/O: both clients' calls use it)."""

    def __init__(
        self, transport: TransportCore, polls: Sequence[tasks_pb2.PollTasksRequest]
    ) -> None:
        self._transport = transport
        self._polls = polls
        self._polled: list[tasks_pb2.PollTasksResponse] = []
        for poll in polls:
            transport.record("invoke", _POLL_OP, poll.request_id, poll)

    def answers_of(self, response: tasks_pb2.CompleteTasksResponse) -> Sequence[Any]:
        """The per-result answers of the call (for invoke_batch), keeping the polls' answers."""
        self._polled.extend(response.polled)
        return response.statuses

    def failed(self, exc: BaseException) -> None:
        """The whole call failed: so did its polls."""
        self._transport.record_failed(_POLL_OP, [p.request_id for p in self._polls], exc)

    def settled(self) -> list[list[Task]]:
        """Records the polls' answers; per poll, the tasks it leased."""
        polls, polled = self._polls, self._polled
        if polled and len(polled) != len(polls):
            # The results stand; what the polls leased is unknown (it returns when the leases
            # expire).
            mismatch = OrchestratorError(
                grpc.StatusCode.INTERNAL,
                f"CompleteTasks answered {len(polled)} polls for {len(polls)}",
                op=_POLL_OP,
            )
            for poll in polls:
                self._transport.record("unknown", _POLL_OP, poll.request_id, mismatch)
            return [[] for _ in polls]
        # No answers at all: a server from before riding polls, which leased nothing.
        answered = polled or [tasks_pb2.PollTasksResponse() for _ in polls]
        for poll, answer in zip(polls, answered, strict=True):
            self._transport.record("ok", _POLL_OP, poll.request_id, answer)
        return [[Task.from_proto(t) for t in answer.tasks] for answer in answered]


class TaskCalls:
    """TaskService, as methods of OrchestratorClient."""

    _transport: Transport

    def poll_tasks(
        self,
        task_type: str,
        *,
        worker_id: str,
        count: int = 1,
        timeout_ms: int = 1000,
        domain: str = "",
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> list[Task]:
        """Leases up to ``count`` tasks of one type, long-polling up to ``timeout_ms``.

        A retried poll reuses the request id, so tasks leased by an attempt whose response was
        lost are returned by the retry rather than stranded until their lease expires.

        Args:
            task_type: The task type (task definition name) to poll.
            worker_id: Identifies this worker to the server.
            count: At most this many tasks (1-100).
            timeout_ms: Long-poll wait in milliseconds (0-30000); 0 returns at once.
            domain: Poll this task domain's queue (see ``start_workflow(task_to_domain=...)``);
                ``""`` polls the type's default queue.
            request_id: Idempotency id of this poll; generated when None.
            timeout_s: Extra per-attempt time beyond the long-poll wait; defaults to the
                client's attempt deadline.
            retry_budget_s: Overall deadline override.

        Returns:
            The leased tasks, possibly none.

        Raises:
            ValueError: ``count`` or ``timeout_ms`` out of range.
            InvalidArgumentError: The server rejected the request.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = poll_request(task_type, worker_id, count, timeout_ms, domain, request_id)
        rid = request.request_id
        extra = self._transport.timeout_s if timeout_s is None else timeout_s
        response = self._transport.invoke(
            request,
            tasks_pb2.PollTasksResponse,
            rid,
            timeout_s=timeout_ms / 1000.0 + extra,
            retry_budget_s=retry_budget_s,
        )
        return [Task.from_proto(t) for t in response.tasks]

    def complete_task(
        self,
        task_id: str,
        output: Mapping[str, Any] | None = None,
        *,
        worker_id: str = "",
        workflow_id: str = "",
        reference_task_name: str = "",
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Completes a task attempt with its output.

        Args:
            task_id: The task id from the poll; "" to name the task by workflow and reference.
            output: The task output; None means ``{}``.
            worker_id: The worker that held the lease.
            workflow_id: With reference_task_name, instead of task_id: the latest attempt of that
                reference (how WAIT and HUMAN tasks are usually completed).
            reference_task_name: The task reference in the workflow definition.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            TypeError: Output that is not JSON-serializable.
            ValueError: Output that is not valid JSON (NaN, Infinity, circular).
            FailedPreconditionError: The lease was lost (the task timed out or was reported
                already); the result was not applied.
            NotFoundError: No such task.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = complete_request(
            task_id, output, worker_id, workflow_id, reference_task_name, request_id
        )
        self._transport.invoke(
            request,
            tasks_pb2.CompleteTaskResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )

    def complete_tasks(
        self,
        results: Sequence[tuple[str, Mapping[str, Any] | None]],
        *,
        worker_id: str = "",
        request_ids: Sequence[str] | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> list[OrchestratorError | None]:
        """Completes several task attempts in one call (at most 100).

        Each result is applied as if completed alone, with its own request id, so a retried
        batch is deduplicated result by result, and one rejected result (say, a lease already
        lost) does not affect the others.

        Args:
            results: ``(task_id, output)`` pairs; an output of None means ``{}``.
            worker_id: The worker that held the leases.
            request_ids: One idempotency id per result; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            Per result, in order: None when it was applied, else the error for it (for example
            FailedPreconditionError for a lease already lost).

        Raises:
            ValueError: No results, more than 100, request ids not matching the results, or an
                output that is not valid JSON.
            TypeError: An output that is not JSON-serializable.
            UnavailableError: No replica decided the call within the retry budget (then none,
                some or all results may have been applied; retry with the same request ids).
            OrchestratorError: Any other error of the whole call.
        """
        encoded = [(task_id, encode_document(output)) for task_id, output in results]
        return self._complete_call(
            encoded,
            worker_id=worker_id,
            request_ids=request_ids,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )[0]

    def complete_tasks_and_poll(
        self,
        results: Sequence[tuple[str, Mapping[str, Any] | None]],
        *,
        polls: Mapping[str, int],
        worker_id: str = "",
        domain: str = "",
        request_ids: Sequence[str] | None = None,
        poll_request_ids: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> tuple[list[OrchestratorError | None], dict[str, list[Task]]]:
        """complete_tasks, then in the same call and Raft entry polls that never wait.

        The polls run right after the results are applied, so a task that one of them made
        ready (say, the workflow's next task) is leased to this worker before any parked long
        poll gets it: the answer carries the next task, one round trip per task instead of a
        completion and a poll. A server from before this returns no tasks (they then go to
        the worker's long polls as usual).

        Args:
            results: ``(task_id, output)`` pairs, as for ``complete_tasks``.
            polls: Task type -> at most this many tasks of it (1-100); at most 16 types.
            worker_id: The worker that held the leases and takes the new ones.
            domain: The task domain's queues to poll (``""``: the default queues).
            request_ids: One idempotency id per result; generated when None.
            poll_request_ids: Task type -> idempotency id of its poll; generated when None. A
                retried call returns the tasks the first attempt leased.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            Per result, None or its error (as ``complete_tasks``); and per polled task type,
            the tasks leased.

        Raises:
            As ``complete_tasks``; ValueError also for no polls, more than 16, or a count
            below 1.
        """
        requests = riding_poll_requests(polls, worker_id, domain, poll_request_ids)
        encoded = [(task_id, encode_document(output)) for task_id, output in results]
        errors, polled = self._complete_call(
            encoded,
            worker_id=worker_id,
            request_ids=request_ids,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
            polls=requests,
        )
        return errors, dict(zip(polls, polled, strict=True))

    def _complete_call(
        self,
        results: Sequence[tuple[str, str]],
        *,
        worker_id: str,
        request_ids: Sequence[str] | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
        polls: Sequence[tasks_pb2.PollTasksRequest] = (),
    ) -> tuple[list[OrchestratorError | None], list[list[Task]]]:
        """One CompleteTasks call of outputs already encoded as JSON (the worker encodes an
        output once, to fail only its own task when it is not JSON), with polls riding behind
        the results (each recorded as a PollTasks operation of its own). Returns per result
        None or its error, and per poll the tasks it leased."""
        request, rids = complete_tasks_request(results, worker_id, request_ids, polls)
        riding = RidingPolls(self._transport, polls)
        try:
            answers = self._transport.invoke_batch(
                request,
                tasks_pb2.CompleteTasksResponse,
                request.items,
                rids,
                riding.answers_of,
                timeout_s=timeout_s,
                retry_budget_s=retry_budget_s,
            )
        except BaseException as exc:
            riding.failed(exc)
            raise
        errors = [a if isinstance(a, OrchestratorError) else None for a in answers]
        return errors, riding.settled()

    def fail_task(
        self,
        task_id: str,
        reason: str,
        *,
        terminal: bool = False,
        output: Mapping[str, Any] | None = None,
        worker_id: str = "",
        workflow_id: str = "",
        reference_task_name: str = "",
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Fails a task attempt; it is retried per its definition unless ``terminal``.

        Args:
            task_id: The task id from the poll; "" to name the task by workflow and reference.
            reason: Why it failed, recorded as the reason for incompletion.
            terminal: Fail with FAILED_WITH_TERMINAL_ERROR, which is never retried.
            output: Optional output to record with the failure.
            worker_id: The worker that held the lease.
            workflow_id: With reference_task_name, instead of task_id (WAIT and HUMAN tasks).
            reference_task_name: The task reference in the workflow definition.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            TypeError: Output that is not JSON-serializable.
            ValueError: Output that is not valid JSON (NaN, Infinity, circular).
            FailedPreconditionError: The lease was lost; the result was not applied.
            NotFoundError: No such task.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = fail_request(
            task_id,
            reason,
            terminal,
            output,
            worker_id,
            workflow_id,
            reference_task_name,
            request_id,
        )
        self._transport.invoke(
            request,
            tasks_pb2.FailTaskResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )

    def signal_task(
        self,
        workflow_id: str,
        reference: str,
        output: Mapping[str, Any] | None = None,
        *,
        failed: bool = False,
        reason: str = "",
        request_id: str | None = None,
    ) -> None:
        """Ends a waiting task by workflow and reference (a signal): a WAIT, HUMAN or
        WAIT_FOR_EVENT task, or an EVENT/HTTP task with asyncComplete after its work.

        Args:
            workflow_id: The workflow.
            reference: The task reference (its latest attempt).
            output: The task's output; None means ``{}``.
            failed: Fail the task (retried per its definition) instead of completing it.
            reason: With failed: why.
            request_id: Idempotency id of this call; generated when None.

        Raises:
            FailedPreconditionError: The task is not waiting (ended, or not a waiting type).
            NotFoundError: No such workflow or reference.
            OrchestratorError: Any other server error.
        """
        request = signal_request(workflow_id, reference, output, failed, reason, request_id)
        self._transport.invoke(
            request,
            rpc_of(request).response_type,
            request.request_id,
            timeout_s=None,
            retry_budget_s=None,
        )

    def heartbeat_task(
        self,
        task_id: str,
        *,
        worker_id: str = "",
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> int:
        """Extends the lease of an IN_PROGRESS task by its response timeout.

        Args:
            task_id: The task id from the poll.
            worker_id: The worker that holds the lease.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The new lease expiry, in cluster time (epoch milliseconds).

        Raises:
            FailedPreconditionError: The lease was lost; stop working on the task.
            NotFoundError: No such task.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = heartbeat_request(task_id, worker_id, request_id)
        response = self._transport.invoke(
            request,
            tasks_pb2.HeartbeatTaskResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return response.lease_expires_ms
