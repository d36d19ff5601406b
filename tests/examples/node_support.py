"""Running the Node.js examples (examples/node) from a test: node and npm present (else skip,
or fail under CI=true), the pinned packages installed from the lock file, and their output read
as JSON lines."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node"

Line = tuple[str, dict[str, Any]]


def _installed(name: str, version: str) -> bool:
    manifest = EXAMPLE / "node_modules" / name / "package.json"
    return manifest.exists() and json.loads(manifest.read_text()).get("version") == version


def node_ready() -> None:
    """Skips without node/npm (fails under CI=true); `npm ci` when a pinned package is
    missing or at another version (the lock file pins the rest)."""
    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("CI") == "true":
            pytest.fail("node and npm are required under CI=true")
        pytest.skip("node or npm is not installed")
    pins = json.loads((EXAMPLE / "package.json").read_text())["dependencies"]
    if not all(_installed(name, version) for name, version in pins.items()):
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=EXAMPLE,
            check=True,
            timeout=300,
            capture_output=True,
        )


def _pump(stream: Any, out: queue.Queue[Line], tag: str) -> None:
    for line in stream:
        try:
            msg = json.loads(line)
        except ValueError:
            msg = None
        out.put((tag, msg if isinstance(msg, dict) else {"text": line.rstrip()}))


def run_node(
    script: str, args: list[str], lines: queue.Queue[Line], tag: str, env: dict[str, str]
) -> subprocess.Popen[str]:
    """`node script args` in examples/node; its stdout and stderr lines go to `lines` as
    (tag, message) and (tag + ".err", message)."""
    proc = subprocess.Popen(
        ["node", "--no-deprecation", script, *args],
        cwd=EXAMPLE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    for stream, name in ((proc.stdout, tag), (proc.stderr, f"{tag}.err")):
        threading.Thread(target=_pump, args=(stream, lines, name), daemon=True).start()
    return proc
