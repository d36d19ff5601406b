"""The durable history as the API reads it: SearchWorkflows requests -> SearchQuery, a search
page -> its response, and an archived workflow's document (GetWorkflow's fallback, and what the
operator's actions attach to bring a workflow back from history).

Only orchestrator/history/search.py's History touches SQLite; this module maps its answers
and errors to the wire.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from orchestrator_client.v1 import workflows_pb2 as wpb

from ..core import history_ops, limits
from ..history.search import HistoryUnavailable, SearchQuery
from ..replication.api import Replica
from . import views
from .context import HistoryReader
from .errors import ApiError, invalid, quote

# An archived workflow brought back travels in its command (the `restore` field); a bigger one
# would make a Raft entry most replicas take long to ship and apply.
MAX_RESTORE_BYTES = 4 * 1024 * 1024

_SORTS = {
    wpb.SEARCH_SORT_UNSPECIFIED: "create_time",
    wpb.SEARCH_SORT_CREATE_TIME: "create_time",
    wpb.SEARCH_SORT_END_TIME: "end_time",
}


def status_names(values: Any, field: str) -> tuple[str, ...]:
    """WorkflowStatus enum numbers -> core status names, in order, without repeats."""
    names: dict[str, None] = {}
    for i, value in enumerate(values):
        if value == wpb.WORKFLOW_STATUS_UNSPECIFIED or value not in wpb.WorkflowStatus.values():
            raise invalid(f"{field}[{i}]: unknown value {value}")
        names[wpb.WorkflowStatus.Name(value).removeprefix("WORKFLOW_STATUS_")] = None
    return tuple(names)


def query(request: wpb.SearchWorkflowsRequest, *, max_page: int = views.MAX_PAGE_SIZE) -> Any:
    """The SearchQuery of a request (INVALID_ARGUMENT naming the field when it has none)."""
    sort = _SORTS.get(request.sort)
    if sort is None:
        raise invalid(f"sort: unknown value {request.sort}")
    if request.version < 0:
        raise invalid("version: must be >= 0 (0 means every version)")
    for field in ("created_from_ms", "created_to_ms", "ended_from_ms", "ended_to_ms"):
        if getattr(request, field) < 0:
            raise invalid(f"{field}: must be >= 0 (0 leaves it open)")
    for field in ("workflow_name", "correlation_id", "failed_task_type"):
        if len(getattr(request, field)) > limits.MAX_NAME_LENGTH:
            raise invalid(f"{field}: at most {limits.MAX_NAME_LENGTH} characters")
    if len(request.text) > limits.MAX_REASON_LENGTH:
        raise invalid(f"text: at most {limits.MAX_REASON_LENGTH} characters")
    size = views.page_size(request.page_size)
    if size > max_page:
        raise invalid(f"page_size: at most {max_page}")
    after = views.page_after(request.page_token, (str, int, str))
    if after is not None and after[0] != sort:
        raise invalid(f"page_token: a token of a search sorted by {after[0]}, not {sort}")
    try:
        return SearchQuery(
            name=request.workflow_name,
            version=request.version,
            statuses=status_names(request.statuses, "statuses"),
            correlation_id=request.correlation_id,
            created_from_ms=request.created_from_ms,
            created_to_ms=request.created_to_ms,
            ended_from_ms=request.ended_from_ms,
            ended_to_ms=request.ended_to_ms,
            failed_task_type=request.failed_task_type,
            text=request.text,
            sort=sort,
            descending=not request.ascending,
            page_size=size,
            after=(after[1], after[2]) if after else None,
            with_total=not request.skip_total,
        )
    except ValueError as exc:  # SearchQuery's own checks name the field
        raise invalid(str(exc)) from None


def search(history: HistoryReader | None, replica: Replica, q: Any, min_seq: int) -> Any:
    """One SearchPage over memory and history, or UNAVAILABLE saying why not."""
    if history is None:
        raise ApiError(grpc.StatusCode.UNAVAILABLE, "this replica has no durable history to search")
    try:
        return history.search(replica, q, min_seq)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    except (HistoryUnavailable, TimeoutError) as exc:
        raise ApiError(grpc.StatusCode.UNAVAILABLE, f"history: {exc}") from None


def fill(out: Any, page: Any, sort: str, key_prefix: tuple[str, ...] = ()) -> str:
    """Appends a page's workflows to the repeated field `out`; the next page's token."""

    def key(wf: Any) -> list[Any]:
        value = wf.create_time_ms if sort == "create_time" else wf.end_time_ms
        return [*key_prefix, value, wf.workflow_id]

    token = views.fill_page(
        out, page.workflows, len(page.workflows) or 1, lambda wf: views.workflow_pb(wf, None), key
    )
    if token or page.next_after is None:
        return token  # cut short by size, or the last page
    return views.page_token([*key_prefix, *page.next_after])


def response(page: Any, q: Any) -> wpb.SearchWorkflowsResponse:
    out = wpb.SearchWorkflowsResponse(total_count=page.total, total_at_least=page.total_at_least)
    out.next_page_token = fill(out.workflows, page, q.sort, (q.sort,))
    return out


def archived_doc(
    history: HistoryReader | None, workflow_id: str, min_seq: int
) -> dict[str, Any] | None:
    """The archive document of a workflow no longer in memory, or None when history has none."""
    if history is None:
        return None
    try:
        return history.get_doc(workflow_id, min_seq)
    except (HistoryUnavailable, TimeoutError) as exc:
        raise ApiError(grpc.StatusCode.UNAVAILABLE, f"history: {exc}") from None


def restorable(doc: dict[str, Any], workflow_id: str) -> dict[str, Any]:
    """`doc` if it may ride in a command; FAILED_PRECONDITION naming its size if not."""
    size = len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_RESTORE_BYTES:
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"workflow {quote(workflow_id)} is archived as {size} bytes, more than the "
            f"{MAX_RESTORE_BYTES} bytes an action may bring back from history",
        )
    return doc


def archived_pb(doc: dict[str, Any], include_tasks: bool) -> wpb.Workflow:
    """An archived workflow as GetWorkflow answers it."""
    try:
        wf, tasks, _ = history_ops.records_from_doc(doc)
    except history_ops.DocError as exc:
        raise ApiError(grpc.StatusCode.DATA_LOSS, f"history: {exc}") from None
    return views.workflow_pb(wf, tasks if include_tasks else None)
