"""The leader's timer: proposes a Tick only when a deadline is due, never on an idle cluster."""

from __future__ import annotations

import threading

import structlog

from ..core.commands import Tick
from ..core.machine import Effects
from ..replication.node import ProposalError, Replica

log = structlog.get_logger("timer")


class Timer:
    def __init__(self, replica: Replica, max_sleep_s: float = 0.5) -> None:
        self.replica = replica
        self.max_sleep_s = max_sleep_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.ticks_proposed = 0
        replica.listeners.append(self.on_applied)
        self._thread = threading.Thread(target=self._run, name="timer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def on_applied(self, fx: Effects) -> None:
        if fx.timers_changed:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            sleep_s = self.max_sleep_s
            try:
                self.replica.ensure_epoch()
                if self.replica.leader_ready():
                    with self.replica.lock:
                        due = self.replica.state.next_due_ms()
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
