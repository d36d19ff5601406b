"""The CLI registers every command, and the tools stay outside the server's import graph."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from orchestrator.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "orchestrator"


def test_every_command_is_registered() -> None:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    # bench, failover, chaos and the operator's commands (cli_ops) register themselves: a wrong
    # module path would drop the command silently.
    assert set(sub.choices) == {
        "serve",
        "local-cluster",
        "demo",
        "register",
        "defs",
        "start",
        "get",
        "list",
        "terminate",
        "status",
        "members",
        "bench",
        "failover",
        "chaos",
        "search",
        "workflow",
        "execute",
        "settings",
        "events",
    }


def _tool_imports(path: Path, source: str | None = None) -> list[str]:
    """The modules under orchestrator.tools that a file imports (relative imports resolved)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            mod = ".".join([*base, *([node.module] if node.module else [])])
            names += [mod] + [f"{mod}.{a.name}" for a in node.names]
    return [m for m in names if m == "orchestrator.tools" or m.startswith("orchestrator.tools.")]


def test_the_server_does_not_import_the_tools() -> None:
    files = [SERVER / "server.py"]
    for layer in ("api", "core", "replication", "runtime"):
        files += sorted((SERVER / layer).rglob("*.py"))
    assert len(files) > 20
    assert [f"{f.relative_to(ROOT)}: {m}" for f in files for m in _tool_imports(f)] == []


def test_the_import_check_sees_imports_of_the_tools() -> None:
    # The check above must be able to fail, relative imports included.
    path = SERVER / "api" / "servicers.py"
    assert _tool_imports(path, "from ..tools import verify\n") == [
        "orchestrator.tools",
        "orchestrator.tools.verify",
    ]
    assert _tool_imports(path, "from ..tools.bench import run_bench\n") == [
        "orchestrator.tools.bench",
        "orchestrator.tools.bench.run_bench",
    ]
    assert _tool_imports(path, "import orchestrator.tools.chaos\nfrom . import views\n") == [
        "orchestrator.tools.chaos"
    ]
