"""Fixtures of the core's tests."""

from __future__ import annotations

import pytest

from tests.core_helpers import Harness


def _harness(leader_epoch: int) -> Harness:
    harness = Harness()
    if leader_epoch:
        harness.leader_epoch(leader_epoch)
    harness.register_defaults()
    return harness


@pytest.fixture
def h() -> Harness:
    """A state with the default task and workflow definitions (core_helpers), no leader yet."""
    return _harness(0)


@pytest.fixture
def led() -> Harness:
    """The same, after a leader's first entry (LeaderEpoch 1) was committed."""
    return _harness(1)
