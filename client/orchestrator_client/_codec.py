"""Conversions between Python values and wire fields: JSON documents, enum names, messages.

JSON documents (inputs, outputs, variables, definitions) travel as JSON text; enums are shown
to users by their short names ("RUNNING" for WORKFLOW_STATUS_RUNNING).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, Final

from google.protobuf import descriptor as _descriptor
from google.protobuf import json_format
from google.protobuf.message import Message

WORKFLOW_STATUS_PREFIX: Final = "WORKFLOW_STATUS_"
TASK_STATUS_PREFIX: Final = "TASK_STATUS_"
IDEMPOTENCY_PREFIX: Final = "IDEMPOTENCY_STRATEGY_"

_INT64_TYPES: Final = frozenset(
    {
        _descriptor.FieldDescriptor.TYPE_INT64,
        _descriptor.FieldDescriptor.TYPE_UINT64,
        _descriptor.FieldDescriptor.TYPE_SINT64,
        _descriptor.FieldDescriptor.TYPE_FIXED64,
        _descriptor.FieldDescriptor.TYPE_SFIXED64,
    }
)


def new_request_id() -> str:
    return uuid.uuid4().hex


def encode_json(value: object) -> str:
    """JSON text for a document field; None becomes the empty string (the server's null)."""
    if value is None:
        return ""
    # allow_nan=False: NaN and Infinity are not JSON and would poison other languages' readers.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_document(document: Mapping[str, Any] | None) -> str:
    """JSON text of an input or output mapping; None (no document) is the server's null."""
    return encode_json(dict(document) if document is not None else None)


def encode_definition(definition: Mapping[str, Any] | str) -> str:
    # A string is passed verbatim so users can register Conductor JSON files unchanged; the
    # server validates it.
    if isinstance(definition, str):
        return definition
    return encode_json(dict(definition))


def decode_object(text: str) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object from the server, got {type(value).__name__}")
    return value


def enum_name(wrapper: Any, value: int, prefix: str) -> str:
    try:
        name: str = wrapper.Name(value)
    except ValueError:
        # A newer server may send a status this client does not know; keep the number visible.
        return str(value)
    return name.removeprefix(prefix)


def enum_key(wrapper: Any, name: str, prefix: str, what: str) -> str:
    """The full enum value name for a short one ("RUNNING" -> "WORKFLOW_STATUS_RUNNING")."""
    unspecified = prefix + "UNSPECIFIED"
    key = name.strip().upper()
    if not key.startswith(prefix):
        key = prefix + key
    try:
        wrapper.Value(key)
    except ValueError:
        key = unspecified
    if key == unspecified:
        names = [n for n, _ in wrapper.items() if n != unspecified]
        choices = ", ".join(n.removeprefix(prefix) for n in names)
        raise ValueError(f"unknown {what} {name!r}; expected one of {choices}")
    return key


def message_to_plain_dict(msg: Message) -> dict[str, Any]:
    # MessageToDict follows the proto3 JSON mapping, which renders int64 as strings; callers
    # compare sequence numbers and terms, so top-level 64-bit integers are turned back into ints.
    out = json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    for field in msg.DESCRIPTOR.fields:
        if field.type in _INT64_TYPES and field.name in out:
            value = out[field.name]
            out[field.name] = [int(v) for v in value] if isinstance(value, list) else int(value)
    return out
