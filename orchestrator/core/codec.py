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


def digest(data: bytes) -> str:
    """The fingerprint of an already canonical encoding."""
    return hashlib.sha256(data).hexdigest()[:32]
