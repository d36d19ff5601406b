"""The bridge interface and its loops, whatever the broker.

Source, exactly once into the log: the leader reads its source's replicated mark, asks the
broker for the messages after it, strictly in sequence order, and proposes one IngestEvent at a
time, waiting for its outcome before the next (a later message committed before an earlier one
failed would move the mark past it). A proposal whose fate is unknown is proposed again; the
core drops it when the mark shows it in. Sink, at least once out: the records whose `sink`
starts with the bridge's prefix are published after the mark, then AdvanceSink is proposed; a
new leader publishes again from the mark, and the broker's own duplicate window hides most
repeats (the message id is derived from the event's offset).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from ..core import queries
from ..core.commands import AdvanceSink, Command, IngestEvent
from ..core.machine import Outcome
from ..core.state import State
from ..replication.api import NotLeader, ProposalError, Replica
from .settings import BridgeSettings

log = structlog.get_logger("bridge")

JSON = Any
SINK_SCAN = 500  # offsets looked at per read of the state
SINK_IDLE_S = 0.1
# The sink's mark also moves when it only looked (no record of its prefix), so that a new
# leader does not look at them again: after this many offsets or seconds.
ADVANCE_EVERY = 1000
ADVANCE_AFTER_S = 2.0


@dataclass(frozen=True)
class Inbound:
    """A broker message: its sequence in the source (increasing), subject, decoded payload."""

    seq: int
    name: str
    payload: dict[str, JSON]
    correlation_key: str = ""


class Broker(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    def messages(self, after: int) -> AsyncIterator[Inbound]:
        """The source's messages with a sequence past `after`, in sequence order, for ever."""
        ...

    async def publish(self, subject: str, record: dict[str, JSON], msg_id: str) -> None:
        """Publish one event record to `subject`; returns once the broker has stored it."""
        ...


class LeadershipLost(Exception):
    pass


@dataclass
class Counters:
    ingested: int = 0
    duplicates: int = 0
    refused: int = 0
    source_gaps: int = 0  # messages the broker no longer held past the mark
    published: int = 0
    dropped_unsent: int = 0  # events retention dropped before the sink looked at them
    errors: int = 0


class Bridge:
    """One configured bridge's loops on the leader for one term (runner.py starts and ends it)."""

    def __init__(
        self, replica: Replica, settings: BridgeSettings, broker: Broker, counters: Counters
    ) -> None:
        self.replica = replica
        self.settings = settings
        self.broker = broker
        self.counters = counters
        self.term = replica.leader_term

    async def run(self) -> None:
        # A task group: when one loop fails, the other is cancelled with it.
        async with asyncio.TaskGroup() as group:
            if self.settings.source is not None:
                group.create_task(self.source_loop())
            if self.settings.sink is not None:
                group.create_task(self.sink_loop())

    async def propose(self, cmd: Command) -> Outcome:
        """Propose until the outcome is known; LeadershipLost when this replica stops leading."""
        delay = 0.05
        while True:
            if not self.replica.leader_ready() or self.replica.leader_term != self.term:
                raise LeadershipLost()
            try:
                return await asyncio.wrap_future(self.replica.propose(cmd))
            except NotLeader:
                raise LeadershipLost() from None
            except ProposalError as exc:
                log.info("bridge_proposal_retried", bridge=self.settings.name, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def source_loop(self) -> None:
        name = self.settings.name
        mark = self.replica.read(lambda st: queries.source_mark(st, name))
        log.info("bridge_source_started", bridge=name, after=mark)
        async for msg in self.broker.messages(mark):
            if msg.seq <= mark:
                continue
            if msg.seq > mark + 1:
                self.counters.source_gaps += msg.seq - mark - 1
                log.warning("bridge_source_gap", bridge=name, after=mark, next=msg.seq)
            cmd = IngestEvent(
                f"ingest-{name}-{msg.seq}",
                name,
                msg.seq,
                msg.name,
                msg.payload,
                msg.correlation_key,
            )
            outcome = await self.propose(cmd)
            if not outcome.ok:
                raise RuntimeError(f"IngestEvent {msg.seq} rejected: {outcome.message}")
            result = outcome.result
            if result.get("refused"):
                self.counters.refused += 1
                log.warning(
                    "bridge_message_refused", bridge=name, seq=msg.seq, why=result["refused"]
                )
            elif result.get("duplicate"):
                self.counters.duplicates += 1
            else:
                self.counters.ingested += 1
            mark = msg.seq

    async def sink_loop(self) -> None:
        name, prefix = self.settings.name, self.settings.sink_prefix
        cursor = self.replica.read(lambda st: queries.sink_batch(st, name, prefix, 0, 0))["mark"]
        log.info("bridge_sink_started", bridge=name, after=cursor)
        advanced_at = time.monotonic()
        while True:
            if not self.replica.leader_ready() or self.replica.leader_term != self.term:
                raise LeadershipLost()
            batch = self.replica.read(functools.partial(_sink_batch, self.settings, cursor))
            if batch["first"] < batch["oldest"] and batch["last"] >= batch["first"]:
                lost = batch["oldest"] - batch["first"]
                self.counters.dropped_unsent += lost
                log.error(
                    "bridge_sink_events_dropped",
                    bridge=name,
                    offsets=f"{batch['first']}..{batch['oldest'] - 1}",
                    count=lost,
                    why="retention dropped them before the sink looked; any for this sink "
                    "were never published",
                )
            for record in batch["records"]:
                subject = record["sink"][len(prefix) :]
                await self.broker.publish(
                    subject, record, f"orchestrator-{name}-{record['offset']}"
                )
                self.counters.published += 1
            cursor = batch["last"]
            mark = batch["mark"]
            now = time.monotonic()
            if cursor > mark and (
                batch["records"]
                or cursor - mark >= ADVANCE_EVERY
                or now - advanced_at >= ADVANCE_AFTER_S
            ):
                await self.propose(AdvanceSink(f"sink-{name}-{cursor}", name, cursor))
                advanced_at = now
            if batch["last"] < batch["first"]:  # nothing new in the log
                await asyncio.sleep(SINK_IDLE_S)


def _sink_batch(settings: BridgeSettings, after: int, st: State) -> dict[str, JSON]:
    return queries.sink_batch(st, settings.name, settings.sink_prefix, after, SINK_SCAN)
