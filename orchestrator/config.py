"""Cluster configuration: every replica's id, gRPC address and Raft address, and Raft tuning.

A JSON file (see deploy/local/cluster.json):
{
  "password_file": "path" | "password": "...",   (or env ORCHESTRATOR_RAFT_PASSWORD)
  "data_root": "path",                           (each replica uses <data_root>/<id>)
  "replicas": [{"id": "n1", "grpc": "host:port", "raft": "host:port"}, ...],
  "raft": {"election_min_s": 0.6, ...},          (optional RaftSettings overrides)
  "health": {"max_apply_lag_entries": 1000},     (optional HealthSettings overrides)
  "admission": {"max_in_flight": 96, ...},       (optional AdmissionSettings overrides)
  "tls": {"cert": "tls/{node}.pem", "key": "tls/{node}-key.pem",   (gRPC TLS; {node} is the
          "ca": "tls/ca.pem", "require_client_cert": false},         replica's id)
  "auth": {"tokens_file": "tokens.json"},       (or env ORCHESTRATOR_TOKENS_FILE / _TOKENS)
  "http_allow": ["10.1.0.0/16", "svc.internal"]  (non-public hosts/networks HTTP tasks may call)
  "http_ca_file": "internal-ca.pem"  (CAs HTTPS tasks trust besides the system's)
  "bridges": [{"name": "nats", "kind": "nats", ...}]  (brokers: orchestrator/bridge/settings.py)
  "bind_host": "0.0.0.0", "health_port": 50061    (in containers: deploy/README.md)
  "metrics_port": 9100, "ui_port": 8080   (also per replica: replicas[i].metrics_port/ui_port)
}
Without "tls" and tokens a replica serves only with --insecure (docs/security.md).
Relative paths are relative to the config file. Replicas may run on separate hosts: each one
needs only the same file (peers are configuration).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import ssl
from dataclasses import dataclass, field, fields
from typing import Any

from .bridge.settings import BridgeSettings, parse_bridges


class ConfigError(ValueError):
    pass


@dataclass
class ReplicaConfig:
    node_id: str
    grpc: str
    raft: str
    # This replica's metrics port when it differs from the cluster's (replicas sharing a host).
    metrics_port: int = 0
    # This replica's web UI port when it differs from the cluster's (as metrics_port).
    ui_port: int = 0


@dataclass(frozen=True)
class HealthSettings:
    """When a replica with a leader still reports NOT_SERVING."""

    # Committed entries not yet applied beyond which a replica is catching up: a read there
    # would wait long for the caller's last seen sequence number.
    max_apply_lag_entries: int = 1000


@dataclass(frozen=True)
class AdmissionSettings:
    """How many calls one replica serves at once (api/admission.py); beyond, RESOURCE_EXHAUSTED."""

    # Calls of every kind but the status ones, long polls included.
    max_in_flight: int = 96
    # PollTasks calls that wait (timeout_ms > 0), here or forwarded from a follower.
    max_long_polls: int = 64
    # Health checks and ClusterService status reads: their own capacity, answered under any load.
    max_status_calls: int = 16
    # Open server streams (SubscribeEvents, WatchWorkflows): each holds a thread for its life,
    # so they have their own capacity and threads, never the unary calls'.
    max_streams: int = 32
    # The retry-after hint sent with a rejection.
    retry_after_ms: int = 200


@dataclass(frozen=True)
class TlsSettings:
    """The gRPC port's TLS material (paths absolute once loaded; {node} is the replica id)."""

    cert: str
    key: str
    # Verifies client certificates, and the peers' when replicas call each other.
    ca: str = ""
    # Mutual TLS: a client without a certificate the CA signed is refused at the handshake.
    require_client_cert: bool = False

    def cert_for(self, node_id: str) -> str:
        return self.cert.replace("{node}", node_id)

    def key_for(self, node_id: str) -> str:
        return self.key.replace("{node}", node_id)


@dataclass(frozen=True)
class AuthSettings:
    # Tokens and certificate subjects -> principals (security/tokens.py); "" for none.
    tokens_file: str = ""


