"""buf lint (STANDARD rules, buf.yaml at the root) finds nothing in protos/, and the exceptions
buf.yaml lists hide exactly the four RPCs whose response names predate the lint; buf breaking
(FILE rules) finds nothing against the released protos, tools/buf/wire-baseline.json.

The buf CLI is the npm package pinned in tools/buf/, installed by scripts/buftool.py. Skipped
when node or npm is missing, except under CI=true, where it fails."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "buf"
PROTO_DIR = ROOT / "protos" / "orchestrator" / "v1"

# (rule, file, the response type buf wants renamed): kept for compatibility (buf.yaml says why).
KNOWN_EXCEPTIONS = {
    ("RPC_RESPONSE_STANDARD_NAME", "protos/orchestrator/v1/cluster.proto", "ReplicaStatus"),
    ("RPC_RESPONSE_STANDARD_NAME", "protos/orchestrator/v1/events.proto", "Event"),
    ("RPC_RESPONSE_STANDARD_NAME", "protos/orchestrator/v1/events.proto", "WorkflowChange"),
    ("RPC_RESPONSE_STANDARD_NAME", "protos/orchestrator/v1/history_sync.proto", "HistoryChunk"),
}
# buf.yaml without its exceptions.
_NO_EXCEPTIONS = {"version": "v2", "modules": [{"path": "protos"}], "lint": {"use": ["STANDARD"]}}


def _buftool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("buftool", ROOT / "scripts" / "buftool.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUFTOOL = _buftool()
BASELINE: Path = BUFTOOL.BASELINE


@pytest.fixture(scope="module")
def buf() -> Path:
    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("CI") == "true":
            pytest.fail("node and npm are required under CI=true (make system-deps installs them)")
        pytest.skip("node or npm is not installed: buf lint needs the @bufbuild/buf npm package")
    return Path(BUFTOOL.install())


def _run(buf: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return BUFTOOL.run(buf, *args, cwd=cwd)  # type: ignore[no-any-return]


def _findings(out: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_the_pinned_buf_runs(buf: Path) -> None:
    pin = json.loads((TOOL / "package.json").read_text())["devDependencies"]["@bufbuild/buf"]
    assert _run(buf, "--version").stdout.strip() == pin


def test_buf_lints_every_proto(buf: Path) -> None:
    out = _run(buf, "ls-files")
    assert out.returncode == 0, out.stderr
    expected = sorted(str(p.relative_to(ROOT)) for p in PROTO_DIR.glob("*.proto"))
    assert sorted(out.stdout.split()) == expected


def test_protos_are_buf_lint_clean(buf: Path) -> None:
    out = _run(buf, "lint", "--error-format=json")
    findings = _findings(out)
    assert not findings, "buf lint: " + "\n".join(
        f"{f['path']}:{f['start_line']}: {f['type']}: {f['message']}" for f in findings
    )
    assert out.returncode == 0, out.stderr


def test_the_exceptions_cover_only_the_known_rpcs(buf: Path) -> None:
    out = _run(buf, "lint", "--error-format=json", "--config", json.dumps(_NO_EXCEPTIONS))
    assert out.returncode != 0, out.stderr
    found = {(f["type"], f["path"], f["message"].split('"')[1]) for f in _findings(out)}
    assert found == KNOWN_EXCEPTIONS


def test_protos_keep_the_released_wire_contract(buf: Path) -> None:
    """A change that breaks clients built against the released protos (a field renumbered,
    retyped or deleted, a message or RPC renamed) fails here. A deliberate break is a new package
    version, and then `make proto-baseline` records the new release."""
    out = _run(buf, "breaking", "--against", str(BASELINE), "--error-format=json")
    findings = _findings(out)
    assert not findings, "buf breaking: " + "\n".join(
        f"{f['path']}:{f['start_line']}: {f['type']}: {f['message']}" for f in findings
    )
    assert out.returncode == 0, out.stderr


def test_the_breaking_check_sees_a_renumbered_field(buf: Path, tmp_path: Path) -> None:
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    proto = tmp_path / "protos" / "orchestrator" / "v1" / "workflows.proto"
    text = proto.read_text()
    before = "message GetWorkflowRequest {\n  string workflow_id = 1;\n  bool include_tasks = 2;"
    assert before in text
    proto.write_text(text.replace(before, before.replace("include_tasks = 2", "include_tasks = 3")))
    out = _run(buf, "breaking", "--against", str(BASELINE), "--error-format=json", cwd=tmp_path)
    assert out.returncode != 0
    found = {(f["type"], f["path"]) for f in _findings(out)}
    assert ("FIELD_NO_DELETE", "protos/orchestrator/v1/workflows.proto") in found, out.stdout
