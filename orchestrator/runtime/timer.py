"""The leader's timer: proposes a Tick only when a deadline is due, never on an idle cluster."""

from __future__ import annotations

import threading

import structlog

from ..core import queries
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
        # The due time (cluster ms) the thread sleeps until, None when it knows of none; read
        # and written under the replica lock together with the state's next due time.
        self._armed_ms: int | None = None
        replica.listeners.append(self.on_applied)
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
        if not fx.timers_changed or not self.replica.raft._isLeader():
            return
        with self.replica.lock:
            due = queries.next_due_ms(self.replica.state)
            wake = due is not None and (self._armed_ms is None or due < self._armed_ms)
        if wake:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            sleep_s = self.max_sleep_s
            with self.replica.lock:
                self._armed_ms = None
            try:
                self.replica.ensure_epoch()
                if self.replica.leader_ready():
                    with self.replica.lock:
                        due = queries.next_due_ms(self.replica.state)
                        self._armed_ms = due
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