@dataclass
class ClusterConfig:
    replicas: list[ReplicaConfig]
    data_root: str
    password: str
    raft: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    health: HealthSettings = field(default_factory=HealthSettings)
    tls: TlsSettings | None = None
    auth: AuthSettings = field(default_factory=AuthSettings)
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    # Hosts and CIDR networks an HTTP task may reach although not public (runtime/http.py).
    http_allow: tuple[str, ...] = ()
    # Brokers the leader bridges to the event log (orchestrator/bridge/).
    bridges: tuple[BridgeSettings, ...] = ()
    # PEM file of CAs that HTTP tasks trust besides the system's (a private CA); "" for none.
    http_ca_file: str = ""
    # Where a replica listens when its advertised host is not an address it can bind (a pod's
    # or container's DNS name): gRPC and Raft bind <bind_host>:<their configured port>.
    bind_host: str = ""
    # A plaintext port serving only grpc.health.v1 (0: none), for probes that speak neither
    # TLS nor tokens (Kubernetes' gRPC probes); it tells serving or not, nothing else.
    health_port: int = 0
    # The Prometheus metrics endpoint's port (0: none), plaintext HTTP on the gRPC host (or
    # bind_host): it discloses counts and timings, never a workflow's data.
    metrics_port: int = 0
    # The web UI's port (0: none), on the gRPC host (or bind_host); HTTPS with the replica's
    # gRPC certificate when `tls` is set (orchestrator/web/, docs/operations.md "Web UI").
    ui_port: int = 0

    def replica(self, node_id: str) -> ReplicaConfig:
        for r in self.replicas:
            if r.node_id == node_id:
                return r
        raise ConfigError(
            f"node {node_id!r} is not in the configuration ({', '.join(r.node_id for r in self.replicas)})"
        )

    def metrics_port_of(self, node_id: str) -> int:
        """Where `node_id` serves its metrics: its own port, else the cluster's (0: off)."""
        return self.replica(node_id).metrics_port or self.metrics_port

    def ui_port_of(self, node_id: str) -> int:
        """Where `node_id` serves its web UI: its own port, else the cluster's (0: off)."""
        return self.replica(node_id).ui_port or self.ui_port

    def data_dir(self, node_id: str) -> str:
        return os.path.join(self.data_root, node_id)


def _addr(value: Any, where: str) -> str:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{where}: expected 'host:port', got {value!r}")
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{where}: expected 'host:port', got {value!r}")
    return value


def load(path: str, *, require_password: bool = True) -> ClusterConfig:
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: malformed JSON: {exc}") from None
    base = os.path.dirname(os.path.abspath(path))
    reps = raw.get("replicas")
    if not isinstance(reps, list) or not reps:
        raise ConfigError(f"{path}: 'replicas' must be a non-empty list")
    replicas = []
    seen: set[str] = set()
    for i, r in enumerate(reps):
        nid = r.get("id") if isinstance(r, dict) else None
        if not isinstance(nid, str) or not nid or nid in seen:
            raise ConfigError(f"{path}: replicas[{i}].id must be a unique non-empty string")
        seen.add(nid)
        replicas.append(
            ReplicaConfig(
                nid,
                _addr(r.get("grpc"), f"replicas[{i}].grpc"),
                _addr(r.get("raft"), f"replicas[{i}].raft"),
                _port(r.get("metrics_port", 0), path, f"replicas[{i}].metrics_port"),
                _port(r.get("ui_port", 0), path, f"replicas[{i}].ui_port"),
            )
        )
    data_root = os.path.join(base, raw.get("data_root", "data"))
    password = os.environ.get("ORCHESTRATOR_RAFT_PASSWORD", "") or raw.get("password", "")
    if not password and raw.get("password_file"):
        pf = os.path.join(base, raw["password_file"])
        try:
            with open(pf) as f:
                password = f.read().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read password_file {pf}: {exc}") from None
    if require_password and not password:
        raise ConfigError(
            "a Raft password is mandatory (the Raft port unpickles what it receives): set "
            "ORCHESTRATOR_RAFT_PASSWORD, 'password' or 'password_file'"
        )
    raft = raw.get("raft") or {}
    if not isinstance(raft, dict):
        raise ConfigError(f"{path}: 'raft' must be an object")
    health = _health(raw.get("health") or {}, path)
    return ClusterConfig(
        replicas,
        data_root,
        password,
        raft,
        os.path.abspath(path),
        health,
        _tls(raw.get("tls"), path, base),
        _auth(raw.get("auth"), path, base),
        _admission(raw.get("admission") or {}, path),
        _http_allow(raw.get("http_allow") or [], path),
        _bridges(raw.get("bridges") or [], path),
        http_ca_file=_http_ca_file(raw.get("http_ca_file") or "", path, base),
        bind_host=_bind_host(raw.get("bind_host", ""), path),
        health_port=_port(raw.get("health_port", 0), path, "health_port"),
        metrics_port=_port(raw.get("metrics_port", 0), path, "metrics_port"),
        ui_port=_port(raw.get("ui_port", 0), path, "ui_port"),
    )


