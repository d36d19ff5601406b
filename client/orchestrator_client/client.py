"""The orchestrator's Python client: a thin, retrying, replica-aware layer over the gRPC API.

The client talks to any replica of the cluster. It hides the cluster's failover conventions:

* A replica that cannot serve answers UNAVAILABLE, possibly naming the leader in trailing
  metadata; the client follows that hint, else rotates through the configured addresses.
* RESOURCE_EXHAUSTED is backpressure; the client waits the hinted delay (or backs off).
* Each response names the replica's applied sequence number; the client sends the highest it
  has seen on every later call, so a read after a write sees that write (read-your-writes).
* Each logical mutating call gets one request id, reused on every retry, so the server applies
  it at most once and a retry returns the first outcome.

Only grpcio, protobuf and the standard library are needed to import it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Generic, Self, TypeVar

import grpc
from google.protobuf import descriptor as _descriptor
from google.protobuf import json_format
from google.protobuf.message import Message

from orchestrator_client.errors import (
    OrchestratorError,
    ResourceExhaustedError,
    UnavailableError,
    error_for_status,
)
from orchestrator_client.v1 import cluster_pb2, definitions_pb2, tasks_pb2, workflows_pb2

__all__ = [
    "LEADER_METADATA_KEY",
    "MIN_SEQ_METADATA_KEY",
    "RETRY_AFTER_METADATA_KEY",
    "SEQ_METADATA_KEY",
    "OrchestratorClient",
    "Recorder",
    "Task",
    "Workflow",
]

_log = logging.getLogger("orchestrator_client")

LEADER_METADATA_KEY: Final = "x-orchestrator-leader"
RETRY_AFTER_METADATA_KEY: Final = "x-orchestrator-retry-after-ms"
SEQ_METADATA_KEY: Final = "x-orchestrator-seq"
MIN_SEQ_METADATA_KEY: Final = "x-orchestrator-min-seq"

# Every mutating call carries one request id on all its attempts and the server applies it at
# most once, so retrying is safe whenever the outcome is open: also when a replica that is
# shutting down or was killed mid-call ends it with CANCELLED or UNKNOWN ("Stream removed").
_RETRYABLE_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
    }
)

_BACKOFF_INITIAL_S: Final = 0.05
_BACKOFF_MAX_S: Final = 1.0
# Below this, an attempt could not even complete a round trip; treat the budget as spent.
_MIN_ATTEMPT_S: Final = 0.005

_CHANNEL_OPTIONS: Final[tuple[tuple[str, int], ...]] = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # The client retries itself, with the request-id and leader-hint rules grpc cannot know.
    ("grpc.enable_retries", 0),
    # grpc's default reconnect backoff grows to 120 s, during which a channel to a restarted
    # replica fails fast; failover needs it back within seconds. grpc.min_reconnect_backoff_ms
    # is left alone: grpc uses it as the connect (TCP + TLS + HTTP/2) timeout.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    # A ListWorkflows page of 1000 workflows can pass the 4 MiB default.
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)

_WORKFLOW_STATUS_PREFIX: Final = "WORKFLOW_STATUS_"
_TASK_STATUS_PREFIX: Final = "TASK_STATUS_"
_IDEMPOTENCY_PREFIX: Final = "IDEMPOTENCY_STRATEGY_"
_TERMINAL_WORKFLOW_STATUSES: Final = frozenset({"COMPLETED", "FAILED", "TERMINATED", "TIMED_OUT"})
_TERMINAL_TASK_STATUSES: Final = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "FAILED_WITH_TERMINAL_ERROR",
        "TIMED_OUT",
        "CANCELED",
        "COMPLETED_WITH_ERRORS",
        "SKIPPED",
    }
)

Recorder = Callable[[str, str, str, Any], None]
"""``recorder(event, op, request_id, detail)``; see :class:`OrchestratorClient`."""

MetadataLike = Sequence[tuple[str, str]] | Mapping[str, str]

_RespT = TypeVar("_RespT", bound=Message)


# --------------------------------------------------------------------------------------------
# JSON and enum conversion


def _encode_json(value: object) -> str:
    """JSON text for a document field; None becomes the empty string (the server's null)."""
    if value is None:
        return ""
    # allow_nan=False: NaN and Infinity are not JSON and would poison other languages' readers.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _encode_definition(definition: Mapping[str, Any] | str) -> str:
    # A string is passed verbatim so users can register Conductor JSON files unchanged; the
    # server validates it.
    if isinstance(definition, str):
        return definition
    return _encode_json(dict(definition))


def _decode_object(text: str) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object from the server, got {type(value).__name__}")
    return value


def _enum_name(wrapper: Any, value: int, prefix: str) -> str:
    try:
        name: str = wrapper.Name(value)
    except ValueError:
        # A newer server may send a status this client does not know; keep the number visible.
        return str(value)
    return name.removeprefix(prefix)


def _enum_key(wrapper: Any, name: str, prefix: str, what: str) -> str:
    """The full enum value name for a short one ("RUNNING" -> "WORKFLOW_STATUS_RUNNING")."""
    unspecified = prefix + "UNSPECIFIED"
    key = name.strip().upper()
    if not key.startswith(prefix):
        key = prefix + key
    try:
        wrapper.Value(key)
    except ValueError:
        key = unspecified
    if key == unspecified:
        names = [n for n, _ in wrapper.items() if n != unspecified]
        choices = ", ".join(n.removeprefix(prefix) for n in names)
        raise ValueError(f"unknown {what} {name!r}; expected one of {choices}")
    return key


# --------------------------------------------------------------------------------------------
# Views of server objects


@dataclass(frozen=True, slots=True)
class Task:
    """One attempt of a task, as the server reports it.

    JSON documents are decoded (``input``, ``output``) and the status is a plain string such
    as ``"IN_PROGRESS"``.
    """

    task_id: str
    task_type: str
    reference_task_name: str
    workflow_id: str
    workflow_type: str
    status: str
    input: dict[str, Any]
    output: dict[str, Any]
    retry_count: int
    poll_count: int
    scheduled_time_ms: int
    start_time_ms: int
    end_time_ms: int
    reason_for_incompletion: str
    worker_id: str
    response_timeout_seconds: int
    lease_expires_ms: int
    seq: int
    retried_task_id: str
    correlation_id: str
    domain: str = ""

    @property
    def is_terminal(self) -> bool:
        """Whether this attempt has finished (completed, failed, timed out, canceled, skipped).

        Returns:
            True for a final status.
        """
        return self.status in _TERMINAL_TASK_STATUSES

    @classmethod
    def from_proto(cls, msg: workflows_pb2.Task) -> Task:
        """Builds the view from the wire message.

        Args:
            msg: An ``orchestrator.v1.Task`` message.

        Returns:
            The decoded task.

        Raises:
            ValueError: A JSON field does not hold a JSON object.
        """
        return cls(
            task_id=msg.task_id,
            task_type=msg.task_type,
            reference_task_name=msg.reference_task_name,
            workflow_id=msg.workflow_id,
            workflow_type=msg.workflow_type,
            status=_enum_name(workflows_pb2.TaskStatus, msg.status, _TASK_STATUS_PREFIX),
            input=_decode_object(msg.input_json),
            output=_decode_object(msg.output_json),
            retry_count=msg.retry_count,
            poll_count=msg.poll_count,
            scheduled_time_ms=msg.scheduled_time_ms,
            start_time_ms=msg.start_time_ms,
            end_time_ms=msg.end_time_ms,
            reason_for_incompletion=msg.reason_for_incompletion,
            worker_id=msg.worker_id,
            response_timeout_seconds=msg.response_timeout_seconds,
            lease_expires_ms=msg.lease_expires_ms,
            seq=msg.seq,
            retried_task_id=msg.retried_task_id,
            correlation_id=msg.correlation_id,
            domain=msg.domain,
        )


@dataclass(frozen=True, slots=True)
class Workflow:
    """A workflow execution, as the server reports it.

    JSON documents are decoded (``input``, ``output``, ``variables``), the status is a plain
    string such as ``"RUNNING"``, and ``tasks`` is empty when fetched without tasks.
    """

    workflow_id: str
    workflow_name: str
    workflow_version: int
    status: str
    input: dict[str, Any]
    output: dict[str, Any]
    reason_for_incompletion: str
    correlation_id: str
    create_time_ms: int
    end_time_ms: int
    tasks: tuple[Task, ...]
    variables: dict[str, Any]
    idempotency_key: str
    priority: int
    task_to_domain: dict[str, str] = dataclasses.field(default_factory=dict)
    triggering_workflow_id: str = ""

    @property
    def is_terminal(self) -> bool:
        """Whether the workflow has finished (COMPLETED, FAILED, TERMINATED or TIMED_OUT).

        Returns:
            True for a final status; PAUSED and RUNNING are not final.
        """
        return self.status in _TERMINAL_WORKFLOW_STATUSES

    def task_by_ref(self, reference_task_name: str) -> Task | None:
        """Finds the latest attempt of a task by its reference name.

        Args:
            reference_task_name: The ``taskReferenceName`` from the workflow definition.

        Returns:
            The attempt with the highest ``seq`` for that reference, or None if there is none
            (or the workflow was fetched without tasks).
        """
        found: Task | None = None
        for task in self.tasks:
            if task.reference_task_name == reference_task_name and (
                found is None or task.seq >= found.seq
            ):
                found = task
        return found

    @classmethod
    def from_proto(cls, msg: workflows_pb2.Workflow) -> Workflow:
        """Builds the view from the wire message.

        Args:
            msg: An ``orchestrator.v1.Workflow`` message.

        Returns:
            The decoded workflow.

        Raises:
            ValueError: A JSON field does not hold a JSON object.
        """
        return cls(
            workflow_id=msg.workflow_id,
            workflow_name=msg.workflow_name,
            workflow_version=msg.workflow_version,
            status=_enum_name(workflows_pb2.WorkflowStatus, msg.status, _WORKFLOW_STATUS_PREFIX),
            input=_decode_object(msg.input_json),
            output=_decode_object(msg.output_json),
            reason_for_incompletion=msg.reason_for_incompletion,
            correlation_id=msg.correlation_id,
            create_time_ms=msg.create_time_ms,
            end_time_ms=msg.end_time_ms,
            tasks=tuple(Task.from_proto(t) for t in msg.tasks),
            variables=_decode_object(msg.variables_json),
            idempotency_key=msg.idempotency_key,
            priority=msg.priority,
            task_to_domain=dict(msg.task_to_domain),
            triggering_workflow_id=msg.triggering_workflow_id,
        )


def _message_to_plain_dict(msg: Message) -> dict[str, Any]:
    # MessageToDict follows the proto3 JSON mapping, which renders int64 as strings; callers
    # compare sequence numbers and terms, so top-level 64-bit integers are turned back into ints.
    out = json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    int64_types = {
        _descriptor.FieldDescriptor.TYPE_INT64,
        _descriptor.FieldDescriptor.TYPE_UINT64,
        _descriptor.FieldDescriptor.TYPE_SINT64,
        _descriptor.FieldDescriptor.TYPE_FIXED64,
        _descriptor.FieldDescriptor.TYPE_SFIXED64,
    }
    for field in msg.DESCRIPTOR.fields:
        if field.type in int64_types and field.name in out:
            value = out[field.name]
            out[field.name] = [int(v) for v in value] if isinstance(value, list) else int(value)
    return out


# --------------------------------------------------------------------------------------------
# RPC plumbing


@dataclass(frozen=True, slots=True)
class _Method(Generic[_RespT]):
    name: str
    path: str
    response_type: type[_RespT]


def _method(service: str, name: str, response_type: type[_RespT]) -> _Method[_RespT]:
    return _Method(name, f"/orchestrator.v1.{service}/{name}", response_type)


_REGISTER_WORKFLOW_DEF = _method(
    "DefinitionService", "RegisterWorkflowDef", definitions_pb2.RegisterWorkflowDefResponse
)
_GET_WORKFLOW_DEF = _method(
    "DefinitionService", "GetWorkflowDef", definitions_pb2.GetWorkflowDefResponse
)
_LIST_WORKFLOW_DEFS = _method(
    "DefinitionService", "ListWorkflowDefs", definitions_pb2.ListWorkflowDefsResponse
)
_REGISTER_TASK_DEFS = _method(
    "DefinitionService", "RegisterTaskDefs", definitions_pb2.RegisterTaskDefsResponse
)
_GET_TASK_DEF = _method("DefinitionService", "GetTaskDef", definitions_pb2.GetTaskDefResponse)
_LIST_TASK_DEFS = _method("DefinitionService", "ListTaskDefs", definitions_pb2.ListTaskDefsResponse)
_START_WORKFLOW = _method("WorkflowService", "StartWorkflow", workflows_pb2.StartWorkflowResponse)
_START_WORKFLOWS = _method(
    "WorkflowService", "StartWorkflows", workflows_pb2.StartWorkflowsResponse
)
_GET_WORKFLOW = _method("WorkflowService", "GetWorkflow", workflows_pb2.GetWorkflowResponse)
_TERMINATE_WORKFLOW = _method(
    "WorkflowService", "TerminateWorkflow", workflows_pb2.TerminateWorkflowResponse
)
_LIST_WORKFLOWS = _method("WorkflowService", "ListWorkflows", workflows_pb2.ListWorkflowsResponse)
_POLL_TASKS = _method("TaskService", "PollTasks", tasks_pb2.PollTasksResponse)
_COMPLETE_TASK = _method("TaskService", "CompleteTask", tasks_pb2.CompleteTaskResponse)
_STATUS_BY_NUMBER: Final = {c.value[0]: c for c in grpc.StatusCode}
_MAX_BATCH: Final = 100  # items per CompleteTasks or StartWorkflows call (the server's limit)
_COMPLETE_TASKS = _method("TaskService", "CompleteTasks", tasks_pb2.CompleteTasksResponse)
_FAIL_TASK = _method("TaskService", "FailTask", tasks_pb2.FailTaskResponse)
_HEARTBEAT_TASK = _method("TaskService", "HeartbeatTask", tasks_pb2.HeartbeatTaskResponse)
_GET_CLUSTER_STATUS = _method(
    "ClusterService", "GetClusterStatus", cluster_pb2.GetClusterStatusResponse
)
_GET_REPLICA_STATUS = _method("ClusterService", "GetReplicaStatus", cluster_pb2.ReplicaStatus)
_ADD_REPLICA = _method("ClusterService", "AddReplica", cluster_pb2.AddReplicaResponse)
_REMOVE_REPLICA = _method("ClusterService", "RemoveReplica", cluster_pb2.RemoveReplicaResponse)


def _is_retryable(code: grpc.StatusCode, details: str) -> bool:
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
        # grpc's own message-size limit, not backpressure: every retry would fail the same way.
        return False
    return code in _RETRYABLE_CODES


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _metadata_value(metadata: Iterable[tuple[str, str | bytes]] | None, key: str) -> str | None:
    if not metadata:
        return None
    found: str | None = None
    for k, v in metadata:
        if k.lower() == key:
            # The last value wins, as with a repeated HTTP header.
            found = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
    return found


def _parse_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _new_request_id() -> str:
    return uuid.uuid4().hex


def _parse_addresses(addresses: Sequence[str] | str) -> tuple[str, ...]:
    raw = addresses.split(",") if isinstance(addresses, str) else list(addresses)
    seen: dict[str, None] = {}
    for item in raw:
        address = item.strip()
        if address:
            seen.setdefault(address, None)
    if not seen:
        raise ValueError("at least one replica address (host:port) is required")
    return tuple(seen)


def _normalize_metadata(metadata: MetadataLike | None) -> tuple[tuple[str, str], ...]:
    if metadata is None:
        return ()
    items = metadata.items() if isinstance(metadata, Mapping) else metadata
    out: list[tuple[str, str]] = []
    for key, value in items:
        lowered = key.lower()
        if lowered == MIN_SEQ_METADATA_KEY:
            raise ValueError(f"metadata key {key!r} is managed by the client")
        # grpc rejects upper-case keys at call time; failing at construction is clearer.
        out.append((lowered, value))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# The client


class _StartSlot:
    __slots__ = ("done", "lead", "outcome", "request")

    def __init__(self, request: workflows_pb2.StartWorkflowRequest) -> None:
        self.request = request
        self.done = threading.Event()
        self.lead = False  # woken to send the next batch rather than with an outcome
        self.outcome: Any = None  # the workflow id, or the exception to raise


def _one_error_each(exc: BaseException, batch: list[_StartSlot]) -> list[BaseException]:
    """The error of a failed batch call, one object per caller: each caller raises its own
    (an exception object raised in several threads at once grows one traceback with all of
    their frames), naming its own request id."""
    out: list[BaseException] = []
    for slot in batch:
        try:
            err = copy.copy(exc)
        except Exception:  # an exception type that cannot be copied: share it
            out.append(exc)
            continue
        err.__cause__, err.__context__ = exc.__cause__, exc.__context__
        err.__traceback__ = exc.__traceback__
        if isinstance(err, OrchestratorError):
            err.request_id = slot.request.request_id
        out.append(err)
    return out


class _StartCoalescer:
    """Shares StartWorkflows calls among the threads of one client that start at once.

    No thread of its own: the first caller finding no call in flight sends at once (a lone
    start as a plain StartWorkflow); callers arriving meanwhile queue. When a call returns,
    its sender hands the queue to the first waiting caller, which sends it as one batch (at
    most the server's limit), so each batch costs one wake-up besides its callers' own.
    A server without StartWorkflows (UNIMPLEMENTED) turns batching off for this client.
    """

    def __init__(self, client: OrchestratorClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._queue: list[_StartSlot] = []
        self._sending = False
        self._unbatched = False

    def start(self, request: workflows_pb2.StartWorkflowRequest) -> str:
        slot = _StartSlot(request)
        with self._lock:
            unbatched = self._unbatched
            if not unbatched:
                self._queue.append(slot)
                lead = not self._sending
                self._sending = True
        if unbatched:
            return self._alone(request)
        if not lead:
            slot.done.wait()
            if not slot.lead:
                return self._result(slot)
        self._send()
        return self._result(slot)

    def _alone(self, request: workflows_pb2.StartWorkflowRequest) -> str:
        response = self._client._invoke(
            _START_WORKFLOW, request, request.request_id, timeout_s=None, retry_budget_s=None
        )
        return str(response.workflow_id)

    def _each_alone(self, batch: list[_StartSlot]) -> list[Any]:
        outcomes: list[Any] = []
        for s in batch:
            try:
                outcomes.append(self._alone(s.request))
            except BaseException as exc:
                outcomes.append(exc)
        return outcomes

    @staticmethod
    def _result(slot: _StartSlot) -> str:
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        return str(slot.outcome)

    def _send(self) -> None:
        """Send the queue's head batch, settle its slots, then pass the turn on."""
        with self._lock:
            batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
            unbatched = self._unbatched
        outcomes: list[Any]
        try:
            if len(batch) == 1 or unbatched:
                outcomes = self._each_alone(batch)
            else:
                outcomes = self._client._start_batch([s.request for s in batch])
        except OrchestratorError as exc:
            if exc.code == grpc.StatusCode.UNIMPLEMENTED:
                # A server from before StartWorkflows: every caller sends its own from now on.
                with self._lock:
                    self._unbatched = True
                outcomes = self._each_alone(batch)
            else:
                outcomes = _one_error_each(exc, batch)
        except BaseException as exc:
            outcomes = _one_error_each(exc, batch)
        with self._lock:
            nxt = self._queue[0] if self._queue else None
            if nxt is None:
                self._sending = False
            else:
                nxt.lead = True  # the head of what queued meanwhile sends the next batch
        for s, outcome in zip(batch, outcomes, strict=True):
            s.outcome = outcome
            s.done.set()  # the sender's own slot (batch[0]) is not waiting: harmless
        if nxt is not None:
            nxt.done.set()


class OrchestratorClient:
    """A thread-safe client for an orchestrator cluster.

    Every call goes to one replica; on a retryable failure (UNAVAILABLE, DEADLINE_EXCEEDED,
    RESOURCE_EXHAUSTED, and CANCELLED or UNKNOWN from a replica going away) it is retried on the leader the replica named, else on the next
    configured address, with exponential backoff and jitter, until the call's retry budget is
    spent. Mutating calls reuse one request id on every retry, so the server applies them at
    most once. The address that last answered is tried first by the next call.

    A recorder, if given, is called once per logical call (never per attempt) as
    ``recorder(event, op, request_id, detail)``:

    * ``"invoke"`` before the first attempt; detail is the request message.
    * ``"ok"`` on success; detail is the response message.
    * ``"fail"`` when the server gave a definite error (nothing was applied, or a retry replayed
      a definite first outcome); detail is the :class:`OrchestratorError`.
    * ``"unknown"`` when the outcome is open: the retry budget ran out on retryable errors, or
      the call ended in a non-definite error (INTERNAL, the client being closed, a local
      exception);
      detail is the exception.

    ``op`` is the RPC method name (``"StartWorkflow"``). Read-only calls also get a request id,
    for the recorder only. A recorder that raises is logged and otherwise ignored.
    """

    def __init__(
        self,
        addresses: Sequence[str] | str,
        *,
        timeout_s: float = 5.0,
        retry_budget_s: float = 30.0,
        metadata: MetadataLike | None = None,
        recorder: Recorder | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        channel_options: Sequence[tuple[str, Any]] | None = None,
        batch_starts: bool = True,
    ) -> None:
        """Creates a client; channels are opened lazily, on first use of each address.

        Args:
            addresses: Replica gRPC addresses, as a sequence or a comma-separated string
                ``"host:port,host:port"``. Any replica can serve any call.
            timeout_s: Deadline of one attempt, in seconds; it is what catches a replica that
                accepts connections but never answers (e.g. a paused process).
            retry_budget_s: Overall deadline of a logical call, retries and backoff included.
                The first attempt always gets its full attempt deadline.
            metadata: Extra request metadata sent with every call (e.g. an auth token).
            recorder: Optional history hook, see the class docstring.
            credentials: TLS credentials; None for plaintext channels.
            channel_options: Extra grpc channel options; they override the client's defaults.
            batch_starts: Let start_workflow calls made at the same time from several threads
                share StartWorkflows calls (see start_workflow). A lone call is sent at once,
                as a plain StartWorkflow.

        Raises:
            ValueError: No address was given, a timeout is not positive, or the metadata uses a
                key the client manages.
        """
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if retry_budget_s < 0:
            raise ValueError("retry_budget_s must not be negative")
        self._addresses = _parse_addresses(addresses)
        self._timeout_s = float(timeout_s)
        self._retry_budget_s = float(retry_budget_s)
        self._metadata = _normalize_metadata(metadata)
        self._recorder = recorder
        self._credentials = credentials
        options: dict[str, Any] = dict(_CHANNEL_OPTIONS)
        options.update(channel_options or ())
        self._channel_options = tuple(options.items())

        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._callables: dict[tuple[str, str], grpc.UnaryUnaryMultiCallable[Message, Message]] = {}
        self._max_seq = 0
        # Routing: the next call starts at the address that last answered (sticky, possibly a
        # leader hint outside the configured list), else at the configured address _rr.
        self._sticky: str | None = None
        self._rr = 0
        # An Event rather than a bool so that close() wakes calls sleeping between retries.
        self._closed = threading.Event()
        self._starts = _StartCoalescer(self) if batch_starts else None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def addresses(self) -> tuple[str, ...]:
        """The configured replica addresses, in rotation order.

        Returns:
            The addresses, deduplicated.
        """
        return self._addresses

    @property
    def last_sequence(self) -> int:
        """The highest applied sequence number any response has reported so far.

        Returns:
            The sequence number; 0 before the first response that carried one.
        """
        with self._lock:
            return self._max_seq

    def close(self) -> None:
        """Closes every channel; calls in progress fail and later calls raise RuntimeError.

        Idempotent.
        """
        self._closed.set()
        with self._lock:
            channels = list(self._channels.values())
            self._channels.clear()
            self._callables.clear()
        for channel in channels:
            channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OrchestratorClient(addresses={list(self._addresses)!r})"

    # -- definitions --------------------------------------------------------------------------

    def register_workflow_def(
        self,
        definition: Mapping[str, Any] | str,
        *,
        overwrite: bool = False,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> tuple[str, int]:
        """Registers one version of a workflow definition (Conductor JSON).

        Args:
            definition: The definition as a dict, or as JSON text passed verbatim.
            overwrite: Replace an existing, different definition of the same name and version.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The registered ``(name, version)``.

        Raises:
            InvalidArgumentError: The definition is malformed.
            AlreadyExistsError: A different definition has that name and version and
                ``overwrite`` is False.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        rid = request_id or _new_request_id()
        request = definitions_pb2.RegisterWorkflowDefRequest(
            request_id=rid, definition_json=_encode_definition(definition), overwrite=overwrite
        )
        response = self._invoke(
            _REGISTER_WORKFLOW_DEF, request, rid, timeout_s=timeout_s, retry_budget_s=retry_budget_s
        )
        return response.name, response.version

    def get_workflow_def(
        self,
        name: str,
        version: int = 0,
        *,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> dict[str, Any]:
        """Fetches one version of a workflow definition.

        Args:
            name: The definition name.
            version: The version; 0 means the latest.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The definition as Conductor JSON decoded to a dict.

        Raises:
            NotFoundError: No such definition or version.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = definitions_pb2.GetWorkflowDefRequest(name=name, version=version)
        response = self._invoke(
            _GET_WORKFLOW_DEF,
            request,
            _new_request_id(),
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return _decode_object(response.definition_json)

    def list_workflow_defs(
        self, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Lists every registered version of every workflow definition.

        Args:
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            One decoded definition per version; each has at least ``name`` and ``version``.

        Raises:
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        response = self._invoke(
            _LIST_WORKFLOW_DEFS,
            definitions_pb2.ListWorkflowDefsRequest(),
            _new_request_id(),
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        out: list[dict[str, Any]] = []
        for summary in response.definitions:
            definition = _decode_object(summary.definition_json)
            definition.setdefault("name", summary.name)
            definition.setdefault("version", summary.version)
            out.append(definition)
        return out

    def register_task_defs(
        self,
        task_defs: Sequence[Mapping[str, Any] | str],
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> list[str]:
        """Registers or replaces task definitions (retry policy, timeouts) by name.

        Args:
            task_defs: Task definitions as dicts, or as JSON text passed verbatim.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The registered names, in order.

        Raises:
            InvalidArgumentError: A definition is malformed.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        rid = request_id or _new_request_id()
        request = definitions_pb2.RegisterTaskDefsRequest(
            request_id=rid, task_def_json=[_encode_definition(d) for d in task_defs]
        )
        response = self._invoke(
            _REGISTER_TASK_DEFS, request, rid, timeout_s=timeout_s, retry_budget_s=retry_budget_s
        )
        return list(response.names)

    def get_task_def(
        self, name: str, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> dict[str, Any]:
        """Fetches a task definition.

        Args:
            name: The task definition name (the task type).
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The task definition as Conductor JSON decoded to a dict.

        Raises:
            NotFoundError: No such task definition.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        response = self._invoke(
            _GET_TASK_DEF,
            definitions_pb2.GetTaskDefRequest(name=name),
            _new_request_id(),
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return _decode_object(response.task_def_json)

    def list_task_defs(
        self, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Lists every task definition.

        Args:
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The decoded task definitions.

        Raises:
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        response = self._invoke(
            _LIST_TASK_DEFS,
            definitions_pb2.ListTaskDefsRequest(),
            _new_request_id(),
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return [_decode_object(text) for text in response.task_def_json]

    # -- workflows ----------------------------------------------------------------------------

    def start_workflow(
        self,
        name: str,
        input: Mapping[str, Any] | None = None,
        *,
        version: int = 0,
        correlation_id: str = "",
        idempotency_key: str = "",
        idempotency_strategy: str = "FAIL",
        priority: int = 0,
        task_to_domain: Mapping[str, str] | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> str:
        """Starts a workflow from a registered definition.

        Args:
            name: The workflow definition name.
            input: The workflow input; None means ``{}``.
            version: The definition version; 0 means the latest.
            correlation_id: Free-form id to find related workflows by.
            idempotency_key: Business key that identifies this start across separate calls.
            idempotency_strategy: What to do when a workflow with the key exists: ``"FAIL"``,
                ``"RETURN_EXISTING"`` or ``"FAIL_ON_RUNNING"``.
            priority: Workflow priority (0-99).
            task_to_domain: Conductor's taskToDomain: task name (or ``"*"``) to a domain, or a
                comma-separated list of domains tried in order (``NO_DOMAIN`` = the default
                queue); workers poll a domain with ``poll_tasks(..., domain=...)``.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The workflow id (an existing one under ``RETURN_EXISTING``).

        With ``batch_starts`` (the default) and no per-call timeouts, starts that other threads
        make while one is in flight wait for it and then go together in one StartWorkflows
        call (each still its own request with its own id and outcome): a client shared by many
        threads costs the cluster one call per batch instead of one per workflow, and a lone
        start waits for nothing.

        Raises:
            ValueError: Unknown idempotency strategy, or input that is not JSON-serializable.
            TypeError: Input that is not JSON-serializable.
            NotFoundError: No such workflow definition.
            AlreadyExistsError: The idempotency key is taken under the chosen strategy.
            InvalidArgumentError: The server rejected the request.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        strategy = _enum_key(
            workflows_pb2.IdempotencyStrategy,
            idempotency_strategy,
            _IDEMPOTENCY_PREFIX,
            "idempotency strategy",
        )
        rid = request_id or _new_request_id()
        request = workflows_pb2.StartWorkflowRequest(
            request_id=rid,
            name=name,
            version=version,
            input_json=_encode_json(dict(input) if input is not None else None),
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
            idempotency_strategy=strategy,
            priority=priority,
            task_to_domain=dict(task_to_domain or {}),
        )
        if self._starts is not None and timeout_s is None and retry_budget_s is None:
            return self._starts.start(request)
        response = self._invoke(
            _START_WORKFLOW, request, rid, timeout_s=timeout_s, retry_budget_s=retry_budget_s
        )
        return response.workflow_id

    def _start_batch(self, requests: list[workflows_pb2.StartWorkflowRequest]) -> list[Any]:
        """One StartWorkflows call; per request the workflow id or the error for it.

        Raises what failed the whole call (every request shares its fate).
        """
        answers = self._batch_call(
            _START_WORKFLOWS,
            workflows_pb2.StartWorkflowsRequest(items=requests),
            _START_WORKFLOW.name,
            [r.request_id for r in requests],
            requests,
            lambda response: response.results,
            None,
            None,
        )
        return [a if isinstance(a, OrchestratorError) else a.workflow_id for a in answers]

    def _batch_call(
        self,
        method: _Method[_RespT],
        request: Message,
        op: str,
        rids: list[str],
        items: Sequence[Message],
        answers_of: Callable[[Any], Sequence[Any]],
        timeout_s: float | None,
        retry_budget_s: float | None,
    ) -> list[Any]:
        """One call carrying several requests, each recorded as its own `op` operation.

        Returns, per item, its answer (code 0) or the error for it. Raises what failed the
        whole call, recorded for every item (a retry of the same call is deduplicated item by
        item, so an item is never applied twice).
        """
        attempt_timeout, budget = self._call_limits(timeout_s, retry_budget_s)
        for rid, item in zip(rids, items, strict=True):
            self._record("invoke", op, rid, item)
        try:
            response = self._call_with_retries(
                method, request, rids[0], attempt_timeout, budget, None
            )
        except BaseException as exc:
            unknown = not isinstance(exc, OrchestratorError) or exc.outcome_unknown
            for rid in rids:
                self._record("unknown" if unknown else "fail", op, rid, exc)
            raise
        answers = answers_of(response)
        if len(answers) != len(items):
            mismatch = OrchestratorError(
                grpc.StatusCode.INTERNAL,
                f"{method.name} answered {len(answers)} results for {len(items)} requests",
                op=op,
            )
            for rid in rids:
                self._record("unknown", op, rid, mismatch)
            raise mismatch
        out: list[Any] = []
        for rid, answer in zip(rids, answers, strict=True):
            if answer.code == 0:
                self._record("ok", op, rid, answer)
                out.append(answer)
                continue
            err = error_for_status(
                _STATUS_BY_NUMBER.get(answer.code, grpc.StatusCode.UNKNOWN),
                answer.message,
                op=op,
                request_id=rid,
            )
            self._record("fail", op, rid, err)
            out.append(err)
        return out

    def get_workflow(
        self,
        workflow_id: str,
        *,
        include_tasks: bool = True,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> Workflow:
        """Fetches a workflow execution.

        Args:
            workflow_id: The workflow id.
            include_tasks: Include the task attempts.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The workflow.

        Raises:
            NotFoundError: No such workflow.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = workflows_pb2.GetWorkflowRequest(
            workflow_id=workflow_id, include_tasks=include_tasks
        )
        response = self._invoke(
            _GET_WORKFLOW,
            request,
            _new_request_id(),
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return Workflow.from_proto(response.workflow)

    def terminate_workflow(
        self,
        workflow_id: str,
        reason: str = "",
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Terminates a running workflow; its pending tasks are canceled.

        Args:
            workflow_id: The workflow id.
            reason: Why, recorded as the workflow's reason for incompletion.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            NotFoundError: No such workflow.
            FailedPreconditionError: The workflow is no longer running.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        rid = request_id or _new_request_id()
        request = workflows_pb2.TerminateWorkflowRequest(
            request_id=rid, workflow_id=workflow_id, reason=reason
        )
        self._invoke(
            _TERMINATE_WORKFLOW, request, rid, timeout_s=timeout_s, retry_budget_s=retry_budget_s
        )

    def list_workflows(
        self,
        *,
        name: str = "",
        status: str = "",
        limit: int = 100,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> list[Workflow]:
        """Lists workflow executions, newest first, without their tasks.

        Args:
            name: Only this workflow definition; empty for all.
            status: Only this status (e.g. ``"RUNNING"``); empty for all.
            limit: At most this many (the server caps it at 1000).
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The workflows.

        Raises:
            ValueError: Unknown status.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        status_key = (
            _enum_key(workflows_pb2.WorkflowStatus, status, _WORKFLOW_STATUS_PREFIX, "status")
            if status
            else "WORKFLOW_STATUS_UNSPECIFIED"
        )
        request = workflows_pb2.ListWorkflowsRequest(
            workflow_name=name, status=status_key, limit=limit
        )
        response = self._invoke(
            _LIST_WORKFLOWS,
            request,
            _new_request_id(),
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return [Workflow.from_proto(w) for w in response.workflows]

    def wait_for_workflow(
        self,
        workflow_id: str,
        *,
        timeout_s: float = 60.0,
        poll_interval_s: float = 0.2,
        include_tasks: bool = True,
    ) -> Workflow:
        """Polls a workflow until it reaches a terminal status.

        Transient unavailability while waiting is tolerated until the timeout.

        Args:
            workflow_id: The workflow id.
            timeout_s: How long to wait, in seconds.
            poll_interval_s: Pause between polls, in seconds.
            include_tasks: Return the workflow with its tasks.

        Returns:
            The workflow in its terminal status.

        Raises:
            TimeoutError: The workflow was not terminal within ``timeout_s``.
            NotFoundError: No such workflow.
            OrchestratorError: Any other non-retryable server error.
        """
        deadline = time.monotonic() + timeout_s
        last_error: UnavailableError | None = None
        last_status = "unknown"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                # Polls skip the task list, which can be large; the final fetch adds it back.
                workflow = self.get_workflow(
                    workflow_id,
                    include_tasks=False,
                    retry_budget_s=min(self._retry_budget_s, remaining),
                    timeout_s=min(self._timeout_s, remaining),
                )
            except UnavailableError as exc:
                last_error = exc
            else:
                last_status = workflow.status
                if workflow.is_terminal:
                    if not include_tasks:
                        return workflow
                    # Terminal workflows do not change, so the second read is consistent.
                    return self.get_workflow(workflow_id, include_tasks=True)
            pause = min(poll_interval_s, deadline - time.monotonic())
            if pause > 0 and self._closed.wait(pause):
                raise RuntimeError("OrchestratorClient is closed")
        raise TimeoutError(
            f"workflow {workflow_id} not terminal after {timeout_s}s (last status: {last_status})"
        ) from last_error

    # -- tasks (worker protocol) --------------------------------------------------------------

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
        if count < 1:
            raise ValueError("count must be at least 1")
        if timeout_ms < 0:
            raise ValueError("timeout_ms must not be negative")
        rid = request_id or _new_request_id()
        request = tasks_pb2.PollTasksRequest(
            request_id=rid,
            task_type=task_type,
            worker_id=worker_id,
            count=count,
            timeout_ms=timeout_ms,
            domain=domain,
        )
        extra = self._timeout_s if timeout_s is None else timeout_s
        response = self._invoke(
            _POLL_TASKS,
            request,
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
        rid = request_id or _new_request_id()
        request = tasks_pb2.CompleteTaskRequest(
            request_id=rid,
            task_id=task_id,
            output_json=_encode_json(dict(output) if output is not None else None),
            worker_id=worker_id,
            workflow_id=workflow_id,
            reference_task_name=reference_task_name,
        )
        self._invoke(
            _COMPLETE_TASK, request, rid, timeout_s=timeout_s, retry_budget_s=retry_budget_s
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
        encoded = [
            (task_id, _encode_json(dict(output) if output is not None else None))
            for task_id, output in results
        ]
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
        if not polls or len(polls) > 16 or any(n < 1 for n in polls.values()):
            raise ValueError("polls takes 1 to 16 task types, each with a count of at least 1")
        encoded = [
            (task_id, _encode_json(dict(output) if output is not None else None))
            for task_id, output in results
        ]
        ids = poll_request_ids or {}
        requests = [
            tasks_pb2.PollTasksRequest(
                request_id=ids.get(task_type) or _new_request_id(),
                task_type=task_type,
                worker_id=worker_id,
                count=count,
                domain=domain,
            )
            for task_type, count in polls.items()
        ]
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
        if not results or len(results) > _MAX_BATCH:
            raise ValueError(f"complete_tasks takes 1 to {_MAX_BATCH} results")
        rids = (
            list(request_ids) if request_ids is not None else [_new_request_id() for _ in results]
        )
        if len(rids) != len(results):
            raise ValueError("request_ids must match results one to one")
        items = [
            tasks_pb2.CompleteTaskRequest(
                request_id=rid, task_id=task_id, output_json=output_json, worker_id=worker_id
            )
            for rid, (task_id, output_json) in zip(rids, results, strict=True)
        ]
        request = tasks_pb2.CompleteTasksRequest(items=items, polls=polls)
        polled: list[tasks_pb2.PollTasksResponse] = []

        def answers_of(response: tasks_pb2.CompleteTasksResponse) -> Sequence[Any]:
            polled.extend(response.polled)
            return response.statuses

        for poll in polls:
            self._record("invoke", _POLL_TASKS.name, poll.request_id, poll)
        try:
            answers = self._batch_call(
                _COMPLETE_TASKS,
                request,
                _COMPLETE_TASK.name,
                rids,
                items,
                answers_of,
                timeout_s,
                retry_budget_s,
            )
        except BaseException as exc:
            unknown = not isinstance(exc, OrchestratorError) or exc.outcome_unknown
            for poll in polls:
                self._record(
                    "unknown" if unknown else "fail", _POLL_TASKS.name, poll.request_id, exc
                )
            raise
        errors = [a if isinstance(a, OrchestratorError) else None for a in answers]
        if polled and len(polled) != len(polls):
            # The results stand; what the polls leased is unknown (it returns when the leases
            # expire).
            mismatch = OrchestratorError(
                grpc.StatusCode.INTERNAL,
                f"CompleteTasks answered {len(polled)} polls for {len(polls)}",
                op=_POLL_TASKS.name,
            )
            for poll in polls:
                self._record("unknown", _POLL_TASKS.name, poll.request_id, mismatch)
            return errors, [[] for _ in polls]
        # No answers at all: a server from before riding polls, which leased nothing.
        answered = polled or [tasks_pb2.PollTasksResponse() for _ in polls]
        for poll, answer in zip(polls, answered, strict=True):
            self._record("ok", _POLL_TASKS.name, poll.request_id, answer)
        return errors, [[Task.from_proto(t) for t in answer.tasks] for answer in answered]

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
        rid = request_id or _new_request_id()
        request = tasks_pb2.FailTaskRequest(
            request_id=rid,
            task_id=task_id,
            reason=reason,
            terminal=terminal,
            output_json=_encode_json(dict(output) if output is not None else None),
            worker_id=worker_id,
            workflow_id=workflow_id,
            reference_task_name=reference_task_name,
        )
        self._invoke(_FAIL_TASK, request, rid, timeout_s=timeout_s, retry_budget_s=retry_budget_s)

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
        rid = request_id or _new_request_id()
        request = tasks_pb2.HeartbeatTaskRequest(
            request_id=rid, task_id=task_id, worker_id=worker_id
        )
        response = self._invoke(
            _HEARTBEAT_TASK, request, rid, timeout_s=timeout_s, retry_budget_s=retry_budget_s
        )
        return response.lease_expires_ms

    # -- cluster ------------------------------------------------------------------------------

    def cluster_status(
        self, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Reports the status of every replica, as gathered by the replica that answers.

        Args:
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            One dict per replica with every ``ReplicaStatus`` field by its proto name (defaults
            included; 64-bit integers as ints).

        Raises:
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        response = self._invoke(
            _GET_CLUSTER_STATUS,
            cluster_pb2.GetClusterStatusRequest(),
            _new_request_id(),
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return [_message_to_plain_dict(r) for r in response.replicas]

    def add_replica(
        self,
        node_id: str,
        *,
        raft_address: str,
        grpc_address: str,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Adds a replica to the cluster's membership; start it with ``serve --join`` afterwards.

        Args:
            node_id: The new replica's id.
            raft_address: Its Raft address, host:port.
            grpc_address: Its gRPC address, host:port.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            InvalidArgumentError: A malformed address.
            AlreadyExistsError: The id is a member at another address.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        rid = request_id or _new_request_id()
        request = cluster_pb2.AddReplicaRequest(
            request_id=rid, node_id=node_id, raft_address=raft_address, grpc_address=grpc_address
        )
        self._invoke(_ADD_REPLICA, request, rid, timeout_s=timeout_s, retry_budget_s=retry_budget_s)

    def remove_replica(
        self,
        node_id: str,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> None:
        """Removes a replica from the cluster's membership (stop its process afterwards).

        Args:
            node_id: The replica's id.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Raises:
            NotFoundError: Not a member.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        rid = request_id or _new_request_id()
        request = cluster_pb2.RemoveReplicaRequest(request_id=rid, node_id=node_id)
        self._invoke(
            _REMOVE_REPLICA, request, rid, timeout_s=timeout_s, retry_budget_s=retry_budget_s
        )

    def replica_status(
        self,
        address: str | None = None,
        *,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Reports the status of one replica, without retrying elsewhere.

        Args:
            address: The replica to ask; None asks whichever replica the client would use.
            timeout_s: Per-attempt deadline override.

        Returns:
            The replica's ``ReplicaStatus`` as a dict, like :meth:`cluster_status` entries.

        Raises:
            UnavailableError: The replica did not answer.
            OrchestratorError: Any other server error.
        """
        response = self._invoke(
            _GET_REPLICA_STATUS,
            cluster_pb2.GetReplicaStatusRequest(),
            _new_request_id(),
            timeout_s=timeout_s,
            retry_budget_s=0.0,
            pinned_address=address,
        )
        return _message_to_plain_dict(response)

    # -- the retry loop -----------------------------------------------------------------------

    def _call_limits(
        self, timeout_s: float | None, retry_budget_s: float | None
    ) -> tuple[float, float]:
        """(per-attempt deadline, overall budget) of a call; refuses a closed client."""
        if self._closed.is_set():
            raise RuntimeError("OrchestratorClient is closed")
        attempt_timeout = self._timeout_s if timeout_s is None else float(timeout_s)
        if attempt_timeout <= 0:
            raise ValueError("timeout_s must be positive")
        budget = self._retry_budget_s if retry_budget_s is None else float(retry_budget_s)
        return attempt_timeout, budget

    def _invoke(
        self,
        method: _Method[_RespT],
        request: Message,
        request_id: str,
        *,
        timeout_s: float | None,
        retry_budget_s: float | None,
        pinned_address: str | None = None,
    ) -> _RespT:
        attempt_timeout, budget = self._call_limits(timeout_s, retry_budget_s)
        self._record("invoke", method.name, request_id, request)
        try:
            response = self._call_with_retries(
                method, request, request_id, attempt_timeout, budget, pinned_address
            )
        except OrchestratorError as exc:
            self._record("unknown" if exc.outcome_unknown else "fail", method.name, request_id, exc)
            raise
        except BaseException as exc:
            # Whatever interrupted the call (a bug, KeyboardInterrupt), the history must not be
            # left with an open invoke, and the server may have applied it.
            self._record("unknown", method.name, request_id, exc)
            raise
        self._record("ok", method.name, request_id, response)
        return response

    def _call_with_retries(
        self,
        method: _Method[_RespT],
        request: Message,
        request_id: str,
        attempt_timeout: float,
        budget: float,
        pinned_address: str | None,
    ) -> _RespT:
        # Retries may start until the budget is spent; the first attempt always gets its full
        # deadline, so a budget shorter than one attempt (or zero) means "no retries" rather
        # than "no time".
        retry_deadline = time.monotonic() + budget
        if pinned_address is not None:
            address, pos = pinned_address, 0
        else:
            address, pos = self._first_route()
        backoff = _BACKOFF_INITIAL_S
        followed_hints: set[str] = set()
        attempts = 0
        timeout = attempt_timeout
        while True:
            attempts += 1
            code, details, trailers, response = self._attempt(method, request, address, timeout)
            self._observe_sequence(trailers)
            if response is not None:
                if pinned_address is None:
                    self._route_succeeded(address, pos)
                return response

            closed = code == grpc.StatusCode.CANCELLED and self._closed.is_set()
            if closed or not _is_retryable(code, details):
                # The replica answered, so it is healthy: keep routing to it.
                if pinned_address is None:
                    self._route_succeeded(address, pos)
                raise error_for_status(
                    code,
                    details,
                    op=method.name,
                    request_id=request_id,
                    attempts=attempts,
                    address=address,
                )

            _log.debug(
                "%s attempt %d to %s failed with %s: %s",
                method.name,
                attempts,
                address,
                code.name,
                details,
            )
            hint = _metadata_value(trailers, LEADER_METADATA_KEY)
            hint = hint.strip() if hint else None
            delay: float | None = None
            if pinned_address is not None:
                next_address: str | None = None
            else:
                pos = self._route_failed(address, pos)
                if hint and hint != address and hint not in followed_hints:
                    # A fresh redirect is worth following at once; a hint already followed in
                    # this call is stale (e.g. mid-election) and gets the normal rotation.
                    followed_hints.add(hint)
                    next_address = hint
                    delay = 0.0
                else:
                    next_address = self._addresses[pos]
            if delay is None:
                retry_after_ms = _parse_int(_metadata_value(trailers, RETRY_AFTER_METADATA_KEY))
                if code == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after_ms is not None:
                    # Honour the server's hint, with a little jitter so a crowd of throttled
                    # clients does not come back in lockstep.
                    delay = max(0.0, retry_after_ms / 1000.0) * random.uniform(1.0, 1.2)
                else:
                    delay = random.uniform(backoff / 2.0, backoff)
                    backoff = min(backoff * 2.0, _BACKOFF_MAX_S)

            remaining = retry_deadline - time.monotonic() - delay
            if next_address is None or remaining < _MIN_ATTEMPT_S:
                cls = (
                    ResourceExhaustedError
                    if code == grpc.StatusCode.RESOURCE_EXHAUSTED
                    else UnavailableError
                )
                raise cls(
                    code,
                    details,
                    op=method.name,
                    request_id=request_id,
                    attempts=attempts,
                    address=address,
                )
            if delay > 0 and self._closed.wait(delay):
                raise OrchestratorError(
                    grpc.StatusCode.CANCELLED,
                    "client closed during retries",
                    op=method.name,
                    request_id=request_id,
                    attempts=attempts,
                    address=address,
                )
            address = next_address
            timeout = min(attempt_timeout, remaining)

    def _attempt(
        self,
        method: _Method[_RespT],
        request: Message,
        address: str,
        timeout: float,
    ) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str | bytes], ...], _RespT | None]:
        """Makes one attempt; returns (code, details, trailing metadata, response or None)."""
        metadata = ((MIN_SEQ_METADATA_KEY, str(self.last_sequence)), *self._metadata)
        try:
            callable_ = self._callable(address, method)
            response, call = callable_.with_call(
                request, timeout=max(timeout, _MIN_ATTEMPT_S), metadata=metadata
            )
        except grpc.RpcError as err:
            if isinstance(err, grpc.Call):
                code = err.code() or grpc.StatusCode.UNKNOWN
                details = err.details() or ""
                trailers = tuple(err.trailing_metadata() or ())
            else:
                code, details, trailers = grpc.StatusCode.UNKNOWN, str(err), ()
            if code == grpc.StatusCode.CANCELLED and self._closed.is_set():
                details = details or "client closed"
            return code, details, trailers, None
        except ValueError:
            # grpc raises ValueError for a call on a channel that close() just shut.
            if self._closed.is_set():
                return grpc.StatusCode.CANCELLED, "client closed", (), None
            raise
        if not isinstance(response, method.response_type):
            raise TypeError(
                f"{method.name}: expected {method.response_type.__name__}, "
                f"got {type(response).__name__}"
            )
        return grpc.StatusCode.OK, "", tuple(call.trailing_metadata() or ()), response

    def _callable(
        self, address: str, method: _Method[_RespT]
    ) -> grpc.UnaryUnaryMultiCallable[Message, Message]:
        key = (address, method.path)
        with self._lock:
            callable_ = self._callables.get(key)
            if callable_ is not None:
                return callable_
            if self._closed.is_set():
                raise RuntimeError("OrchestratorClient is closed")
            channel = self._channels.get(address)
            if channel is None:
                if self._credentials is not None:
                    channel = grpc.secure_channel(
                        address, self._credentials, options=self._channel_options
                    )
                else:
                    channel = grpc.insecure_channel(address, options=self._channel_options)
                self._channels[address] = channel
            callable_ = channel.unary_unary(
                method.path,
                request_serializer=_serialize,
                response_deserializer=method.response_type.FromString,
            )
            self._callables[key] = callable_
            return callable_

    # -- routing and bookkeeping --------------------------------------------------------------

    def _first_route(self) -> tuple[str, int]:
        with self._lock:
            sticky = self._sticky
            pos = self._rr
        if sticky is None:
            return self._addresses[pos], pos
        if sticky in self._addresses:
            # Keep the rotation aligned with the sticky address so a failure moves past it.
            pos = self._addresses.index(sticky)
        return sticky, pos

    def _route_succeeded(self, address: str, pos: int) -> None:
        with self._lock:
            self._sticky = address
            self._rr = pos

    def _route_failed(self, address: str, pos: int) -> int:
        """Forgets a failed address and returns the rotation position to try next."""
        if address == self._addresses[pos]:
            pos = (pos + 1) % len(self._addresses)
        with self._lock:
            if self._sticky == address:
                self._sticky = None
            self._rr = pos
        return pos

    def _observe_sequence(self, trailers: Iterable[tuple[str, str | bytes]]) -> None:
        seq = _parse_int(_metadata_value(trailers, SEQ_METADATA_KEY))
        if seq is None:
            return
        with self._lock:
            self._max_seq = max(self._max_seq, seq)

    def _record(self, event: str, op: str, request_id: str, detail: object) -> None:
        recorder = self._recorder
        if recorder is None:
            return
        try:
            recorder(event, op, request_id, detail)
        except Exception:
            _log.exception("recorder raised on %s %s %s", event, op, request_id)
