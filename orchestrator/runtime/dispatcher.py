"""The leader's task dispatcher: long polls wait here until their queue has work.

The dispatcher never decides which task goes to whom: it proposes PollTasks and the state
machine leases tasks from its own queue, so two pollers can never be handed the same task.
It only holds the waiters and wakes them when an applied batch made a queue non-empty.
"""

from __future__ import annotations

import threading
import time

from ..core.commands import PollTasks
from ..core.machine import Effects, Outcome
from ..replication.node import Replica


class Dispatcher:
    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self._lock = threading.Lock()
        self._conds: dict[str, threading.Condition] = {}
        replica.listeners.append(self.on_applied)

    def _cond(self, task_type: str) -> threading.Condition:
        with self._lock:
            cond = self._conds.get(task_type)
            if cond is None:
                cond = self._conds[task_type] = threading.Condition()
            return cond

    def on_applied(self, fx: Effects) -> None:
        # tick thread: only wake waiters
        for task_type in fx.ready_types:
            with self._lock:
                cond = self._conds.get(task_type)
            if cond is not None:
                with cond:
                    cond.notify_all()

    def _has_work(self, task_type: str, request_id: str) -> bool:
        with self.replica.lock:
            st = self.replica.state
            return bool(st.queues.get(task_type)) or request_id in st.requests

    def poll(
        self, request_id: str, task_type: str, worker_id: str, count: int, timeout_s: float
    ) -> Outcome:
        """Propose a lease when work is visible; wait for it up to timeout_s. Leader only.

        Raises replication's ProposalError subclasses when leadership is lost.
        """
        deadline = time.monotonic() + timeout_s
        cond = self._cond(task_type)
        while True:
            if self._has_work(task_type, request_id):
                cmd = PollTasks(
                    request_id=request_id,
                    task_type=task_type,
                    worker_id=worker_id,
                    count=count,
                    epoch=self.replica.leader_term,
                )
                outcome = self.replica.propose(cmd).result(
                    timeout=max(deadline - time.monotonic(), 0) + 5
                )
                if not outcome.ok or outcome.result.get("task_ids"):
                    return outcome
                # Another poller took the work first; wait for more.
            left = deadline - time.monotonic()
            if left <= 0:
                return Outcome(result={"task_ids": []})
            with cond:
                if not self._has_work(task_type, request_id):
                    cond.wait(min(left, 1.0))
            if not self.replica.leader_ready():
                from ..replication.node import NotLeader

                raise NotLeader("leadership lost while waiting for tasks")
