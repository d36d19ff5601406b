"""A replica without Raft for the history's tests: a core Harness whose batches are told to
listeners, as ReplicaBase._apply_entry does, and whose state a History reads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from orchestrator.core.context import Effects
from orchestrator.core.machine import apply_batch
from orchestrator.core.state import State
from orchestrator.history import History
from tests.core_helpers import Batch, Harness

T = TypeVar("T")


class MiniReplica:
    def __init__(self, harness: Harness | None = None) -> None:
        self.h = harness or Harness()
        self.lock = threading.RLock()
        self.listeners: list[Callable[[Effects], None]] = []
        self.history_barrier: Any = None
        self.h.apply = self._apply  # type: ignore[method-assign]

    @property
    def state(self) -> State:
        return self.h.state

    def _apply(self, *cmds: Any, now_ms: int | None = None) -> Any:
        from tests.core_helpers import wire

        now = self.h.clock_ms if now_ms is None else now_ms
        dicts = wire(cmds)
        self.h.log.append((now, dicts))
        return self.apply_batch(now, dicts)

    def apply_batch(self, now_ms: int, dicts: list[Any]) -> Any:
        with self.lock:
            outcomes, fx = apply_batch(self.h.state, now_ms, dicts)
        self.h.effects = fx
        for listener in self.listeners:
            listener(fx)
        return outcomes

    def replay(self, log: list[Batch]) -> None:
        for now_ms, dicts in log:
            self.apply_batch(now_ms, dicts)

    def load(self, st: State) -> None:
        """A snapshot replaced the state (as ReplicaBase._replace_state tells it)."""
        with self.lock:
            self.h.state = st
        for listener in self.listeners:
            listener(Effects(reloaded=True))

    def read(self, fn: Callable[[State], T]) -> T:
        with self.lock:
            return fn(self.h.state)

    def wait_applied(self, seq: int, timeout_s: float) -> bool:
        return self.h.state.seq >= seq

    def subscribe(self, listener: Callable[[Effects], None]) -> None:
        self.listeners.append(listener)


def attached(tmp: Any, replica: MiniReplica, name: str = "h") -> History:
    history = History(str(tmp / name), fsync=False)
    history.attach(replica)
    return history
