"""Search over running and archived workflows, and the History a replica serves it from.

The API reads history only through `History` (search, get_doc, seq); SQLite stays in store.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.records import Workflow, WorkflowStatus

JSON = Any

SORTS = ("create_time", "end_time")
MAX_PAGE_SIZE = 1000
_STATUSES = frozenset(s.value for s in WorkflowStatus)


class HistoryUnavailable(Exception):
    """The history cannot answer yet (catching up, copying from a peer): the API answers
    UNAVAILABLE with this message, never a silently incomplete result."""


@dataclass(frozen=True)
class SearchQuery:
    """A search; constructing an invalid one raises ValueError naming the field."""

    name: str = ""
    version: int = 0  # 0 = any
    statuses: tuple[str, ...] = ()  # WorkflowStatus values; () = any
    correlation_id: str = ""
    created_from_ms: int = 0  # inclusive; 0 = open
    created_to_ms: int = 0  # exclusive; 0 = open
    ended_from_ms: int = 0
    ended_to_ms: int = 0
    # A task of this type ended FAILED / FAILED_WITH_TERMINAL_ERROR / TIMED_OUT.
    failed_task_type: str = ""
    text: str = ""  # words that must all appear in reason_for_incompletion
    sort: str = "create_time"  # "create_time" | "end_time"
    descending: bool = True
    page_size: int = 100  # 1..1000
    after: tuple[int, str] | None = None  # keyset cursor: (sort value, workflow id)
    with_total: bool = True

    def __post_init__(self) -> None:
        _validate(self)


@dataclass
class SearchPage:
    workflows: list[Workflow]  # core records (views.workflow_pb renders them)
    next_after: tuple[int, str] | None
    total: int  # matches over memory and history; -1 when not asked


def _validate(q: SearchQuery) -> None:
    for name in ("version", "created_from_ms", "created_to_ms", "ended_from_ms", "ended_to_ms"):
        value = getattr(q, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}: a non-negative integer")
    if not 1 <= q.page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size: between 1 and {MAX_PAGE_SIZE}")
    if q.sort not in SORTS:
        raise ValueError(f"sort: one of {', '.join(SORTS)}")
    bad = [s for s in q.statuses if s not in _STATUSES]
    if bad:
        raise ValueError(f"statuses: unknown status {bad[0]!r}")
    if q.after is not None and not (
        isinstance(q.after, tuple)
        and len(q.after) == 2
        and isinstance(q.after[0], int)
        and isinstance(q.after[1], str)
    ):
        raise ValueError("after: a (sort value, workflow id) pair")


class History:
    """One replica's durable history (store.py, written by writer.py) and search over it.

    server.py builds it with the replica's data folder and attaches it to the replica before
    the replica applies anything.
    """

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir

    def search(self, replica: Any, q: SearchQuery, min_seq: int = 0) -> SearchPage:
        """Memory (read under replica.read at seq S) merged with the history once it has
        written everything up to max(S, min_seq); ids deduplicated (memory wins). Raises
        HistoryUnavailable when the history cannot answer in time."""
        raise NotImplementedError

    def get_doc(self, workflow_id: str, min_seq: int = 0) -> dict[str, JSON] | None:
        """The archive document (history_ops.archive_doc) of an archived workflow, or None."""
        raise NotImplementedError

    def seq(self) -> int:
        """The last sequence number the history has written."""
        raise NotImplementedError
