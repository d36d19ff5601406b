"""What the durable history (orchestrator/history/) must do after a batch, in apply order.

The core decides and the shell writes: apply stays pure (no I/O), and every replica, applying
the same log, hands its history writer the same operations tagged with the same command
sequence numbers, so every replica's history holds the same rows at the same sequence number.
A writer that has already written an operation (its history is ahead of a replayed log) skips
it by its sequence number; operations are idempotent besides.

An archived workflow is kept as one document (`archive_doc`): its record, its tasks' records and
the definition it ran with, by field name, so a later version reads it with added fields at
their defaults. `records_from_doc` turns a document back into records (an operator's retry or
restart of an archived workflow carries it in its command, and apply puts it back in memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .records import DefSnapshot, ScriptMarker, Task, Workflow

JSON = Any

# The archive document's format; a reader refuses a document of a format it does not know.
DOC_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Archive:
    """A terminal workflow left replicated memory: write its row."""

    seq: int
    # Detached from the state when evicted: nothing changes them afterwards.
    workflow: Workflow
    tasks: tuple[Task, ...]
    # The definition and task definitions it ran with (a restart without the latest definition
    # needs them); None if the state no longer had them.
    definition: DefSnapshot | None


@dataclass(frozen=True, slots=True)
class Remove:
    """Delete a workflow's row: an operator removed it, or it is back in replicated memory
    (retried or restarted from history) and will be archived again when it ends."""

    seq: int
    workflow_id: str


@dataclass(frozen=True, slots=True)
class Expire:
    """Retention: delete rows that ended before cutoff_ms, then (max_rows > 0) the oldest rows
    by (end time, workflow id) beyond max_rows."""

    seq: int
    cutoff_ms: int
    max_rows: int


HistoryOp = Archive | Remove | Expire


def _named(record: Any) -> dict[str, JSON]:
    # to_row() reads every field with one attrgetter call (each archived workflow is encoded
    # on every replica: a getattr per field cost a fifth of the history writer's time).
    out = dict(zip(type(record).ROW, record.to_row(), strict=True))
    script = out.get("script")
    if isinstance(script, ScriptMarker):
        out["script"] = script.to_json()
    return out


def archive_doc(op: Archive) -> dict[str, JSON]:
    """The JSON document the history keeps for an archived workflow."""
    d = op.definition
    return {
        "format": DOC_FORMAT,
        "workflow": _named(op.workflow),
        "tasks": [_named(t) for t in op.tasks],
        "definition": None if d is None else {"definition": d.definition, "task_defs": d.task_defs},
    }


class DocError(ValueError):
    """An archive document that cannot be read back (names what is wrong)."""


def records_from_doc(
    doc: JSON,
) -> tuple[Workflow, list[Task], tuple[JSON, dict[str, JSON]] | None]:
    """(workflow, tasks, (definition, task definitions) or None) from an archive document."""
    if not isinstance(doc, dict):
        raise DocError("archive document: not an object")
    if doc.get("format") != DOC_FORMAT:
        raise DocError(f"archive document: unknown format {doc.get('format')!r}")
    try:
        wf_d = doc["workflow"]
        wf = Workflow.from_named(list(wf_d), list(wf_d.values())).fix_types()
        tasks = [Task.from_named(list(t), list(t.values())).fix_types() for t in doc["tasks"]]
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise DocError(f"archive document: {type(exc).__name__}: {exc}") from None
    if any(t.workflow_id != wf.workflow_id for t in tasks):
        raise DocError("archive document: a task belongs to another workflow")
    d = doc.get("definition")
    definition = None
    if isinstance(d, dict) and "definition" in d:
        definition = (d["definition"], d.get("task_defs") or {})
    return wf, tasks, definition
