"""The leader's task dispatcher: long polls wait here until their queue has work.

The dispatcher never decides which task goes to whom: it proposes PollTasks and the state
machine leases tasks from its own queue, so two pollers can never be handed the same task.

Two ways to wait (docs/performance.md, "Lease at schedule time"):

- **Parked** (the task type had work recently on this leader): PollTasks carries
  `park_until_ms`, the end of the long poll in cluster time, and is proposed lazily: it rides at
  the head of the next entry that carries another command. If nothing is ready it is parked in
  the replicated state, and the command that makes a task of its type ready leases the task to
  it in the same apply; the dispatcher only wakes the gRPC call and answers with the outcome the
  state recorded for the request. A task costs one commit on the critical path instead of two,
  and a poll that nothing else committed with is withdrawn at its deadline without a commit.
- **Local** (a cold type, or no wait): the call waits here and proposes PollTasks only once work
  is visible.

Task limits and priorities are the state machine's too (core/processors/flow.py): a queue at
its concurrency or rate limit has no work for a poll (`queries.has_work`), and the apply that
gives capacity back (a leased task's end, the rate window's timer, a registration) reports the
queue ready, which wakes the calls waiting here, and fills the parked polls itself.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from ..core import limits, queries
from ..core.commands import CancelPoll, PollActivity, PollTasks
from ..core.machine import Effects, Outcome, queue_key
from ..replication.api import NotLeader, ProposalError, Replica

# A task type counts as busy this long after a task of it was last made ready: its long polls
# park. Polls of other types wait on the leader only.
HOT_S = 10.0
# Parking a poll with less wait left than this is not worth a parked entry and its expiry Tick.
MIN_PARK_S = 0.05
# How long past its own deadline a parked call waits for the Tick that ends its parking before
# answering empty anyway (the servicer leaves the client at least 0.5 s beyond the deadline).
SETTLE_GRACE_S = 0.4

_EMPTY: dict[str, list[str]] = {"task_ids": []}


class _Call:
    """One waiting PollTasks call: woken when its type gets work or its parked poll settles."""

    __slots__ = ("domain", "event", "name", "parked", "request_id", "task_type")

    def __init__(self, request_id: str, name: str, domain: str = "") -> None:
        self.request_id = request_id
        self.name = name  # the task type polled
        self.domain = domain
        # The queue key ("<type>@<domain>" for a task domain): what wakes this call.
        self.task_type = queue_key(name, domain)
        self.event = threading.Event()
        # While its poll is parked in the state only the poll's own settling concerns it (the
        # apply that makes work ready fills parked polls itself): work of its type does not.
        self.parked = False


class Dispatcher:
    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self._lock = threading.Lock()
        self._by_type: dict[str, list[_Call]] = {}
        self._by_request: dict[str, list[_Call]] = {}
        # task type -> monotonic time a task of it was last made ready (observed here)
        self._last_ready: dict[str, float] = {}
        self.hot_s = HOT_S
        # domain queue -> monotonic time this leader last proposed PollActivity for it
        self._activity_sent: dict[str, float] = {}
        replica.subscribe(self.on_applied)

    # ------------------------------------------------------------ wake-ups (tick thread)

    def on_applied(self, fx: Effects) -> None:
        now = time.monotonic()
        wake: list[_Call] = []
        with self._lock:
            for task_type in fx.ready_types:
                self._last_ready[task_type] = now
                wake.extend(c for c in self._by_type.get(task_type, ()) if not c.parked)
            for rid in fx.polls_settled:
                wake.extend(self._by_request.get(rid, ()))
            if fx.reloaded:
                for calls in self._by_type.values():
                    wake.extend(calls)
        for call in wake:
            call.event.set()

    def wake(self, request_id: str) -> None:
        """Wake the calls of a request (e.g. its caller went away)."""
        with self._lock:
            calls = list(self._by_request.get(request_id, ()))
        for call in calls:
            call.event.set()

    def waiting(self, request_id: str) -> bool:
        """Whether a call of this request is waiting here (for tests and diagnostics)."""
        with self._lock:
            return request_id in self._by_request

    def _register(self, call: _Call) -> None:
        with self._lock:
            self._by_type.setdefault(call.task_type, []).append(call)
            self._by_request.setdefault(call.request_id, []).append(call)

    def _unregister(self, call: _Call) -> None:
        with self._lock:
            for index, key in (
                (self._by_type, call.task_type),
                (self._by_request, call.request_id),
            ):
                calls = index.get(key)
                if calls is not None:
                    calls.remove(call)
                    if not calls:
                        del index[key]

    def _note_domain_poll(self, qkey: str) -> None:
        """Keep a polled domain "active" in the replicated state (taskToDomain fallback lists
        pick the first domain polled within ACTIVE_WORKER_MS), even when its polls commit
        nothing: a PollActivity at most every half window per domain, fire and forget."""
        now = time.monotonic()
        half_s = limits.ACTIVE_WORKER_MS / 2000.0
        if self.replica.read(lambda st: queries.recently_polled(st, qkey)):
            return
        with self._lock:
            if now - self._activity_sent.get(qkey, -1e9) < half_s:
                return
            self._activity_sent[qkey] = now
            if len(self._activity_sent) > limits.MAX_POLLED_QUEUES:
                self._activity_sent.clear()
        # Not the leader any more: the poll itself will fail over.
        with contextlib.suppress(ProposalError):
            self.replica.propose(
                PollActivity(epoch=self.replica.leader_term, queues=[qkey]), carry_lazy=False
            )

    # ------------------------------------------------------------ reading the state

    def _hot(self, task_type: str) -> bool:
        with self._lock:
            last = self._last_ready.get(task_type)
        return last is not None and time.monotonic() - last < self.hot_s

    def _has_work(self, task_type: str, request_id: str) -> bool:
        return self.replica.read(lambda st: queries.has_work(st, task_type, request_id))

    # ------------------------------------------------------------ polls

    def poll(
        self,
        request_id: str,
        task_type: str,
        worker_id: str,
        count: int,
        timeout_s: float,
        is_active: Callable[[], bool] | None = None,
        domain: str = "",
        principal: str = "",
    ) -> Outcome:
        """Lease up to `count` tasks, waiting up to timeout_s for them. Leader only.

        `is_active` tells whether the caller is still there: a parked poll whose caller went away
        is withdrawn or cancelled so it captures no task. Raises replication's ProposalError
        subclasses when leadership is lost.
        """
        call = _Call(request_id, task_type, domain)
        if domain:
            self._note_domain_poll(call.task_type)
        self._register(call)
        try:
            deadline = time.monotonic() + timeout_s
            return self._poll(call, worker_id, count, deadline, is_active, principal)
        finally:
            self._unregister(call)

    def _poll(
        self,
        call: _Call,
        worker_id: str,
        count: int,
        deadline: float,
        is_active: Callable[[], bool] | None,
        principal: str = "",
    ) -> Outcome:
        rid, task_type = call.request_id, call.task_type
        may_park = deadline - time.monotonic() > 0
        while True:
            call.event.clear()
            left = deadline - time.monotonic()
            work = self._has_work(task_type, rid)
            park = may_park and left >= MIN_PARK_S and self._hot(task_type)
            if work or park:
                cmd = PollTasks(
                    request_id=rid,
                    task_type=call.name,
                    domain=call.domain,
                    worker_id=worker_id,
                    count=count,
                    epoch=self.replica.leader_term,
                    principal=principal,  # the caller owns what the poll leases
                    # Cluster time when this call's wait ends (the leader's clock runs with it).
                    park_until_ms=self.replica.now_ms() + int(left * 1000) if park else 0,
                )
                if work:
                    outcome = self.replica.propose(cmd).result(timeout=max(left, 0) + 5)
                else:
                    lazy = self._propose_lazily(call, cmd, deadline, is_active)
                    if lazy is None:  # withdrawn before anything carried it: nothing committed
                        return Outcome(result=dict(_EMPTY))
                    outcome = lazy
                if not outcome.ok or outcome.result.get("task_ids"):
                    return outcome
                if outcome.result.get("parked"):
                    settled = self._await_parked(call, deadline, is_active)
                    if settled is not None:
                        return settled
                    continue  # dropped by a new leader epoch of ours: wait again
                if park:
                    may_park = False  # not parked (the parked limit, or too late): wait here
                # Otherwise another poller took the work first; wait for more.
            left = deadline - time.monotonic()
            if left <= 0 or (is_active is not None and not is_active()):
                return Outcome(result=dict(_EMPTY))
            if not self._has_work(task_type, rid):
                call.event.wait(min(left, 1.0))
            if not self.replica.leader_ready():
                raise NotLeader("leadership lost while waiting for tasks")

    def _propose_lazily(
        self,
        call: _Call,
        cmd: PollTasks,
        deadline: float,
        is_active: Callable[[], bool] | None,
    ) -> Outcome | None:
        """Park by a lazy proposal; its outcome, or None when withdrawn unsent."""
        fut: Future[Outcome] = self.replica.propose_lazy(cmd)
        fut.add_done_callback(lambda _: call.event.set())
        while not fut.done():
            call.event.clear()
            if fut.done():
                break
            now = time.monotonic()
            gone = is_active is not None and not is_active()
            if now >= deadline or gone or not self.replica.leader_ready():
                if self.replica.withdraw_lazy(fut):
                    if now >= deadline or gone:
                        return None
                    raise NotLeader("leadership lost while waiting for tasks")
                break  # already on its way: its outcome decides
            if self._has_work(call.task_type, call.request_id):
                # A task became ready in an entry this poll did not ride in: send it now.
                self.replica.flush_lazy()
                break
            call.event.wait(min(deadline - now, 1.0))
        return fut.result(timeout=max(deadline - time.monotonic(), 0) + 5)

    def _await_parked(
        self, call: _Call, deadline: float, is_active: Callable[[], bool] | None
    ) -> Outcome | None:
        """Wait until the parked poll is filled or ends; None to park again."""
        call.parked = True
        try:
            return self._await_parked_loop(call, deadline, is_active)
        finally:
            call.parked = False

    def _await_parked_loop(
        self, call: _Call, deadline: float, is_active: Callable[[], bool] | None
    ) -> Outcome | None:
        rid = call.request_id
        cancelled = False
        while True:
            call.event.clear()
            parked, recorded, seq = self.replica.read(
                lambda st: (*queries.poll_state(st, rid), queries.applied_seq(st))
            )
            if recorded is not None:  # filled: the outcome recorded for this request
                outcome = Outcome.from_dict(recorded)
                outcome.seq = seq
                return outcome
            now = time.monotonic()
            if not parked:  # expired, cancelled, or dropped by a new leader epoch
                if cancelled or deadline - now < MIN_PARK_S:
                    return Outcome(result=dict(_EMPTY), seq=seq)
                if not self.replica.leader_ready():
                    raise NotLeader("leadership lost while the poll was parked")
                return None
            if not self.replica.leader_ready():
                # The next leader drops this parked poll; the client retries there (same id).
                raise NotLeader("leadership lost while the poll was parked")
            if not cancelled and is_active is not None and not is_active():
                cancelled = True
                try:
                    cmd = CancelPoll(poll_request_id=rid, epoch=self.replica.leader_term)
                    self.replica.propose(cmd, carry_lazy=False).result(timeout=5)
                except (ProposalError, TimeoutError):
                    pass
                continue
            if now > deadline + SETTLE_GRACE_S:
                # The Tick that ends the parking is late: answer anyway. A task leased to this
                # poll meanwhile comes back when its lease expires (at-least-once delivery).
                return Outcome(result=dict(_EMPTY), seq=seq)
            call.event.wait(min(deadline + SETTLE_GRACE_S - now, 1.0) + 0.001)
