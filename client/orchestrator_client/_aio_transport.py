"""The asyncio transport: grpc.aio channels driving the sync transport's retry plan.

Everything but the I/O is the sync transport's (``TransportCore``, ``Attempts``): the same leader
hints, rotation, backoff, retry budget, request ids reused on every attempt, and min-seq.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from orchestrator_client._channels import CHANNEL_OPTIONS
from orchestrator_client._codec import new_request_id
from orchestrator_client._rpc import Rpc, rpc_of
from orchestrator_client._transport import (
    _MIN_ATTEMPT_S,
    MetadataLike,
    Recorder,
    TransportCore,
    _Trailers,
    checked,
    failure_of,
)

__all__ = ["AioTransport"]

_RespT = TypeVar("_RespT", bound=Message)
# A string: grpc's classes are generic only in its type stubs.
_AioCallable: TypeAlias = "grpc.aio.UnaryUnaryMultiCallable[Message, Message]"


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class AioTransport(TransportCore):
    """The replica-aware, retrying caller under one AsyncOrchestratorClient; its channels
    belong to the event loop that first uses them."""

    def __init__(
        self,
        addresses: Sequence[str] | str,
        *,
        timeout_s: float,
        retry_budget_s: float,
        metadata: MetadataLike | None,
        recorder: Recorder | None,
        credentials: grpc.ChannelCredentials | None,
        channel_options: Sequence[tuple[str, Any]] | None,
    ) -> None:
        super().__init__(
            addresses,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
            metadata=metadata,
            recorder=recorder,
        )
        options: dict[str, Any] = dict(CHANNEL_OPTIONS)
        options.update(channel_options or ())
        self._options = tuple(options.items())
        self._credentials = credentials
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._callables: dict[tuple[str, str], _AioCallable] = {}

    async def close(self) -> None:
        self.closed.set()
        channels = list(self._channels.values())
        self._channels.clear()
        self._callables.clear()
        for channel in channels:
            await channel.close(None)

    async def invoke(
        self,
        request: Message,
        response_type: type[_RespT],
        request_id: str | None = None,
        *,
        timeout_s: float | None,
        retry_budget_s: float | None,
        pinned_address: str | None = None,
    ) -> _RespT:
        """One logical call of the RPC that takes ``request`` (see Transport.invoke)."""
        rid = request_id or new_request_id()
        rpc = rpc_of(request)
        attempt_timeout, budget = self._limits(timeout_s, retry_budget_s)
        self.record("invoke", rpc.name, rid, request)
        try:
            response = await self._call_with_retries(
                rpc, request, response_type, rid, attempt_timeout, budget, pinned_address
            )
        except BaseException as exc:
            # The history must not be left with an open invoke (cancellation included).
            self.record_failed(rpc.name, (rid,), exc)
            raise
        self.record("ok", rpc.name, rid, response)
        return response

    async def invoke_batch(
        self,
        request: Message,
        response_type: type[_RespT],
        items: Sequence[Message],
        rids: list[str],
        answers_of: Callable[[_RespT], Sequence[Any]],
        *,
        timeout_s: float | None,
        retry_budget_s: float | None,
    ) -> list[Any]:
        """One call carrying several requests, each recorded as its own (see
        Transport.invoke_batch)."""
        rpc, op, attempt_timeout, budget = self.begin_batch(
            request, items, rids, timeout_s, retry_budget_s
        )
        try:
            response = await self._call_with_retries(
                rpc, request, response_type, rids[0], attempt_timeout, budget
            )
        except BaseException as exc:
            self.record_failed(op, rids, exc)
            raise
        return self.settle_batch(rpc, op, rids, answers_of(response))

    async def _call_with_retries(
        self,
        rpc: Rpc,
        request: Message,
        response_type: type[_RespT],
        request_id: str,
        attempt_timeout: float,
        budget: float,
        pinned_address: str | None = None,
    ) -> _RespT:
        plan = self.attempts(rpc, request_id, attempt_timeout, budget, pinned_address)
        while True:
            address, timeout = plan.next()
            code, details, trailers, response = await self._attempt(
                rpc, request, response_type, address, timeout
            )
            self._observe_sequence(trailers)
            if response is not None:
                plan.route.answered()
                return response
            # Raises when the call is over; else the pause before the next attempt.
            await asyncio.sleep(plan.failed(code, details, trailers))
            if self.closed.is_set():
                raise plan.closed_during_retries()

    async def _attempt(
        self,
        rpc: Rpc,
        request: Message,
        response_type: type[_RespT],
        address: str,
        timeout: float,
    ) -> tuple[grpc.StatusCode, str, _Trailers, _RespT | None]:
        """Makes one attempt; returns (code, details, trailing metadata, response or None)."""
        call = self._callable(address, rpc)(
            request, timeout=max(timeout, _MIN_ATTEMPT_S), metadata=self.call_metadata()
        )
        try:
            response = await call
            trailers: _Trailers = tuple(
                (key, value) for key, value in (await call.trailing_metadata() or ())
            )
        except grpc.RpcError as err:
            return (*failure_of(err, self.closed), None)
        return grpc.StatusCode.OK, "", trailers, checked(rpc, response, response_type)

    def _callable(self, address: str, rpc: Rpc) -> _AioCallable:
        if self.closed.is_set():
            raise RuntimeError("AsyncOrchestratorClient is closed")
        key = (address, rpc.path)
        callable_ = self._callables.get(key)
        if callable_ is None:
            channel = self._channels.get(address)
            if channel is None:
                channel = self._channels[address] = self._open(address)
            callable_ = self._callables[key] = channel.unary_unary(
                rpc.path,
                request_serializer=_serialize,
                response_deserializer=rpc.response_type.FromString,
            )
        return callable_

    def _open(self, address: str) -> grpc.aio.Channel:
        if self._credentials is not None:
            return grpc.aio.secure_channel(address, self._credentials, options=self._options)
        return grpc.aio.insecure_channel(address, options=self._options)
