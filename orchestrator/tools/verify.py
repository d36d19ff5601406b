"""Histories, a checker and a steady load: shared by the fault tests and `orchestrator chaos`.

Every client operation is recorded (invoke, then ok, fail or unknown) and checked afterwards
against the cluster's final state, in the style of Jepsen's histories.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator_client import OrchestratorClient, Worker
from orchestrator_client.errors import NotFoundError

from .access import Access
from .limits_mix import Mix


def wait_for(
    pred: Callable[[], Any],
    timeout_s: float,
    what: str | Callable[[], str],
    interval_s: float = 0.1,
) -> Any:
    """Wait until pred() is truthy (a condition, never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = pred()
            if value:
                return value
        except Exception as exc:  # conditions may fail while a cluster is recovering
            last_exc = exc
        time.sleep(interval_s)
    if callable(what):
        what = what()
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what}"
        + (f" (last error: {last_exc!r})" if last_exc else "")
    )


@dataclass
class History:
    """Every client operation: invoke, then ok, fail or unknown (Jepsen-style)."""

    events: list[tuple[float, str, str, str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: str, op: str, request_id: str, detail: Any) -> None:
        with self._lock:
            self.events.append((time.monotonic(), event, op, request_id, detail))

    def by_request(self, op: str | None = None) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        with self._lock:
            for _, event, o, rid, _ in self.events:
                if op is None or o == op:
                    out.setdefault(rid, []).append(event)
        return out

    def count(self, event: str, op: str | None = None) -> int:
        with self._lock:
            return sum(1 for e in self.events if e[1] == event and (op is None or e[2] == op))


WF = "fault_flow"


def definitions(response_timeout_s: int = 10) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    tds = [
        {
            "name": f"fault_{k}",
            "retryCount": 5,
            "retryDelaySeconds": 0,
            "responseTimeoutSeconds": response_timeout_s,
        }
        for k in ("a", "b")
    ]
    wf = {
        "name": WF,
        "tasks": [
            {
                "name": "fault_a",
                "taskReferenceName": "a",
                "inputParameters": {"n": "${workflow.input.n}"},
            },
            {
                "name": "fault_b",
                "taskReferenceName": "b",
                "inputParameters": {"m": "${a.output.m}"},
            },
        ],
    }
    return tds, wf


def _fault_output(kind: str) -> Callable[[Any], dict[str, Any]]:
    return lambda task: {"m": f"{kind}-{task.task_id}"}


class Load:
    """A starter thread and in-process workers, every call recorded, and an auditor.

    The auditor reads every acknowledged workflow until it is terminal and keeps that final
    view, because old terminal workflows are evicted from the cluster's state (retention) during
    long runs; it also scans the newest workflows for two that answer the same start.
    """

    def __init__(
        self, access: Access | list[str], workers: int = 2, mix: Mix | None = None
    ) -> None:
        """`access`: the cluster with credentials (LocalCluster.access()), or its addresses
        (plaintext). `mix`: also start its workflows and run its tasks (registered by the
        caller, like fault_flow's definitions)."""
        if not isinstance(access, Access):
            access = Access(list(access))
        self.starts = History()
        self.results = History()
        self.polled: dict[str, str] = {}
        self.client = access.client(timeout_s=2.0, retry_budget_s=60.0, recorder=self.starts)
        self.stop_event = threading.Event()
        self.workers: list[Worker] = []
        self.clients = [self.client]
        self._lock = threading.Lock()
        self.mix = mix
        self.names = [WF, *(mix.names if mix is not None else [])]
        for i in range(workers):
            c = access.client(timeout_s=2.0, retry_budget_s=60.0, recorder=self.results)
            self.clients.append(c)
            w = Worker(c, worker_id=f"load-{i}", concurrency=4, poll_timeout_ms=500)
            for kind in ("a", "b"):
                w.register(f"fault_{kind}", self._handler(f"load-{i}", c, _fault_output(kind)))
            for task_type, body in mix.handlers().items() if mix is not None else ():
                w.register(task_type, self._handler(f"load-{i}", c, body))
            self.workers.append(w)
        self.thread = threading.Thread(target=self._start_loop, daemon=True)
        self._mix_thread = threading.Thread(
            target=mix.run if mix is not None else lambda *_: None,
            args=(self.stop_event, self._start_mix),
            daemon=True,
        )
        self.errors: list[BaseException] = []
        # the auditor
        self.audit_client = access.client(timeout_s=2.0, retry_budget_s=5.0)
        self.clients.append(self.audit_client)
        self.final: dict[str, Any] = {}  # workflow id -> its terminal view (with tasks)
        self.duplicates: list[str] = []
        # workflow id -> seconds into the run when the auditor first got NOT_FOUND for it
        self.not_found: dict[str, float] = {}
        self.t0 = time.monotonic()
        self._to_audit: list[str] = []
        self._known: set[str] = set()  # workflow ids given to the auditor
        # workflow id -> the client to read it through (one that has seen it exist)
        self._via: dict[str, OrchestratorClient] = {}
        self._audit_stop = threading.Event()
        self._auditor = threading.Thread(target=self._audit_loop, daemon=True)

    def _handler(
        self, worker_id: str, client: OrchestratorClient, body: Callable[[Any], dict[str, Any]]
    ) -> Any:
        def fn(task: Any) -> dict[str, Any]:
            with self._lock:
                self.polled[task.task_id] = worker_id
            # A workflow whose start was not acknowledged (yet, or ever: the outcome was lost in
            # a fault) still runs; its task results are checked too, so watch it as well. It is
            # read through this worker's client, whose read-your-writes sequence covers the poll
            # that showed it (the starter's may not yet).
            self._audit(task.workflow_id, via=client)
            return body(task)

        return fn

    def _start_mix(self, name: str, input: dict[str, Any], correlation_id: str) -> None:
        self._audit(self.client.start_workflow(name, input, correlation_id=correlation_id))

    def probe(self, input: dict[str, Any] | None = None, **kw: Any) -> str:
        """Start one workflow outside the steady loop (e.g. to see the cluster serve again).

        It goes through the recorded client like every other start, so the checker holds it to
        the same promises, and the auditor watches it until it is terminal: a probe left out of
        the audit would be evicted by retention in a long run and then look lost.
        """
        wid = str(self.client.start_workflow(WF, input or {"n": "probe"}, **kw))
        self._audit(wid)
        return wid

    def _audit(self, wid: str, via: OrchestratorClient | None = None) -> None:
        """Give a workflow to the auditor once (read through `via` if given)."""
        with self._lock:
            if wid not in self._known:
                self._known.add(wid)
                if via is not None:
                    self._via[wid] = via
                self._to_audit.append(wid)

    def _start_loop(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            try:
                wid = self.client.start_workflow(WF, {"n": i})
                self._audit(wid)
            except Exception as exc:  # recorded as fail/unknown; the checker decides
                self.errors.append(exc)
            i += 1
            self.stop_event.wait(0.05)

    def _audit_loop(self) -> None:
        last_scan = 0.0
        while not self._audit_stop.is_set():
            with self._lock:
                pending = list(self._to_audit)
            for wid in pending:
                if self._audit_stop.is_set():
                    break
                try:
                    # Through the starter's client (or the worker's that polled its task): its
                    # read-your-writes sequence covers the start, so a lagging replica cannot
                    # answer NOT_FOUND for it.
                    reader = self._via.get(wid, self.client)
                    wf = reader.get_workflow(wid, retry_budget_s=2.0)
                except NotFoundError:
                    # An answer, not an outage: an acknowledged workflow the auditor never saw
                    # terminal is gone (lost, or evicted because the auditor fell behind
                    # retention). Note when, for the verdict, and sweep on.
                    with self._lock:
                        self.not_found.setdefault(wid, time.monotonic() - self.t0)
                        self._to_audit.remove(wid)
                    continue
                except Exception:
                    # The cluster is mid-fault: a failed read costs up to its retry budget, so
                    # sweeping on would fall minutes behind; start over after the pause.
                    break
                if wf.is_terminal:
                    self.final[wid] = wf
                    with self._lock:
                        self._to_audit.remove(wid)
            if time.monotonic() - last_scan > 2.0:
                last_scan = time.monotonic()
                newest = []
                for name in self.names:
                    with contextlib.suppress(Exception):  # the cluster may be mid-fault
                        newest += self.audit_client.list_workflows(name=name, limit=1000)
                by_input: dict[str, list[str]] = {}
                for w in newest:
                    by_input.setdefault(json.dumps(w.input, sort_keys=True), []).append(
                        w.workflow_id
                    )
                for key, wids in by_input.items():
                    if len(wids) > 1 and '"probe"' not in key and '"n": -1' not in key:
                        self.duplicates.append(f"{key}: {wids}")
            self._audit_stop.wait(0.2)

    def begin(self) -> None:
        for w in self.workers:
            w.start()
        self.thread.start()
        self._mix_thread.start()
        self._auditor.start()

    def end(self) -> None:
        self.stop_event.set()
        self.thread.join(90)
        self._mix_thread.join(90)

    def settled(self, timeout_s: float = 120) -> None:
        """Wait until the auditor has seen every workflow it knows terminal (so `final` holds
        all their records: the limit audits need every lease)."""

        def done() -> bool:
            with self._lock:
                return not self._to_audit

        wait_for(done, timeout_s, lambda: f"the auditor to see {self._to_audit[:5]} end")

    def close(self) -> None:
        self.stop_event.set()
        self._audit_stop.set()
        for w in self.workers:
            w.stop(timeout_s=5)
        if self._auditor.ident is not None:  # started by begin(); close() may come without it
            self._auditor.join(10)
        for c in self.clients:
            c.close()


def check_history(
    client: OrchestratorClient,
    starts: History,
    workers: History,
    workflow_name: str | Sequence[str],
    polled: dict[str, str] | None = None,
    load: Load | None = None,
) -> dict[str, Any]:
    """Verify the promises after a fault healed; returns counts for the test to report.
    `workflow_name`: the definition(s) the starts name.

    With `load`, workflows its auditor saw terminal count even if retention has since evicted
    them from the cluster, and its duplicate scan is part of the verdict.
    """
    final: dict[str, Any] = dict(load.final) if load is not None else {}
    ids, unknown_starts = _acknowledged_starts(starts)
    listed = _check_starts(client, workflow_name, ids, unknown_starts, final, load)
    if load is not None:
        load.final.update(final)  # what this check read, for audits after it
    accepted = _accepted_completions(workers)
    _check_results(client, accepted, polled or {}, listed, final)
    return {"workflows": len(ids), "completions": len(accepted), "unknown_starts": unknown_starts}


def _acknowledged_starts(starts: History) -> tuple[set[str], int]:
    """The workflow ids of acknowledged starts, and how many starts had an unknown outcome."""
    started_ok: dict[str, str] = {}
    unknown_starts = 0
    for rid, events in starts.by_request("StartWorkflow").items():
        if "ok" in events:
            started_ok[rid] = next(
                d.workflow_id
                for _, e, op, r, d in starts.events
                if r == rid and e == "ok" and op == "StartWorkflow"
            )
        elif "unknown" in events:
            unknown_starts += 1
    ids = set(started_ok.values())
    assert len(ids) == len(started_ok), "two acknowledged starts returned the same workflow"
    return ids, unknown_starts


def _check_starts(
    client: OrchestratorClient,
    workflow_name: str | Sequence[str],
    ids: set[str],
    unknown_starts: int,
    final: dict[str, Any],
    load: Load | None,
) -> set[str]:
    """Every acknowledged start exists and reached a terminal state (its final view lands in
    `final`); nothing was started twice. Returns the ids the cluster lists."""
    if load is not None and load.not_found:
        lost = sorted(load.not_found.items(), key=lambda kv: kv[1])
        raise AssertionError(
            f"{len(lost)} acknowledged workflow(s) NOT_FOUND before the auditor saw them terminal"
            f" (id, seconds into the run): {lost[:5]}"
        )

    def all_terminal() -> bool:
        for w in ids:
            if w in final:
                continue
            wf = client.get_workflow(w)  # NOT_FOUND here (never seen terminal) means lost
            if not wf.is_terminal:
                return False
            final[w] = wf
        return True

    wait_for(
        all_terminal, 120, "every acknowledged workflow to reach a terminal state", interval_s=0.5
    )
    names = [workflow_name] if isinstance(workflow_name, str) else workflow_name
    listed = {w.workflow_id for n in names for w in client.list_workflows(name=n, limit=1000)}
    if len(ids) + unknown_starts < 1000:
        # Everything still fits one listing: the exact count proves no start was doubled.
        assert ids <= listed, f"acknowledged starts lost: {sorted(ids - listed)[:5]}"
        assert len(listed) <= len(ids) + unknown_starts, "a retried start created a second workflow"
    if load is not None:
        assert not load.duplicates, f"a start created two workflows: {load.duplicates[:3]}"
    return listed


def _accepted_completions(workers: History) -> dict[str, Any]:
    """Task id -> output of each acknowledged completion; at most one per task attempt."""
    requests: dict[str, Any] = {}
    accepted: dict[str, Any] = {}
    for _, event, op, rid, detail in workers.events:
        if op != "CompleteTask":
            continue
        if event == "invoke":
            requests[rid] = detail
        elif event == "ok":
            task_id = requests[rid].task_id
            assert task_id not in accepted, f"task {task_id} completed twice"
            accepted[task_id] = json.loads(requests[rid].output_json or "{}")
    return accepted


def _check_results(
    client: OrchestratorClient,
    accepted: dict[str, Any],
    polled: dict[str, str],
    listed: set[str],
    final: dict[str, Any],
) -> None:
    """Each acknowledged completion is in the state with its output, and a task handed to a
    poller was leased to it in the committed state."""
    tasks: dict[str, Any] = {}
    for wf in final.values():
        for t in wf.tasks:
            tasks[t.task_id] = t
    for wid in listed - set(final):
        for t in client.get_workflow(wid).tasks:
            tasks[t.task_id] = t
    for task_id, output in accepted.items():
        assert task_id in tasks, f"acknowledged result of {task_id} lost"
        assert tasks[task_id].status == "COMPLETED" and tasks[task_id].output == output, task_id
    for task_id, worker_id in polled.items():
        assert task_id in tasks and tasks[task_id].worker_id == worker_id, (
            f"task {task_id} was handed to {worker_id} without a committed lease"
        )


def check_replicas_agree(client: OrchestratorClient, timeout_s: float = 60) -> int:
    """Once quiescent, every replica is at the same sequence with the same rolling hash."""

    def agreed() -> int | None:
        rows = client.cluster_status()
        if any(r.get("role") == "UNREACHABLE" for r in rows):
            return None
        seqs = {int(r["applied_sequence"]) for r in rows}
        hashes = {r["applied_hash"] for r in rows}
        if len(seqs) == 1 and len(hashes) == 1:
            return seqs.pop()
        if len(seqs) == 1:
            raise AssertionError(f"replicas diverged at sequence {seqs}: {rows}")
        return None

    return int(
        wait_for(agreed, timeout_s, "replicas to agree on sequence and hash", interval_s=0.3)
    )


def time_until_success(fn: Any, timeout_s: float = 60) -> float:
    """Seconds until fn() succeeds (the availability check after a fault)."""
    t0 = time.monotonic()
    wait_for(lambda: fn() or True, timeout_s, "a successful client call", interval_s=0.05)
    return time.monotonic() - t0
