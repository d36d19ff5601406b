"""The web UI's HTML: every page rendered on the server, every value from the API escaped.

Plain strings built with `e()` (html.escape with quotes) around each value that is not markup
this module wrote; no template engine, no inline script or style (the CSP forbids both).
"""

from __future__ import annotations

import contextlib
import html
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from orchestrator_client.v1 import workflows_pb2

from . import graph

# A JSON document shown in a table cell or a page is cut to this many characters.
MAX_JSON_CHARS = 2000
MAX_CELL_CHARS = 300
WORKFLOW_STATUSES = (
    "RUNNING",
    "PAUSED",
    "QUEUED",
    "COMPLETED",
    "FAILED",
    "TERMINATED",
    "TIMED_OUT",
    "COMPENSATING",
    "COMPENSATED",
)
TERMINAL = frozenset({"COMPLETED", "FAILED", "TERMINATED", "TIMED_OUT", "COMPENSATED"})


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def q(value: str) -> str:
    """A path segment (workflow ids and names may hold any character)."""
    return quote(value, safe="")


@dataclass(frozen=True)
class Page:
    """What every page needs besides its data: who looks, and how they may act."""

    node_id: str
    user: str  # "" without login (an insecure replica)
    role: str
    csrf: str
    can: Callable[[str], bool]  # may this user call WorkflowService.<rpc>? (buttons only)


def layout(page: Page, title: str, body: str, *, error: str = "", note: str = "") -> str:
    nav = "".join(
        f'<a href="{href}">{label}</a>'
        for href, label in (
            ("/cluster", "Cluster"),
            ("/workflows", "Workflows"),
            ("/definitions", "Definitions"),
            ("/events", "Event handlers"),
        )
    )
    who = ""
    if page.user:
        who = (
            f'<span class="who">{e(page.user)} ({e(page.role or "?")})</span>'
            f'<form method="post" action="/logout" class="inline">{csrf_field(page)}'
            '<button type="submit">Log out</button></form>'
        )
    banners = ""
    if error:
        banners += f'<p class="error" role="alert">{e(error)}</p>'
    if note:
        banners += f'<p class="note">{e(note)}</p>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)} · orchestrator {e(page.node_id)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="/static/style.css"></head><body>'
        f'<header><span class="brand">orchestrator</span><span class="replica">replica '
        f"{e(page.node_id)}</span><nav>{nav}</nav>{who}</header>"
        f"<main><h1>{e(title)}</h1>{banners}{body}</main></body></html>"
    )


def csrf_field(page: Page) -> str:
    return f'<input type="hidden" name="csrf" value="{e(page.csrf)}">'


def login_page(node_id: str, secure: bool, error: str = "") -> str:
    warn = "" if secure else '<p class="note">This replica serves plain HTTP.</p>'
    page = Page(node_id, "", "", "", lambda _: False)
    body = (
        f'{warn}<form method="post" action="/login" class="login">'
        '<label>Bearer token <input type="password" name="token" autocomplete="off" '
        'required autofocus></label><button type="submit">Log in</button></form>'
        "<p>The token is one the cluster's tokens file names (docs/security.md); it is kept in "
        "an HttpOnly cookie and sent with every call this page makes to the API.</p>"
    )
    return layout(page, "Log in", body, error=error)


def when(ms: int) -> str:
    if not ms:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"


def cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + f"… ({len(text) - n} more characters)"


def pretty_json(text: str, n: int = MAX_JSON_CHARS) -> str:
    """A JSON document indented (as given when it does not parse), cut, escaped, in <pre>."""
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False) if text else ""
    return f"<pre>{e(cut(text, n))}</pre>"


def status_badge(status: str) -> str:
    cls = graph.STATUS_CLASS.sub("", status.lower())
    return f'<span class="badge st-{cls}">{e(status)}</span>'


