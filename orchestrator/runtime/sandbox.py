"""The script sandbox: JavaScript (QuickJS) and jq evaluated in separate worker processes.

Scripts never run in a replica's own process: a runaway script would starve the Raft tick thread
(heartbeats) and the GIL. A small pool of long-lived workers (`sandbox_worker.py`) evaluates one
script at a time each, under

- a time limit: QuickJS's interrupt handler (`set_time_limit`), and a hard kill of the worker
  from here on a wall-clock deadline (jq has no limit of its own);
- a memory limit: QuickJS's allocator limit (`set_memory_limit`), and RLIMIT_AS on the worker
  process for everything else (jq, the interpreter);
- no file, network or process access: QuickJS without its std/os modules or a module loader, and
  no host function is exposed; jq with an empty module search path and an empty environment;
  and underneath, a seccomp allow-list in the worker (see `sandbox_worker.py`), should an engine
  be tricked into a system call anyway.

A worker that overran its deadline or died is replaced; the caller gets a clear reason. A
worker also ends itself (SIGALRM) a little after the parent's deadline, and when its stdin
closes (the replica exited), so none outlives its replica for long.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("sandbox")

JSON = Any

DEFAULT_TIME_LIMIT_S = 4.0  # Conductor's ScriptEvaluator default
DEFAULT_MEMORY_LIMIT_BYTES = 64 * 1024 * 1024  # QuickJS heap
DEFAULT_ADDRESS_SPACE_BYTES = 512 * 1024 * 1024  # RLIMIT_AS of a worker process
DEFAULT_MAX_RESULT_BYTES = 256 * 1024  # limits.MAX_JSON_BYTES
KILL_GRACE_S = 1.0  # beyond the script's own time limit, before the hard kill
START_TIMEOUT_S = 20.0

LANGS = ("js", "jq")
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class ScriptOutcome:
    ok: bool
    value: JSON = None
    error: str = ""
    # syntax, time, memory, runtime, result, or sandbox (the sandbox itself failed)
    kind: str = ""


class SandboxUnavailable(Exception):
    """No worker could be started."""


class _WorkerGone(Exception):
    """The worker closed its pipes: it died (or is dying)."""


class _Worker:
    def __init__(self, address_space_bytes: int) -> None:
        # Nothing of the replica's environment (secrets) reaches the worker; the package is found
        # from here whether it is installed or run from a source tree.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        env["PYTHONPATH"] = os.pathsep.join(
            [_PACKAGE_ROOT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-s",
                "-m",
                "orchestrator.runtime.sandbox_worker",
                str(address_space_bytes),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd="/",
            close_fds=True,
            start_new_session=True,  # a signal to the replica's process group spares it
        )
        self._buf = b""
        self._next_id = 0
        self.uses = 0
        try:
            hello = self._read_line(time.monotonic() + START_TIMEOUT_S)
        except _WorkerGone:
            self.kill()
            raise SandboxUnavailable("the sandbox worker exited at start") from None
        except Exception:
            self.kill()
            raise
        greeting = json.loads(hello) if hello is not None else {}
        if not greeting.get("ready"):
            self.kill()
            # e.g. "seccomp unavailable: ...": the worker refuses to run scripts unconfined.
            raise SandboxUnavailable(
                str(greeting.get("error") or "the sandbox worker did not start")
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()

    def _read_line(self, deadline: float) -> bytes | None:
        """One line from the worker, or None at the deadline; _WorkerGone when it died."""
        out = self.proc.stdout
        assert out is not None
        fd = out.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise _WorkerGone()
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def call(self, request: dict[str, JSON], wall_s: float) -> dict[str, JSON] | None:
        """Send one request; the response, or None if the deadline passed (_WorkerGone if the
        worker died)."""
        self._next_id += 1
        self.uses += 1
        request = dict(request, id=self._next_id)
        data = (json.dumps(request, separators=(",", ":")) + "\n").encode()
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(data)
            stdin.flush()
        except OSError:
            raise _WorkerGone() from None
        deadline = time.monotonic() + wall_s
        while True:
            line = self._read_line(deadline)
            if line is None:
                return None
            resp: dict[str, JSON] = json.loads(line)
            if resp.get("id") == self._next_id:
                return resp


class Sandbox:
    """A pool of sandbox worker processes; thread-safe, each call takes one worker."""

    def __init__(
        self,
        workers: int = 2,
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
        memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
        address_space_bytes: int = DEFAULT_ADDRESS_SPACE_BYTES,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ) -> None:
        self.size = max(1, workers)
        self.time_limit_s = time_limit_s
        self.memory_limit_bytes = memory_limit_bytes
        self.address_space_bytes = address_space_bytes
        self.max_result_bytes = max_result_bytes
        self._idle: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(self.size):
            self._idle.put(None)  # a slot; the worker is started on first use
        self._lock = threading.Lock()
        self._all: dict[int, _Worker] = {}
        self._closed = False
        self.replaced = 0  # workers killed or found dead and replaced (for tests and status)

    @classmethod
    def from_env(cls) -> Sandbox:
        """Limits from ORCHESTRATOR_SCRIPT_{WORKERS,TIME_LIMIT_MS,MEMORY_LIMIT_MB}."""

        def num(name: str, default: float) -> float:
            raw = os.environ.get(name, "")
            try:
                return float(raw) if raw else default
            except ValueError:
                return default

        return cls(
            workers=int(num("ORCHESTRATOR_SCRIPT_WORKERS", 2)),
            time_limit_s=num("ORCHESTRATOR_SCRIPT_TIME_LIMIT_MS", DEFAULT_TIME_LIMIT_S * 1000)
            / 1000,
            memory_limit_bytes=int(
                num("ORCHESTRATOR_SCRIPT_MEMORY_LIMIT_MB", DEFAULT_MEMORY_LIMIT_BYTES >> 20)
            )
            << 20,
        )

    # ------------------------------------------------------------ public

    def evaluate(self, lang: str, source: str, input_value: JSON) -> ScriptOutcome:
        """Run a script against `input_value` (`$` in JavaScript, `.` in jq).

        JavaScript gives the script's completion value (or, for a top-level `return`, the value
        of the source run as a function body); jq gives the list of every output.
        """
        if lang not in LANGS:
            return ScriptOutcome(False, error=f"unknown script language {lang!r}", kind="syntax")
        return self._call({"op": lang, "source": source, "input": input_value})

    def check(self, lang: str, source: str) -> ScriptOutcome:
        """Compile a script without running it."""
        if lang not in LANGS:
            return ScriptOutcome(False, error=f"unknown script language {lang!r}", kind="syntax")
        return self._call({"op": "check_" + lang, "source": source})

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._all.values())
            self._all.clear()
        for w in workers:
            w.kill()

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._all.values()]

    # ------------------------------------------------------------ internals

    def _call(self, request: dict[str, JSON]) -> ScriptOutcome:
        request = dict(
            request,
            time_limit_s=self.time_limit_s,
            memory_limit_bytes=self.memory_limit_bytes,
            max_result_bytes=self.max_result_bytes,
        )
        worker = self._idle.get()
        keep: _Worker | None = None
        try:
            if worker is not None and not worker.alive():
                self._forget(worker)
                self.replaced += 1
                worker = None
            if worker is None:
                worker = self._spawn()
            try:
                resp = worker.call(request, self.time_limit_s + KILL_GRACE_S)
                died = False
            except _WorkerGone:
                resp, died = None, True
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.proc.wait(timeout=5)
            if resp is None:
                code = worker.proc.returncode
                self._forget(worker)
                worker.kill()
                self.replaced += 1
                if died and code == -signal.SIGALRM:  # the worker's own deadline
                    log.warning("sandbox_worker_timed_out", pid=worker.pid)
                    return ScriptOutcome(
                        False,
                        error=f"time limit exceeded ({self.time_limit_s:g} s; the script's "
                        "process ended itself)",
                        kind="time",
                    )
                if died and code == -signal.SIGSYS:  # the seccomp filter's kill action
                    log.warning("sandbox_worker_died", pid=worker.pid, returncode=code)
                    return ScriptOutcome(
                        False,
                        error="the script's sandbox process was killed for a forbidden system call",
                        kind="runtime",
                    )
                if died:
                    log.warning("sandbox_worker_died", pid=worker.pid, returncode=code)
                    return ScriptOutcome(
                        False,
                        error="the script's sandbox process died (memory limit of "
                        f"{self.address_space_bytes >> 20} MiB exceeded, or a crash)",
                        kind="memory",
                    )
                log.warning("sandbox_worker_killed", pid=worker.pid, reason="wall deadline")
                return ScriptOutcome(
                    False,
                    error=f"time limit exceeded ({self.time_limit_s:g} s; the script's process "
                    "was killed)",
                    kind="time",
                )
            keep = worker
            if resp.get("ok"):
                return ScriptOutcome(True, value=resp.get("value"))
            return ScriptOutcome(
                False, error=str(resp.get("error", "")), kind=str(resp.get("kind", "runtime"))
            )
        except SandboxUnavailable as exc:
            return ScriptOutcome(False, error=str(exc), kind="sandbox")
        except OSError as exc:
            return ScriptOutcome(False, error=f"the sandbox failed: {exc}", kind="sandbox")
        finally:
            self._idle.put(keep)

    def _spawn(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise SandboxUnavailable("the sandbox is closed")
        try:
            worker = _Worker(self.address_space_bytes)
        except OSError as exc:
            raise SandboxUnavailable(f"cannot start a sandbox worker: {exc}") from None
        with self._lock:
            self._all[worker.pid] = worker
        return worker

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            self._all.pop(worker.pid, None)


_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process's shared sandbox (limits from the environment), created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sandbox.from_env()
        return _default
