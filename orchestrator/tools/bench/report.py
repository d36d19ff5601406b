"""The report: what a run measured, as the JSON fields and as the printed table."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .measure import Measured
from .stats import RpcRecorder, code_name, latency_summary_ms


def not_completed_status(monitor: Any, timed_out: list[str]) -> dict[str, int]:
    """Workflows whose completion was never seen: what the cluster says became of them."""
    unfinished: Counter[str] = Counter()
    for wid in timed_out[:200]:
        try:
            unfinished[monitor.get_workflow(wid, include_tasks=False).status] += 1
        except Exception as exc:
            unfinished[f"get failed: {code_name(exc)}"] += 1
    return dict(unfinished)


def _client_numbers(
    rec: RpcRecorder, finals: dict[int, dict[str, Any]], outcome: dict[str, Any]
) -> tuple[dict[str, list[float]], Counter[str], dict[str, Any]]:
    """Per-RPC latencies and errors of the bench and its workers, and the workers' totals."""
    rpc: dict[str, list[float]] = {k: list(v) for k, v in rec.latencies.items()}
    errors: Counter[str] = Counter(rec.errors)
    wstats: Counter[str] = Counter()
    worker_cpu = 0.0
    worker_rss: list[float] = []
    for fin in finals.values():
        for k, v in fin["latencies"].items():
            rpc.setdefault(k, []).extend(v)
        errors.update(fin["errors"])
        wstats.update(fin["stats"])
        worker_cpu += fin["cpu_s"]
        worker_rss.append(fin["peak_rss_mib"])
    for code, c in outcome["start_errors"].items():
        errors[f"StartWorkflow(gave up):{code}"] += c
    if outcome["timed_out"]:
        errors["workflow not completed in time"] += len(outcome["timed_out"])
    for k in ("lost", "report_errors", "poll_errors", "failed"):
        if wstats.get(k):
            errors[f"worker:{k}"] += wstats[k]
    workers = {
        "worker_processes_cpu_s": round(worker_cpu, 2),
        "worker_peak_rss_mib": worker_rss,
        "worker_stats": dict(wstats),
    }
    return rpc, errors, workers


def _replica_numbers(m: Measured, pids: dict[str, int | None]) -> dict[str, Any]:
    """Each local replica's CPU during the run, its peak RSS and its role at the end."""
    replicas: dict[str, Any] = {}
    for nid, after in m.cpu_after.items():
        before = m.cpu_before.get(nid)
        if after is None:
            replicas[nid] = {"error": "process gone"}
            continue
        replicas[nid] = {
            "pid": pids[nid],
            "cpu_s": round(after["cpu_s"] - (before["cpu_s"] if before else 0.0), 2),
            "snapshot_children_cpu_s": round(
                after["children_cpu_s"] - (before["children_cpu_s"] if before else 0.0), 2
            ),
            "peak_rss_mib": after["peak_rss_mib"],
            "role_at_end": "LEADER" if nid == m.leaders.after[0] else "FOLLOWER",
        }
    return replicas


def _commands(m: Measured, completed: int) -> dict[str, Any]:
    """Commands applied during the run, by the leader's applied sequence number."""
    duration = m.duration_s
    seq_delta = {
        nid: m.applied_after[nid] - m.applied_before[nid]
        for nid in m.applied_after
        if nid in m.applied_before
    }
    leader_seq = seq_delta.get(m.leaders.after[0]) or (max(seq_delta.values()) if seq_delta else 0)
    return {
        "applied_delta": seq_delta,
        "per_s": round(leader_seq / duration, 1) if duration > 0 else None,
        "per_workflow": round(leader_seq / completed, 2) if completed else None,
    }