def _bind_host(raw: Any, path: str) -> str:
    if not isinstance(raw, str) or ":" in raw:
        raise ConfigError(f"{path}: bind_host: expected a host or IPv4 address (e.g. 0.0.0.0)")
    return raw


def _port(raw: Any, path: str, what: str) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= 65535:
        raise ConfigError(f"{path}: {what}: expected a port number (0 for none)")
    return raw


def _http_ca_file(raw: Any, path: str, base: str) -> str:
    """The file's absolute path, once it is known to hold at least one CA certificate."""
    if not isinstance(raw, str):
        raise ConfigError(f"{path}: 'http_ca_file' must be the path of a PEM file")
    if not raw:
        return ""
    ca_file = os.path.join(base, raw)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=ca_file)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{path}: http_ca_file {ca_file}: no CA certificate in it ({exc})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: http_ca_file: cannot read {ca_file}: {exc}") from None
    return ca_file


def _bridges(raw: Any, path: str) -> tuple[BridgeSettings, ...]:
    try:
        return parse_bridges(raw)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _http_allow(raw: Any, path: str) -> tuple[str, ...]:
    host = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-]{0,252})$")
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: 'http_allow' must be a list of hosts or CIDR networks")
    for i, e in enumerate(raw):
        if not isinstance(e, str):
            raise ConfigError(f"{path}: http_allow[{i}]: must be a string, got {e!r}")
        try:
            ipaddress.ip_network(e, strict=False)
        except ValueError:
            if not host.match(e):
                raise ConfigError(
                    f"{path}: http_allow[{i}]: {e!r} is neither a host name nor a network"
                ) from None
    return tuple(raw)


def _known_keys(raw: Any, path: str, what: str, known: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: '{what}' must be an object")
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: {what}: unknown settings {unknown} (known: {sorted(known)})")
    return raw


def _path(raw: dict[str, Any], key: str, path: str, what: str, base: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{path}: {what}.{key}: expected a file path")
    return os.path.join(base, value) if value else ""


def _tls(raw: Any, path: str, base: str) -> TlsSettings | None:
    if raw is None:
        return None
    raw = _known_keys(raw, path, "tls", {f.name for f in fields(TlsSettings)})
    cert, key = _path(raw, "cert", path, "tls", base), _path(raw, "key", path, "tls", base)
    if not cert or not key:
        raise ConfigError(f"{path}: tls: 'cert' and 'key' are required (PEM file paths)")
    require = raw.get("require_client_cert", False)
    if not isinstance(require, bool):
        raise ConfigError(f"{path}: tls.require_client_cert: expected true or false")
    ca = _path(raw, "ca", path, "tls", base)
    if require and not ca:
        raise ConfigError(
            f"{path}: tls.require_client_cert needs tls.ca (the CA client certificates are "
            "verified against)"
        )
    return TlsSettings(cert, key, ca, require)


def _auth(raw: Any, path: str, base: str) -> AuthSettings:
    if raw is None:
        return AuthSettings()
    raw = _known_keys(raw, path, "auth", {f.name for f in fields(AuthSettings)})
    return AuthSettings(_path(raw, "tokens_file", path, "auth", base))


def _health(raw: Any, path: str) -> HealthSettings:
    return HealthSettings(**_positive_ints(raw, path, "health", HealthSettings))


def _admission(raw: Any, path: str) -> AdmissionSettings:
    settings = AdmissionSettings(**_positive_ints(raw, path, "admission", AdmissionSettings))
    if settings.max_long_polls > settings.max_in_flight:
        raise ConfigError(f"{path}: admission.max_long_polls: at most max_in_flight")
    return settings


def _positive_ints(raw: Any, path: str, what: str, cls: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: '{what}' must be an object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: {what}: unknown settings {unknown}")
    for name, value in raw.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{path}: {what}.{name}: expected a positive integer")
    return raw


def write(path: str, cfg: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
