"""The RPC method table, derived from the generated service descriptors.

Every RPC of the API takes a request message of its own (StartWorkflowRequest is
StartWorkflow's and no other RPC's), so a request's type names its RPC: no call site writes a
path or a response type, and an RPC added to a proto is in the table once the code is
regenerated (scripts/gen_protos.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from google.protobuf import message_factory
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message

from orchestrator_client.v1 import (
    cluster_pb2,
    definitions_pb2,
    events_pb2,
    tasks_pb2,
    workflows_pb2,
)

__all__ = [
    "MAX_BATCH",
    "MAX_PAGE_SIZE",
    "MAX_POLL_COUNT",
    "MAX_RIDING_POLLS",
    "RPCS",
    "Rpc",
    "pages",
    "rpc_of",
]

# The server's limits.
MAX_BATCH: Final = 100  # items per CompleteTasks or StartWorkflows call
MAX_POLL_COUNT: Final = 100  # tasks one poll may ask for
MAX_RIDING_POLLS: Final = 16  # polls riding one CompleteTasks call
MAX_PAGE_SIZE: Final = 1000  # items one page of a List RPC may hold

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Rpc:
    """One RPC: ``name`` is what the recorder and errors call it (``"StartWorkflow"``)."""

    name: str
    path: str  # "/orchestrator.v1.WorkflowService/StartWorkflow"
    request_type: type[Message]
    response_type: type[Message]


def _derive(files: Iterable[FileDescriptor]) -> tuple[Rpc, ...]:
    rpcs: list[Rpc] = []
    for file in files:
        for service in file.services_by_name.values():
            for method in service.methods:
                rpcs.append(
                    Rpc(
                        name=method.name,
                        path=f"/{service.full_name}/{method.name}",
                        request_type=message_factory.GetMessageClass(method.input_type),
                        response_type=message_factory.GetMessageClass(method.output_type),
                    )
                )
    return tuple(rpcs)


def _by_request(rpcs: Iterable[Rpc]) -> dict[type[Message], Rpc]:
    table: dict[type[Message], Rpc] = {}
    for rpc in rpcs:
        other = table.setdefault(rpc.request_type, rpc)
        if other is not rpc:
            # Fails at import, not at the first call: the protos broke the one-request-type-per-
            # RPC rule this client relies on.
            raise RuntimeError(
                f"{rpc.name} and {other.name} both take {rpc.request_type.__name__}; "
                "give each RPC a request message of its own"
            )
    return table


RPCS: Final = _derive(
    m.DESCRIPTOR for m in (definitions_pb2, workflows_pb2, tasks_pb2, cluster_pb2, events_pb2)
)
_BY_REQUEST: Final = _by_request(RPCS)


def rpc_of(request: Message) -> Rpc:
    """The RPC that takes ``request``, by the request's type."""
    return _BY_REQUEST[type(request)]


def pages(fetch: Callable[[str], tuple[Sequence[_T], str]]) -> Iterator[_T]:
    """Every item of a List RPC: `fetch(page_token)` returns one page's items and the next
    page's token ("" after the last page; a server that does not page answers "" at once)."""
    token = ""
    while True:
        items, next_token = fetch(token)
        yield from items
        if not next_token or next_token == token:
            return
        token = next_token
