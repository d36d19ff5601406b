"""The page of one workflow: its summary, the operator actions, its graph and its tasks."""

from __future__ import annotations

import json
import uuid
from typing import Any

from . import graph
from .gateway import ACTIONS
from .render import (
    TERMINAL,
    Page,
    csrf_field,
    cut,
    e,
    layout,
    pretty_json,
    q,
    status_badge,
    task_status,
    when,
    workflow_status,
)

# Which actions the page offers for a workflow in a status (the API decides; a refusal is shown).
OFFERED: dict[str, tuple[str, ...]] = {
    "RUNNING": ("pause", "terminate"),
    "PAUSED": ("resume", "terminate"),
    "QUEUED": ("terminate",),
    "COMPENSATING": ("terminate",),
    "COMPLETED": ("restart", "rerun", "remove"),
    "FAILED": ("retry", "restart", "rerun", "compensate", "remove"),
    "TERMINATED": ("retry", "restart", "rerun", "compensate", "remove"),
    "TIMED_OUT": ("retry", "restart", "rerun", "compensate", "remove"),
    "COMPENSATED": ("restart", "remove"),
}
LABELS = {
    "pause": "Pause",
    "resume": "Resume",
    "terminate": "Terminate",
    "retry": "Retry",
    "restart": "Restart",
    "rerun": "Rerun",
    "compensate": "Compensate",
    "remove": "Remove",
    "skip": "Skip",
}
ACTIVE_TASK = frozenset({"SCHEDULED", "IN_PROGRESS"})


def runs(wf: Any) -> list[graph.TaskRun]:
    return [
        graph.TaskRun(
            task_id=t.task_id,
            ref=t.reference_task_name,
            task_type=t.task_type,
            status=task_status(t.status),
            seq=t.seq,
            start_ms=t.start_time_ms,
            end_ms=t.end_time_ms,
            retry_count=t.retry_count,
            sub_workflow_id=graph.sub_workflow_id(t.output_json)
            if t.task_type == "SUB_WORKFLOW"
            else "",
        )
        for t in wf.tasks
    ]


