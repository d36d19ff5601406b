"""House style that CI enforces: mypy --strict on core/ and the client, ruff on everything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_strict_on_core_and_client() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "orchestrator/core", "client/orchestrator_client"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "orchestrator",
            "tests",
            "scripts",
            "client/orchestrator_client",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
