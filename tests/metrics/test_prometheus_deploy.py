"""deploy/prometheus/: every alert expression names metrics (and labels) a real replica exposes,
and the scrape config points where deploy/ serves them (promtool is not installed: the YAML is
read with yq, as tests/deploy does)."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import grpc
import pytest
from orchestrator_client.v1 import workflows_pb2 as wpb
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.config import load
from orchestrator.server import ReplicaServer
from tests.cluster_support import api_stubs

# k8s: tests/deploy's fixture (the kustomize rendering), shared rather than rendered again.
from tests.deploy.test_deploy import DEPLOY, _by_kind, _yaml_docs, k8s  # noqa: F401
from tests.metrics.conftest import exposition

PROMETHEUS = DEPLOY / "prometheus"
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")
# A metric name and, when present, its label matchers: orchestrator_x{a="b", c=~"d"}.
SELECTOR = re.compile(r"\b(orchestrator_[a-z_]+)(\{[^}]*\})?")
MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)")
REQUIRED = {
    "OrchestratorNoLeader",
    "OrchestratorTermRising",
    "OrchestratorApplyLag",
    "OrchestratorCommitLatencyHigh",
    "OrchestratorRpcErrors",
}


def _exposed(text: str) -> dict[str, set[str]]:
    """Every series name the exposition can hold -> the label names it carries."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES:
            out.setdefault(family.name + suffix, set())
        for s in family.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


def _rules() -> list[dict[str, Any]]:
    (doc,) = _yaml_docs((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def unknown_names(expr: str, exposed: dict[str, set[str]]) -> list[str]:
    """What `expr` names that the exposition lacks: metrics, and labels in their matchers."""
    missing = []
    for name, matchers in SELECTOR.findall(expr):
        if name not in exposed:
            missing.append(name)
            continue
        for label in MATCHER.findall(matchers or ""):
            if label not in exposed[name]:
                missing.append(f"{name}{{{label}}}")
    return missing


def test_alert_rules_name_exposed_metrics(replica: tuple[ReplicaServer, int]) -> None:
    srv, port = replica
    # A call first, so the labelled RPC series exist.
    with grpc.insecure_channel(srv.grpc_addr) as ch, contextlib.suppress(grpc.RpcError):
        api_stubs(ch).wfs.GetWorkflow(wpb.GetWorkflowRequest(workflow_id="none"))
    exposed = _exposed(exposition(port))
    rules = _rules()
    assert {r["alert"] for r in rules} >= REQUIRED
    for rule in rules:
        expr = rule["expr"]
        assert SELECTOR.search(expr), rule["alert"]
        assert unknown_names(expr, exposed) == [], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
    # The check itself catches a misspelt metric or label.
    assert unknown_names("rate(orchestrator_rpc_handeld_total[5m])", exposed) != []
    assert unknown_names('orchestrator_raft_role{rolee="leader"}', exposed) != []


def test_scrape_config_targets_where_deploy_serves_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (doc,) = _yaml_docs((PROMETHEUS / "prometheus.yml").read_text())
    assert doc["rule_files"] == ["alerts.yml"]
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    monkeypatch.setenv("ORCHESTRATOR_RAFT_PASSWORD", "test")
    compose = load(str(DEPLOY / "compose" / "cluster.json"))
    (static,) = jobs["orchestrator-compose"]["static_configs"]
    assert static["targets"] == [
        f"{r.grpc.rpartition(':')[0]}:{compose.metrics_port_of(r.node_id)}"
        for r in compose.replicas
    ]
    local = load(str(DEPLOY / "local" / "cluster.json"), require_password=False)
    (static,) = jobs["orchestrator-local"]["static_configs"]
    ports = [local.metrics_port_of(r.node_id) for r in local.replicas]
    assert static["targets"] == [f"127.0.0.1:{p}" for p in ports] and len(set(ports)) == 3
    assert jobs["orchestrator"]["kubernetes_sd_configs"] == [{"role": "pod"}]


def test_kubernetes_pods_announce_their_metrics_port(
    k8s: dict[str, dict[str, Any]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (sts,) = _by_kind(k8s, "StatefulSet")
    template = sts["spec"]["template"]
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    monkeypatch.setenv("ORCHESTRATOR_RAFT_PASSWORD", "test")
    cfg = load(str(DEPLOY / "kubernetes" / "cluster.json"))
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"] == cfg.metrics_port > 0
    assert annotations["prometheus.io/path"] == "/metrics"
