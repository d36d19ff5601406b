"""The operator's commands of `orchestrator`: search, the actions on workflows (one, several, or
in bulk over a search), synchronous execution, and the cluster's settings."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from datetime import datetime
from typing import Any

from .cli import STATUSES, _client, _load_json_arg, _print

# Actions BulkAction can apply to the matches of a search.
BULK_ACTIONS = ("pause", "resume", "restart", "retry", "terminate", "remove", "compensate")
TERMINATE_REASON = "terminated from the CLI"
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)?$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def time_ms(text: str) -> int:
    """Milliseconds since the epoch from an integer or an ISO 8601 time (UTC unless it says)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected milliseconds since the epoch or an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.now().astimezone().tzinfo).astimezone()
    return int(moment.timestamp() * 1000)


def duration_ms(text: str) -> int:
    """Milliseconds from `500ms`, `30s`, `15m`, `12h`, `7d` or a bare number of ms."""
    found = _DURATION.match(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration such as 7d, 12h or 90s")
    return int(found.group(1)) * _UNIT_MS[found.group(2) or "ms"]


def _statuses(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or ():
        for part in value.split(","):
            name = part.strip().upper()
            if name not in STATUSES:
                raise SystemExit(f"--status: unknown {part!r}; one of {', '.join(STATUSES)}")
            out.append(name)
    return out


def filters_of(ns: argparse.Namespace) -> dict[str, Any]:
    """The search filters the flags of _add_filter_flags set."""
    return {
        "name": ns.name or "",
        "version": ns.version,
        "statuses": _statuses(ns.status),
        "correlation_id": ns.correlation_id,
        "created_from_ms": ns.created_from,
        "created_to_ms": ns.created_to,
        "ended_from_ms": ns.ended_from,
        "ended_to_ms": ns.ended_to,
        "failed_task_type": ns.failed_task_type,
        "text": ns.text,
        "sort": ns.sort,
        "ascending": ns.ascending,
    }


def _row(wf: Any) -> str:
    reason = f"  {wf.reason_for_incompletion[:80]}" if wf.reason_for_incompletion else ""
    return (
        f"{wf.workflow_id}  {wf.workflow_name}:{wf.workflow_version}  {wf.status:10} "
        f"created {wf.create_time_ms}  ended {wf.end_time_ms or '-'}{reason}"
    )


def cmd_search(ns: argparse.Namespace) -> int:
    filters = filters_of(ns)
    with _client(ns) as c:
        total, at_least = -1, False
        if ns.total:
            first = c.search_workflows(page_size=1, with_total=True, **filters)
            total, at_least = first.total, first.total_at_least
        found = list(c.search(limit=ns.limit, page_size=min(ns.limit or 100, 1000), **filters))
    if ns.json:
        out: dict[str, Any] = {"workflows": [dataclasses.asdict(wf) for wf in found]}
        if ns.total:
            out["total"] = total
            out["total_at_least"] = at_least
        _print(out)
        return 0
    for wf in found:
        print(_row(wf))
    if ns.total:
        # The server counts archived matches up to a bound; beyond it, a lower bound.
        print(f"{len(found)} shown of {'at least ' if at_least else ''}{total} matching")
    return 0


def _act_one(c: Any, ns: argparse.Namespace, wid: str) -> None:
    action = ns.action
    if action == "pause":
        c.pause_workflow(wid)
    elif action == "resume":
        c.resume_workflow(wid)
    elif action == "restart":
        c.restart_workflow(wid, use_latest_definition=ns.use_latest_definition)
    elif action == "retry":
        c.retry_workflow(wid, resume_subworkflow_tasks=ns.resume_subworkflow_tasks)
    elif action == "rerun":
        c.rerun_workflow(
            wid,
            task_id=ns.task_id,
            task_input=_load_json_arg(ns.task_input, "--task-input") if ns.task_input else None,
            workflow_input=(
                _load_json_arg(ns.workflow_input, "--workflow-input") if ns.workflow_input else None
            ),
        )
    elif action == "skip-task":
        if not ns.task_ref:
            raise SystemExit("workflow skip-task: --task-ref is required")
        output = _load_json_arg(ns.output, "--output") if ns.output else {}
        c.skip_task(wid, ns.task_ref, output)
    elif action == "remove":
        c.remove_workflow(wid)
    elif action == "compensate":
        c.compensate_workflow(wid, ns.reason or "")
    else:
        c.terminate_workflow(wid, ns.reason or TERMINATE_REASON)


def cmd_workflow(ns: argparse.Namespace) -> int:
    from orchestrator_client import OrchestratorError

    if ns.bulk and ns.action not in BULK_ACTIONS:
        raise SystemExit(f"workflow {ns.action}: --bulk works for {', '.join(BULK_ACTIONS)}")
    if not ns.bulk and not ns.workflow_ids:
        raise SystemExit(f"workflow {ns.action}: name workflow ids, or --bulk with filters")
    if ns.bulk and not any(v for k, v in filters_of(ns).items() if k not in ("sort", "ascending")):
        raise SystemExit(f"workflow {ns.action} --bulk: give at least one filter")
    rows: list[dict[str, Any]] = []
    with _client(ns) as c:
        if ns.bulk or (len(ns.workflow_ids) > 1 and ns.action in BULK_ACTIONS):
            results = c.bulk_action(
                ns.action,
                None if ns.bulk else ns.workflow_ids,
                filters=filters_of(ns) if ns.bulk else None,
                batch_size=ns.batch_size,
                reason=ns.reason or (TERMINATE_REASON if ns.action == "terminate" else ""),
                use_latest_definition=ns.use_latest_definition,
                resume_subworkflow_tasks=ns.resume_subworkflow_tasks,
            )
            for r in results:
                rows.append({"workflow_id": r.workflow_id, "code": r.code, "message": r.message})
                if ns.limit and len(rows) >= ns.limit:
                    break
        else:
            for wid in ns.workflow_ids:
                try:
                    _act_one(c, ns, wid)
                    rows.append({"workflow_id": wid, "code": "OK", "message": ""})
                except OrchestratorError as exc:
                    rows.append({"workflow_id": wid, "code": exc.code.name, "message": exc.details})
    failed = sum(r["code"] != "OK" for r in rows)
    if ns.json:
        _print({"action": ns.action, "results": rows, "failed": failed})
    else:
        for r in rows:
            detail = f"  {r['message']}" if r["message"] else ""
            print(f"{r['workflow_id']}  {r['code']}{detail}")
        print(f"{ns.action}: {len(rows) - failed} ok, {failed} failed")
    return 1 if failed else 0


def cmd_execute(ns: argparse.Namespace) -> int:
    wf_input = _load_json_arg(ns.input, "--input") if ns.input else {}
    with _client(ns) as c:
        wf, ended = c.execute_workflow(
            ns.name,
            wf_input,
            wait_s=ns.wait,
            include_tasks=ns.tasks,
            version=ns.version,
            correlation_id=ns.correlation_id,
        )
    out = dataclasses.asdict(wf) if ns.json else {"workflow_id": wf.workflow_id}
    if not ns.json:
        out.update(status=wf.status, output=wf.output)
    _print({**out, "ended": ended})
    return 0 if ended else 3


def cmd_settings(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        if ns.retention is None and ns.max_workflows is None:
            settings = c.cluster_settings()
        else:
            current = c.cluster_settings()
            settings = c.set_history_retention(
                current["history_retention_ms"] if ns.retention is None else ns.retention,
                current["history_max_workflows"] if ns.max_workflows is None else ns.max_workflows,
            )
    print(json.dumps(settings, indent=2))
    return 0


def _add_filter_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--name", help="workflow definition name")
    s.add_argument("--version", type=int, default=0, help="definition version (0: any)")
    s.add_argument(
        "--status",
        action="append",
        metavar="STATUS[,STATUS]",
        help=f"any of these statuses (repeatable): {', '.join(STATUSES)}",
    )
    s.add_argument("--correlation-id", default="")
    for which in ("created", "ended"):
        s.add_argument(
            f"--{which}-from",
            type=time_ms,
            default=0,
            metavar="TIME",
            help=f"{which} at or after (ms since the epoch, or ISO 8601)",
        )
        s.add_argument(
            f"--{which}-to", type=time_ms, default=0, metavar="TIME", help=f"{which} before"
        )
    s.add_argument("--failed-task-type", default="", help="a task of this type failed or timed out")
    s.add_argument("--text", default="", help="words that must all be in the reason")
    s.add_argument("--sort", default="create_time", choices=["create_time", "end_time"])
    s.add_argument("--ascending", action="store_true", help="oldest first")


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "search",
        help="search running and archived workflows",
        description="Search running workflows and those in the durable history, newest first.",
    )
    _add_filter_flags(s)
    s.add_argument("--limit", type=int, default=20, help="at most this many (0: all)")
    s.add_argument(
        "--total",
        action="store_true",
        help="also count the matches (exact up to 10 000 archived ones, then 'at least')",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_search)

    s = sub.add_parser(
        "workflow",
        help="act on workflows: pause, resume, restart, retry, rerun, skip-task, remove, "
        "terminate, compensate",
        description="An operator's action on one or more workflows, or with --bulk on every "
        "workflow a search matches (in batches, reported per workflow). Exits 1 if any failed.",
    )
    s.add_argument(
        "action",
        choices=[
            "pause",
            "resume",
            "restart",
            "retry",
            "rerun",
            "skip-task",
            "remove",
            "terminate",
            "compensate",
        ],
    )
    s.add_argument("workflow_ids", nargs="*", metavar="WORKFLOW_ID")
    s.add_argument("--bulk", action="store_true", help="act on the matches of the filters")
    _add_filter_flags(s)
    s.add_argument("--batch-size", type=int, default=100, help="workflows per call (bulk)")
    s.add_argument("--limit", type=int, default=0, help="stop reporting after this many")
    s.add_argument("--reason", help=f"terminate (default: {TERMINATE_REASON}), compensate")
    s.add_argument("--use-latest-definition", action="store_true", help="restart")
    s.add_argument("--resume-subworkflow-tasks", action="store_true", help="retry")
    s.add_argument("--task-id", default="", help="rerun from this task (default: the start)")
    s.add_argument("--task-input", help="rerun: the task's new input (JSON or @file)")
    s.add_argument("--workflow-input", help="rerun: the workflow's new input (JSON or @file)")
    s.add_argument("--task-ref", help="skip-task: the task's reference name")
    s.add_argument("--output", help="skip-task: the skipped task's output (JSON or @file)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_workflow)

    s = sub.add_parser(
        "execute",
        help="start a workflow and wait for its end",
        description="Start a workflow and wait for its end in one call. Exits 3 if it had not "
        "ended within --wait.",
    )
    s.add_argument("name")
    s.add_argument("--input", help="JSON object, or @file.json")
    s.add_argument("--version", type=int, default=0)
    s.add_argument("--correlation-id", default="")
    s.add_argument("--wait", type=float, default=10.0, help="seconds to wait (at most 60)")
    s.add_argument("--tasks", action="store_true", help="include the tasks (with --json)")
    s.add_argument("--json", action="store_true", help="the whole workflow")
    s.set_defaults(fn=cmd_execute)

    s = sub.add_parser(
        "settings",
        help="show or change the cluster's settings",
        description="Show the cluster's settings, or change the history's retention.",
    )
    s.add_argument(
        "--retention", type=duration_ms, help="keep ended workflows this long (e.g. 7d, 12h)"
    )
    s.add_argument(
        "--max-workflows", type=int, help="keep at most this many ended workflows (0: no bound)"
    )
    s.set_defaults(fn=cmd_settings)
