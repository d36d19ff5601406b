"""Event handlers (Conductor's model): when an event of a name is published and the handler's
condition holds, its actions run in the same apply (processors/eventlog.py).

A handler is {"name", "event", "condition" (optional), "actions": [...], "active" (default
true)}. The condition is the core's restricted condition language (conditions.py) evaluated
with `$` = the event's payload, as Conductor's; JavaScript is refused at registration. An action
is {"action": kind, kind: {parameters}}, its parameters templates (`${payload.x}`, `${event}`,
`${correlationKey}`) resolved when an event arrives.
"""

from __future__ import annotations

from typing import Any

from .. import events as E
from .. import limits
from ..commands import RegisterEventHandler, RemoveEventHandler
from ..conditions import ConditionError, parse_condition
from ..context import Ctx
from ..definitions import name_field
from ..errors import already_exists, invalid, not_found

JSON = Any

# Action kind -> (required string parameters, optional parameters with their JSON type).
ACTIONS: dict[str, tuple[tuple[str, ...], dict[str, type]]] = {
    "start_workflow": (("name",), {"version": int, "input": dict, "correlationId": str}),
    "complete_task": (("workflowId", "taskRefName"), {"output": dict}),
    "fail_task": (("workflowId", "taskRefName"), {"reason": str, "output": dict}),
    "terminate_workflow": (("workflowId",), {"reason": str}),
}
_HANDLER_KEYS = ("name", "event", "condition", "actions", "active")


def normalize_handler(handler: JSON) -> dict[str, JSON]:
    """The handler as stored; raises Rejected (INVALID_ARGUMENT) naming the field at fault."""
    if not isinstance(handler, dict):
        raise invalid("handler: must be a JSON object")
    unknown = sorted(k for k in handler if k not in _HANDLER_KEYS)
    if unknown:
        raise invalid(f"handler: unknown fields {unknown}")
    out: dict[str, JSON] = {
        "name": name_field(handler.get("name"), "handler.name"),
        "event": name_field(handler.get("event"), "handler.event"),
    }
    condition = handler.get("condition") or ""
    if condition:
        try:
            parse_condition(condition)
        except ConditionError as exc:
            raise invalid(
                f"handler.condition: {exc}; only the restricted condition forms are supported "
                "(a JavaScript condition is not), see docs/workflow-language.md"
            ) from None
    out["condition"] = condition
    actions = handler.get("actions")
    if not isinstance(actions, list) or not 1 <= len(actions) <= limits.MAX_HANDLER_ACTIONS:
        raise invalid(f"handler.actions: a list of 1 to {limits.MAX_HANDLER_ACTIONS} actions")
    out["actions"] = [_action(a, f"handler.actions[{i}]") for i, a in enumerate(actions)]
    active = handler.get("active", True)
    if not isinstance(active, bool):
        raise invalid("handler.active: must be true or false")
    out["active"] = active
    return out


def _action(action: JSON, where: str) -> dict[str, JSON]:
    if not isinstance(action, dict):
        raise invalid(f"{where}: must be a JSON object")
    kind = action.get("action")
    if kind not in ACTIONS:
        raise invalid(f"{where}.action: must be one of {', '.join(ACTIONS)}")
    unknown = sorted(k for k in action if k not in ("action", kind))
    if unknown:
        raise invalid(f"{where}: unknown fields {unknown}")
    params = action.get(kind)
    if not isinstance(params, dict):
        raise invalid(f"{where}.{kind}: required, a JSON object of parameters")
    required, optional = ACTIONS[kind]
    for key in params:
        if key not in required and key not in optional:
            raise invalid(f"{where}.{kind}.{key}: unknown parameter")
    for key in required:
        if not isinstance(params.get(key), str) or not params[key]:
            raise invalid(f"{where}.{kind}.{key}: required, a non-empty string")
    for key, kind_type in optional.items():
        # A template string stands for any type: it is checked once resolved.
        value = params.get(key)
        if value is not None and not isinstance(value, (kind_type, str)):
            raise invalid(f"{where}.{kind}.{key}: must be a {_TYPE_NAMES[kind_type]}")
        if kind_type is int and isinstance(value, bool):
            raise invalid(f"{where}.{kind}.{key}: must be an integer")
    return {"action": kind, kind: params}


_TYPE_NAMES = {int: "integer", dict: "JSON object", str: "string"}


def register_event_handler(ctx: Ctx, cmd: RegisterEventHandler) -> dict[str, JSON]:
    handler = normalize_handler(cmd.handler)
    handlers = ctx.st.event_handlers
    if handler["name"] in handlers:
        if not cmd.overwrite:
            raise already_exists(f"event handler {handler['name']!r} already exists")
    elif len(handlers) >= limits.MAX_EVENT_HANDLERS:
        raise invalid(f"at most {limits.MAX_EVENT_HANDLERS} event handlers")
    ctx.emit(E.EventHandlerSet(handler))
    return {"name": handler["name"]}


def remove_event_handler(ctx: Ctx, cmd: RemoveEventHandler) -> dict[str, JSON]:
    if cmd.name not in ctx.st.event_handlers:
        raise not_found(f"event handler {cmd.name!r} not found")
    ctx.emit(E.EventHandlerRemoved(cmd.name))
    return {}
