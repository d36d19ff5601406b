"""The API tests run on a one-replica server over the in-memory fake replica (tests/fakes.py):
the real servicers, dispatcher, timer and core, without Raft. A module about what Raft itself
does (test_api_parked_polls: entries in the log) overrides `server` with a real node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.server import ReplicaServer
from tests.fakes import fake_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any, request: Any) -> Iterator[ReplicaServer]:
    with fake_server(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])) as srv:
        yield srv
