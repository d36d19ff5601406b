"""The API's shared plumbing: health, the method tables, and test hooks kept out of production."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from orchestrator_client.v1 import (
    cluster_pb2,
    definitions_pb2,
    events_pb2,
    tasks_pb2,
    workflows_pb2,
)

from orchestrator import config
from orchestrator.api import rpc
from orchestrator.api.cluster import ClusterService
from orchestrator.api.definitions import DefinitionService
from orchestrator.api.events import EventService
from orchestrator.api.health import serving_state
from orchestrator.api.tasks import TaskService
from orchestrator.api.workflows import WorkflowService
from tests.cluster_support import wait_for
from tests.fakes import FakeReplica

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def replica() -> Iterator[FakeReplica]:
    r = FakeReplica()
    wait_for(r.leader_ready, 10, "the fake replica to lead")
    yield r
    r.stop()


def test_a_replica_too_far_behind_its_commits_does_not_serve(replica: FakeReplica) -> None:
    assert serving_state(replica, config.HealthSettings()) == (True, "")
    replica.apply_lag = 5
    assert serving_state(replica, config.HealthSettings(max_apply_lag_entries=5)) == (True, "")
    assert serving_state(replica, config.HealthSettings(max_apply_lag_entries=4)) == (
        False,
        "applying: 5 entries behind",
    )


def test_the_lag_threshold_is_configured_under_health(tmp_path: Any) -> None:
    path = tmp_path / "cluster.json"
    raw: dict[str, Any] = {
        "password": "pw",
        "replicas": [{"id": "n1", "grpc": "127.0.0.1:1", "raft": "127.0.0.1:2"}],
    }
    path.write_text(json.dumps(raw))
    assert config.load(str(path)).health.max_apply_lag_entries == 1000
    path.write_text(json.dumps(dict(raw, health={"max_apply_lag_entries": 7})))
    assert config.load(str(path)).health.max_apply_lag_entries == 7
    for bad in ({"max_lag": 7}, {"max_apply_lag_entries": 0}, {"max_apply_lag_entries": "7"}):
        path.write_text(json.dumps(dict(raw, health=bad)))
        with pytest.raises(config.ConfigError, match="health"):
            config.load(str(path))


@pytest.mark.parametrize(
    "servicer, module",
    [
        (DefinitionService, definitions_pb2),
        (WorkflowService, workflows_pb2),
        (TaskService, tasks_pb2),
        (ClusterService, cluster_pb2),
        (EventService, events_pb2),
    ],
)
def test_every_method_is_served_and_forwarded_by_its_descriptor(servicer: Any, module: Any) -> None:
    service = servicer.SERVICE
    assert service in rpc.SERVICES and service.file is module.DESCRIPTOR
    # Defined by our classes (WorkflowService has its operator actions in a base class), not
    # only by the generated servicer, whose methods answer UNIMPLEMENTED.
    ours = [vars(k) for k in servicer.__mro__ if k.__module__.startswith("orchestrator.api")]
    for method in service.methods:
        assert any(method.name in v for v in ours), f"{service.name}.{method.name} is not served"
        assert rpc.response_type(service, method.name) is getattr(module, method.output_type.name)
        assert rpc.path(service, method.name) == f"/orchestrator.v1.{service.name}/{method.name}"


def _run(code: str, **env: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_server_loads_the_test_hooks_only_when_one_is_switched_on(tmp_path: Any) -> None:
    code = (
        "import sys\n"
        "from orchestrator import server\n"
        "hook = server._after_commit_hook()\n"
        "print(hook is not None, 'orchestrator.testing' in sys.modules)\n"
    )
    off = {"ORCHESTRATOR_FAILPOINTS_FILE": "", "ORCHESTRATOR_TEST_WALL_OFFSET_FILE": ""}
    assert _run(code, **off) == "False False"
    on = dict(off, ORCHESTRATOR_FAILPOINTS_FILE=str(tmp_path / "failpoints"))
    assert _run(code, **on) == "True True"
