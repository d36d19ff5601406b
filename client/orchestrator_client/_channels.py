"""One gRPC channel per replica address, opened on first use, and a callable per RPC on it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Final, TypeAlias

import grpc
from google.protobuf.message import Message

from orchestrator_client._rpc import Rpc

__all__ = ["CHANNEL_OPTIONS", "ChannelPool"]

CHANNEL_OPTIONS: Final[tuple[tuple[str, int], ...]] = (
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

# A string: grpc's classes are generic only in its type stubs.
UnaryCallable: TypeAlias = "grpc.UnaryUnaryMultiCallable[Message, Message]"


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class ChannelPool:
    """The channels of one client; ``closed`` (the client's) refuses new ones once set."""

    def __init__(
        self,
        credentials: grpc.ChannelCredentials | None,
        channel_options: Sequence[tuple[str, Any]] | None,
        closed: threading.Event,
    ) -> None:
        self._credentials = credentials
        options: dict[str, Any] = dict(CHANNEL_OPTIONS)
        options.update(channel_options or ())
        self._options = tuple(options.items())
        self._closed = closed
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._callables: dict[tuple[str, str], UnaryCallable] = {}

    def callable(self, address: str, rpc: Rpc) -> UnaryCallable:
        """The callable of ``rpc`` on the channel to ``address``.

        Raises:
            RuntimeError: The client is closed.
        """
        key = (address, rpc.path)
        with self._lock:
            callable_ = self._callables.get(key)
            if callable_ is not None:
                return callable_
            callable_ = self._channel(address).unary_unary(
                rpc.path,
                request_serializer=_serialize,
                response_deserializer=rpc.response_type.FromString,
            )
            self._callables[key] = callable_
            return callable_

    def stream_callable(self, address: str, rpc: Rpc) -> Any:
        """A server-streaming callable of ``rpc`` on the channel to ``address`` (not cached:
        a stream lives long, and is opened again only after a failure)."""
        with self._lock:
            channel = self._channel(address)
        return channel.unary_stream(
            rpc.path,
            request_serializer=_serialize,
            response_deserializer=rpc.response_type.FromString,
        )

    def _channel(self, address: str) -> grpc.Channel:
        """The channel to ``address``, opened on first use (the caller holds the lock)."""
        if self._closed.is_set():
            raise RuntimeError("OrchestratorClient is closed")
        channel = self._channels.get(address)
        if channel is None:
            if self._credentials is not None:
                channel = grpc.secure_channel(address, self._credentials, options=self._options)
            else:
                channel = grpc.insecure_channel(address, options=self._options)
            self._channels[address] = channel
        return channel

    def close(self) -> None:
        """Closes every channel; calls in progress on them fail."""
        with self._lock:
            channels = list(self._channels.values())
            self._channels.clear()
            self._callables.clear()
        for channel in channels:
            channel.close()
