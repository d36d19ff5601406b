"""The cluster configuration's `bridges` (config.py reads them through here):

"bridges": [{"name": "nats", "kind": "nats", "url": "nats://127.0.0.1:4222",
             "source": {"stream": "ORDERS_IN", "subjects": ["orders.>"]},
             "sink": {"stream": "ORDERS_OUT", "subjects": ["shipping.>"]}}]

`source` (optional): the JetStream stream whose messages enter the event log, each once, in
stream order (the event's name is the message's subject); created with `subjects` when missing.
`sink` (optional): events whose record `sink` is "<kind>:<subject>" (an EVENT task's sink
"nats:<subject>"; definitions accept the kinds of core/definition_tasks.SINK_KINDS) are published
to <subject>, by the one bridge of that kind with a sink; `stream`/`subjects`, when given, make
sure a stream captures them. `name` (default: the kind) keys the bridge's replicated marks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

KINDS = ("nats",)
_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_STREAM = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


@dataclass(frozen=True)
class StreamSettings:
    stream: str = ""
    subjects: tuple[str, ...] = ()


@dataclass(frozen=True)
class BridgeSettings:
    name: str
    kind: str
    url: str
    source: StreamSettings | None = None
    sink: StreamSettings | None = None

    @property
    def sink_prefix(self) -> str:
        """The start of the event records' `sink` this bridge publishes."""
        return f"{self.kind}:"


def parse_bridges(raw: Any) -> tuple[BridgeSettings, ...]:
    """The bridges of a configuration; ValueError naming the setting when one is wrong."""
    if not isinstance(raw, list):
        raise ValueError("'bridges' must be a list")
    out: list[BridgeSettings] = []
    for i, b in enumerate(raw):
        where = f"bridges[{i}]"
        if not isinstance(b, dict):
            raise ValueError(f"{where}: must be an object")
        unknown = sorted(set(b) - {"name", "kind", "url", "source", "sink"})
        if unknown:
            raise ValueError(f"{where}: unknown settings {unknown}")
        kind = b.get("kind")
        if kind not in KINDS:
            raise ValueError(f"{where}.kind: one of {list(KINDS)}, got {kind!r}")
        name = b.get("name", kind)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{where}.name: letters, digits, _ and - (at most 64), got {name!r}")
        if any(o.name == name for o in out):
            raise ValueError(f"{where}.name: {name!r} names two bridges")
        url = b.get("url")
        if not isinstance(url, str) or not url.startswith(("nats://", "tls://")):
            raise ValueError(f"{where}.url: a nats:// or tls:// URL, got {url!r}")
        source = _stream(b.get("source"), f"{where}.source", required=True)
        sink = _stream(b.get("sink"), f"{where}.sink", required=False)
        if source is None and sink is None:
            raise ValueError(f"{where}: a 'source', a 'sink' or both")
        if sink is not None and any(o.kind == kind and o.sink is not None for o in out):
            raise ValueError(f"{where}.sink: one bridge of kind {kind!r} may have a sink")
        out.append(BridgeSettings(name, kind, url, source, sink))
    return tuple(out)


def _stream(raw: Any, where: str, required: bool) -> StreamSettings | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or sorted(set(raw) - {"stream", "subjects"}):
        raise ValueError(f"{where}: an object with 'stream' and 'subjects'")
    stream = raw.get("stream", "")
    if not isinstance(stream, str) or (stream and not _STREAM.match(stream)):
        raise ValueError(f"{where}.stream: letters, digits, _ and - (at most 64), got {stream!r}")
    if required and not stream:
        raise ValueError(f"{where}.stream: required")
    subjects = raw.get("subjects", [])
    if not isinstance(subjects, list) or not all(isinstance(s, str) and s for s in subjects):
        raise ValueError(f"{where}.subjects: a list of subjects")
    if subjects and not stream:
        raise ValueError(f"{where}.subjects: given without the stream that captures them")
    return StreamSettings(stream, tuple(subjects))
