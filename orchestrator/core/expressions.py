"""`${...}` parameter wiring as in Conductor (schemaVersion 2), by path lookup, never eval.

- A string that is exactly one expression keeps the resolved JSON type.
- Otherwise every expression is stringified into the surrounding text (null -> "null"... as
  Conductor does: JSON text for objects, plain text for scalars).
- Unresolved paths give null. `$${x}` is a literal `${x}`.
- Paths: `a.b[0].c`, `a.b[-1]`, `a['key with space']`, and (as JsonPath) `a..c` (recursive
  descent) and `a[*].c` (wildcard), which give a list of every match.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

JSON = Any
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]|\[(\*)\]")
# A path step: ("key", name) | ("idx", n) | ("all",) for [*] or .* | ("desc", name) for ..name
Step = tuple[str, JSON]


@functools.lru_cache(maxsize=4096)
def parse_path(path: str) -> tuple[Step, ...] | None:
    """The steps of a path (cached: paths come from definitions, a small set)."""
    steps: list[Step] = []
    pos = 0
    n = len(path)
    while pos < n:
        if path.startswith("..", pos):
            pos += 2
            m = _SEGMENT.match(path, pos)
            if m is None or m.group(1) is None:
                return None
            steps.append(("desc", m.group(1)))
            pos = m.end()
            continue
        if path[pos] == ".":
            pos += 1
            continue
        m = _SEGMENT.match(path, pos)
        if m is None:
            return None
        if m.group(1) is not None:
            steps.append(("all", None) if m.group(1) == "*" else ("key", m.group(1)))
        elif m.group(2) is not None:
            steps.append(("idx", int(m.group(2))))
        elif m.group(5) is not None:
            steps.append(("all", None))
        else:
            steps.append(("key", m.group(3) if m.group(3) is not None else m.group(4)))
        pos = m.end()
    return tuple(steps)


def _descend(node: JSON, name: str, out: list[JSON]) -> None:
    """JsonPath `..name`: every value under key `name` at any depth, document order."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == name:
                out.append(v)
            _descend(v, name, out)
    elif isinstance(node, list):
        for v in node:
            _descend(v, name, out)


def lookup(doc: JSON, path: str) -> JSON:
    """A JsonPath-like lookup. A definite path gives the value (or None); a path with `..` or
    `[*]` gives the list of every match, as Jayway JsonPath does."""
    path = path.strip()
    steps = parse_path(path) if len(path) <= _CACHED_MAX_LEN else parse_path.__wrapped__(path)
    if not steps:
        return None
    nodes: list[JSON] = [doc]
    definite = True
    for step in steps:
        nxt: list[JSON] = []
        kind = step[0]
        for cur in nodes:
            if kind == "key":
                if isinstance(cur, dict) and step[1] in cur:
                    nxt.append(cur[step[1]])
            elif kind == "idx":
                i = step[1]
                if isinstance(cur, list) and -len(cur) <= i < len(cur):
                    nxt.append(cur[i])
            elif kind == "all":
                if isinstance(cur, list):
                    nxt.extend(cur)
                elif isinstance(cur, dict):
                    nxt.extend(cur.values())
            else:
                _descend(cur, step[1], nxt)
        if kind in ("all", "desc"):
            definite = False
        nodes = nxt
    if definite:
        return nodes[0] if nodes else None
    return nodes


def stringify(value: JSON) -> str:
    """A value as text in an expression: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


_CACHED_MAX_LEN = 512  # longer strings are scanned every time (the cache must stay small)


def _scan(s: str) -> tuple[tuple[str, str], ...]:
    return _scan_cached(s) if len(s) <= _CACHED_MAX_LEN else _scan_uncached(s)


@functools.lru_cache(maxsize=4096)
def _scan_cached(s: str) -> tuple[tuple[str, str], ...]:
    return _scan_uncached(s)


def _scan_uncached(s: str) -> tuple[tuple[str, str], ...]:
    """Split into ('text', t) and ('expr', path) pieces; handles `$${` escapes and nesting."""
    out: list[tuple[str, str]] = []
    buf: list[str] = []
    i = 0
    n = len(s)
    while i < n:
        if s.startswith("$${", i):
            buf.append("${")
            i += 3
            continue
        if s.startswith("${", i):
            depth = 1
            j = i + 2
            while j < n and depth:
                if s.startswith("${", j):
                    depth += 1
                    j += 2
                    continue
                if s[j] == "}":
                    depth -= 1
                j += 1
            if depth:  # unterminated: literal text
                buf.append(s[i:])
                break
            if buf:
                out.append(("text", "".join(buf)))
                buf = []
            out.append(("expr", s[i + 2 : j - 1]))
            i = j
            continue
        buf.append(s[i])
        i += 1
    if buf:
        out.append(("text", "".join(buf)))
    return tuple(out)


def resolve_string(s: str, doc: JSON, extra: dict[str, JSON] | None = None) -> JSON:
    if "${" not in s:
        return s
    pieces = _scan(s)

    def value_of(path: str) -> JSON:
        if "${" in path:  # nested expressions resolve first
            path = stringify(resolve_string(path, doc, extra))
        if extra and path in extra:
            return extra[path]
        return lookup(doc, path)

    if len(pieces) == 1 and pieces[0][0] == "expr":
        return value_of(pieces[0][1])
    return "".join(p if kind == "text" else stringify(value_of(p)) for kind, p in pieces)


def resolve(value: JSON, doc: JSON, extra: dict[str, JSON] | None = None) -> JSON:
    """Resolve every expression inside maps and lists, recursively."""
    if isinstance(value, str):
        return resolve_string(value, doc, extra)
    if isinstance(value, dict):
        return {k: resolve(v, doc, extra) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, doc, extra) for v in value]
    return value
