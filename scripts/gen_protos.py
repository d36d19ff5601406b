"""Regenerate the Python gRPC code from protos/ into the client package.

protoc writes imports after the proto package path (``from orchestrator.v1 import x_pb2``);
we rewrite them to the client package (``from orchestrator_client.v1 import x_pb2``), so the
generated code lives in the client and the server imports it from there.

The services' stubs (``x_pb2_grpc.pyi``) come from mypy-protobuf's ``protoc-gen-mypy_grpc``
(a pinned dev dependency): grpcio-tools types the messages but not the service stubs, and a
user's ``mypy --strict`` needs both.

Usage: python scripts/gen_protos.py [--out DIR]   (default: client/orchestrator_client/v1)
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_DIR = PROTO_ROOT / "orchestrator" / "v1"
DEFAULT_OUT = ROOT / "client" / "orchestrator_client" / "v1"
_IMPORT = re.compile(r"^from orchestrator\.v1 import ", re.MULTILINE)


def _grpc_stub_plugin() -> str:
    # Next to this interpreter first: the venv's script, whether or not the venv is activated.
    local = Path(sys.executable).parent / "protoc-gen-mypy_grpc"
    found = str(local) if local.exists() else shutil.which("protoc-gen-mypy_grpc")
    if found is None:
        raise SystemExit("protoc-gen-mypy_grpc not found: pip install -e '.[dev]' (mypy-protobuf)")
    return found


def generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc  # imported late: only needed when generating

    protos = sorted(PROTO_DIR.glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--plugin=protoc-gen-mypy_grpc={_grpc_stub_plugin()}",
            f"--mypy_grpc_out={tmp}",
            *[str(p.relative_to(PROTO_ROOT)) for p in protos],
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        gen = Path(tmp) / "orchestrator" / "v1"
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted(gen.iterdir()):
            text = _IMPORT.sub("from orchestrator_client.v1 import ", src.read_text())
            dst = out_dir / src.name
            dst.write_text(text)
            written.append(dst)
        init = out_dir / "__init__.py"
        init.write_text('"""Generated protobuf and gRPC code (scripts/gen_protos.py)."""\n')
        written.append(init)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ns = parser.parse_args()
    if ns.out == DEFAULT_OUT and DEFAULT_OUT.exists():
        shutil.rmtree(DEFAULT_OUT)
    for path in generate(ns.out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
