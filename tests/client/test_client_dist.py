"""The client as its own distribution (client/pyproject.toml): its wheel installs into a plain
venv with grpcio and protobuf only, imports there without any of the server's packages, and a
user's code calling it passes ``mypy --strict`` (py.typed, the generated services' stubs).

One venv for the module: building it (pip, grpcio, protobuf) costs seconds, not the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What a user of the client writes: the client, a worker handler and a generated service stub.
_USER_CODE = """
from typing import Any

import grpc
from orchestrator_client import OrchestratorClient, Task, Worker, Workflow
from orchestrator_client.aio import AsyncOrchestratorClient
from orchestrator_client.v1 import workflows_pb2, workflows_pb2_grpc


def start_and_fetch(client: OrchestratorClient) -> Workflow:
    workflow_id: str = client.start_workflow("order", {"n": 1}, correlation_id="c1")
    return client.get_workflow(workflow_id)


def handle(task: Task) -> dict[str, Any]:
    return {"seen": task.task_id}


def serve(client: OrchestratorClient) -> Worker:
    worker = Worker(client, concurrency=2)
    worker.register("charge", handle)
    return worker


async def start_async(addresses: str) -> Workflow:
    async with AsyncOrchestratorClient(addresses) as client:
        workflow_id = await client.start_workflow("order")
        return await client.get_workflow(workflow_id)


def raw(channel: grpc.Channel, workflow_id: str) -> str:
    stub = workflows_pb2_grpc.WorkflowServiceStub(channel)
    response = stub.GetWorkflow(workflows_pb2.GetWorkflowRequest(workflow_id=workflow_id))
    return response.workflow.workflow_id
"""

# The same calls, wrong: mypy must reject each, or the check above proves nothing.
_WRONG_CODE = """
from orchestrator_client import OrchestratorClient
from orchestrator_client.v1 import workflows_pb2, workflows_pb2_grpc
import grpc


def bad(client: OrchestratorClient, channel: grpc.Channel) -> int:
    client.start_workflow(42)
    stub = workflows_pb2_grpc.WorkflowServiceStub(channel)
    stub.GetWorkflow(workflows_pb2.StartWorkflowRequest())
    return client.get_workflow("w")
"""


def _run(*args: str | Path, cwd: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300, **kw
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("client_dist")
    # A copy: building in place would leave build/ and egg-info in the source tree.
    src = tmp / "src"
    shutil.copytree(
        ROOT / "client",
        src,
        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"),
    )
    out = tmp / "wheels"
    built = _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        out,
        src,
        cwd=tmp,
    )
    assert built.returncode == 0, built.stderr
    (whl,) = out.glob("orchestrator_client-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel: Path) -> Iterator[Path]:
    env_dir = wheel.parent.parent / "venv"
    # A plain venv (no --system-site-packages): only what the wheel pulls in is there.
    base = getattr(sys, "_base_executable", sys.executable)
    made = _run(base, "-m", "venv", env_dir, cwd=wheel.parent)
    assert made.returncode == 0, made.stderr
    python = env_dir / "bin" / "python"
    # The extra brings the typing stubs of grpcio and protobuf, for the mypy test only.
    installed = _run(python, "-m", "pip", "install", "-q", f"{wheel}[typing]", cwd=wheel.parent)
    assert installed.returncode == 0, installed.stderr
    yield python


def test_wheel_holds_the_typed_package(wheel: Path) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert "orchestrator_client/py.typed" in names
    assert "orchestrator_client/v1/workflows_pb2_grpc.pyi" in names
    assert "orchestrator_client/v1/workflows_pb2.pyi" in names
    assert not any(n.startswith("orchestrator/") for n in names), "server code in the wheel"
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [
        line.split(":", 1)[1].strip()
        for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert sorted(requires) == [
        "googleapis-common-protos==1.76.0",
        "grpcio==1.85.1",
        "protobuf==7.36.2",
    ]


def test_installs_and_imports_without_the_server(venv: Path, tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import importlib.util, sys
        from orchestrator_client import OrchestratorClient, Worker
        from orchestrator_client.v1 import tasks_pb2_grpc, workflows_pb2_grpc
        client = OrchestratorClient("127.0.0.1:1")
        client.close()
        absent = [m for m in ("orchestrator", "structlog", "pysyncobj", "cryptography")
                  if importlib.util.find_spec(m) is not None]
        print("absent-ok" if not absent else f"present: {absent}")
        """
    )
    # cwd outside the repository: nothing of the source tree is importable from there.
    out = _run(venv, "-c", code, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "absent-ok"
    listed = _run(venv, "-m", "pip", "list", "--format=json", "--exclude", "pip", cwd=tmp_path)
    dists = {d["name"].lower().replace("_", "-") for d in json.loads(listed.stdout)}
    # grpcio itself requires typing-extensions; the stubs are the [typing] extra.
    assert dists - {"setuptools"} == {
        "orchestrator-client",
        "grpcio",
        "protobuf",
        "googleapis-common-protos",
        "typing-extensions",
        "grpc-stubs",
        "types-protobuf",
    }


def _mypy(venv: Path, tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    user = tmp_path / "user_code.py"
    user.write_text(textwrap.dedent(source))
    # The project's mypy, resolving packages from the fresh venv as a user's mypy would.
    return _run(
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--no-incremental",
        "--python-executable",
        venv,
        "--config-file",
        os.devnull,
        user,
        cwd=tmp_path,
    )


def test_user_code_passes_mypy_strict(venv: Path, tmp_path: Path) -> None:
    out = _mypy(venv, tmp_path, _USER_CODE)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_sees_the_types(venv: Path, tmp_path: Path) -> None:
    out = _mypy(venv, tmp_path, _WRONG_CODE)
    assert out.returncode == 1, out.stdout + out.stderr
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 3, out.stdout
    assert 'incompatible type "int"; expected "str"' in errors[0]
    assert "StartWorkflowRequest" in errors[1]
    assert '"Workflow"' in errors[2]
