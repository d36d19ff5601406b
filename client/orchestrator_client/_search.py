"""The search calls of OrchestratorClient: one page, or every match as an iterator."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from orchestrator_client._codec import WORKFLOW_STATUS_PREFIX, enum_key
from orchestrator_client._transport import Transport
from orchestrator_client._views import Workflow
from orchestrator_client.v1 import workflows_pb2

__all__ = ["SearchCalls", "SearchPage", "search_page", "search_request"]

_SORTS: Final = {
    "create_time": workflows_pb2.SEARCH_SORT_CREATE_TIME,
    "end_time": workflows_pb2.SEARCH_SORT_END_TIME,
}


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of search results.

    ``next_page_token`` is empty after the last page; ``total`` counts every match (-1 when
    the search was made without a total), or is a lower bound when ``total_at_least`` (the
    server counts archived matches up to 10 000).
    """

    workflows: tuple[Workflow, ...]
    next_page_token: str
    total: int
    total_at_least: bool = False


def search_request(
    *,
    name: str = "",
    version: int = 0,
    statuses: Sequence[str] = (),
    correlation_id: str = "",
    created_from_ms: int = 0,
    created_to_ms: int = 0,
    ended_from_ms: int = 0,
    ended_to_ms: int = 0,
    failed_task_type: str = "",
    text: str = "",
    sort: str = "create_time",
    ascending: bool = False,
    page_size: int = 100,
    page_token: str = "",
    with_total: bool = True,
) -> workflows_pb2.SearchWorkflowsRequest:
    """The SearchWorkflowsRequest of search filters (see OperationCalls.search_workflows).

    Raises:
        ValueError: Unknown status or sort.
    """
    if sort not in _SORTS:
        raise ValueError(f"unknown sort {sort!r}; expected one of {', '.join(_SORTS)}")
    return workflows_pb2.SearchWorkflowsRequest(
        workflow_name=name,
        version=version,
        statuses=[
            enum_key(workflows_pb2.WorkflowStatus, s, WORKFLOW_STATUS_PREFIX, "status")
            for s in statuses
        ],
        correlation_id=correlation_id,
        created_from_ms=created_from_ms,
        created_to_ms=created_to_ms,
        ended_from_ms=ended_from_ms,
        ended_to_ms=ended_to_ms,
        failed_task_type=failed_task_type,
        text=text,
        sort=_SORTS[sort],
        ascending=ascending,
        page_size=page_size,
        page_token=page_token,
        skip_total=not with_total,
    )


def search_page(response: workflows_pb2.SearchWorkflowsResponse) -> SearchPage:
    """The SearchPage of a SearchWorkflows answer."""
    return SearchPage(
        workflows=tuple(Workflow.from_proto(w) for w in response.workflows),
        next_page_token=response.next_page_token,
        total=response.total_count,
        total_at_least=response.total_at_least,
    )


class SearchCalls:
    """SearchWorkflows, as methods of OrchestratorClient."""

    _transport: Transport

    def search_workflows(
        self,
        *,
        page_token: str = "",
        page_size: int = 100,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
        **filters: Any,
    ) -> SearchPage:
        """Searches running and archived workflows: one page.

        Args:
            page_token: Empty for the first page; else the previous page's next_page_token.
            page_size: At most this many workflows (1-1000).
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.
            **filters: Any of ``name``, ``version`` (0: any), ``statuses`` (e.g.
                ``["FAILED", "TIMED_OUT"]``), ``correlation_id``, ``created_from_ms`` and
                ``created_to_ms`` (from inclusive, to exclusive; 0: open), ``ended_from_ms``,
                ``ended_to_ms``, ``failed_task_type`` (a task of this type failed or timed
                out), ``text`` (words that must all be in the reason for incompletion),
                ``sort`` (``"create_time"`` or ``"end_time"``), ``ascending`` (default: newest
                first) and ``with_total`` (count every match; default True).

        Returns:
            The page, its workflows without their tasks.

        Raises:
            ValueError: Unknown status or sort.
            TypeError: Unknown filter.
            InvalidArgumentError: The server refused a filter (the message names it).
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = search_request(page_token=page_token, page_size=page_size, **filters)
        response = self._transport.invoke(
            request,
            workflows_pb2.SearchWorkflowsResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return search_page(response)

    def search(self, *, limit: int = 0, page_size: int = 100, **filters: Any) -> Iterator[Workflow]:
        """Every workflow a search matches, fetched a page at a time as the caller iterates.

        Args:
            limit: Stop after this many (0: no limit).
            page_size: Workflows per call (1-1000).
            **filters: As for :meth:`search_workflows`.

        Returns:
            An iterator over the matches, without their tasks.

        Raises:
            Whatever :meth:`search_workflows` raises, while iterating.
        """
        filters.setdefault("with_total", False)
        token, seen = "", 0
        while True:
            size = min(page_size, limit - seen) if limit else page_size
            page = self.search_workflows(page_token=token, page_size=size, **filters)
            for wf in page.workflows:
                yield wf
                seen += 1
            if not page.next_page_token or (limit and seen >= limit):
                return
            token = page.next_page_token