def summarise(
    m: Measured,
    rec: RpcRecorder,
    finals: dict[int, dict[str, Any]],
    tasks_per_wf: int,
    pids: dict[str, int | None],
    unfinished: dict[str, int],
) -> dict[str, Any]:
    """The report's measured fields."""
    outcome, duration, leaders = m.outcome, m.duration_s, m.leaders
    completed = len(outcome["latencies"])
    tasks = completed * tasks_per_wf
    rpc, errors, workers = _client_numbers(rec, finals, outcome)
    return {
        "duration_s": round(duration, 3),
        "workflows_completed": completed,
        "workflows_not_completed": len(outcome["timed_out"]),
        "not_completed_status": unfinished,
        "workflows_per_s": round(completed / duration, 1) if duration > 0 else None,
        "tasks_per_s": round(tasks / duration, 1) if duration > 0 else None,
        "end_to_end_ms": latency_summary_ms(outcome["latencies"]),
        "rpc_ms": {
            k: {
                kk: vv
                for kk, vv in latency_summary_ms(v).items()
                if kk in ("count", "p50", "p99", "max")
            }
            for k, v in sorted(rpc.items())
        },
        "commands": _commands(m, completed),
        "leader": {
            "before": leaders.before[0],
            "after": leaders.after[0],
            "term_before": leaders.before[1],
            "term_after": leaders.after[1],
            "changes": leaders.changes,
            "seen": [list(x) for x in leaders.seen],
        },
        "errors": dict(sorted(errors.items())),
        "error_count": sum(errors.values()),
        "replicas": _replica_numbers(m, pids),
        "client": {"bench_process_cpu_s": round(m.bench_cpu_s, 2), **workers},
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if v >= 100 else f"{v:.2f}"
    return str(v)


def format_table(r: dict[str, Any]) -> str:
    cfg = r["config"]
    what = f"{cfg['duration_s']:g} s of" if cfg.get("duration_s") else f"{cfg['workflows']}"
    lines = [
        f"orchestrator bench: {what} workflows {cfg['shape']}, "
        f"concurrency {cfg['concurrency']}, payload {cfg['payload_bytes']} B, "
        f"{cfg['worker_processes']} worker processes x {cfg['worker_concurrency']}, "
        f"fsync {cfg['fsync']}, route {cfg.get('route', '-')}",
    ]
    if "error" in r:
        lines.append(f"ERROR: {r['error']}")
        return "\n".join(lines)
    e2e = r["end_to_end_ms"]
    rows = [
        ("duration s", r["duration_s"]),
        ("workflows completed", f"{r['workflows_completed']} ({r['workflows_not_completed']} not)"),
        ("workflows/s", r["workflows_per_s"]),
        ("tasks/s", r["tasks_per_s"]),
        (
            "end-to-end ms p50/p90/p99/max",
            " / ".join(_fmt(e2e[k]) for k in ("p50", "p90", "p99", "max")),
        ),
        ("commands/s (applied seq)", r["commands"]["per_s"]),
        ("commands per workflow", r["commands"]["per_workflow"]),
        (
            "leader changes",
            f"{r['leader']['changes']} (term {r['leader']['term_before']} -> "
            f"{r['leader']['term_after']}, leader {r['leader']['before']} -> {r['leader']['after']})",
        ),
        ("errors", r["error_count"]),
    ]
    w = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{w}}  {_fmt(v)}" for k, v in rows]
    for k, v in r["errors"].items():
        lines.append(f"    {k}: {v}")
    lines.append("  per-RPC client latency ms (count, p50, p99, max):")
    ow = max([24, *(len(op) for op in r["rpc_ms"])])
    for op, s in r["rpc_ms"].items():
        lines.append(
            f"    {op:<{ow}} {s['count']:>8}  {_fmt(s['p50']):>8}  {_fmt(s['p99']):>8}  "
            f"{_fmt(s['max']):>8}"
        )
    if r["replicas"]:
        lines.append("  replicas (CPU s during the run, peak RSS MiB):")
        for nid, s in r["replicas"].items():
            if "error" in s:
                lines.append(f"    {nid}: {s['error']}")
                continue
            lines.append(
                f"    {nid} pid {s['pid']:<7} {s['role_at_end']:<8} cpu {s['cpu_s']:>7.2f} s "
                f"(snapshot children {s['snapshot_children_cpu_s']:.2f})  "
                f"peak RSS {s['peak_rss_mib']:.1f}"
            )
    c = r["client"]
    lines.append(
        f"  bench process cpu {c['bench_process_cpu_s']:.2f} s, "
        f"worker processes cpu {c['worker_processes_cpu_s']:.2f} s"
    )
    if "baseline" in r:
        b = r["baseline"]
        if "error" in b:
            lines.append(f"  baseline: ERROR {b['error']}")
        else:
            bl = b["commit_latency_ms"]
            lines.append(
                f"  baseline (Noops of {b.get('command_bytes', '?')} B through Replica.propose, "
                f"window {b['window']}): "
                f"{_fmt(b['commands_per_s'])} commands/s, commit p50/p99 "
                f"{_fmt(bl['p50'])} / {_fmt(bl['p99'])} ms, errors {sum(b['errors'].values())}"
            )
            lines.append(
                f"  workload commands/s / baseline commands/s = {_fmt(r.get('commands_ratio'))}"
            )
    for note in r.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)
