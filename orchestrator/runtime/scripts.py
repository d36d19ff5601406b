"""The leader's script executor: phase one of scripts happens here, outside apply.

The core marks a task that needs a script (INLINE, JSON_JQ_TRANSFORM, SWITCH/DECISION JavaScript,
a DO_WHILE loopCondition in full JavaScript) as pending and lists it in Effects.scripts_ready.
On the leader only, this executor reads the script and its input from the applied state,
evaluates it in the sandbox on a thread pool (never on the Raft tick thread), and proposes
ScriptResult with the leader's epoch. On becoming leader it scans the state for pending
scripts, so a script whose leader died is evaluated again: at least once, and applied at most
once per (task, fence), since the core rejects a result that is no longer pending.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from ..core import codec, queries
from ..core.commands import Command, ScriptResult
from ..core.errors import Code
from ..core.machine import Effects
from ..core.state import State
from ..replication.api import Overloaded, ProposalError, Replica
from .sandbox import Sandbox

log = structlog.get_logger("scripts")

JSON = Any
Key = tuple[str, int]  # (task id, fence)


class ScriptExecutor:
    def __init__(
        self,
        replica: Replica,
        sandbox: Sandbox,
        threads: int | None = None,
        rescan_s: float = 5.0,
    ) -> None:
        self.replica = replica
        self.sandbox = sandbox
        self.rescan_s = rescan_s
        self._pool = ThreadPoolExecutor(
            max_workers=threads or sandbox.size, thread_name_prefix="script"
        )
        self._lock = threading.Lock()
        self._queued: dict[str, None] = {}  # task ids announced by applied batches
        self._in_flight: set[Key] = set()
        # Outcomes evaluated but not yet known to be committed: a failed proposal is retried
        # without running the script again.
        self._evaluated: dict[Key, Any] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._scanned_term = 0
        self._last_scan = 0.0
        self.evaluations = 0
        self.results_committed = 0
        self.results_rejected = 0
        replica.subscribe(self.on_applied)
        self._thread = threading.Thread(target=self._run, name="scripts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def on_applied(self, fx: Effects) -> None:
        # Raft tick thread: only note the ids and wake the executor thread.
        if fx.scripts_ready:
            with self._lock:
                for tid in fx.scripts_ready:
                    self._queued[tid] = None
            self._wake.set()
        elif self.replica.leader_term not in (0, self._scanned_term):
            # This replica leads in a term it has not scanned yet: take over pending scripts.
            # (Not on every entry: a follower's executor has nothing to do, and waking it for
            # each applied entry cost the Raft thread a thread switch per entry.)
            self._wake.set()

    # ------------------------------------------------------------ the executor thread

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._once()
            except Exception as exc:  # keep the executor alive; the next round retries
                log.warning("script_executor_error", error=repr(exc))
            self._wake.wait(0.5)
            self._wake.clear()

    def _once(self) -> None:
        if not self.replica.leader_ready():
            self._scanned_term = 0
            with self._lock:
                self._queued.clear()
                self._evaluated.clear()
            return
        term = self.replica.leader_term
        now = time.monotonic()
        if term != self._scanned_term or now - self._last_scan >= self.rescan_s:
            # A new leader takes over every pending script; the periodic rescan also picks up
            # any whose proposal was lost.
            found = self.replica.read(self._pending)
            with self._lock:
                for tid, _ in found:
                    self._queued[tid] = None
            self._scanned_term = term
            self._last_scan = now
        with self._lock:
            tids = list(self._queued)
            self._queued.clear()
        for tid in tids:
            job = self._read_job(tid)
            if job is None:
                with self._lock:
                    for key in [k for k in self._evaluated if k[0] == tid]:
                        del self._evaluated[key]
                continue
            key = (tid, job.fence)
            with self._lock:
                if key in self._in_flight:
                    continue
                self._in_flight.add(key)
            self._pool.submit(self._evaluate_and_propose, key, job, term)

    # Hooks a subclass (runtime/http.py) replaces: which tasks are pending, what one needs,
    # and how its outcome is reached and proposed.
    _pending: Callable[[State], list[Key]] = staticmethod(queries.pending_scripts)

    def _read_job(self, tid: str) -> Any:
        return self.replica.read(lambda st: queries.script_job(st, tid))

    def _outcome(self, key: Key, job: Any) -> Any:
        """Evaluate once per key: a failed proposal is retried without evaluating again."""
        with self._lock:
            outcome = self._evaluated.get(key)
        if outcome is None:
            t0 = time.monotonic()
            outcome = self._evaluate(job)
            self.evaluations += 1
            log.info(
                "script_evaluated",
                task_id=key[0],
                task_type=job.task_type,
                workflow_id=job.workflow_id,
                ok=outcome.ok,
                kind=outcome.kind,
                ms=round((time.monotonic() - t0) * 1000, 1),
            )
            with self._lock:
                self._evaluated[key] = outcome
        return outcome

    def _evaluate(self, job: Any) -> Any:
        return self.sandbox.evaluate(job.lang, job.source, job.input)

    def _result_command(self, key: Key, outcome: Any, term: int) -> Command | None:
        """The command to propose; None: not the script's fault, try again later."""
        if outcome.kind == "sandbox":
            # The sandbox itself failed (could not start a worker): try again later rather
            # than failing the task.
            return None
        # A result the log cannot carry (a lone surrogate is not UTF-8) fails the task
        # instead of failing the proposal on every retry.
        problem = codec.json_problem(outcome.value) if outcome.ok else ""
        error = problem and f"the script's result is not valid JSON: {problem}"
        if not outcome.ok:
            error = outcome.error.encode("utf-8", "replace").decode("utf-8")
        return ScriptResult(
            task_id=key[0],
            fence=key[1],
            epoch=term,
            ok=outcome.ok and not problem,
            value=outcome.value if outcome.ok and not problem else None,
            error=error,
        )

    def _evaluate_and_propose(self, key: Key, job: Any, term: int) -> None:
        tid = key[0]
        retry = False
        try:
            outcome = self._outcome(key, job)
            cmd = self._result_command(key, outcome, term)
            if cmd is None:
                retry = True
                return
            if self.replica.leader_term != term or not self.replica.leader_ready():
                return  # the next leader evaluates it again
            result = self.replica.propose(cmd).result(timeout=30)
            with self._lock:
                self._evaluated.pop(key, None)
            if result.ok:
                self.results_committed += 1
            else:
                self.results_rejected += 1
                if result.code is not Code.FAILED_PRECONDITION:
                    log.warning("script_result_rejected", task_id=tid, error=result.message)
        except Overloaded:
            retry = True
        except ProposalError as exc:
            log.info("script_result_not_applied", task_id=tid, error=str(exc))
            retry = True
        except Exception as exc:
            log.warning("script_result_failed", task_id=tid, error=repr(exc))
            retry = True
        finally:
            with self._lock:
                self._in_flight.discard(key)
                if retry:
                    self._queued[tid] = None
            if retry:
                # Back off a little; the executor loop re-reads the task and drops it when it
                # is no longer pending.
                self._stop.wait(0.2)
                self._wake.set()


def check_definition_scripts(defn: JSON, sandbox: Sandbox) -> None:
    """Compile every literal script of a normalized definition in the sandbox (nothing runs).

    Called by the API before a registration is proposed, never in apply (which must stay pure
    and must not depend on an engine's version). Raises Rejected (INVALID_ARGUMENT) naming the
    field and the task reference of the first script that does not compile.
    """
    from ..core.definitions import script_sources
    from ..core.errors import invalid

    for where, lang, source in script_sources(defn):
        res = sandbox.check(lang, source)
        if res.ok:
            continue
        if res.kind == "sandbox":
            raise SandboxDown(f"{where}: cannot compile the script now: {res.error}")
        what = "JavaScript" if lang == "js" else "jq"
        raise invalid(f"{where}: the {what} does not compile: {res.error}")


class SandboxDown(Exception):
    """The sandbox could not start a worker: the API answers UNAVAILABLE."""
