"""buf lint (STANDARD rules, buf.yaml at the root) finds nothing in protos/, and the exceptions
buf.yaml lists hide exactly the four RPCs whose response names predate the lint.

The buf CLI is the npm package pinned in tools/buf/ (its Linux binary comes from the npm registry
as an optional dependency of @bufbuild/buf), installed with `npm ci` into a cache directory keyed
by the lock file, so a changed pin installs afresh. Skipped when node or npm is missing, except
under CI=true, where it fails."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
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


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orchestrator-tests"


@pytest.fixture(scope="module")
def buf() -> Path:
    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("CI") == "true":
            pytest.fail("node and npm are required under CI=true (make system-deps installs them)")
        pytest.skip("node or npm is not installed: buf lint needs the @bufbuild/buf npm package")
    files = [TOOL / "package.json", TOOL / "package-lock.json"]
    key = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    home = _cache_root() / f"buf-{key}"
    binary = home / "node_modules" / ".bin" / "buf"
    if not binary.exists():
        # Installed beside the cache and renamed into place: a run that dies halfway leaves no
        # half-installed directory that a later run would take for a finished one.
        staging = home.with_name(f"{home.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for f in files:
            shutil.copy(f, staging / f.name)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=staging,
            check=True,
            timeout=300,
            capture_output=True,
        )
        shutil.rmtree(home, ignore_errors=True)
        staging.rename(home)
    return binary


def _run(buf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BUF_CACHE_DIR=str(_cache_root() / "buf-cache"))
    return subprocess.run(
        [str(buf), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


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
