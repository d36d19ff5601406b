"""Cluster configuration: every replica's id, gRPC address and Raft address, and Raft tuning.

A JSON file (see deploy/local/cluster.json):
{
  "password_file": "path" | "password": "...",   (or env ORCHESTRATOR_RAFT_PASSWORD)
  "data_root": "path",                           (each replica uses <data_root>/<id>)
  "replicas": [{"id": "n1", "grpc": "host:port", "raft": "host:port"}, ...],
  "raft": {"election_min_s": 0.6, ...},          (optional RaftSettings overrides)
  "health": {"max_apply_lag_entries": 1000}      (optional HealthSettings overrides)
}
Relative paths are relative to the config file. Replicas may run on separate hosts: each one
needs only the same file (peers are configuration).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    pass


@dataclass
class ReplicaConfig:
    node_id: str
    grpc: str
    raft: str


@dataclass(frozen=True)
class HealthSettings:
    """When a replica with a leader still reports NOT_SERVING."""

    # Committed entries not yet applied beyond which a replica is catching up: a read there
    # would wait long for the caller's last seen sequence number.
    max_apply_lag_entries: int = 1000


@dataclass
class ClusterConfig:
    replicas: list[ReplicaConfig]
    data_root: str
    password: str
    raft: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    health: HealthSettings = field(default_factory=HealthSettings)

    def replica(self, node_id: str) -> ReplicaConfig:
        for r in self.replicas:
            if r.node_id == node_id:
                return r
        raise ConfigError(
            f"node {node_id!r} is not in the configuration ({', '.join(r.node_id for r in self.replicas)})"
        )

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
    return ClusterConfig(replicas, data_root, password, raft, os.path.abspath(path), health)


def _health(raw: Any, path: str) -> HealthSettings:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: 'health' must be an object")
    known = {f.name for f in fields(HealthSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: health: unknown settings {unknown}")
    for name, value in raw.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{path}: health.{name}: expected a positive integer")
    return HealthSettings(**raw)


def write(path: str, cfg: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
