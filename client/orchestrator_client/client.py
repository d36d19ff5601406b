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

This module is the public facade. Behind it: _transport (attempts, retries, sequence
tracking, the recorder) over _routing (which replica next) and _channels (a channel per
replica); _rpc (the method table, from the generated descriptors); one module of calls per
service (_definitions, _workflows, _tasks, _cluster, _events; search and the operator's calls in
_search and _operations); _coalescer (shared StartWorkflows calls); _views (Task and Workflow)
and _codec (JSON and enum conversion).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import grpc

from orchestrator_client._cluster import ClusterCalls
from orchestrator_client._coalescer import StartCoalescer
from orchestrator_client._credentials import with_token
from orchestrator_client._definitions import DefinitionCalls
from orchestrator_client._events import EventCalls
from orchestrator_client._operations import BulkResult, OperationCalls
from orchestrator_client._search import SearchCalls, SearchPage
from orchestrator_client._streams import StreamCalls
from orchestrator_client._tasks import TaskCalls
from orchestrator_client._transport import (
    LEADER_METADATA_KEY,
    MIN_SEQ_METADATA_KEY,
    RETRY_AFTER_METADATA_KEY,
    SEQ_METADATA_KEY,
    MetadataLike,
    Recorder,
    Transport,
)
from orchestrator_client._views import Task, Workflow
from orchestrator_client._workflows import WorkflowCalls

__all__ = [
    "LEADER_METADATA_KEY",
    "MIN_SEQ_METADATA_KEY",
    "RETRY_AFTER_METADATA_KEY",
    "SEQ_METADATA_KEY",
    "BulkResult",
    "OrchestratorClient",
    "Recorder",
    "SearchPage",
    "Task",
    "Workflow",
]


class OrchestratorClient(
    DefinitionCalls,
    WorkflowCalls,
    SearchCalls,
    OperationCalls,
    TaskCalls,
    ClusterCalls,
    EventCalls,
    StreamCalls,
):
    """A thread-safe client for an orchestrator cluster.

    Every call goes to one replica; on a retryable failure (UNAVAILABLE, DEADLINE_EXCEEDED,
    RESOURCE_EXHAUSTED, and CANCELLED or UNKNOWN from a replica going away) it is retried on the
    leader the replica named, else on the next configured address, with exponential backoff and
    jitter, until the call's retry budget is spent. Mutating calls reuse one request id on every
    retry, so the server applies them at most once. The address that last answered is tried
    first by the next call.

    A recorder, if given, is called once per logical call (never per attempt) as
    ``recorder(event, op, request_id, detail)``:

    * ``"invoke"`` before the first attempt; detail is the request message.
    * ``"ok"`` on success; detail is the response message.
    * ``"fail"`` when the server gave a definite error (nothing was applied, or a retry replayed
      a definite first outcome); detail is the :class:`OrchestratorError`.
    * ``"unknown"`` when the outcome is open: the retry budget ran out on retryable errors, or
      the call ended in a non-definite error (INTERNAL, the client being closed, a local
      exception); detail is the exception.

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
        token: str | None = None,
    ) -> None:
        """Creates a client; channels are opened lazily, on first use of each address.

        Args:
            addresses: Replica gRPC addresses, as a sequence or a comma-separated string
                ``"host:port,host:port"``. Any replica can serve any call.
            timeout_s: Deadline of one attempt, in seconds; it is what catches a replica that
                accepts connections but never answers (e.g. a paused process).
            retry_budget_s: Overall deadline of a logical call, retries and backoff included.
                The first attempt always gets its full attempt deadline.
            metadata: Extra request metadata sent with every call.
            recorder: Optional history hook, see the class docstring.
            credentials: TLS credentials (see :func:`tls_credentials`); None for plaintext
                channels (a cluster started with ``--insecure``).
            token: Bearer token sent with every call (``authorization`` metadata); needs
                ``credentials``, so a token never crosses the network in clear text.
            channel_options: Extra grpc channel options; they override the client's defaults.
            batch_starts: Let start_workflow calls made at the same time from several threads
                share StartWorkflows calls (see start_workflow). A lone call is sent at once,
                as a plain StartWorkflow.

        Raises:
            ValueError: No address was given, a timeout is not positive, the metadata uses a
                key the client manages, or a token was given without credentials.
        """
        self._transport = Transport(
            addresses,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
            metadata=with_token(metadata, token, credentials),
            recorder=recorder,
            credentials=credentials,
            channel_options=channel_options,
        )
        self._starts = StartCoalescer(self) if batch_starts else None

    @property
    def addresses(self) -> tuple[str, ...]:
        """The configured replica addresses, in rotation order.

        Returns:
            The addresses, deduplicated.
        """
        return self._transport.addresses

    @property
    def last_sequence(self) -> int:
        """The highest applied sequence number any response has reported so far.

        Returns:
            The sequence number; 0 before the first response that carried one.
        """
        return self._transport.last_sequence

    def close(self) -> None:
        """Closes every channel; calls in progress fail and later calls raise RuntimeError.

        Idempotent.
        """
        self._transport.close()

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
        return f"OrchestratorClient(addresses={list(self.addresses)!r})"
