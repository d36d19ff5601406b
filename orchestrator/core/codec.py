"""Canonical JSON for commands and state: the same value always gives the same bytes."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dumps_bytes(value: Any) -> bytes:
    return dumps(value).encode("utf-8")


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


def digest(data: bytes) -> str:
    """The fingerprint of an already canonical encoding."""
    return hashlib.sha256(data).hexdigest()[:32]
