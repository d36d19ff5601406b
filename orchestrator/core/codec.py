"""Canonical JSON for commands and state: the same value always gives the same bytes."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dumps_bytes(value: Any) -> bytes:
    return dumps(value).encode("utf-8")


def encoded_size(value: Any) -> int:
    """The size of a value's canonical JSON, in bytes (what bounds of stored documents count)."""
    return len(dumps_bytes(value))


def fingerprint(value: Any) -> str:
    return digest(dumps_bytes(value))


def deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels in `value` (without recursing,
    so any depth can be checked)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def built_id(text: str, limit: int) -> str:
    """An id built from other ids (a task's from its workflow's, a child's from its task's),
    kept under `limit` characters: a longer one keeps its head and ends in a hash of the whole,
    so chains of children cannot grow ids past what the API accepts."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 33]}~{digest(text.encode())}"


def json_problem(value: Any) -> str:
    """Why `value` is not portable JSON ("" when it is): NaN or Infinity, or a string with a
    lone surrogate (not encodable as UTF-8). Iterative, so any depth can be checked."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if not node.isascii() and not _utf8(node):
                return "a string holds a lone surrogate (not valid UTF-8)"
        elif isinstance(node, float):
            if node != node or node in (float("inf"), float("-inf")):
                return "NaN and Infinity are not JSON"
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return ""


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def digest(data: bytes) -> str:
    """The fingerprint of an already canonical encoding."""
    return hashlib.sha256(data).hexdigest()[:32]
