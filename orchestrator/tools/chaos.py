"""`orchestrator chaos`: mix faults at random under load, then check what held.

Brings up a local three-replica cluster (in network namespaces when run as root with iproute2 and
iptables, so partitions and packet loss join the mix), runs a steady load of workflow starts and
Python workers with every client operation recorded, and for N minutes injects one fault at a
time chosen by a seeded random generator: leader or follower kill -9, whole-cluster kill -9,
SIGSTOP of the leader or a follower past the election timeout, SIGTERM of the leader, and with
namespaces a partition isolating the leader, an asymmetric partition and packet loss. After each
fault heals it measures how long until a client call succeeds again. At the end the load stops
and the history is checked: no acknowledged start or task result lost, every workflow terminal,
at most one accepted completion per task attempt, replicas agreeing on their rolling hash;
and, over every workflow's records, that no task or workflow limit was exceeded and no saga step
was compensated twice (the limits mix, limits_mix.py: its workflows are part of the load).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import tempfile
import time
from collections import Counter
from typing import Any

from orchestrator_client import WorkerStats

from .limits_mix import Mix
from .localcluster import LocalCluster, write_config
from .netns import NetNS, namespaces_available
from .verify import Load, check_history, check_replicas_agree, definitions, wait_for

CHAOS_RAFT = {"log_compaction_min_entries": 500, "log_compaction_min_time_s": 60.0}


FAULTS = [
    "kill_leader",
    "kill_follower",
    "kill_all",
    "pause_leader",
    "pause_follower",
    "sigterm_leader",
]
# Faults that need the replicas in network namespaces.
NETWORK_FAULTS = ["partition_leader", "asymmetric", "packet_loss"]


def _leader(cluster: LocalCluster) -> str:
    return str(wait_for(cluster.leader, 60, "a leader"))


def run(
    minutes: float, seed: int, use_netns: bool | None = None, workdir: str | None = None
) -> dict[str, Any]:
    rng = random.Random(seed)
    base = workdir or tempfile.mkdtemp(prefix="orchestrator-chaos-")
    reason = namespaces_available()
    netns = (not reason) if use_netns is None else (use_netns and not reason)
    net = NetNS() if netns else None
    faults = FAULTS + (NETWORK_FAULTS if net is not None else [])
    counts: Counter[str] = Counter()
    recoveries: list[float] = []
    load: Load | None = None
    if net is not None:
        net.up()
    cluster = _cluster(base, net)
    try:
        cluster.start_all()
        cluster.wait_healthy(timeout_s=60)
        mix = Mix()
        load = Load(cluster.access(), mix=mix)
        tds, wf = definitions()
        load.client.register_task_defs(tds)
        load.client.register_workflow_def(wf)
        mix.register(load.client)
        load.begin()
        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            fault = rng.choice(faults)
            hold_s = rng.uniform(1.0, 5.0)
            counts[fault] += 1
            print(f"[{time.strftime('%H:%M:%S')}] {fault} for {hold_s:.1f}s", flush=True)
            _inject(fault, hold_s, cluster, net, rng)
            recoveries.append(_recovery_s(load, cluster))
            time.sleep(rng.uniform(0.5, 2.0))
        load.end()
        checks = _check(load, base)
        return _result(seed, minutes, net is not None, counts, checks, load, recoveries)
    finally:
        if load is not None:
            load.close()
        cluster.kill_all()
        if net is not None:
            net.down()


def _cluster(base: str, net: NetNS | None) -> LocalCluster:
    """Three replicas on loopback, or one in each of `net`'s namespaces."""
    if net is None:
        return LocalCluster(write_config(os.path.join(base, "cluster.json"), raft=CHAOS_RAFT))
    cfg = write_config(
        os.path.join(base, "cluster.json"),
        grpc_ports=[50051] * 3,
        raft_ports=[7000] * 3,
        raft=CHAOS_RAFT,
        hosts=net.hosts,
    )
    return LocalCluster(cfg, wrap={f"n{i + 1}": net.wrap(i) for i in range(3)})


def _inject(
    fault: str, hold_s: float, cluster: LocalCluster, net: NetNS | None, rng: random.Random
) -> None:
    """Cause `fault`, hold it for `hold_s`, then heal it."""
    ids = list(cluster.replicas)
    leader = _leader(cluster)
    follower = rng.choice([n for n in ids if n != leader])
    if fault == "kill_leader":
        cluster.kill(leader)
        time.sleep(hold_s)
        cluster.start(leader)
    elif fault == "kill_follower":
        cluster.kill(follower)
        time.sleep(hold_s)
        cluster.start(follower)
    elif fault == "kill_all":
        cluster.kill_all()
        time.sleep(hold_s)
        cluster.start_all()
    elif fault in ("pause_leader", "pause_follower"):
        victim = leader if fault == "pause_leader" else follower
        cluster.signal(victim, signal.SIGSTOP)
        time.sleep(hold_s)
        cluster.signal(victim, signal.SIGCONT)
    elif fault == "sigterm_leader":
        cluster.stop(leader)
        time.sleep(hold_s)
        cluster.start(leader)
    elif net is not None and fault == "partition_leader":
        net.isolate(ids.index(leader))
        time.sleep(hold_s)
        net.heal()
    elif net is not None and fault == "asymmetric":
        net.drop_incoming(ids.index(follower), ids.index(leader))
        time.sleep(hold_s)
        net.heal()
    elif net is not None and fault == "packet_loss":
        net.lossy(0.1)
        time.sleep(hold_s)
        net.heal()


