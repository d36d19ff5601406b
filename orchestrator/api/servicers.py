"""The gRPC servicers. They translate and validate; every decision is made by the state machine.

Mutations: on the ready leader they are proposed and the committed outcome is mapped through
api/errors.py; on a follower they are forwarded to the leader over gRPC (with the caller's
remaining deadline); with no leader they answer UNAVAILABLE. Reads are served locally once the
replica has applied the caller's last seen sequence number (read-your-writes across replicas).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from orchestrator_client.v1 import (
    cluster_pb2 as cpb,
)
from orchestrator_client.v1 import (
    cluster_pb2_grpc,
    definitions_pb2_grpc,
    tasks_pb2_grpc,
    workflows_pb2_grpc,
)
from orchestrator_client.v1 import (
    definitions_pb2 as dpb,
)
from orchestrator_client.v1 import (
    tasks_pb2 as tpb,
)
from orchestrator_client.v1 import (
    workflows_pb2 as wpb,
)

from ..core import codec, limits, queries
from ..core import commands as C
from ..core.definitions import check_task_to_domain, normalize_task_def, normalize_workflow_def
from ..core.errors import Code, Rejected
from ..core.machine import Outcome, precheck
from ..replication.node import NotLeader, OutcomeUnknown, Overloaded, ProposalError, Replica
from ..runtime.dispatcher import Dispatcher
from ..runtime.sandbox import default_sandbox
from ..runtime.scripts import SandboxDown, check_definition_scripts
from . import views
from .errors import (
    CODE_TO_STATUS,
    FORWARDED_KEY,
    LEADER_KEY,
    MIN_SEQ_KEY,
    RETRY_AFTER_KEY,
    SEQ_KEY,
    ApiError,
    invalid,
)

log = structlog.get_logger("api")

PROPOSE_TIMEOUT_S = 10.0
READ_WAIT_S = 2.0


@dataclass(frozen=True)
class Peer:
    node_id: str
    raft: str
    grpc: str


class Failpoints:
    """Test-only fault injection. Off unless ORCHESTRATOR_FAILPOINTS_FILE names a file.

    The file holds specs like `crash_after_commit=<CommandName>:<n>`, one per line or comma
    separated: SIGKILL this process right after the n-th command of that type it proposed has been
    committed and applied, before the reply leaves. The file is re-read when it changes, so a test
    can arm a failpoint on the replica that happens to lead.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._mtime = -1.0
        self.crash: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def _reload(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            self.crash = {}
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        with open(self.path) as f:
            text = f.read()
        crash = {}
        for part in filter(None, (p.strip() for p in text.replace("\n", ",").split(","))):
            name, _, arg = part.partition("=")
            if name == "crash_after_commit":
                cmd, _, n = arg.partition(":")
                crash[cmd] = int(n or "1")
        self.crash = crash
        self.counts = {}

    def after_commit(self, cmd_name: str, request_id: str = "") -> None:
        if not self.path:
            return
        with self._lock:
            self._reload()
            if cmd_name not in self.crash:
                return
            self.counts[cmd_name] = self.counts.get(cmd_name, 0) + 1
            hit = self.counts[cmd_name] == self.crash[cmd_name]
        if hit:
            log.warning("failpoint_crash_after_commit", command=cmd_name, request_id=request_id)
            os.kill(os.getpid(), signal.SIGKILL)


class NodeContext:
    """What every servicer shares: the replica, the dispatcher, the peers and forwarding stubs."""

    def __init__(
        self, node_id: str, replica: Replica, dispatcher: Dispatcher, peers: list[Peer]
    ) -> None:
        self.node_id = node_id
        self.replica = replica
        self.dispatcher = dispatcher
        self.config_peers = peers
        self.failpoints = Failpoints(os.environ.get("ORCHESTRATOR_FAILPOINTS_FILE", ""))
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def channel(self, grpc_addr: str) -> grpc.Channel:
        with self._lock:
            ch = self._channels.get(grpc_addr)
            if ch is None:
                ch = grpc.insecure_channel(
                    grpc_addr,
                    options=[
                        ("grpc.keepalive_time_ms", 10_000),
                        ("grpc.keepalive_timeout_ms", 5_000),
                        ("grpc.enable_retries", 0),
                        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                    ],
                )
                self._channels[grpc_addr] = ch
            return ch

    @property
    def peers(self) -> list[Peer]:
        """The configured replicas, updated by members added or removed at run time."""
        by_id = {p.node_id: p for p in self.config_peers}
        with self.replica.lock:
            members = queries.members(self.replica.state)
        for m in members:
            if m.removed:
                by_id.pop(m.node_id, None)
            else:
                by_id[m.node_id] = Peer(m.node_id, m.raft, m.grpc)
        return list(by_id.values())

    @property
    def by_raft(self) -> dict[str, Peer]:
        return {p.raft: p for p in self.peers}

    def leader_peer(self) -> Peer | None:
        addr = self.replica.leader_addr()
        return self.by_raft.get(addr) if addr else None

    def leader_trailers(self) -> tuple[tuple[str, str], ...]:
        peer = self.leader_peer()
        return ((LEADER_KEY, peer.grpc),) if peer is not None else ()

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def _abort(context: grpc.ServicerContext, err: ApiError) -> Any:
    if err.trailers:
        context.set_trailing_metadata(err.trailers)
    context.abort(err.status, err.message)


def _item_status(status: grpc.StatusCode, message: str) -> tpb.ItemStatus:
    return tpb.ItemStatus(code=status.value[0], message=message)


def _outcome_status(outcome: Outcome) -> tpb.ItemStatus:
    if outcome.ok:
        return tpb.ItemStatus()
    err = _outcome_error(outcome)
    return _item_status(err.status, err.message)


def _outcome_error(outcome: Outcome) -> ApiError:
    return ApiError(CODE_TO_STATUS.get(outcome.code, grpc.StatusCode.INTERNAL), outcome.message)


def _request_id(value: str) -> str:
    if not value:
        raise invalid("request_id: required (a client-chosen unique id, reused on retries)")
    if len(value) > limits.MAX_REQUEST_ID_LENGTH:
        raise invalid(f"request_id: at most {limits.MAX_REQUEST_ID_LENGTH} characters")
    return value


def _json_object(
    text: str, field: str, *, max_bytes: int = limits.MAX_JSON_BYTES
) -> dict[str, Any]:
    if not text:
        return {}
    if len(text.encode("utf-8")) > max_bytes:
        # INVALID_ARGUMENT, not RESOURCE_EXHAUSTED: retrying the same payload can never succeed.
        raise invalid(
            f"{field}: {len(text.encode('utf-8'))} bytes exceeds the limit of {max_bytes} bytes"
        )
    deep = f"{field}: nested more than {limits.MAX_JSON_DEPTH} levels deep"
    try:
        value = json.loads(text)
    except RecursionError:  # deeper than Python's parser goes
        raise invalid(deep) from None
    except ValueError as exc:
        raise invalid(f"{field}: malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise invalid(f"{field}: must be a JSON object")
    if codec.deeper_than(value, limits.MAX_JSON_DEPTH):
        raise invalid(deep)
    return value


def _task_ref(request: Any) -> str:
    """task_id, or else both workflow_id and reference_task_name (checked here, resolved in apply)."""
    if request.task_id:
        return _name(request.task_id, "task_id")
    if not (request.workflow_id and request.reference_task_name):
        raise invalid("task_id: required, or workflow_id and reference_task_name")
    _name(request.workflow_id, "workflow_id")
    _name(request.reference_task_name, "reference_task_name")
    return ""


def _address(value: str, field: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise invalid(f"{field}: expected host:port, got {value!r}")
    return value


def _name(value: str, field: str) -> str:
    if not value:
        raise invalid(f"{field}: required")
    if len(value) > limits.MAX_NAME_LENGTH:
        raise invalid(f"{field}: at most {limits.MAX_NAME_LENGTH} characters")
    return value


class _Base:
    SERVICE = ""

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.replica = node.replica

    # ---- plumbing shared by every RPC

    def _run(self, context: grpc.ServicerContext, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ApiError as err:
            return _abort(context, err)
        except Rejected as rej:
            return _abort(context, ApiError(CODE_TO_STATUS[rej.code], rej.message))

    def _set_seq(
        self, context: grpc.ServicerContext, seq: int, extra: tuple[tuple[str, str], ...] = ()
    ) -> None:
        context.set_trailing_metadata(((SEQ_KEY, str(seq)), *extra))

    def _propose(self, context: grpc.ServicerContext, cmd: C.Command) -> Outcome:
        return self._await(context, cmd, self._submit(cmd))

    def _submit(self, cmd: C.Command) -> Future[Outcome]:
        return self._submit_many([cmd])[0]

    def _submit_many(self, cmds: list[C.Command]) -> list[Future[Outcome]]:
        try:
            return self.replica.propose_many(cmds)
        except Overloaded as exc:
            raise ApiError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"overloaded: {exc}",
                ((RETRY_AFTER_KEY, "200"),),
            ) from None
        except NotLeader as exc:
            raise ApiError(
                grpc.StatusCode.UNAVAILABLE, f"not the leader: {exc}", self.node.leader_trailers()
            ) from None

    def _await(
        self, context: grpc.ServicerContext, cmd: C.Command, fut: Future[Outcome]
    ) -> Outcome:
        remaining = context.time_remaining()
        timeout = (
            PROPOSE_TIMEOUT_S if remaining is None else max(0.05, min(remaining, PROPOSE_TIMEOUT_S))
        )
        try:
            outcome = fut.result(timeout=timeout)
        except FutureTimeout:
            raise ApiError(
                grpc.StatusCode.UNAVAILABLE,
                "outcome unknown: not committed in time; retry with the same request_id",
                self.node.leader_trailers(),
            ) from None
        except ProposalError as exc:
            raise self._proposal_error(exc) from None
        self.node.failpoints.after_commit(cmd.NAME, getattr(cmd, "request_id", ""))
        return outcome

    def _proposal_error(self, exc: ProposalError) -> ApiError:
        if isinstance(exc, Overloaded):
            return ApiError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), ((RETRY_AFTER_KEY, "200"),)
            )
        what = "outcome unknown" if isinstance(exc, OutcomeUnknown) else "not applied"
        return ApiError(
            grpc.StatusCode.UNAVAILABLE,
            f"{what}: {exc}; retry with the same request_id",
            self.node.leader_trailers(),
        )

    def _mutate(
        self,
        context: grpc.ServicerContext,
        request: Any,
        method: str,
        build: Callable[[], C.Command],
        respond: Callable[[Outcome], Any],
    ) -> Any:
        def go() -> Any:
            cmd = build()  # validation happens here, before anything reaches Raft
            if self.replica.leader_ready():
                with self.replica.lock:
                    early = precheck(self.replica.state, cmd.to_dict())
                outcome = early if early is not None else self._propose(context, cmd)
                if not outcome.ok:
                    self._set_seq(context, outcome.seq)
                    raise _outcome_error(outcome)
                self._set_seq(context, outcome.seq)
                return respond(outcome)
            return self._forward(context, method, request)

        return self._run(context, go)

    def _batch_mutate(
        self,
        context: grpc.ServicerContext,
        request: Any,
        method: str,
        noun: str,
        build: Callable[[Any], C.Command],
        result_type: Callable[[], Any],
        on_ok: Callable[[Any, Outcome], None],
        respond: Callable[[list[Any], list[Outcome]], Any],
        after: Callable[[], list[C.Command]] = list,
    ) -> Any:
        """A batch call (CompleteTasks, StartWorkflows): each item its own command, judged alone.

        Each item's result (a message with `code` and `message`) says why it was not applied,
        or `on_ok` fills it in. A malformed item gets its error and the others go on. The
        commands are queued for Raft together (one entry carries them all unless it would
        exceed the entry size), after every item was checked. No leader or overload fails the
        whole call with nothing proposed (a retry of the batch is deduplicated item by item).
        `after` builds more commands queued behind the items, validated first (a bad one fails
        the whole call); their outcomes go to `respond`.
        """

        def go() -> Any:
            items = request.items
            if not 1 <= len(items) <= limits.MAX_BATCH_ITEMS:
                raise invalid(f"items: between 1 and {limits.MAX_BATCH_ITEMS} {noun}")
            if not self.replica.leader_ready():
                return self._forward(context, method, request)
            tail = after()
            results = [result_type() for _ in items]

            def failed(i: int, status: tpb.ItemStatus) -> None:
                results[i].code, results[i].message = status.code, status.message

            def decided(i: int, outcome: Outcome) -> None:
                if outcome.ok:
                    on_ok(results[i], outcome)
                else:
                    failed(i, _outcome_status(outcome))

            checked: list[tuple[int, C.Command]] = []
            seq = 0
            for i, item in enumerate(items):
                try:
                    cmd = build(item)
                except ApiError as err:
                    failed(i, _item_status(err.status, f"items[{i}].{err.message}"))
                    continue
                with self.replica.lock:
                    early = precheck(self.replica.state, cmd.to_dict())
                if early is not None:
                    decided(i, early)
                    seq = max(seq, early.seq)
                    continue
                checked.append((i, cmd))
            cmds = [cmd for _, cmd in checked] + tail
            futures = self._submit_many(cmds) if cmds else []
            for (i, cmd), fut in zip(checked, futures, strict=False):
                outcome = self._await(context, cmd, fut)
                decided(i, outcome)
                seq = max(seq, outcome.seq)
            tail_outcomes = []
            for cmd, fut in zip(tail, futures[len(checked) :], strict=True):
                tail_outcomes.append(self._await(context, cmd, fut))
                seq = max(seq, tail_outcomes[-1].seq)
            self._set_seq(context, seq)
            return respond(results, tail_outcomes)

        return self._run(context, go)

    def _forward(self, context: grpc.ServicerContext, method: str, request: Any) -> Any:
        md = _metadata(context)
        peer = self.node.leader_peer()
        if md.get(FORWARDED_KEY) or peer is None or peer.node_id == self.node.node_id:
            raise ApiError(
                grpc.StatusCode.UNAVAILABLE,
                "no ready leader known to this replica; retry shortly",
                self.node.leader_trailers(),
            )
        remaining = context.time_remaining()
        # With no client deadline grpc reports ~2**63 ns remaining: cap it.
        timeout = 60.0 if remaining is None else max(0.05, min(remaining - 0.05, 60.0))
        call = self.node.channel(peer.grpc).unary_unary(
            f"/{self.SERVICE}/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=self._response_type(method).FromString,
        )
        fwd_md = [(FORWARDED_KEY, "1")]
        if MIN_SEQ_KEY in md:
            fwd_md.append((MIN_SEQ_KEY, md[MIN_SEQ_KEY]))
        try:
            response, call_info = call.with_call(request, timeout=timeout, metadata=fwd_md)
        except grpc.RpcError as err:
            trailers = tuple(
                (k, v)
                for k, v in (err.trailing_metadata() or ())
                if k in (SEQ_KEY, LEADER_KEY, RETRY_AFTER_KEY)
            )
            code = err.code()
            if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                code = grpc.StatusCode.UNAVAILABLE
            raise ApiError(
                code, err.details() or "forwarding failed", trailers or ((LEADER_KEY, peer.grpc),)
            ) from None
        trailers = tuple((k, v) for k, v in (call_info.trailing_metadata() or ()) if k == SEQ_KEY)
        if trailers:
            context.set_trailing_metadata(trailers)
        return response

    def _response_type(self, method: str) -> Any:
        raise NotImplementedError

    def _read(self, context: grpc.ServicerContext, fn: Callable[[Any], Any]) -> Any:
        def go() -> Any:
            md = _metadata(context)
            try:
                min_seq = int(md.get(MIN_SEQ_KEY, "0") or 0)
            except ValueError:
                raise invalid(f"{MIN_SEQ_KEY}: must be an integer") from None
            if not self.replica.fresh():
                raise ApiError(
                    grpc.StatusCode.UNAVAILABLE,
                    "this replica has not heard from a leader or a majority recently; its state "
                    "may be stale",
                    self.node.leader_trailers(),
                )
            if min_seq and not self.replica.wait_applied(min_seq, READ_WAIT_S):
                raise ApiError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"this replica has not yet applied sequence {min_seq}; retry on the leader",
                    self.node.leader_trailers(),
                )
            with self.replica.lock:
                result = fn(self.replica.state)
                seq = queries.applied_seq(self.replica.state)
            self._set_seq(context, seq)
            return result

        return self._run(context, go)


