"""Fixtures of the durable history's tests."""

from __future__ import annotations

import pytest

from orchestrator.core import limits
from tests.core_helpers import Harness


@pytest.fixture
def small_window(monkeypatch: pytest.MonkeyPatch) -> int:
    """Two terminal workflows stay in memory; older ones are archived."""
    monkeypatch.setattr(limits, "MAX_TERMINAL_WORKFLOWS", 2)
    return 2


@pytest.fixture
def h(small_window: int) -> Harness:
    harness = Harness()
    harness.leader_epoch(1)
    harness.register_defaults()
    return harness
