"""The benchmark runs and reports (timings are reported, never asserted)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.tools import bench
from orchestrator.tools.verify import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _run_tiny_bench(out: Path, *args: str, timeout_s: float = 180) -> Any:
    """`python -m orchestrator.tools.bench` with ten small workflows, one worker process and
    `args`, writing its JSON report to `out`."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.tools.bench",
            "--workflows",
            "10",
            "--warmup",
            "2",
            "--worker-processes",
            "1",
            "--worker-concurrency",
            "4",
            "--payload-bytes",
            "64",
            *args,
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


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


def test_limit_flags_set_the_bench_task_definition() -> None:
    p = argparse.ArgumentParser()
    bench.add_parser(p.add_subparsers(dest="command"))
    ns = p.parse_args(["bench", "--task-limit", "64", "--rate-limit", "500/2"])
    assert ns.task_limit == 64 and ns.rate_limit == (500, 2)
    assert p.parse_args(["bench", "--rate-limit", "7"]).rate_limit == (7, 1)
    for bad in ("0/1", "5/0", "x/1", "5/"):
        with pytest.raises(SystemExit):
            p.parse_args(["bench", "--rate-limit", bad])
    limited = bench.task_def(64, (500, 2))
    assert limited["concurrentExecLimit"] == 64
    assert (limited["rateLimitPerFrequency"], limited["rateLimitFrequencyInSeconds"]) == (500, 2)
    unlimited = bench.task_def()
    assert unlimited == bench.TASK_DEF and "concurrentExecLimit" not in unlimited


@pytest.mark.cluster
def test_tiny_bench_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = _run_tiny_bench(out, "--concurrency", "2", "--baseline-seconds", "1")
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


def test_capacity_flags_and_windows() -> None:
    from orchestrator.tools.bench.capacity import park_def, windows

    p = argparse.ArgumentParser()
    bench.add_parser(p.add_subparsers(dest="command"))
    ns = p.parse_args(["bench", "--park", "100", "--park-kind", "wait", "--duration", "60"])
    assert (ns.park, ns.park_kind, ns.duration, ns.window_s) == (100, "wait", 60.0, 5.0)
    assert not ns.recovery and p.parse_args(["bench", "--recovery"]).recovery
    assert park_def("human")["tasks"][0]["type"] == "HUMAN"
    assert park_def("wait")["tasks"][0]["inputParameters"] == {"duration": "9 days"}
    # Completions at 0.5 s, 1.2 s, 1.4 s and 3.9 s after the start, in 1-second windows: the
    # empty window (2 s) is reported as such, not skipped.
    t0 = 100.0
    ends = [(t0 + 0.5, 0.010), (t0 + 1.2, 0.020), (t0 + 1.4, 0.030), (t0 + 3.9, 0.040)]
    w = windows(ends, t0, 1.0, 3)
    assert [x["from_s"] for x in w] == [0.0, 1.0, 2.0, 3.0]
    assert [x["workflows"] for x in w] == [1, 2, 0, 1]
    assert w[1]["tasks_per_s"] == 6.0 and w[1]["p99_ms"] == 30.0 and w[2]["p99_ms"] is None
    assert windows([], t0, 1.0, 3) == []
    # With a 3-second run, the last window holds the workflows still in flight at the end.
    assert [x["drain"] for x in windows(ends, t0, 1.0, 3, 3.0)] == [False, False, False, True]


def test_tick_stats_records_gaps_and_snapshots(tmp_path: Path, monkeypatch: Any) -> None:
    from orchestrator.replication import tick_stats

    clock = {"mono": 1000.0, "wall": 5000.0}

    class FakeTime:
        @staticmethod
        def monotonic() -> float:
            return clock["mono"]

        @staticmethod
        def time() -> float:
            return clock["wall"]

    monkeypatch.setattr(tick_stats, "time", FakeTime)

    def advance(s: float) -> None:
        clock["mono"] += s
        clock["wall"] += s

    ts = tick_stats.TickStats(str(tmp_path))
    for _ in range(10):
        ts.tick()
        advance(0.02)  # ordinary ticks: nothing notable
    ts.fork_started()
    advance(0.3)  # the fork of a large heap, on the tick thread
    ts.fork_returned()
    ts.tick()
    advance(0.02)
    ts.tick()
    ts.snapshot_ended(2)
    advance(2.0)
    ts.tick()  # a 2-second stall after the snapshot
    ts.loaded(0.5, 2048)
    st = tick_stats.read(str(tmp_path))
    assert st is not None and st["ticks"] == 13
    assert st["max_gap_ms"] == pytest.approx(2000.0)
    (snap,) = st["snapshots"]
    assert snap["ok"] and snap["fork_ms"] == pytest.approx(300.0)
    assert snap["max_gap_ms"] == pytest.approx(320.0) and snap["duration_ms"] == pytest.approx(
        320.0
    )
    assert st["loads"][0]["ms"] == pytest.approx(500.0) and st["loads"][0]["bytes"] == 2048
    # Only seconds with a notable gap are kept; the window lookup sees the one asked for.
    assert [w for w, _ in st["windows"]] == [5000.0, 5002.0]
    assert tick_stats.max_gap_between(st, 4000.0, 4500.0) == 0.0
    assert tick_stats.max_gap_between(st, 5000.4, 5000.6) == pytest.approx(320.0)
    assert tick_stats.max_gap_between(st, 5000.0, 5003.0) == pytest.approx(2000.0)


