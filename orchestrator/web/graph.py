"""A workflow's execution as a graph: the definition's structure walked with the task runs
beside it, laid out and drawn as SVG on the server (no script in the browser).

Pure: a definition (Conductor JSON, as a dict) and the runs in, a tree and then SVG text out.
Sequential tasks stack downwards; FORK_JOIN branches, SWITCH cases, DO_WHILE iterations and
dynamically forked tasks sit side by side under their task. Runs are found by reference name
(DO_WHILE iterations add `__N`, nested ones `__N__M`), the latest attempt counting, as the core
finds them (docs/workflow-language.md).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

BOX_W, BOX_H = 190, 48
GAP_X, GAP_Y = 16, 22
LANE_LABEL_H = 16
PAD = 12
# Iterations or dynamic branches drawn at most (the latest ones); the table lists every run.
MAX_LANES = 24
STATUS_CLASS = re.compile(r"[^a-z_]")


@dataclass(frozen=True)
class TaskRun:
    """One attempt of a task, as the API reports it."""

    task_id: str
    ref: str
    task_type: str
    status: str
    seq: int = 0
    start_ms: int = 0
    end_ms: int = 0
    retry_count: int = 0
    sub_workflow_id: str = ""


@dataclass
class Box:
    """A task of the definition, with its latest run (None: not scheduled)."""

    ref: str
    task_type: str
    run: TaskRun | None = None
    attempts: int = 0


@dataclass
class Seq:
    items: list[Block] = field(default_factory=list)


@dataclass
class Split:
    """A task whose lanes run beside each other: branches, cases, iterations."""

    head: Box
    kind: str
    lanes: list[tuple[str, Seq]] = field(default_factory=list)
    hidden: int = 0  # lanes left out (the earliest iterations)


Block = Box | Seq | Split


class _Runs:
    """The runs by reference name, and which of them the walk placed."""

    def __init__(self, runs: list[TaskRun]) -> None:
        self.by_ref: dict[str, list[TaskRun]] = {}
        for r in sorted(runs, key=lambda r: r.seq):
            self.by_ref.setdefault(r.ref, []).append(r)
        self.placed: set[str] = set()

    def box(self, ref: str, task_type: str) -> Box:
        attempts = self.by_ref.get(ref, [])
        if attempts:
            self.placed.add(ref)
        return Box(ref, task_type, attempts[-1] if attempts else None, len(attempts))

    def iterations(self, body: list[dict[str, Any]], suffix: str) -> list[int]:
        refs = {str(t.get("taskReferenceName", "")) for t in body}
        found: set[int] = set()
        for ref in self.by_ref:
            for base in refs:
                head = f"{base}{suffix}__"
                if base and ref.startswith(head):
                    n = ref[len(head) :].split("__", 1)[0]
                    if n.isdigit():
                        found.add(int(n))
        return sorted(found)

    def leftover(self) -> list[TaskRun]:
        left = [a[-1] for ref, a in self.by_ref.items() if ref not in self.placed]
        return sorted(left, key=lambda r: r.seq)


def build(definition: dict[str, Any] | None, runs: list[TaskRun]) -> Seq:
    """The graph of one execution: the definition's tasks with their runs; runs it does not
    place (dynamic forks' tasks; every run when the definition is unknown) come last, or as
    the lanes of the first dynamic fork."""
    index = _Runs(runs)
    tasks = (definition or {}).get("tasks")
    root = _seq(tasks if isinstance(tasks, list) else [], "", index)
    left = index.leftover()
    if left:
        dynamic = _first_dynamic(root)
        if dynamic is not None:
            lanes = [(r.ref, Seq([Box(r.ref, r.task_type, r, 1)])) for r in left]
            dynamic.hidden = max(0, len(lanes) - MAX_LANES)
            dynamic.lanes = lanes[dynamic.hidden :]
        else:
            root.items.extend(Box(r.ref, r.task_type, r, len(index.by_ref[r.ref])) for r in left)
    return root


def _seq(tasks: list[Any], suffix: str, index: _Runs) -> Seq:
    return Seq([_block(t, suffix, index) for t in tasks if isinstance(t, dict)])


def _lists(raw: Any) -> list[list[Any]]:
    return [b for b in raw if isinstance(b, list)] if isinstance(raw, list) else []


def _block(task: dict[str, Any], suffix: str, index: _Runs) -> Block:
    ref = str(task.get("taskReferenceName", ""))
    kind = str(task.get("type") or "SIMPLE")
    head = index.box(ref + suffix, kind)
    if kind == "FORK_JOIN":
        branches = _lists(task.get("forkTasks"))
        lanes = [(f"branch {i + 1}", _seq(b, suffix, index)) for i, b in enumerate(branches)]
        return Split(head, "fork", lanes)
    if kind in ("SWITCH", "DECISION"):
        cases = task.get("decisionCases")
        cases = cases if isinstance(cases, dict) else {}
        lanes = [(str(k), _seq(v, suffix, index)) for k, v in cases.items() if isinstance(v, list)]
        default = task.get("defaultCase")
        if isinstance(default, list):
            lanes.append(("default", _seq(default, suffix, index)))
        return Split(head, "switch", lanes)
    if kind == "DO_WHILE":
        body = [t for t in task.get("loopOver") or [] if isinstance(t, dict)]
        found = index.iterations(body, suffix) or [1]
        hidden = max(0, len(found) - MAX_LANES)
        lanes = [(f"#{n}", _seq(body, f"{suffix}__{n}", index)) for n in found[hidden:]]
        return Split(head, "loop", lanes, hidden)
    if kind == "FORK_JOIN_DYNAMIC":
        return Split(head, "dynamic", [])
    return head


def _first_dynamic(block: Block) -> Split | None:
    if isinstance(block, Seq):
        for item in block.items:
            found = _first_dynamic(item)
            if found is not None:
                return found
        return None
    if isinstance(block, Split):
        if block.kind == "dynamic":
            return block
        for _, lane in block.lanes:
            found = _first_dynamic(lane)
            if found is not None:
                return found
    return None


def boxes(block: Block) -> list[Box]:
    """Every box of the graph, in drawing order (for tests and the legend)."""
    if isinstance(block, Box):
        return [block]
    if isinstance(block, Seq):
        return [b for item in block.items for b in boxes(item)]
    return [block.head, *(b for _, lane in block.lanes for b in boxes(lane))]


# Layout: sizes first, then positions.


def size(block: Block) -> tuple[int, int]:
    if isinstance(block, Box):
        return BOX_W, BOX_H
    if isinstance(block, Seq):
        if not block.items:
            return BOX_W // 2, LANE_LABEL_H
        dims = [size(i) for i in block.items]
        return max(w for w, _ in dims), sum(h for _, h in dims) + GAP_Y * (len(dims) - 1)
    if not block.lanes:
        return BOX_W, BOX_H
    dims = [size(lane) for _, lane in block.lanes]
    lanes_w = sum(w for w, _ in dims) + GAP_X * (len(dims) - 1)
    lanes_h = LANE_LABEL_H + max(h for _, h in dims)
    return max(BOX_W, lanes_w), BOX_H + GAP_Y + lanes_h + GAP_Y


def svg(root: Seq, link: str = "/workflows/") -> str:
    """The graph as an <svg> element (classes for the stylesheet; no inline style or script)."""
    w, h = size(root)
    out: list[str] = []
    _draw(root, PAD, PAD, w, out, link)
    return (
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{w + 2 * PAD}" height="{h + 2 * PAD}" viewBox="0 0 {w + 2 * PAD} {h + 2 * PAD}">'
        + "".join(out)
        + "</svg>"
    )


def _line(x1: float, y1: float, x2: float, y2: float, out: list[str]) -> None:
    out.append(f'<line class="edge" x1="{x1:g}" y1="{y1:g}" x2="{x2:g}" y2="{y2:g}"/>')


def _draw(block: Block, x: float, y: float, width: float, out: list[str], link: str) -> None:
    """Draws `block` centred in the column [x, x + width) from y down."""
    w, h = size(block)
    left = x + (width - w) / 2
    mid = x + width / 2
    if isinstance(block, Box):
        _box(block, left, y, out, link)
    elif isinstance(block, Seq):
        top = y
        for i, item in enumerate(block.items):
            _, ih = size(item)
            if i:
                _line(mid, top - GAP_Y, mid, top, out)
            _draw(item, left, top, w, out, link)
            top += ih + GAP_Y
        if not block.items:
            out.append(f'<text class="empty" x="{mid:g}" y="{y + 12:g}">(empty)</text>')
    else:
        _split(block, left, y, w, h, out, link)


def _split(
    block: Split, left: float, y: float, w: float, h: float, out: list[str], link: str
) -> None:
    mid = left + w / 2
    _box(block.head, mid - BOX_W / 2, y, out, link)
    if not block.lanes:
        return
    dims = [size(lane) for _, lane in block.lanes]
    lanes_w = sum(lw for lw, _ in dims) + GAP_X * (len(dims) - 1)
    lx = left + (w - lanes_w) / 2
    top = y + BOX_H + GAP_Y
    bottom = y + h - GAP_Y / 2
    centres = []
    for (label, lane), (lw, lh) in zip(block.lanes, dims, strict=True):
        c = lx + lw / 2
        centres.append(c)
        out.append(
            f'<text class="lane" x="{c:g}" y="{top + LANE_LABEL_H - 4:g}">{_esc(_cut(label, 24))}</text>'
        )
        _line(c, top, c, top + 4, out)
        _draw(lane, lx, top + LANE_LABEL_H, lw, out, link)
        _line(c, top + LANE_LABEL_H + lh, c, bottom, out)
        lx += lw + GAP_X
    _line(mid, y + BOX_H, mid, top, out)
    _line(min(centres), top, max(centres), top, out)
    _line(min(centres), bottom, max(centres), bottom, out)
    _line(mid, bottom, mid, y + h, out)  # on to the next task's connector
    if block.hidden:
        out.append(
            f'<text class="lane" x="{left:g}" y="{top - 4:g}" text-anchor="start">'
            f"{block.hidden} earlier not drawn</text>"
        )


def _box(box: Box, x: float, y: float, out: list[str], link: str) -> None:
    run = box.run
    status = run.status if run else "NOT_RUN"
    cls = STATUS_CLASS.sub("", status.lower())
    timing = _duration(run) if run else ""
    detail = " · ".join(p for p in (box.task_type, status.lower(), timing) if p)
    tip = [f"{box.ref} ({box.task_type})", f"status {status}"]
    if run:
        tip.append(f"attempts {box.attempts}, retry count {run.retry_count}")
        if run.start_ms:
            tip.append(f"started at {run.start_ms} ms, {timing}")
    href = ""
    if run and run.sub_workflow_id:
        href = link + quote(run.sub_workflow_id, safe="")
        tip.append(f"sub-workflow {run.sub_workflow_id}")
    elif run:
        href = "#task-" + quote(run.task_id, safe="")
    retries = (
        f' <tspan class="retries">({box.attempts} attempts)</tspan>' if box.attempts > 1 else ""
    )
    body = (
        f'<rect x="{x:g}" y="{y:g}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
        f'<text class="ref" x="{x + 8:g}" y="{y + 19:g}">{_esc(_cut(box.ref, 22))}{retries}</text>'
        f'<text class="detail" x="{x + 8:g}" y="{y + 37:g}">{_esc(_cut(detail, 30))}</text>'
        f"<title>{_esc(chr(10).join(tip))}</title>"
    )
    if href:
        body = f'<a href="{_esc(href)}">{body}</a>'
    out.append(
        f'<g class="node st-{cls}" data-ref="{_esc(box.ref)}" data-status="{_esc(status)}">{body}</g>'
    )


def _duration(run: TaskRun) -> str:
    if not run.start_ms:
        return ""
    if not run.end_ms:
        return "running"
    return human_ms(max(0, run.end_ms - run.start_ms))


def human_ms(ms: int) -> str:
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms // 60_000} min {ms % 60_000 // 1000} s"
    return f"{ms // 3_600_000} h {ms % 3_600_000 // 60_000} min"


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def sub_workflow_id(output_json: str) -> str:
    """A SUB_WORKFLOW run's child id, from its output (the core puts it there at once)."""
    if "subWorkflowId" not in output_json:
        return ""
    try:
        value = json.loads(output_json).get("subWorkflowId", "")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""