# ---------------------------------------------------------------- definitions


class DefinitionService(_Base, definitions_pb2_grpc.DefinitionServiceServicer):
    SERVICE = "orchestrator.v1.DefinitionService"
    _RESP = {
        "RegisterWorkflowDef": dpb.RegisterWorkflowDefResponse,
        "RegisterTaskDefs": dpb.RegisterTaskDefsResponse,
    }

    def _response_type(self, method: str) -> Any:
        return self._RESP[method]

    def RegisterWorkflowDef(
        self, request: dpb.RegisterWorkflowDefRequest, context: grpc.ServicerContext
    ) -> Any:
        def build() -> C.Command:
            rid = _request_id(request.request_id)
            raw = _json_object(
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
            rid = _request_id(request.request_id)
            if not request.task_def_json:
                raise invalid("task_def_json: at least one task definition is required")
            defs = [
                normalize_task_def(_json_object(text, f"task_def_json[{i}]"), f"task_def_json[{i}]")
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
        def fn(st: Any) -> Any:
            name = _name(request.name, "name")
            if not queries.workflow_def_exists(st, name):
                raise ApiError(
                    grpc.StatusCode.NOT_FOUND,
                    f"workflow definition {request.name!r} is not registered",
                )
            defn = queries.workflow_def(st, name, request.version)
            if defn is None:
                raise ApiError(
                    grpc.StatusCode.NOT_FOUND,
                    f"workflow definition {request.name!r} has no version {request.version}",
                )
            return dpb.GetWorkflowDefResponse(definition_json=json.dumps(defn))

        return self._read(context, fn)

    def ListWorkflowDefs(
        self, request: dpb.ListWorkflowDefsRequest, context: grpc.ServicerContext
    ) -> Any:
        def fn(st: Any) -> Any:
            out = dpb.ListWorkflowDefsResponse()
            for name, v, d in queries.workflow_defs(st):
                out.definitions.add(name=name, version=v, definition_json=json.dumps(d))
            return out

        return self._read(context, fn)

    def GetTaskDef(self, request: dpb.GetTaskDefRequest, context: grpc.ServicerContext) -> Any:
        def fn(st: Any) -> Any:
            td = queries.task_def(st, _name(request.name, "name"))
            if td is None:
                raise ApiError(
                    grpc.StatusCode.NOT_FOUND, f"task definition {request.name!r} is not registered"
                )
            return dpb.GetTaskDefResponse(task_def_json=json.dumps(td))

        return self._read(context, fn)

    def ListTaskDefs(self, request: dpb.ListTaskDefsRequest, context: grpc.ServicerContext) -> Any:
        return self._read(
            context,
            lambda st: dpb.ListTaskDefsResponse(
                task_def_json=[json.dumps(td) for td in queries.task_defs(st)]
            ),
        )


# ---------------------------------------------------------------- workflows

_STRATEGY = {
    wpb.IDEMPOTENCY_STRATEGY_UNSPECIFIED: "FAIL",
    wpb.IDEMPOTENCY_STRATEGY_FAIL: "FAIL",
    wpb.IDEMPOTENCY_STRATEGY_RETURN_EXISTING: "RETURN_EXISTING",
    wpb.IDEMPOTENCY_STRATEGY_FAIL_ON_RUNNING: "FAIL_ON_RUNNING",
}


class WorkflowService(_Base, workflows_pb2_grpc.WorkflowServiceServicer):
    SERVICE = "orchestrator.v1.WorkflowService"
    _RESP = {
        "StartWorkflow": wpb.StartWorkflowResponse,
        "StartWorkflows": wpb.StartWorkflowsResponse,
        "TerminateWorkflow": wpb.TerminateWorkflowResponse,
    }

    def _response_type(self, method: str) -> Any:
        return self._RESP[method]

    @staticmethod
    def _start_cmd(request: wpb.StartWorkflowRequest) -> C.Command:
        rid = _request_id(request.request_id)
        strategy = _STRATEGY.get(request.idempotency_strategy)
        if strategy is None:
            raise invalid(f"idempotency_strategy: unknown value {request.idempotency_strategy}")
        if request.version < 0:
            raise invalid("version: must be >= 0 (0 means the latest)")
        if len(request.correlation_id) > limits.MAX_NAME_LENGTH:
            raise invalid(f"correlation_id: at most {limits.MAX_NAME_LENGTH} characters")
        if len(request.idempotency_key) > limits.MAX_NAME_LENGTH:
            raise invalid(f"idempotency_key: at most {limits.MAX_NAME_LENGTH} characters")
        if not 0 <= request.priority <= 99:
            raise invalid("priority: must be between 0 and 99")
        return C.StartWorkflow(
            request_id=rid,
            workflow_id=str(uuid.uuid4()),
            name=_name(request.name, "name"),
            version=request.version,
            input=_json_object(request.input_json, "input_json"),
            correlation_id=request.correlation_id,
            idempotency_key=request.idempotency_key,
            idempotency_strategy=strategy,
            priority=request.priority,
            task_to_domain=check_task_to_domain(dict(request.task_to_domain), "task_to_domain"),
        )

    def StartWorkflow(
        self, request: wpb.StartWorkflowRequest, context: grpc.ServicerContext
    ) -> Any:
        return self._mutate(
            context,
            request,
            "StartWorkflow",
            lambda: self._start_cmd(request),
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
            self._start_cmd,
            wpb.StartWorkflowResult,
            on_ok,
            lambda results, _: wpb.StartWorkflowsResponse(results=results),
        )

    def TerminateWorkflow(
        self, request: wpb.TerminateWorkflowRequest, context: grpc.ServicerContext
    ) -> Any:
        def build() -> C.Command:
            if len(request.reason) > limits.MAX_REASON_LENGTH:
                raise invalid(f"reason: at most {limits.MAX_REASON_LENGTH} characters")
            return C.TerminateWorkflow(
                request_id=_request_id(request.request_id),
                workflow_id=_name(request.workflow_id, "workflow_id"),
                reason=request.reason,
            )

        return self._mutate(
            context, request, "TerminateWorkflow", build, lambda o: wpb.TerminateWorkflowResponse()
        )

    def GetWorkflow(self, request: wpb.GetWorkflowRequest, context: grpc.ServicerContext) -> Any:
        def fn(st: Any) -> Any:
            wf = queries.workflow(st, _name(request.workflow_id, "workflow_id"))
            if wf is None:
                raise ApiError(
                    grpc.StatusCode.NOT_FOUND, f"workflow {request.workflow_id} not found"
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
        limit = request.limit or 100
        status = ""
        if request.status:
            status = wpb.WorkflowStatus.Name(request.status).removeprefix("WORKFLOW_STATUS_")

        def fn(st: Any) -> Any:
            if not 1 <= limit <= 1000:
                raise invalid("limit: must be between 1 and 1000")
            out = wpb.ListWorkflowsResponse()
            found = queries.list_workflows(st, request.workflow_name, status, limit)
            out.workflows.extend(views.workflow_pb(wf, None) for wf in found)
            return out

        return self._read(context, fn)


# ---------------------------------------------------------------- tasks


class TaskService(_Base, tasks_pb2_grpc.TaskServiceServicer):
    SERVICE = "orchestrator.v1.TaskService"
    _RESP = {
        "PollTasks": tpb.PollTasksResponse,
        "CompleteTask": tpb.CompleteTaskResponse,
        "CompleteTasks": tpb.CompleteTasksResponse,
        "FailTask": tpb.FailTaskResponse,
        "HeartbeatTask": tpb.HeartbeatTaskResponse,
    }

    def _response_type(self, method: str) -> Any:
        return self._RESP[method]

    @staticmethod
    def _poll_args(request: tpb.PollTasksRequest, prefix: str = "") -> tuple[str, str, str, int]:
        """A poll's request id, task type, domain and count, checked; errors name the field."""
        try:
            rid = _request_id(request.request_id)
            task_type = _name(request.task_type, "task_type")
            domain = _name(request.domain, "domain") if request.domain else ""
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

    def _leased_tasks(self, outcome: Outcome, worker_id: str) -> tuple[list[Any], int]:
        """The tasks a poll's outcome leased, as still leased to `worker_id`; and the seq read."""
        with self.replica.lock:
            st = self.replica.state
            leased = queries.leased_tasks(st, outcome.result.get("task_ids", []), worker_id)
            return [views.task_pb(t) for t in leased], queries.applied_seq(st)

    def PollTasks(self, request: tpb.PollTasksRequest, context: grpc.ServicerContext) -> Any:
        def go() -> Any:
            rid, task_type, domain, count = self._poll_args(request)
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
                    rid, task_type, request.worker_id, count, wait_s, context.is_active, domain
                )
            except ProposalError as exc:
                raise self._proposal_error(exc) from None
            except FutureTimeout:
                raise ApiError(
                    grpc.StatusCode.UNAVAILABLE,
                    "poll outcome unknown; retry with the same request_id",
                ) from None
            if not outcome.ok:
                if outcome.code is Code.FAILED_PRECONDITION:  # stale epoch: leadership moved
                    raise ApiError(
                        grpc.StatusCode.UNAVAILABLE, outcome.message, self.node.leader_trailers()
                    )
                raise _outcome_error(outcome)
            self.node.failpoints.after_commit("PollTasks", rid)
            tasks, seq = self._leased_tasks(outcome, request.worker_id)
            self._set_seq(context, max(seq, outcome.seq))
            return tpb.PollTasksResponse(tasks=tasks)

        return self._run(context, go)

    @staticmethod
    def _complete_cmd(request: tpb.CompleteTaskRequest) -> C.Command:
        return C.CompleteTask(
            request_id=_request_id(request.request_id),
            task_id=_task_ref(request),
            workflow_id=request.workflow_id,
            reference_task_name=request.reference_task_name,
            output=_json_object(request.output_json, "output_json"),
            worker_id=request.worker_id[: limits.MAX_NAME_LENGTH],
        )

    def CompleteTask(self, request: tpb.CompleteTaskRequest, context: grpc.ServicerContext) -> Any:
        return self._mutate(
            context,
            request,
            "CompleteTask",
            lambda: self._complete_cmd(request),
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
                rid, task_type, domain, count = self._poll_args(poll, f"polls[{i}].")
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
            self._complete_cmd,
            tpb.ItemStatus,
            lambda result, outcome: None,
            respond,
            riding_polls,
        )

    def FailTask(self, request: tpb.FailTaskRequest, context: grpc.ServicerContext) -> Any:
        def build() -> C.Command:
            if len(request.reason) > limits.MAX_REASON_LENGTH:
                raise invalid(f"reason: at most {limits.MAX_REASON_LENGTH} characters")
            return C.FailTask(
                request_id=_request_id(request.request_id),
                task_id=_task_ref(request),
                workflow_id=request.workflow_id,
                reference_task_name=request.reference_task_name,
                reason=request.reason,
                terminal=request.terminal,
                output=_json_object(request.output_json, "output_json"),
                worker_id=request.worker_id[: limits.MAX_NAME_LENGTH],
            )

        return self._mutate(context, request, "FailTask", build, lambda o: tpb.FailTaskResponse())

    def HeartbeatTask(
        self, request: tpb.HeartbeatTaskRequest, context: grpc.ServicerContext
    ) -> Any:
        def build() -> C.Command:
            return C.HeartbeatTask(
                request_id=_request_id(request.request_id),
                task_id=_name(request.task_id, "task_id"),
                worker_id=request.worker_id[: limits.MAX_NAME_LENGTH],
            )

        return self._mutate(
            context,
            request,
            "HeartbeatTask",
            build,
            lambda o: tpb.HeartbeatTaskResponse(lease_expires_ms=o.result["lease_expires_ms"]),
        )


# ---------------------------------------------------------------- cluster


def serving_state(replica: Replica) -> tuple[bool, str]:
    """Health: serving only with a known leader and a replica that has caught up."""
    if replica.apply_error:
        return False, replica.apply_error
    if replica.journal_error:
        return False, replica.journal_error
    st = replica.status()
    if not st["leader"]:
        return False, "no leader"
    if not replica.fresh():
        return False, "not in contact with the leader or a majority"
    if not st["ready"]:
        return False, "catching up with the leader"
    if st["role"] == "LEADER" and not replica.leader_ready():
        return False, "leader epoch not yet committed"
    if st["commit_index"] - st["last_applied"] > 1000:
        return False, f"applying: {st['commit_index'] - st['last_applied']} entries behind"
    return True, ""


class ClusterService(_Base, cluster_pb2_grpc.ClusterServiceServicer):
    SERVICE = "orchestrator.v1.ClusterService"

    def local_status(self) -> cpb.ReplicaStatus:
        st = self.replica.status()
        me = next((p for p in self.node.peers if p.node_id == self.node.node_id), None)
        leader = self.node.leader_peer()
        serving, detail = serving_state(self.replica)
        return cpb.ReplicaStatus(
            node_id=self.node.node_id,
            role=st["role"],
            term=st["term"],
            applied_sequence=st["applied_sequence"],
            grpc_address=me.grpc if me else "",
            raft_address=me.raft if me else "",
            leader_id=leader.node_id if leader else "",
            leader_grpc_address=leader.grpc if leader else "",
            commit_index=st["commit_index"],
            raft_log_length=st["log_len"],
            serving=serving,
            detail=detail,
            cluster_time_ms=st["cluster_time_ms"],
            workflows=st["workflows"],
            applied_hash=st["applied_hash"],
        )

    def _response_type(self, method: str) -> Any:
        return {"AddReplica": cpb.AddReplicaResponse, "RemoveReplica": cpb.RemoveReplicaResponse}[
            method
        ]

    def _membership_change(self, change: Callable[..., None], raft_addr: str) -> None:
        """Run pysyncobj's add/remove and wait for its callback; one change at a time."""
        done = threading.Event()
        result: dict[str, Any] = {}

        def callback(res: Any, err: int) -> None:
            result["err"] = err
            done.set()

        change(raft_addr, callback=callback)
        if not done.wait(15):
            raise ApiError(
                grpc.StatusCode.UNAVAILABLE, "membership change not confirmed in time; retry"
            )
        if result["err"] != 0:
            raise ApiError(
                grpc.StatusCode.UNAVAILABLE,
                f"membership change refused by Raft (reason {result['err']}: another change in "
                "progress, or the new leader's first entry is not committed yet); retry",
            )

    def _raft_members(self) -> set[str]:
        return {n.address for n in self.replica.raft.otherNodes}

    def AddReplica(self, request: cpb.AddReplicaRequest, context: grpc.ServicerContext) -> Any:
        def go() -> Any:
            rid = _request_id(request.request_id)
            nid = _name(request.node_id, "node_id")
            raft_addr = _address(request.raft_address, "raft_address")
            grpc_addr = _address(request.grpc_address, "grpc_address")
            if not self.replica.leader_ready():
                return self._forward(context, "AddReplica", request)
            existing = next((p for p in self.node.peers if p.node_id == nid), None)
            if (
                existing is not None
                and existing.raft != raft_addr
                and existing.raft in self._raft_members()
            ):
                raise ApiError(
                    grpc.StatusCode.ALREADY_EXISTS, f"replica {nid} is a member at {existing.raft}"
                )
            outcome = self._propose(
                context, C.SetMember(request_id=rid, node_id=nid, raft=raft_addr, grpc=grpc_addr)
            )
            if not outcome.ok:
                raise _outcome_error(outcome)
            if (
                raft_addr != self.replica.settings.self_addr
                and raft_addr not in self._raft_members()
            ):
                self._membership_change(self.replica.raft.addNodeToCluster, raft_addr)
            log.info("replica_added", member=nid, raft=raft_addr, grpc=grpc_addr)
            self._set_seq(context, outcome.seq)
            return cpb.AddReplicaResponse()

        return self._run(context, go)

    def RemoveReplica(
        self, request: cpb.RemoveReplicaRequest, context: grpc.ServicerContext
    ) -> Any:
        def go() -> Any:
            rid = _request_id(request.request_id)
            nid = _name(request.node_id, "node_id")
            if not self.replica.leader_ready():
                return self._forward(context, "RemoveReplica", request)
            peer = next((p for p in self.node.peers if p.node_id == nid), None)
            if peer is None:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"replica {nid} is not a member")
            if peer.raft == self.replica.settings.self_addr:
                # pysyncobj cannot remove its own leader: hand over, and let the retry land there.
                self.replica.request_step_down()
                raise ApiError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"{nid} is the leader; it is stepping aside, retry to remove it from the new leader",
                )
            if peer.raft in self._raft_members():
                self._membership_change(self.replica.raft.removeNodeFromCluster, peer.raft)
            outcome = self._propose(context, C.RemoveMember(request_id=rid, node_id=nid))
            if not outcome.ok:
                raise _outcome_error(outcome)
            log.info("replica_removed", member=nid, raft=peer.raft)
            self._set_seq(context, outcome.seq)
            return cpb.RemoveReplicaResponse()

        return self._run(context, go)

    def GetReplicaStatus(
        self, request: cpb.GetReplicaStatusRequest, context: grpc.ServicerContext
    ) -> Any:
        return self._run(context, self.local_status)

    def GetClusterStatus(
        self, request: cpb.GetClusterStatusRequest, context: grpc.ServicerContext
    ) -> Any:
        def one(peer: Peer) -> cpb.ReplicaStatus:
            if peer.node_id == self.node.node_id:
                return self.local_status()
            stub = cluster_pb2_grpc.ClusterServiceStub(self.node.channel(peer.grpc))
            try:
                resp: cpb.ReplicaStatus = stub.GetReplicaStatus(
                    cpb.GetReplicaStatusRequest(), timeout=1.0
                )
                return resp
            except grpc.RpcError as err:
                return cpb.ReplicaStatus(
                    node_id=peer.node_id,
                    role="UNREACHABLE",
                    grpc_address=peer.grpc,
                    raft_address=peer.raft,
                    detail=f"{err.code().name}: {err.details()}",
                )

        def go() -> Any:
            with ThreadPoolExecutor(max_workers=max(1, len(self.node.peers))) as pool:
                replicas = list(pool.map(one, self.node.peers))
            leader = self.node.leader_peer()
            return cpb.GetClusterStatusResponse(
                replicas=replicas, leader_id=leader.node_id if leader else ""
            )

        return self._run(context, go)