def _recovery_s(load: Load, cluster: LocalCluster) -> float:
    """Seconds from the healed fault to a successful call; then wait until all serve."""
    t0 = time.monotonic()
    wait_for(
        lambda: bool(load.probe({"n": "probe"}, retry_budget_s=0.5, timeout_s=1.0)),
        120,
        "a successful call after the fault",
    )
    recovery_s = time.monotonic() - t0
    cluster.wait_healthy(timeout_s=120)
    return recovery_s


def _check(load: Load, base: str) -> dict[str, Any]:
    """The history check, the replicas' agreement and the limit audits; the history is kept if
    any fails (a limit violation is in the result, named, rather than raised)."""
    try:
        history = check_history(
            load.client, load.starts, load.results, load.names, load.polled, load=load
        )
        seq = check_replicas_agree(load.client)
        load.settled()
    except AssertionError:
        _keep_history(base, load)
        raise
    assert load.mix is not None
    limits = load.mix.audit(load.final.values())
    if limits["violations"]:
        _keep_history(base, load)
    return {"history": history, "replicas_agree_at_sequence": seq, "limits": limits}


def _keep_history(base: str, load: Load) -> None:
    path = _write_history(base, load)
    print(f"chaos: the recorded history is in {path}", flush=True)


def _result(
    seed: int,
    minutes: float,
    network_namespaces: bool,
    counts: Counter[str],
    checks: dict[str, Any],
    load: Load,
    recoveries: list[float],
) -> dict[str, Any]:
    ordered = sorted(recoveries)
    mix_errors = load.mix.errors if load.mix is not None else []
    return {
        "seed": seed,
        "minutes": minutes,
        "network_namespaces": network_namespaces,
        "faults": dict(counts),
        "checks": {
            "acknowledged_starts_present_and_terminal": True,
            "acknowledged_results_present": True,
            "at_most_one_completion_per_attempt": True,
            "replicas_agree_at_sequence": checks["replicas_agree_at_sequence"],
            "limits_held": not checks["limits"]["violations"],
        },
        "history": checks["history"],
        "limits": checks["limits"],
        "operations": {
            e: load.starts.count(e) + load.results.count(e)
            for e in ("invoke", "ok", "fail", "unknown")
        },
        # The load's workers' counters, summed (e.g. how many tasks came in a completion's
        # answer rather than from a long poll).
        "workers": {
            f.name: sum(getattr(w.stats, f.name) for w in load.workers)
            for f in dataclasses.fields(WorkerStats)
        },
        "start_errors_sample": [repr(e)[:300] for e in (load.errors + mix_errors)[:5]],
        "recovery_s": {
            "p50": round(ordered[len(ordered) // 2], 3) if ordered else None,
            "max": round(ordered[-1], 3) if ordered else None,
        },
    }


def _write_history(base: str, load: Load) -> str:
    """Every recorded operation as JSON lines, for a post-mortem of a failed check."""
    path = os.path.join(base, "history.jsonl")
    with open(path, "w") as f:
        for kind, hist in (("start", load.starts), ("worker", load.results)):
            for t, event, op, rid, detail in list(hist.events):
                row = [kind, round(t, 3), event, op, rid, str(detail)[:2000]]
                f.write(json.dumps(row) + "\n")
        f.write(json.dumps(["auditor_not_found", load.not_found]) + "\n")
    return path


def cmd_chaos(ns: argparse.Namespace) -> int:
    try:
        result = run(
            ns.minutes, ns.seed, use_netns=False if ns.no_netns else None, workdir=ns.workdir
        )
    except AssertionError as exc:
        print(f"\nchaos: a check FAILED: {exc}")
        return 1
    violations = result["limits"]["violations"]
    if violations:
        print(f"\nchaos: a check FAILED: limits exceeded: {violations}")
    else:
        print("\nchaos: every check held")
    print(json.dumps(result, indent=2))
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(result, f, indent=2)
    return 1 if violations else 0


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "chaos",
        help="mix faults at random under load and check what held",
        description=(__doc__ or "").split("\n\n")[1],
    )
    s.add_argument("--minutes", type=float, default=5.0)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument(
        "--no-netns", action="store_true", help="loopback only (no partitions or packet loss)"
    )
    s.add_argument("--workdir", help="keep the cluster's data and logs here")
    s.add_argument("--json", help="write the result to this file")
    s.set_defaults(fn=cmd_chaos)
