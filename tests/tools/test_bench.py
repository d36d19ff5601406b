"""The benchmark runs and reports (timings are reported, never asserted)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.tools import bench

ROOT = Path(__file__).resolve().parents[2]


def test_percentile_and_summary() -> None:
    assert bench.percentile([], 50) is None
    values = [i / 1000.0 for i in range(1, 101)]  # 1..100 ms
    assert bench.percentile(values, 50) == pytest.approx(0.050)
    assert bench.percentile(values, 99) == pytest.approx(0.099)
    s = bench.latency_summary_ms(values)
    assert s["count"] == 100
    assert s["p50"] <= s["p90"] <= s["p99"] <= s["max"] == pytest.approx(100.0)


def test_parser_and_shapes() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    bench.add_parser(sub)
    ns = p.parse_args(
        [
            "bench",
            "--workflows",
            "7",
            "--shape",
            "fork:4",
            "--raft-setting",
            "auto_tick_period_s=0.01",
        ]
    )
    assert ns.workflows == 7 and ns.shape == ("fork", 4)
    assert ns.raft_setting == {"auto_tick_period_s": 0.01}
    with pytest.raises(SystemExit):
        p.parse_args(["bench", "--shape", "loop:3"])
    seq = bench.workflow_def("seq", 3)
    assert [t["taskReferenceName"] for t in seq["tasks"]] == ["t0", "t1", "t2"]
    fork = bench.workflow_def("fork", 2)
    assert fork["tasks"][0]["type"] == "FORK_JOIN" and len(fork["tasks"][0]["forkTasks"]) == 2


@pytest.mark.cluster
def test_tiny_bench_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.tools.bench",
            "--workflows",
            "10",
            "--warmup",
            "2",
            "--concurrency",
            "2",
            "--worker-processes",
            "1",
            "--worker-concurrency",
            "4",
            "--payload-bytes",
            "64",
            "--baseline-seconds",
            "1",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "workflows/s" in proc.stdout and "end-to-end ms" in proc.stdout
    r = json.loads(out.read_text())
    for key in (
        "config",
        "duration_s",
        "workflows_per_s",
        "tasks_per_s",
        "end_to_end_ms",
        "rpc_ms",
        "commands",
        "leader",
        "errors",
        "replicas",
        "baseline",
        "commands_ratio",
    ):
        assert key in r, key
    assert r["workflows_completed"] == 10 and r["workflows_not_completed"] == 0
    assert r["error_count"] == 0, r["errors"]
    assert r["workflows_per_s"] > 0 and r["tasks_per_s"] == pytest.approx(
        3 * r["workflows_per_s"], rel=0.01
    )
    e2e = r["end_to_end_ms"]
    assert e2e["count"] == 10
    assert 0 < e2e["p50"] <= e2e["p90"] <= e2e["p99"] <= e2e["max"]
    for op in ("StartWorkflow", "CompleteTask", "PollTasks(with tasks)"):
        assert r["rpc_ms"][op]["count"] > 0 and r["rpc_ms"][op]["p50"] > 0, op
    assert r["rpc_ms"]["StartWorkflow"]["count"] == 10
    assert r["rpc_ms"]["CompleteTask"]["count"] == 30
    # Start + 3 completes at least; polls and ticks add more.
    assert r["commands"]["per_workflow"] >= 4
    assert set(r["replicas"]) == {"n1", "n2", "n3"}
    for s in r["replicas"].values():
        assert s["cpu_s"] >= 0 and s["peak_rss_mib"] > 0
    assert r["leader"]["after"] in {"n1", "n2", "n3"}
    assert r["baseline"].get("commands_per_s", 0) > 0, r["baseline"]
    # The baseline's Noops are as large as the workload's commands (64-byte payloads here).
    from orchestrator.tools.bench import workload_command_bytes

    size = workload_command_bytes("seq", 3, "x" * 64, r["commands"]["per_workflow"])
    assert r["baseline"]["command_bytes"] == size > 200
    assert r["commands_ratio"] > 0
    assert "fsync" in r["config"]


def test_the_baseline_noop_matches_a_size_and_applies_as_a_noop() -> None:
    from orchestrator.core.machine import apply_batch
    from orchestrator.core.state import State
    from orchestrator.tools.bench import padded_noop, workload_command_bytes

    small = workload_command_bytes("seq", 3, "", 4.0)
    large = workload_command_bytes("seq", 3, "x" * 512, 4.0)
    assert large - small == 512  # each command carries the payload once
    for size in (0, small, large):
        noop = padded_noop(size)
        assert len(noop.log_json()) == max(size, len(padded_noop(0).log_json()))
        st = State()
        (outcome,), _ = apply_batch(st, 1, [json.loads(noop.log_json())])
        assert outcome.ok and st.seq == 1 and not st.workflows
