"""structlog, configured once per process: one event per line, JSON when not on a terminal.

Every line carries the node id, and the role and term the replica has at that moment.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Any

import structlog

_role_provider: Callable[[], tuple[str, int]] | None = None
_node_id = ""


def set_role_provider(fn: Callable[[], tuple[str, int]]) -> None:
    global _role_provider
    _role_provider = fn


def _add_role(_: Any, __: str, event: Any) -> Any:
    # A processor rather than contextvars: the Raft tick thread and gRPC's pool threads do
    # not inherit the main thread's context.
    if _node_id:
        event.setdefault("node", _node_id)
    if _role_provider is not None:
        with contextlib.suppress(Exception):
            event["role"], event["term"] = _role_provider()
    return event


def configure(node_id: str = "", level: str = "INFO", json_output: bool | None = None) -> None:
    if json_output is None:
        json_output = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_role,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    global _node_id
    _node_id = node_id
    # The Raft library logs through the standard library: route it to stderr at WARNING.
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format=f"%(asctime)s {node_id} %(name)s %(levelname)s %(message)s",
    )
