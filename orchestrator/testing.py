"""Test-only hooks for the fault tests. The server imports this module only when one of them
is switched on by its environment variable; in production it is never loaded.

- ORCHESTRATOR_FAILPOINTS_FILE: crash right after a commit, before the reply leaves.
- ORCHESTRATOR_TEST_WALL_OFFSET_FILE: shift this process's wall clock, like a clock jump.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import structlog

log = structlog.get_logger("testing")


class Failpoints:
    """Fault injection from a file of specs like `crash_after_commit=<CommandName>:<n>`, one per
    line or comma separated: SIGKILL this process right after the n-th command of that type it
    proposed has been committed and applied, before the reply leaves. The file is re-read when
    it changes, so a test can arm a failpoint on the replica that happens to lead.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._mtime = -1.0
        self.crash: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def _reload(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            self.crash = {}
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        with open(self.path) as f:
            text = f.read()
        crash = {}
        for part in filter(None, (p.strip() for p in text.replace("\n", ",").split(","))):
            name, _, arg = part.partition("=")
            if name == "crash_after_commit":
                cmd, _, n = arg.partition(":")
                crash[cmd] = int(n or "1")
        self.crash = crash
        self.counts = {}

    def after_commit(self, cmd_name: str, request_id: str = "") -> None:
        with self._lock:
            self._reload()
            if cmd_name not in self.crash:
                return
            self.counts[cmd_name] = self.counts.get(cmd_name, 0) + 1
            hit = self.counts[cmd_name] == self.crash[cmd_name]
        if hit:
            log.warning("failpoint_crash_after_commit", command=cmd_name, request_id=request_id)
            os.kill(os.getpid(), signal.SIGKILL)


def start_wall_clock_faker(path: str) -> None:
    """Shift this process's wall clock (time.time) by the ms in `path`, like a jump.

    Used by the clock-jump fault test to show that no timer depends on the wall clock.
    """
    real_time = time.time
    offset = {"ms": 0}

    def fake_time() -> float:
        return real_time() + offset["ms"] / 1000.0

    time.time = fake_time

    def watch() -> None:
        while True:
            try:
                with open(path) as f:
                    ms = int(f.read().strip() or 0)
            except (OSError, ValueError):
                ms = 0
            if ms != offset["ms"]:
                offset["ms"] = ms
                log.warning("wall_clock_offset", offset_ms=ms)
            time.sleep(0.1)

    threading.Thread(target=watch, name="wall-clock-faker", daemon=True).start()
