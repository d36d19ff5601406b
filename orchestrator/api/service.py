"""The plumbing every servicer shares: proposing and awaiting outcomes, forwarding to the
leader, reads at the caller's sequence number, and errors to status.

Mutations: on the ready leader they are proposed and the committed outcome is mapped through
errors.py; on a follower they are forwarded to the leader over gRPC (with the caller's
remaining deadline); with no leader they answer UNAVAILABLE. Reads are served locally once the
replica has applied the caller's last seen sequence number (read-your-writes across replicas);
a follower's NOT_FOUND for a caller that sent none is confirmed with the leader first. Every
unary answer, OK or not, carries this replica's (or the forwarded call's leader's) sequence.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from ..core import commands as C
from ..core import limits, queries
from ..core.errors import Rejected
from ..core.machine import Outcome, precheck
from ..core.state import State
from ..replication.api import ProposalError
from . import errors, rpc
from .context import HistoryReader, NodeContext
from .errors import (
    FORWARDED_KEY,
    LEADER_KEY,
    MIN_SEQ_KEY,
    RETRY_AFTER_KEY,
    SEQ_KEY,
    ApiError,
    Leader,
    Trailers,
    behind,
    invalid,
    item_status,
    leader_unreachable,
    no_leader,
    not_committed_in_time,
    outcome_error,
    outcome_status,
    possibly_stale,
    proposal_error,
    rejection,
    relayed_details,
)

PROPOSE_TIMEOUT_S = 10.0
READ_WAIT_S = 2.0
# A forwarded call without a client deadline (grpc reports ~2**63 ns remaining) gets this.
FORWARD_TIMEOUT_S = 60.0
# How long a follower waits for the leader to confirm a NOT_FOUND: a leader that does not answer
# within it (paused, cut off) is taken as unreachable, well inside a client's usual deadline.
CONFIRM_TIMEOUT_S = 1.0
# What a forwarded call's failure relays of the leader's trailers (its details too).
_RELAYED = (SEQ_KEY, LEADER_KEY, RETRY_AFTER_KEY)


def metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def abort(
    context: grpc.ServicerContext, err: ApiError, seq: Callable[[], int] | None = None
) -> Any:
    """Ends the call with `err`, keeping the trailers already set for it (a rejected command's
    sequence); `seq` gives this replica's sequence when neither names one."""
    own = {key for key, _ in err.trailers}
    before = tuple(
        (k, v)
        for k, v in (context.trailing_metadata() or ())
        if k not in own and isinstance(v, str)
    )
    if seq is not None and SEQ_KEY not in own and all(k != SEQ_KEY for k, _ in before):
        before += ((SEQ_KEY, str(seq())),)
    errors.abort(context, err, before)


def propose_timeout(context: grpc.ServicerContext) -> float:
    remaining = context.time_remaining()
    if remaining is None:
        return PROPOSE_TIMEOUT_S
    return max(0.05, min(remaining, PROPOSE_TIMEOUT_S))


