"""The state machine's entry points for the rest of the server, in one import.

The machine itself is engine.py (apply_batch, precheck), the processors (processors/), the
events and their appliers; this module re-exports what replication/, api/ and runtime/ use.
"""

from __future__ import annotations

from .context import Effects, Outcome
from .engine import apply_batch, precheck
from .processors.registry import latest_version
from .processors.scripts import pending_scripts
from .records import T_ACTIVE, queue_key

__all__ = [
    "T_ACTIVE",
    "Effects",
    "Outcome",
    "apply_batch",
    "latest_version",
    "pending_scripts",
    "precheck",
    "queue_key",
]
