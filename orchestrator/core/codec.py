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
    return hashlib.sha256(dumps_bytes(value)).hexdigest()[:32]
