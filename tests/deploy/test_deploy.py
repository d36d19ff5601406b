"""deploy/: each artefact rendered or validated offline, checked for what a replica needs (its
peers' stable names and ports, the probes, the volumes, the secrets the config names); the
compose file is also started where a container runtime answers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from orchestrator.config import ClusterConfig, load

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {name})")
    return path


def _yaml_docs(text: str) -> list[dict[str, Any]]:
    """YAML to JSON documents with yq (Debian's `yq`, a jq wrapper): the venv has no YAML
    parser and the project adds none for tests."""
    out = subprocess.run(
        [_tool("yq"), "-c", "."], input=text, capture_output=True, text=True, check=True
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip() not in ("", "null")]


def _config(path: Path, monkeypatch: pytest.MonkeyPatch) -> ClusterConfig:
    monkeypatch.setenv("ORCHESTRATOR_RAFT_PASSWORD", "test")
    return load(str(path))


class Mounted:
    """A config loaded from where a container sees it (`at`), its paths as the container's."""

    def __init__(self, src: Path, at: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = tmp / "fs"
        dest = self.root / at.lstrip("/")
        dest.parent.mkdir(parents=True)
        shutil.copy(src, dest)
        self.cfg = _config(dest, monkeypatch)

    def path(self, p: str) -> str:
        return "/" + os.path.relpath(p, self.root) if p.startswith(str(self.root)) else p


def _port(addr: str) -> int:
    return int(addr.rpartition(":")[2])


# --- Kubernetes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    rendered = subprocess.run(
        [_tool("kubectl"), "kustomize", str(DEPLOY / "kubernetes")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    by = {}
    for doc in _yaml_docs(rendered):
        key = f"{doc['kind']}/{doc['metadata']['name']}"
        assert key not in by
        by[key] = doc
    return by


def _by_kind(k8s: dict[str, dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in k8s.values() if d["kind"] == kind]


def test_kubernetes_statefulset_matches_the_cluster_config(
    k8s: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (sts,) = _by_kind(k8s, "StatefulSet")
    name, spec = sts["metadata"]["name"], sts["spec"]
    headless = k8s[f"Service/{spec['serviceName']}"]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert headless["selector"].items() <= labels.items()
    assert spec["podManagementPolicy"] == "Parallel"

    (configmap,) = _by_kind(k8s, "ConfigMap")
    (container,) = spec["template"]["spec"]["containers"]
    command = " ".join(container["command"] + container["args"])
    config_path = re.search(r"--config (\S+)", command)
    assert config_path is not None
    mounted = Mounted(
        DEPLOY / "kubernetes" / "cluster.json", config_path.group(1), tmp_path, monkeypatch
    )
    cfg = mounted.cfg
    assert json.loads(configmap["data"]["cluster.json"]) == json.loads(
        (DEPLOY / "kubernetes" / "cluster.json").read_text()
    )
    # Replica i is pod <sts>-i, known by its stable name in the headless service.
    assert spec["replicas"] == len(cfg.replicas)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for i, r in enumerate(cfg.replicas):
        pod = f"{name}-{i}"
        assert r.node_id == pod
        assert r.grpc == f"{pod}.{spec['serviceName']}:{ports['grpc']}"
        assert r.raft == f"{pod}.{spec['serviceName']}:{ports['raft']}"
    assert {p["port"] for p in headless["ports"]} == {ports["grpc"], ports["raft"]}
    assert cfg.bind_host == "0.0.0.0" and cfg.health_port == ports["health"]
    assert cfg.ui_port == ports["ui"] and cfg.metrics_port == ports["metrics"]

    # The node id is the pod's name; the config is where --config points.
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert '--node "$POD_NAME"' in command and "$ORCHESTRATOR_SERVE_FLAGS" in command
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == configmap["metadata"]["name"]
    assert config_path.group(1) == f"{mounts['config']}/cluster.json"

    # Journal and snapshots on the pod's own claim, where data_root is.
    (claim,) = spec["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == cfg.data_root
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]

    # TLS material and tokens from the Secret, at the paths the config names.
    secret = volumes["secrets"]["secret"]["secretName"]
    assert cfg.tls is not None
    for path in (cfg.tls.ca, cfg.tls.cert_for("x"), cfg.tls.key_for("x"), cfg.auth.tokens_file):
        assert os.path.dirname(mounted.path(path)) == mounts["secrets"], path
    password = env["ORCHESTRATOR_RAFT_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": secret, "key": "raft-password"}


def test_kubernetes_probes_use_grpc_health(k8s: dict[str, dict[str, Any]]) -> None:
    (sts,) = _by_kind(k8s, "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    health = next(p["containerPort"] for p in container["ports"] if p["name"] == "health")
    assert container["readinessProbe"]["grpc"] == {"port": health}
    assert container["startupProbe"]["grpc"] == {"port": health}
    # Liveness must not restart a replica for having no leader (a partition): it asks only
    # that the process answers.
    assert container["livenessProbe"]["tcpSocket"]["port"] in (health, "health")


def test_kubernetes_disruption_budget_keeps_a_quorum(k8s: dict[str, dict[str, Any]]) -> None:
    (sts,) = _by_kind(k8s, "StatefulSet")
    (pdb,) = _by_kind(k8s, "PodDisruptionBudget")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    replicas = sts["spec"]["replicas"]
    assert replicas - pdb["spec"]["maxUnavailable"] >= replicas // 2 + 1


def test_make_secrets_makes_what_the_kubernetes_pods_read(tmp_path: Path) -> None:
    """deploy/make_secrets.py on the StatefulSet's config: the Secret's files, and certificates
    naming each pod's stable DNS name (its peers verify it by that name)."""
    conf = tmp_path / "config" / "cluster.json"
    conf.parent.mkdir()
    shutil.copy(DEPLOY / "kubernetes" / "cluster.json", conf)
    out = subprocess.run(
        [sys.executable, str(DEPLOY / "make_secrets.py"), str(conf)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    made = sorted(p.name for p in (tmp_path / "secrets").iterdir() if p.is_file())
    listed = sorted(Path(p).name for p in re.findall(r"--from-file=(\S+)", out))
    assert "ca-key.pem" not in listed and "tokens" not in listed
    assert listed == sorted(set(made) - {"ca-key.pem"})
    assert "raft-password" in listed and "tokens.json" in listed
    cfg = load(str(conf), require_password=False)
    for r in cfg.replicas:
        assert f"{r.node_id}.pem" in listed and f"{r.node_id}-key.pem" in listed
        cert = x509.load_pem_x509_certificate(
            (tmp_path / "secrets" / f"{r.node_id}.pem").read_bytes()
        )
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert r.grpc.rpartition(":")[0] in names.get_values_for_type(x509.DNSName)


# --- docker compose ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (doc,) = _yaml_docs((DEPLOY / "compose" / "compose.yaml").read_text())
    return doc


def test_compose_runs_the_configs_three_replicas(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mounted = Mounted(
        DEPLOY / "compose" / "cluster.json", "/etc/orchestrator/cluster.json", tmp_path, monkeypatch
    )
    cfg = mounted.cfg
    services = compose["services"]
    replicas = {s: v for s, v in services.items() if "serve" in " ".join(v.get("entrypoint", []))}
    assert sorted(replicas) == sorted(r.node_id for r in cfg.replicas) and len(replicas) == 3
    published = set()
    for r in cfg.replicas:
        svc = replicas[r.node_id]
        # Peers by service name; the node id in the command is this service's.
        assert r.grpc.rpartition(":")[0] == r.node_id == svc["hostname"]
        assert f"--node {r.node_id} " in svc["entrypoint"][-1]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert mounts["/etc/orchestrator/cluster.json"] == "./cluster.json"
        assert "--config /etc/orchestrator/cluster.json" in svc["entrypoint"][-1]
        assert (
            mounts[cfg.data_root] == f"{r.node_id}-data"
            and f"{r.node_id}-data" in compose["volumes"]
        )
        assert mounts["/etc/orchestrator/secrets"] == "secrets"
        assert svc["depends_on"]["secrets"]["condition"] == "service_completed_successfully"
        # The gRPC port, and the web UI's (HTTPS with the same certificate).
        ports = dict(reversed(p.split(":")) for p in svc["ports"])
        assert set(ports) == {str(_port(r.grpc)), str(cfg.ui_port)}
        published.update(ports.values())
    assert len(published) == 6
    assert cfg.bind_host == "0.0.0.0" and cfg.health_port
    # The secrets service writes where the replicas' config looks.
    assert cfg.tls is not None
    for path in (cfg.tls.ca, cfg.tls.cert_for("n1"), cfg.auth.tokens_file):
        assert mounted.path(path).startswith("/etc/orchestrator/secrets/"), path
    assert services["secrets"]["entrypoint"][-1] == "/etc/orchestrator/cluster.json"
    # Whatever builds the image copies what exists.
    for svc in services.values():
        build = svc["build"]
        assert (DEPLOY / "compose" / build["context"] / build["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        )


def test_dockerfile_copies_what_exists_and_exposes_the_configured_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), path
    exposed = {int(p) for p in re.search(r"^EXPOSE (.+)$", text, re.M).group(1).split()}  # type: ignore[union-attr]
    cfg = _config(DEPLOY / "compose" / "cluster.json", monkeypatch)
    assert exposed == {
        _port(cfg.replicas[0].grpc),
        _port(cfg.replicas[0].raft),
        cfg.health_port,
        cfg.metrics_port,
        cfg.ui_port,
    }
    assert f"127.0.0.1:{cfg.health_port}" in text  # the HEALTHCHECK asks the health port
    assert re.search(r"^ENTRYPOINT \[\"orchestrator\"\]$", text, re.M)
    assert "FROM python:3.11" in text  # requires-python >= 3.11


def _container_runtime() -> str | None:
    """Why compose cannot run here, or None when it can."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command"
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        return f"no container runtime answers (`docker info`: {info.stderr.strip()[:200]})"
    plugin = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if plugin.returncode != 0:
        return "the docker compose plugin is missing"
    return None


def test_compose_cluster_starts_and_serves() -> None:
    """Where a container runtime is available: build, start, wait until all three replicas
    report healthy (a leader and caught up), then ask a replica for the cluster's status."""
    why = _container_runtime()
    if why is not None:
        # The issue asks for a start "where a container runtime is available"; CI's machine has
        # none (and no registry to pull python:3.11 from), so this skips there too, saying why.
        pytest.skip(f"compose not started: {why}")
    cmd = ["docker", "compose", "-f", str(DEPLOY / "compose" / "compose.yaml"), "-p", "orchtest"]
    try:
        subprocess.run([*cmd, "up", "-d", "--build"], check=True, timeout=1200)
        deadline = time.monotonic() + 180
        while True:
            ps = subprocess.run(
                [*cmd, "ps", "--format", "json"], capture_output=True, text=True, check=True
            ).stdout
            rows = [json.loads(line) for line in ps.splitlines() if line.strip()]
            healthy = {r["Service"] for r in rows if r.get("Health") == "healthy"}
            if healthy >= {"n1", "n2", "n3"}:
                break
            assert time.monotonic() < deadline, f"not healthy in time: {rows}"
            time.sleep(2)
        status = subprocess.run(
            [
                *cmd, "exec", "-T", "n1", "orchestrator",
                "--addresses", "n1:50051,n2:50051,n3:50051",
                "--ca", "/etc/orchestrator/secrets/tls/ca.pem",
                "--token-file", "/etc/orchestrator/secrets/tokens/admin.token",
                "status",
            ],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert "LEADER" in status.stdout.upper()
    finally:
        subprocess.run([*cmd, "down", "-v"], timeout=300)


# --- systemd ----------------------------------------------------------------------------------


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    tool = _tool("systemd-analyze")
    unit = (DEPLOY / "systemd" / "orchestrator@.service").read_text()
    assert "/opt/orchestrator/bin/orchestrator serve --config" in unit
    # The instance is the node id; the binary must exist for verify, so the venv's stands in.
    rendered = tmp_path / "orchestrator@n1.service"
    rendered.write_text(
        unit.replace("/opt/orchestrator/bin/orchestrator", str(VENV_BIN / "orchestrator"))
    )
    res = subprocess.run([tool, "verify", str(rendered)], capture_output=True, text=True)
    complaints = [line for line in res.stderr.splitlines() if rendered.name in line]
    assert res.returncode == 0 and not complaints, res.stderr
    assert "--node %i" in unit and "StateDirectory=orchestrator" in unit
    # The exit codes `serve` uses for what a restart cannot fix.
    assert "RestartPreventExitStatus=2 3 4" in unit


def test_systemd_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a unit with a misspelt key is reported."""
    tool = _tool("systemd-analyze")
    unit = (DEPLOY / "systemd" / "orchestrator@.service").read_text()
    broken = tmp_path / "orchestrator@n1.service"
    broken.write_text(
        unit.replace("/opt/orchestrator/bin/orchestrator", str(VENV_BIN / "orchestrator")).replace(
            "TimeoutStopSec", "TimeoutStopSecs"
        )
    )
    res = subprocess.run([tool, "verify", str(broken)], capture_output=True, text=True)
    assert any(broken.name in line and "Unknown key" in line for line in res.stderr.splitlines())
