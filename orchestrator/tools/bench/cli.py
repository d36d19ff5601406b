"""The `bench` command's flags, and its entry point (`python -m orchestrator.tools.bench`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from .capacity import PARK_KINDS, format_capacity
from .report import format_table
from .run import run_bench
from .workload import parse_rate, parse_shape


def _raft_kv(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE (VALUE as JSON, e.g. 0.01)")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


class _RaftAction(argparse.Action):
    def __call__(self, parser: Any, ns: Any, values: Any, option_string: Any = None) -> None:
        current = dict(getattr(ns, self.dest, None) or {})
        key, value = values
        current[key] = value
        setattr(ns, self.dest, current)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workflows", type=int, default=1000, help="workflows to run (measured)")
    p.add_argument(
        "--warmup", type=int, default=None, help="unmeasured workflows first (default 10%%, <=50)"
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="workflows in flight: closed-loop starter threads, each waiting for its workflow",
    )
    p.add_argument(
        "--shape", type=parse_shape, default=("seq", 3), help="seq:N (default seq:3) or fork:N"
    )
    p.add_argument("--payload-bytes", type=int, default=512, help="payload size of each task")
    p.add_argument(
        "--task-limit",
        type=int,
        default=0,
        help="concurrentExecLimit of the bench task type (default 0: none)",
    )
    p.add_argument(
        "--rate-limit",
        type=parse_rate,
        default=None,
        metavar="N/F",
        help="rateLimitPerFrequency N per rateLimitFrequencyInSeconds F of the bench task type",
    )
    p.add_argument("--worker-processes", type=int, default=2)
    p.add_argument("--worker-concurrency", type=int, default=32, help="handler threads each")
    p.add_argument("--poll-timeout-ms", type=int, default=1000, help="workers' long-poll wait")
    p.add_argument("--fsync", choices=["on", "off"], default="on")
    p.add_argument(
        "--raft-setting",
        type=_raft_kv,
        action=_RaftAction,
        metavar="KEY=VALUE",
        help="a RaftSettings override for the local cluster and the baseline (repeatable)",
    )
    p.add_argument(
        "--addresses",
        dest="target_addresses",
        default=None,
        help="benchmark this cluster instead of starting a local one",
    )
    p.add_argument(
        "--route",
        choices=["leader", "first"],
        default="leader",
        help="clients try the leader first (default), or the addresses in order (a follower "
        "then forwards every call)",
    )
    p.add_argument("--json", dest="json_path", help="write the JSON report here")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--baseline-seconds", type=float, default=5.0)
    p.add_argument(
        "--baseline-window", type=int, default=0, help="Noops in flight (default: --concurrency)"
    )
    p.add_argument(
        "--workflow-timeout", type=float, default=60.0, help="give up on a workflow after this"
    )
    p.add_argument("--log-level", default="INFO", help="log level of the local replicas")
    _add_capacity_arguments(p)
    p.add_argument("--keep-dir", action="store_true", help="keep the local cluster's folder")
    p.set_defaults(fn=cmd_bench)


def _add_capacity_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("capacity (bench/capacity.py)")
    g.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="run the measured phase for this many seconds instead of --workflows",
    )
    g.add_argument("--window-s", type=float, default=5.0, help="report windows of --duration")
    g.add_argument(
        "--park",
        type=int,
        default=0,
        help="measure on the empty cluster, then start this many workflows that park on a "
        "HUMAN/WAIT task, and measure again",
    )
    g.add_argument("--park-kind", choices=PARK_KINDS, default="human")
    g.add_argument("--park-concurrency", type=int, default=64, help="threads starting them")
    g.add_argument(
        "--snapshot-timeout",
        type=float,
        default=420.0,
        help="with --park on a local cluster: wait this long for every replica to snapshot "
        "the parked state (0: do not wait)",
    )
    g.add_argument(
        "--recovery",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="with a local cluster: time a follower restarted after kill -9 and a new replica "
        "added, until each serves with everything applied",
    )
    g.add_argument("--recovery-timeout", type=float, default=180.0)
    h = p.add_argument_group("history search (bench/history_search.py; no cluster)")
    h.add_argument(
        "--history-rows",
        type=int,
        default=0,
        help="fill a history store with this many archived workflows and measure search pages "
        "instead of running workflows",
    )
    h.add_argument("--history-dir", default="", help="keep (and reuse) the store in this folder")
    h.add_argument("--search-pages", type=int, default=20, help="pages per query shape")
    h.add_argument("--search-page-size", type=int, default=100)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `bench` command to the CLI's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="measure throughput and latency (starts a local cluster unless --addresses)",
        description="Run workflows against a cluster and report throughput, end-to-end and "
        "per-RPC latency, replica CPU and memory, leader changes, errors, and a baseline of "
        "empty commands through the same replication adapter.",
    )
    _add_arguments(p)
    return p


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM ends the bench as Ctrl-C does: through run_bench's cleanup, which stops its
    worker processes and the replicas it started (the default action would skip it)."""

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_bench(ns: argparse.Namespace) -> int:
    if ns.workflows < 1 or ns.concurrency < 1 or ns.worker_processes < 1:
        print("bench: --workflows, --concurrency and --worker-processes must be >= 1")
        return 2
    if ns.park < 0 or ns.duration < 0 or ns.task_limit < 0:
        print("bench: --park, --duration and --task-limit must be >= 0")
        return 2
    if ns.history_rows > 0:
        return _history_bench(ns)
    if ns.warmup is None:
        ns.warmup = min(50, ns.workflows // 10)
    if not getattr(ns, "target_addresses", None):
        # `orchestrator --addresses X bench` (or ORCHESTRATOR_ADDRESSES) also names a cluster.
        from orchestrator.cli import DEFAULT_ADDRESSES

        top = getattr(ns, "addresses", None)
        if top and top != DEFAULT_ADDRESSES:
            ns.target_addresses = top
    with _sigterm_as_exit():
        report = run_bench(ns)
    print(format_table(report))
    print(format_capacity(report))
    if ns.json_path:
        with open(ns.json_path, "w") as f:
            json.dump(report, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
    if "error" in report:
        print(f"bench: {report['error']}", file=sys.stderr)
        return 3
    if report.get("workflows_not_completed") or report.get("error_count"):
        return 1
    if report.get("park", {}).get("errors") or report.get("empty", {}).get("error_count"):
        return 1
    return 0


def _history_bench(ns: argparse.Namespace) -> int:
    from .history_search import format_history, run_history_bench

    report = run_history_bench(ns)
    print(format_history(report))
    if ns.json_path:
        with open(ns.json_path, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="orchestrator bench")
    _add_arguments(p)
    ns = p.parse_args(argv)
    return int(ns.fn(ns))
