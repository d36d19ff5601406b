"""The leader's timer: proposes a Tick only when a deadline is due, never on an idle cluster."""

from __future__ import annotations

import threading

import structlog

from ..core import queries
from ..core.commands import Tick
from ..core.machine import Effects
from ..core.state import State
from ..replication.api import ProposalError, Replica

log = structlog.get_logger("timer")


class Timer:
    def __init__(self, replica: Replica, max_sleep_s: float = 0.5) -> None:
        self.replica = replica
        self.max_sleep_s = max_sleep_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.ticks_proposed = 0
        # The due time (cluster ms) the thread sleeps until, None when it knows of none; read
        # and written under the replica lock (in replica.read) together with the state's next
        # due time.
        self._armed_ms: int | None = None
        replica.subscribe(self.on_applied)
        self._thread = threading.Thread(target=self._run, name="timer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def on_applied(self, fx: Effects) -> None:
        # Raft tick thread. Wake the timer only when it must act sooner than it planned: most
        # entries change timers (every leased task has a deadline), and waking a thread per
        # entry cost the Raft thread a thread switch each time. Followers never tick.
        if not fx.timers_changed or not self.replica.is_leader():
            return
        if self.replica.read(self._sooner_than_armed):
            self._wake.set()

    def _sooner_than_armed(self, st: State) -> bool:
        due = queries.next_due_ms(st)
        return due is not None and (self._armed_ms is None or due < self._armed_ms)

    def _arm(self, st: State) -> int | None:
        self._armed_ms = queries.next_due_ms(st)
        return self._armed_ms

    def _disarm(self, st: State) -> None:
        self._armed_ms = None

    def _run(self) -> None:
        while not self._stop.is_set():
            sleep_s = self.max_sleep_s
            self.replica.read(self._disarm)
            try:
                self.replica.ensure_epoch()
                if self.replica.leader_ready():
                    due = self.replica.read(self._arm)
                    if due is not None:
                        now = self.replica.now_ms()
                        if due <= now:
                            term = self.replica.leader_term
                            # Ticks do not carry lazily parked polls: a Tick that ends parked
                            # polls would otherwise park the next ones, whose expiry Ticks
                            # would park the next... (idle pollers would commit forever).
                            tick = Tick(epoch=term)
                            self.replica.propose(tick, carry_lazy=False).result(timeout=5)
                            self.ticks_proposed += 1
                            continue
                        sleep_s = min(sleep_s, (due - now) / 1000.0)
            except ProposalError as exc:
                log.info("tick_not_applied", error=str(exc))
            except Exception as exc:  # keep the timer alive; the next loop retries
                log.warning("timer_error", error=repr(exc))
            self._wake.wait(max(sleep_s, 0.001))
            self._wake.clear()