@pytest.mark.cluster
def test_tiny_capacity_run_parks_windows_snapshots_and_recovers(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = _run_tiny_bench(
        out,
        "--concurrency",
        "1",
        "--no-baseline",
        "--park",
        "20",
        "--duration",
        "3",
        "--window-s",
        "1",
        "--recovery",
        "--snapshot-timeout",
        "60",
        "--raft-setting",
        "log_compaction_min_entries=20",
        "--raft-setting",
        "log_compaction_min_time_s=5",
        timeout_s=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["park"]["workflows"] == 20 and r["park"]["errors"] == {}
    for phase in (r["empty"], r):
        assert phase["error_count"] == 0 and phase["workflows_completed"] > 0
        assert phase["leader"]["term_after"] >= phase["leader"]["term_before"] >= 1
    # The duration mode ran for its seconds and the windows hold every completed workflow.
    assert 3.0 <= r["duration_s"] < 60
    assert sum(w["workflows"] for w in r["windows"]) == r["workflows_completed"]
    assert len(r["windows"]) >= 3
    # Every replica snapshotted the parked state, and the tick thread's record says how.
    assert r["snapshot_wait"]["all_covered"], r["snapshot_wait"]
    assert set(r["ticks"]) == {"n1", "n2", "n3"}
    for t in r["ticks"].values():
        assert t is not None and t["max_gap_ms_since"] >= 0
    assert any(t["snapshots"] for t in r["ticks"].values())
    for s in (s for t in r["ticks"].values() for s in t["snapshots"]):
        assert s["ok"] and s["fork_ms"] > 0 and s["duration_ms"] >= s["fork_ms"]
    # A follower restarted after kill -9, and a fourth replica added, each served again.
    rec = r["recovery"]
    assert rec["restarted"]["replica"] in {"n2", "n3"} and rec["added"]["replica"] == "n4"
    for k in ("restarted", "added"):
        assert rec[k]["both_s"] is not None and rec[k]["applied_seq"] >= rec[k]["target_seq"]
    assert rec["restarted"]["snapshot_loads"], rec["restarted"]


def test_history_search_bench_fills_and_pages(tmp_path: Path) -> None:
    import random

    from orchestrator.tools.bench.history_search import synthetic

    out = tmp_path / "history.json"
    rc = bench.main(
        [
            "--history-rows",
            "300",
            "--history-dir",
            str(tmp_path / "h"),
            "--search-pages",
            "3",
            "--search-page-size",
            "50",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["rows_before"] == 0 and r["file_mib"] > 0
    r14 = random.Random(14)
    rows = [synthetic(i, r14, 300).workflow for i in range(300)]
    by = r["with_total"]["by_query"]
    assert by["newest first, no filter"]["total"] == 300
    assert by["newest first, no filter"]["rows"] == 150  # 3 pages of 50
    assert by["status FAILED"]["total"] == sum(w.status == "FAILED" for w in rows) > 0
    assert by["correlation id"]["total"] == sum(w.correlation_id == "customer-42" for w in rows)
    assert r["with_total"]["all_pages"]["p99"] > 0
    assert all(s["total"] == -1 for s in r["without_total"]["by_query"].values())
    # A second run reuses the filled store.
    assert (
        bench.main(
            [
                "--history-rows",
                "300",
                "--history-dir",
                str(tmp_path / "h"),
                "--search-pages",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["rows_before"] == 300


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (from /proc's children lists)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def _alive(pid: int) -> bool:
    """Running and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "(gone)"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_bench_leaves_no_worker_or_replica_running(tmp_path: Path, how: str) -> None:
    """Killing `orchestrator bench` (SIGTERM: its cleanup stops everything; SIGKILL: the workers
    notice their parent is gone, the replicas their lifeline) leaves nothing running."""
    import os
    import signal

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator.tools.bench",
            "--workflows",
            "1000000",
            "--warmup",
            "0",
            "--worker-processes",
            "2",
            "--worker-concurrency",
            "2",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its data folder goes under tmp_path: a SIGKILLed bench cannot remove it itself.
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    seen: list[int] = []
    try:

        def workers_up() -> bool:
            seen[:] = _descendants(proc.pid)
            cmdlines = [_cmdline(p) for p in seen]
            spawned = sum("spawn_main" in c for c in cmdlines)
            replicas = sum(" serve " in c for c in cmdlines)
            return spawned >= 2 and replicas >= 3

        wait_for(workers_up, 120, "the bench's 3 replicas and 2 worker processes")
        proc.send_signal(getattr(signal, how))
        proc.wait(timeout=60)
        wait_for(
            lambda: not any(_alive(p) for p in seen),
            60,
            lambda: (
                f"the bench's children to end: { ({p: _cmdline(p) for p in seen if _alive(p)}) }"
            ),
        )
        survivors = {p: _cmdline(p) for p in seen if _alive(p)}
        assert not survivors
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in seen:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
