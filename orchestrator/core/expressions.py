"""`${...}` parameter wiring as in Conductor (schemaVersion 2), by path lookup, never eval.

- A string that is exactly one expression keeps the resolved JSON type.
- Otherwise every expression is stringified into the surrounding text (null -> "null"... as
  Conductor does: JSON text for objects, plain text for scalars).
- Unresolved paths give null. `$${x}` is a literal `${x}`.
- Paths: `a.b[0].c`, `a['key with space']`.
"""

from __future__ import annotations

import json
import re
from typing import Any

JSON = Any
_MISSING = object()
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def parse_path(path: str) -> list[str | int] | None:
    parts: list[str | int] = []
    pos = 0
    while pos < len(path):
        if path[pos] == ".":
            pos += 1
            continue
        m = _SEGMENT.match(path, pos)
        if m is None:
            return None
        if m.group(1) is not None:
            parts.append(m.group(1))
        elif m.group(2) is not None:
            parts.append(int(m.group(2)))
        else:
            parts.append(m.group(3) if m.group(3) is not None else m.group(4))
        pos = m.end()
    return parts


def lookup(doc: JSON, path: str) -> JSON:
    parts = parse_path(path.strip())
    if not parts:
        return None
    cur: JSON = doc
    for p in parts:
        if isinstance(p, int):
            if isinstance(cur, list) and -len(cur) <= p < len(cur):
                cur = cur[p]
            else:
                return None
        elif isinstance(cur, dict) and p in cur:
            cur = cur[p]
        else:
            return None
    return cur


def _stringify(value: JSON) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _scan(s: str) -> list[tuple[str, str]]:
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
    return out


def resolve_string(s: str, doc: JSON, extra: dict[str, JSON] | None = None) -> JSON:
    if "${" not in s:
        return s
    pieces = _scan(s)

    def value_of(path: str) -> JSON:
        if "${" in path:  # nested expressions resolve first
            path = _stringify(resolve_string(path, doc, extra))
        if extra and path in extra:
            return extra[path]
        return lookup(doc, path)

    if len(pieces) == 1 and pieces[0][0] == "expr":
        return value_of(pieces[0][1])
    return "".join(p if kind == "text" else _stringify(value_of(p)) for kind, p in pieces)


def resolve(value: JSON, doc: JSON, extra: dict[str, JSON] | None = None) -> JSON:
    """Resolve every expression inside maps and lists, recursively."""
    if isinstance(value, str):
        return resolve_string(value, doc, extra)
    if isinstance(value, dict):
        return {k: resolve(v, doc, extra) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, doc, extra) for v in value]
    return value
