"""Every configured bridge, run on the leader only: an asyncio loop in a thread of its own.

For each bridge, while this replica leads (leader_ready, in one term), a session connects to
the broker and runs the bridge's loops; the session ends when leadership is lost or the term
changes (the next leader resumes from the replicated marks), and when the broker fails it is
started again after a back-off (0.2 s doubling to 5 s). Nothing here runs on the Raft thread:
the loops only read the applied state and propose, so a broker that hangs never blocks apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

import structlog

from ..replication.api import Replica
from .base import Bridge, Broker, Counters, LeadershipLost
from .settings import BridgeSettings

log = structlog.get_logger("bridge")

BrokerFactory = Callable[[BridgeSettings], Broker]
CHECK_S = 0.2
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.2, 5.0


def nats_broker(settings: BridgeSettings) -> Broker:
    from .nats import NatsBroker  # nats-py is imported only when a bridge is configured

    return NatsBroker(settings)


class BridgeRunner:
    def __init__(
        self,
        replica: Replica,
        bridges: tuple[BridgeSettings, ...],
        broker: BrokerFactory = nats_broker,
    ) -> None:
        self.replica = replica
        self.bridges = bridges
        self.broker = broker
        self.counters = {b.name: Counters() for b in bridges}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bridges", daemon=True)

    def start(self) -> None:
        if self.bridges:
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        await asyncio.gather(*(self._keep(b) for b in self.bridges))

    async def _keep(self, settings: BridgeSettings) -> None:
        """One bridge's sessions, one per term this replica leads, until stopped."""
        backoff = BACKOFF_MIN_S
        while not self._stop.is_set():
            if not self.replica.leader_ready():
                await asyncio.sleep(CHECK_S)
                continue
            term = self.replica.leader_term
            session = asyncio.create_task(self._session(settings))
            while (
                not session.done()
                and not self._stop.is_set()
                and self.replica.leader_ready()
                and self.replica.leader_term == term
            ):
                await asyncio.sleep(CHECK_S)
            session.cancel()
            (outcome,) = await asyncio.gather(session, return_exceptions=True)
            failure = _failure(outcome)
            if failure is not None:
                self.counters[settings.name].errors += 1
                log.warning(
                    "bridge_session_failed",
                    bridge=settings.name,
                    error=repr(failure),
                    retry_in_s=backoff,
                )
                await self._sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
            else:
                backoff = BACKOFF_MIN_S

    async def _session(self, settings: BridgeSettings) -> None:
        broker = self.broker(settings)
        try:
            await broker.connect()
            log.info("bridge_connected", bridge=settings.name, url=settings.url)
            await Bridge(self.replica, settings, broker, self.counters[settings.name]).run()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broker.close(), 2.0)

    async def _sleep(self, seconds: float) -> None:
        end = asyncio.get_running_loop().time() + seconds
        while not self._stop.is_set() and asyncio.get_running_loop().time() < end:
            await asyncio.sleep(min(CHECK_S, seconds))


def _failure(outcome: object) -> BaseException | None:
    """The error that ended a session; None when it ended with leadership or was cancelled."""
    while isinstance(outcome, BaseExceptionGroup) and outcome.exceptions:
        outcome = outcome.exceptions[0]
    if isinstance(outcome, Exception) and not isinstance(outcome, LeadershipLost):
        return outcome
    return None