class ServiceBase:
    SERVICE: ServiceDescriptor

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.replica = node.replica
        # The read this thread serves (method, request): a NOT_FOUND may forward it (_run).
        self._reading = threading.local()
        service = getattr(self, "SERVICE", None)
        for m in service.methods if service is not None else ():
            streams = m.client_streaming or m.server_streaming
            if not streams and "request_id" not in m.input_type.fields_by_name:
                setattr(self, m.name, self._remembered(m.name, getattr(self, m.name)))

    def _remembered(self, method: str, handler: Callable[[Any, Any], Any]) -> Any:
        def serve(request: Any, context: grpc.ServicerContext) -> Any:
            self._reading.call = (method, request)
            try:
                return handler(request, context)
            finally:
                self._reading.call = None

        return serve

    def applied_seq(self) -> int:
        return int(self.replica.read(queries.applied_seq))

    @property
    def history(self) -> HistoryReader | None:
        """This replica's durable history; None: memory only."""
        return self.node.history

    def _run(self, context: grpc.ServicerContext, fn: Callable[[], Any]) -> Any:
        try:
            response = fn()
        except ApiError as err:
            return self._failed(context, err)
        except Rejected as rej:
            return self._failed(context, rejection(rej.code, rej.message))
        except ProposalError as exc:
            return abort(context, proposal_error(exc, self.node.leader()), self.applied_seq)
        sent = tuple((str(k), str(v)) for k, v in context.trailing_metadata() or ())
        if all(k != SEQ_KEY for k, _ in sent):
            self._set_seq(context, self.applied_seq(), sent)
        return response

    def _failed(self, context: grpc.ServicerContext, err: ApiError) -> Any:
        call = getattr(self._reading, "call", None)
        if err.reason == "NOT_FOUND" and call is not None and not self.replica.leader_ready():
            try:
                if _min_seq(metadata(context)) == 0:
                    return self._confirm(context, err, *call)
            except ApiError as answer:
                err = answer
        return abort(context, err, self.applied_seq)

    def _confirm(
        self, context: grpc.ServicerContext, err: ApiError, method: str, request: Any
    ) -> Any:
        """A follower's NOT_FOUND for a caller that named no sequence it saw: the write it is
        after may have been committed by the leader since this replica last heard. The
        leader's answer decides; when it cannot be had, the NOT_FOUND says it may be stale."""
        if metadata(context).get(FORWARDED_KEY):
            raise possibly_stale(err.message, self.applied_seq())
        try:
            return self._forward(context, method, request, CONFIRM_TIMEOUT_S)
        except ApiError as failed:
            if failed.status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                raise possibly_stale(err.message, self.applied_seq()) from None
            raise

    def _set_seq(self, context: grpc.ServicerContext, seq: int, extra: Trailers = ()) -> None:
        context.set_trailing_metadata(((SEQ_KEY, str(seq)), *extra))

    def _precheck(self, cmd: C.Command) -> Outcome | None:
        """The leader's answer from its applied state without proposing (a retried request's
        first outcome, for one), or None to propose."""
        raw = cmd.to_dict()
        return self.replica.read(lambda st: precheck(st, raw))

    # ---- proposing

    def _propose(self, context: grpc.ServicerContext, cmd: C.Command) -> Outcome:
        return self._await(context, cmd, self._submit_many([cmd])[0])

    def _submit_many(self, cmds: list[C.Command]) -> list[Future[Outcome]]:
        return self.replica.propose_many(cmds)  # a ProposalError is answered by _run

    def _await(
        self, context: grpc.ServicerContext, cmd: C.Command, fut: Future[Outcome]
    ) -> Outcome:
        try:
            outcome = fut.result(timeout=propose_timeout(context))
        except FutureTimeout:
            raise not_committed_in_time(self.node.leader()) from None
        self.node.after_commit(cmd.NAME, getattr(cmd, "request_id", ""))
        return outcome

    def _mutate(
        self,
        context: grpc.ServicerContext,
        request: Any,
        method: str,
        build: Callable[[], C.Command],
        respond: Callable[[Outcome], Any],
        attach: Callable[[C.Command], C.Command] | None = None,
    ) -> Any:
        """One command; `attach` completes it on the leader (with what only the leader's
        replica holds, an archived workflow's document) before it is checked and proposed."""

        def go() -> Any:
            cmd = build()  # validation happens here, before anything reaches Raft
            if not self.replica.leader_ready():
                return self._forward(context, method, request)
            if attach is not None:
                cmd = attach(cmd)
            outcome = self._precheck(cmd)
            if outcome is None:
                outcome = self._propose(context, cmd)
            self._set_seq(context, outcome.seq)
            if not outcome.ok:
                raise outcome_error(outcome)
            return respond(outcome)

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

            def decided(i: int, outcome: Outcome) -> None:
                if outcome.ok:
                    on_ok(results[i], outcome)
                else:
                    failed(i, outcome_status(outcome))

            def failed(i: int, status: Any) -> None:
                results[i].code, results[i].message = status.code, status.message

            checked: list[tuple[int, C.Command]] = []
            seqs = [0]
            for i, item in enumerate(items):
                try:
                    cmd = build(item)
                except ApiError as err:
                    failed(i, item_status(err.status, f"items[{i}].{err.message}"))
                    continue
                early = self._precheck(cmd)
                if early is None:
                    checked.append((i, cmd))
                else:
                    decided(i, early)
                    seqs.append(early.seq)
            cmds = [cmd for _, cmd in checked] + tail
            futures = self._submit_many(cmds) if cmds else []
            outcomes = [
                self._await(context, cmd, fut) for cmd, fut in zip(cmds, futures, strict=True)
            ]
            for (i, _), outcome in zip(checked, outcomes, strict=False):
                decided(i, outcome)
            self._set_seq(context, max(seqs + [o.seq for o in outcomes]))
            return respond(results, outcomes[len(checked) :])

        return self._run(context, go)

    # ---- forwarding to the leader

    def _forward(
        self,
        context: grpc.ServicerContext,
        method: str,
        request: Any,
        limit: float = FORWARD_TIMEOUT_S,
    ) -> Any:
        """The leader's answer to this call (`limit`: the longest wait for it)."""
        md = metadata(context)
        peer = self.node.leader_peer()
        if md.get(FORWARDED_KEY) or peer is None or peer.node_id == self.node.node_id:
            raise no_leader(self.node.leader())
        remaining = context.time_remaining()
        timeout = limit if remaining is None else max(0.05, min(remaining - 0.05, limit))
        call = self.node.channel(peer.grpc).unary_unary(
            rpc.path(self.SERVICE, method),
            request_serializer=type(request).SerializeToString,
            response_deserializer=rpc.response_type(self.SERVICE, method).FromString,
        )
        fwd_md: tuple[tuple[str, str], ...] = ((FORWARDED_KEY, "1"),)
        if MIN_SEQ_KEY in md:
            fwd_md += ((MIN_SEQ_KEY, md[MIN_SEQ_KEY]),)
        fut = call.future(request, timeout=timeout, metadata=fwd_md)
        # A caller that goes away (a cancelled long poll) cancels the leader's call with it:
        # otherwise that call would hold a slot on the leader until its own timeout.
        context.add_callback(fut.cancel)
        try:
            response = fut.result()
        except grpc.FutureCancelledError:
            raise ApiError(grpc.StatusCode.CANCELLED, "the caller went away") from None
        except grpc.RpcError as err:
            raise _forward_error(err, peer.grpc, peer.node_id) from None
        trailers = tuple(
            (str(k), str(v)) for k, v in (fut.trailing_metadata() or ()) if k == SEQ_KEY
        )
        if trailers:
            context.set_trailing_metadata(trailers)
        return response

    # ---- reads

    def _read(self, context: grpc.ServicerContext, fn: Callable[[State], Any]) -> Any:
        def go() -> Any:
            result, seq = self._fresh_read(context, fn)
            self._set_seq(context, seq)
            return result

        return self._run(context, go)

    def _fresh_read(
        self, context: grpc.ServicerContext, fn: Callable[[State], Any]
    ) -> tuple[Any, int]:
        """(fn(state), the state's sequence number) once this replica is fresh and has applied
        what the caller last saw; raises ApiError otherwise."""
        min_seq = _min_seq(metadata(context))
        if not self.replica.fresh():
            raise behind(
                "this replica has not heard from a leader or a majority recently; its state "
                "may be stale",
                self.node.leader(),
                self.applied_seq(),
            )
        if not self.replica.caught_up(READ_WAIT_S):
            raise behind(
                "this replica has not yet applied what its leader has committed; retry",
                self.node.leader(),
                self.applied_seq(),
            )
        if min_seq and not self.replica.wait_applied(min_seq, READ_WAIT_S):
            raise behind(
                f"this replica has not yet applied sequence {min_seq}; retry on the leader",
                self.node.leader(),
                self.applied_seq(),
                min_seq,
            )
        result, seq = self.replica.read(lambda st: (fn(st), queries.applied_seq(st)))
        return result, seq


def _min_seq(md: dict[str, str]) -> int:
    try:
        return int(md.get(MIN_SEQ_KEY, "0") or 0)
    except ValueError:
        raise invalid(f"{MIN_SEQ_KEY}: must be an integer") from None


def _forward_error(err: Any, leader_grpc: str, leader_id: str = "") -> ApiError:
    """The leader's answer to a forwarded call (a grpc.RpcError, which is also a grpc.Call),
    with the trailers the client acts on and the leader's details."""
    received = tuple(err.trailing_metadata() or ())
    trailers = tuple((str(k), str(v)) for k, v in received if k in _RELAYED)
    code = err.code()
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        code = grpc.StatusCode.UNAVAILABLE
    message = err.details() or "forwarding failed"
    relayed = relayed_details(received, code, message)
    if relayed is not None:
        return ApiError(code, message, trailers, relayed=relayed)
    if code == grpc.StatusCode.UNAVAILABLE and not trailers:
        # The leader did not answer (dead, partitioned, or too slow).
        return leader_unreachable()
    if trailers:  # a leader without details (an older version): its trailers as they came
        return ApiError(code, message, trailers)
    return ApiError(code, message, leader=Leader(leader_grpc, leader_id))
