"""The buf CLI pinned in tools/buf/ (the @bufbuild/buf npm package; its Linux binary comes from
the npm registry as an optional dependency), installed with `npm ci` into a cache directory
keyed by the lock file, so a changed pin installs afresh. tests/test_buf_lint.py runs it.

`python scripts/buftool.py baseline` (make proto-baseline) records the protos as released in
tools/buf/wire-baseline.json, the image `buf breaking` holds later changes to: only for a
deliberate, versioned break of the wire contract.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "buf"
BASELINE = TOOL / "wire-baseline.json"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orchestrator-tests"


def install() -> Path:
    """The pinned buf binary, installed when missing."""
    files = [TOOL / "package.json", TOOL / "package-lock.json"]
    key = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    home = cache_root() / f"buf-{key}"
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


def run(buf: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BUF_CACHE_DIR=str(cache_root() / "buf-cache"))
    return subprocess.run(
        [str(buf), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def write_baseline(buf: Path) -> None:
    """The protos' image without comments, as indented JSON (a reviewable diff)."""
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "image.json"
        out = run(buf, "build", "--exclude-source-info", "-o", str(image))
        if out.returncode != 0:
            raise SystemExit(f"buf build failed: {out.stderr}")
        data = json.loads(image.read_text())
    BASELINE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["baseline"]:
        raise SystemExit("usage: python scripts/buftool.py baseline")
    write_baseline(install())
    print(f"wrote {BASELINE.relative_to(ROOT)}")
