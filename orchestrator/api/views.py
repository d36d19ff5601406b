"""What core.queries returns -> protobuf messages (mapped under the replica's lock), and the
pages of the List RPCs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from orchestrator_client.v1 import workflows_pb2 as wpb

from ..core.records import WF_QUEUED, Task, Workflow
from .errors import invalid, quote

T = TypeVar("T")


def _j(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def task_pb(t: Task) -> wpb.Task:
    return wpb.Task(
        task_id=t.task_id,
        task_type=t.task_type,
        reference_task_name=t.reference_task_name,
        workflow_id=t.workflow_id,
        workflow_type=t.workflow_type,
        status=wpb.TaskStatus.Value("TASK_STATUS_" + t.status.value),
        input_json=_j(t.input),
        output_json=_j(t.output),
        retry_count=t.retry_count,
        poll_count=t.poll_count,
        scheduled_time_ms=t.scheduled_time_ms,
        start_time_ms=t.start_time_ms,
        end_time_ms=t.end_time_ms,
        reason_for_incompletion=t.reason_for_incompletion,
        worker_id=t.worker_id,
        response_timeout_seconds=t.response_timeout_seconds,
        lease_expires_ms=t.lease_expires_ms,
        seq=t.seq,
        retried_task_id=t.retried_task_id,
        correlation_id=t.correlation_id,
        domain=t.domain,
    )


def workflow_pb(wf: Workflow, tasks: list[Task] | None) -> wpb.Workflow:
    msg = wpb.Workflow(
        workflow_id=wf.workflow_id,
        workflow_name=wf.workflow_name,
        workflow_version=wf.workflow_version,
        status=wpb.WorkflowStatus.Value("WORKFLOW_STATUS_" + wf.status.value),
        input_json=_j(wf.input),
        output_json=_j(wf.output),
        reason_for_incompletion=wf.reason_for_incompletion,
        correlation_id=wf.correlation_id,
        create_time_ms=wf.create_time_ms,
        end_time_ms=wf.end_time_ms,
        variables_json=_j(wf.variables),
        idempotency_key=wf.idempotency_key,
        priority=wf.priority,
        task_to_domain=wf.task_to_domain,
        triggering_workflow_id=wf.triggering_workflow_id,
        # Records written before start_time_ms was kept started running when created.
        start_time_ms=wf.start_time_ms or (0 if wf.status is WF_QUEUED else wf.create_time_ms),
    )
    if tasks is not None:
        msg.tasks.extend(task_pb(t) for t in tasks)
    return msg


# ---- pages of List RPCs

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# A page ends before its items exceed this, so an answer stays under a default client's 4 MiB.
MAX_PAGE_BYTES = 1024 * 1024


def page_size(value: int, field: str = "page_size") -> int:
    if value == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise invalid(f"{field}: must be between 1 and {MAX_PAGE_SIZE}")
    return value


def page_after(token: str, shape: tuple[type, ...]) -> list[Any] | None:
    """The key a page token names (the last item of the previous page), or None for the first
    page. A token is base64 of the JSON list of that key's parts; `shape` their types."""
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, UnicodeError):
        key = None
    if (
        not isinstance(key, list)
        or len(key) != len(shape)
        or not all(type(part) is kind for part, kind in zip(key, shape, strict=True))
    ):
        raise invalid(f"page_token: not a token of this listing: {quote(token)!r}")
    return key


def fill_page(
    out: Any,
    items: Iterable[T],
    size: int,
    to_pb: Callable[[T], Any],
    key: Callable[[T], list[Any]],
) -> str:
    """Appends up to `size` items to the repeated field `out` (fewer once they reach
    MAX_PAGE_BYTES, at least one); returns the next page's token, "" when nothing follows."""
    used = 0
    last: T | None = None
    for item in items:
        if last is not None and len(out) >= size:
            return page_token(key(last))
        msg = to_pb(item)
        used += msg.ByteSize() if hasattr(msg, "ByteSize") else len(msg)
        if last is not None and used > MAX_PAGE_BYTES:
            return page_token(key(last))
        out.append(msg)
        last = item
    return ""


def page_token(key: list[Any]) -> str:
    """The token of the page that follows the item whose key this is."""
    return base64.urlsafe_b64encode(_j(key).encode("utf-8")).decode("ascii")