def cluster_page(page: Page, status: Any) -> str:
    leader_seq = max((r.applied_sequence for r in status.replicas if r.role == "LEADER"), default=0)
    rows = []
    for r in status.replicas:
        lag = max(0, leader_seq - r.applied_sequence) if leader_seq else ""
        here = " (this replica)" if r.node_id == page.node_id else ""
        rows.append(
            f'<tr data-node="{e(r.node_id)}"><td>{e(r.node_id)}{e(here)}</td>'
            f'<td class="role-{e(r.role.lower())}">{e(r.role)}</td><td>{r.term}</td>'
            f"<td>{r.commit_index}</td><td>{r.applied_sequence}</td><td>{e(lag)}</td>"
            f"<td>{'serving' if r.serving else 'not serving'}</td><td>{e(r.detail)}</td>"
            f"<td>{r.workflows}</td><td>{e(r.grpc_address)}</td></tr>"
        )
    leader = status.leader_id or "none known"
    body = (
        f"<p>Leader: <b>{e(leader)}</b></p>"
        '<table class="cluster"><thead><tr><th>Replica</th><th>Role</th><th>Term</th>'
        "<th>Commit index</th><th>Applied sequence</th><th>Lag (sequence)</th><th>Health</th>"
        "<th>Detail</th><th>Workflows</th><th>gRPC</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return layout(page, "Cluster", body)


def workflows_page(
    page: Page, filters: dict[str, str], result: Any, error: str = "", paged: bool = False
) -> str:
    options = "".join(
        f'<option value="{s}"{" selected" if filters.get("status") == s else ""}>{s}</option>'
        for s in WORKFLOW_STATUSES
    )
    form = (
        '<form method="get" action="/workflows" class="filters">'
        f'<label>Name <input name="name" value="{e(filters.get("name", ""))}"></label>'
        f'<label>Status <select name="status"><option value="">any</option>{options}</select></label>'
        f'<label>Correlation id <input name="correlation" value="{e(filters.get("correlation", ""))}"></label>'
        f'<label>Text <input name="text" value="{e(filters.get("text", ""))}"></label>'
        '<button type="submit">Search</button></form>'
    )
    if result is None:
        return layout(page, "Workflows", form, error=error)
    rows = "".join(
        f'<tr><td><a href="/workflows/{q(w.workflow_id)}">{e(w.workflow_id)}</a></td>'
        f"<td>{e(w.workflow_name)}</td><td>{w.workflow_version}</td>"
        f"<td>{status_badge(workflow_status(w.status))}</td><td>{e(w.correlation_id)}</td>"
        f"<td>{e(when(w.create_time_ms))}</td><td>{e(when(w.end_time_ms))}</td></tr>"
        for w in result.workflows
    )
    more = "+" if result.total_at_least else ""
    paging = f"<p>{result.total_count}{more} found.</p>"
    links = []
    if paged:
        links.append(f'<a href="/workflows?{e(urlencode(filters))}" class="first">First page</a>')
    if result.next_page_token:
        nxt = urlencode({**filters, "page": result.next_page_token})
        links.append(f'<a href="/workflows?{e(nxt)}" class="next">Next page</a>')
    if links:
        paging += f"<p>{' · '.join(links)}</p>"
    table = (
        '<table class="workflows"><thead><tr><th>Id</th><th>Name</th><th>Version</th>'
        "<th>Status</th><th>Correlation id</th><th>Created (UTC)</th><th>Ended</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    return layout(page, "Workflows", form + paging + table + paging, error=error)


def workflow_status(value: int) -> str:
    return str(workflows_pb2.WorkflowStatus.Name(value)).removeprefix("WORKFLOW_STATUS_")


def task_status(value: int) -> str:
    return str(workflows_pb2.TaskStatus.Name(value)).removeprefix("TASK_STATUS_")


def definitions_page(page: Page, workflow_defs: list[Any], task_defs: list[str]) -> str:
    wrows = "".join(
        f'<tr><td><a href="/definitions/workflow/{q(d.name)}/{d.version}">{e(d.name)}</a></td>'
        f"<td>{d.version}</td><td>{e(_description(d.definition_json))}</td></tr>"
        for d in workflow_defs
    )
    tdefs = []
    for raw in task_defs:
        name = _field(raw, "name")
        tdefs.append(f"<details><summary>{e(name)}</summary>{pretty_json(raw)}</details>")
    body = (
        f"<h2>Workflow definitions ({len(workflow_defs)})</h2>"
        '<table class="defs"><thead><tr><th>Name</th><th>Version</th><th>Description</th></tr>'
        f"</thead><tbody>{wrows}</tbody></table>"
        f"<h2>Task definitions ({len(task_defs)})</h2>{''.join(tdefs)}"
    )
    return layout(page, "Definitions", body)


def definition_page(page: Page, name: str, version: int, definition_json: str) -> str:
    body = pretty_json(definition_json, 200_000)
    return layout(page, f"Workflow definition {name} v{version}", body)


def events_page(page: Page, handlers: list[str]) -> str:
    items = "".join(
        f"<details><summary>{e(_field(h, 'name'))} on {e(_field(h, 'event'))}</summary>"
        f"{pretty_json(h)}</details>"
        for h in handlers
    )
    return layout(page, "Event handlers", items or "<p>No event handler registered.</p>")


def _field(raw: str, key: str, default: str = "?") -> str:
    try:
        doc = json.loads(raw)
    except ValueError:
        return default
    return str(doc.get(key, default)) if isinstance(doc, dict) else default


def _description(raw: str) -> str:
    return cut(_field(raw, "description", ""), 120)


def error_page(page: Page, title: str, message: str) -> str:
    return layout(page, title, "", error=message)
