"""Workflow ids that sort in the order the leader made them: UUID version 7 (RFC 9562).

Searches and listings order workflows by (create time, workflow id), and page on that key. Two
workflows started in the same millisecond of cluster time tie on the first part, so a random
id (version 4) would order them at random: a listing would not be newest first among them, and
a workflow started just after a page was read could sort behind that page's last entry and show
up on the next one. Version 7 ids carry the wall-clock millisecond, then a counter, so the ids
one process makes only grow, and later starts sort after earlier ones wherever they tie.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_MAX_COUNTER = 0xFFF  # the 12 bits after the version


class _Clock:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ms = 0
        self.counter = 0

    def next(self) -> tuple[int, int]:
        """(milliseconds, counter), strictly growing even when the wall clock steps back."""
        now = time.time_ns() // 1_000_000
        with self.lock:
            if now > self.ms:
                self.ms, self.counter = now, 0
            elif self.counter < _MAX_COUNTER:
                self.counter += 1
            else:  # 4096 ids in one millisecond: borrow the next one
                self.ms, self.counter = self.ms + 1, 0
            return self.ms, self.counter


_CLOCK = _Clock()


def new_workflow_id() -> str:
    ms, counter = _CLOCK.next()
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    return str(uuid.UUID(int=value))
