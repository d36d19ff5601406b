"""NATS JetStream behind the Broker interface (base.py), with nats-py.

The source is an ordered consumer (no NATS-side acks, in-memory, recreated by the client on a
gap) starting at the sequence after the replicated mark, over the whole stream: the event's
name is the message's subject, its payload the message's JSON object (anything else arrives as
{"data": text} or {"data_base64": ...}), its correlation key the `Correlation-Key` header. The
sink publishes with a `Nats-Msg-Id` header derived from the event's offset, so the stream's
duplicate window drops the repeats a new leader sends.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from .base import Inbound
from .settings import BridgeSettings, StreamSettings

JSON = Any
CORRELATION_HEADER = "Correlation-Key"
TIMEOUT_S = 2.0


class NatsBroker:
    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    async def connect(self) -> None:
        # No reconnecting inside the client: a lost connection ends the bridge's session, and
        # the runner starts a new one (from the replicated marks) after a back-off.
        self._nc = await nats.connect(
            self.settings.url,
            connect_timeout=TIMEOUT_S,
            allow_reconnect=False,
            name=f"orchestrator-bridge-{self.settings.name}",
        )
        self._js = self._nc.jetstream(timeout=TIMEOUT_S)
        for stream in (self.settings.source, self.settings.sink):
            if stream is not None and stream.subjects:
                await self._ensure(stream)

    async def _ensure(self, s: StreamSettings) -> None:
        js = self._jetstream()
        try:
            await js.stream_info(s.stream)
        except NotFoundError:
            await js.add_stream(name=s.stream, subjects=list(s.subjects))

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("not connected")
        return self._js

    async def messages(self, after: int) -> AsyncIterator[Inbound]:
        assert self.settings.source is not None
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
        )
        sub = await self._jetstream().subscribe(
            "", stream=self.settings.source.stream, ordered_consumer=True, config=config
        )
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=1.0)
                except nats.errors.TimeoutError:
                    if self._nc is None or self._nc.is_closed:
                        raise ConnectionError("the NATS connection closed") from None
                    continue
                yield Inbound(
                    msg.metadata.sequence.stream,
                    msg.subject,
                    _payload(msg.data),
                    (msg.headers or {}).get(CORRELATION_HEADER, ""),
                )
        finally:
            await sub.unsubscribe()

    async def publish(self, subject: str, record: dict[str, JSON], msg_id: str) -> None:
        headers = {
            "Nats-Msg-Id": msg_id,
            "Orchestrator-Offset": str(record["offset"]),
            "Orchestrator-Event": record["name"],
        }
        if record.get("correlationKey"):
            headers[CORRELATION_HEADER] = record["correlationKey"]
        data = json.dumps(record["payload"], separators=(",", ":")).encode()
        await self._jetstream().publish(subject, data, headers=headers)


def _payload(data: bytes) -> dict[str, JSON]:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return {"data_base64": base64.b64encode(data).decode()}
    try:
        # NaN and Infinity are not JSON: such a message arrives as text.
        value = json.loads(text, parse_constant=_not_json) if text else {}
    except ValueError:
        return {"data": text}
    return value if isinstance(value, dict) else {"data": value}


def _not_json(constant: str) -> JSON:
    raise ValueError(f"{constant} is not JSON")