def definition_of(definition_json: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(definition_json) if definition_json else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _form(page: Page, wf_id: str, action: str, extra: str = "", label: str = "") -> str:
    """One action's form; its request id makes a form sent twice one action."""
    return (
        f'<form method="post" action="/workflows/{q(wf_id)}" class="action">'
        f"{csrf_field(page)}"
        f'<input type="hidden" name="action" value="{e(action)}">'
        f'<input type="hidden" name="request_id" value="{uuid.uuid4()}">'
        f'{extra}<button type="submit" name="do" value="{e(action)}" data-action="{e(action)}">'
        f"{e(label or LABELS[action])}</button></form>"
    )


def _actions(page: Page, wf_id: str, status: str) -> str:
    forms = []
    for action in OFFERED.get(status, ()):
        if not page.can(ACTIONS[action][0]):
            continue
        extra = ""
        if action in ("terminate", "compensate"):
            extra = '<input name="reason" placeholder="reason" maxlength="500">'
        elif action == "restart":
            extra = '<label><input type="checkbox" name="use_latest_definition"> latest definition</label>'
        elif action == "rerun":
            extra = '<input name="task_id" placeholder="from task id (optional)" maxlength="300">'
        forms.append(_form(page, wf_id, action, extra))
    if status in ("RUNNING", "PAUSED") and page.can("SkipTask"):
        extra = '<input name="task_reference_name" placeholder="task reference" required maxlength="300">'
        forms.append(_form(page, wf_id, "skip", extra, "Skip task"))
    return f'<div class="actions">{"".join(forms)}</div>' if forms else ""


def _summary(wf: Any, status: str) -> str:
    rows = [
        ("Id", e(wf.workflow_id)),
        (
            "Definition",
            f'<a href="/definitions/workflow/{q(wf.workflow_name)}/{wf.workflow_version}">'
            f"{e(wf.workflow_name)} v{wf.workflow_version}</a>",
        ),
        ("Status", status_badge(status)),
        ("Correlation id", e(wf.correlation_id)),
        ("Created (UTC)", e(when(wf.create_time_ms))),
        ("Started", e(when(wf.start_time_ms))),
        ("Ended", e(when(wf.end_time_ms))),
        ("Priority", str(wf.priority)),
    ]
    if wf.reason_for_incompletion:
        rows.append(("Reason", e(cut(wf.reason_for_incompletion, 1000))))
    if wf.triggering_workflow_id:
        rows.append(
            (
                "Started by",
                f'<a href="/workflows/{q(wf.triggering_workflow_id)}">'
                f"{e(wf.triggering_workflow_id)}</a>",
            )
        )
    return (
        '<table class="summary">'
        + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        + "</table>"
    )


def _tasks(page: Page, wf: Any, status: str) -> str:
    rows = []
    for t in sorted(wf.tasks, key=lambda t: t.seq):
        ts = task_status(t.status)
        duration = (
            graph.human_ms(t.end_time_ms - t.start_time_ms)
            if t.start_time_ms and t.end_time_ms
            else ""
        )
        child = graph.sub_workflow_id(t.output_json) if t.task_type == "SUB_WORKFLOW" else ""
        plain = e(t.reference_task_name)
        ref = plain
        if child:
            ref += f' <a href="/workflows/{q(child)}" class="sub">sub-workflow</a>'
        row_actions = ""
        if status in TERMINAL and page.can("RerunWorkflow"):
            row_actions = _form(
                page,
                wf.workflow_id,
                "rerun",
                f'<input type="hidden" name="task_id" value="{e(t.task_id)}">',
                "Rerun from here",
            )
        elif status in ("RUNNING", "PAUSED") and ts in ACTIVE_TASK and page.can("SkipTask"):
            row_actions = _form(
                page,
                wf.workflow_id,
                "skip",
                f'<input type="hidden" name="task_reference_name" value="{plain}">',
            )
        reason = (
            f'<div class="reason">{e(cut(t.reason_for_incompletion, 500))}</div>'
            if t.reason_for_incompletion
            else ""
        )
        rows.append(
            f'<tr id="task-{e(t.task_id)}" data-ref="{plain}"><td>{t.seq}</td><td>{ref}</td>'
            f"<td>{e(t.task_type)}</td><td>{status_badge(ts)}{reason}</td>"
            f"<td>{t.retry_count}</td><td>{t.poll_count}</td><td>{e(t.worker_id)}</td>"
            f"<td>{e(when(t.scheduled_time_ms))}</td><td>{e(when(t.start_time_ms))}</td>"
            f"<td>{e(when(t.end_time_ms))}</td><td>{e(duration)}</td>"
            f"<td><details><summary>input</summary>{pretty_json(t.input_json)}</details>"
            f"<details><summary>output</summary>{pretty_json(t.output_json)}</details></td>"
            f"<td>{row_actions}</td></tr>"
        )
    return (
        '<table class="tasks"><thead><tr><th>#</th><th>Reference</th><th>Type</th><th>Status</th>'
        "<th>Retries</th><th>Polls</th><th>Worker</th><th>Scheduled (UTC)</th><th>Started</th>"
        "<th>Ended</th><th>Took</th><th>Data</th><th></th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def workflow_page(
    page: Page, wf: Any, definition_json: str, *, error: str = "", note: str = ""
) -> str:
    status = workflow_status(wf.status)
    definition = definition_of(definition_json)
    root = graph.build(definition, runs(wf))
    known = (
        ""
        if definition is not None
        else ('<p class="note">The definition could not be read: the tasks are drawn in order.</p>')
    )
    body = (
        _summary(wf, status)
        + _actions(page, wf.workflow_id, status)
        + f'<h2>Execution</h2>{known}<div class="graph-box">{graph.svg(root)}</div>'
        + '<div class="io"><div><h2>Input</h2>'
        + pretty_json(wf.input_json)
        + "</div><div><h2>Output</h2>"
        + pretty_json(wf.output_json)
        + "</div><div><h2>Variables</h2>"
        + pretty_json(wf.variables_json)
        + "</div></div>"
        + f"<h2>Tasks ({len(wf.tasks)})</h2>"
        + _tasks(page, wf, status)
    )
    return layout(page, f"Workflow {wf.workflow_name}", body, error=error, note=note)
