"""Checks of request fields that need no state: each error names the field."""

from __future__ import annotations

import json
import re
from typing import Any

from ..core import codec, limits
from .errors import invalid, quote


def request_id(value: str) -> str:
    if not value:
        raise invalid("request_id: required (a client-chosen unique id, reused on retries)")
    if len(value) > limits.MAX_REQUEST_ID_LENGTH:
        raise invalid(f"request_id: at most {limits.MAX_REQUEST_ID_LENGTH} characters")
    return value


def json_object(text: str, field: str, *, max_bytes: int = limits.MAX_JSON_BYTES) -> dict[str, Any]:
    """A JSON document that must be an object ({} when empty), within the size and depth limits."""
    if not text:
        return {}
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        # INVALID_ARGUMENT, not RESOURCE_EXHAUSTED: retrying the same payload can never succeed.
        raise invalid(f"{field}: {size} bytes exceeds the limit of {max_bytes} bytes")
    deep = f"{field}: nested more than {limits.MAX_JSON_DEPTH} levels deep"
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:  # deeper than Python's parser goes
        raise invalid(deep) from None
    except _NotJson:
        raise invalid(f"{field}: NaN and Infinity are not JSON") from None
    except ValueError as exc:
        raise invalid(f"{field}: malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise invalid(f"{field}: must be a JSON object")
    if codec.deeper_than(value, limits.MAX_JSON_DEPTH):
        raise invalid(deep)
    # The text itself is UTF-8 (protobuf checked it); only a \uD8xx-\uDFxx escape can make a
    # lone surrogate, which the log could not encode.
    if _SURROGATE_ESCAPE.search(text) and codec.json_problem(value):
        raise invalid(f"{field}: {codec.json_problem(value)}")
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJson(name)


def task_ref(request: Any) -> str:
    """task_id, or else both workflow_id and reference_task_name (checked here, resolved in apply)."""
    if request.task_id:
        return name(request.task_id, "task_id")
    if not (request.workflow_id and request.reference_task_name):
        raise invalid("task_id: required, or workflow_id and reference_task_name")
    name(request.workflow_id, "workflow_id")
    name(request.reference_task_name, "reference_task_name")
    return ""


def address(value: str, field: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise invalid(f"{field}: expected host:port, got {quote(value)!r}")
    return value


def name(value: str, field: str) -> str:
    if not value:
        raise invalid(f"{field}: required")
    if len(value) > limits.MAX_NAME_LENGTH:
        raise invalid(f"{field}: at most {limits.MAX_NAME_LENGTH} characters")
    return value


def at_most(value: str, field: str, limit: int) -> str:
    if len(value) > limit:
        raise invalid(f"{field}: at most {limit} characters")
    return value
