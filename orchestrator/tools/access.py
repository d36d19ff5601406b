"""How the tools reach a cluster (addresses, the CA to trust, a token), and the credentials a
local cluster is given: a CA and a certificate per replica (security/certs.py), and tokens.

A local cluster's tokens: the server reads `tokens.json` (SHA-256 digests only, with names and
roles); each token itself is in `tokens/<name>.token` beside it (mode 0600), one per role
(admin, operator, worker, reader; the name is the role's) plus any added by `add_token`.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

import grpc
from orchestrator_client import OrchestratorClient, read_token_file, tls_credentials
from orchestrator_client._credentials import channel_credentials

from orchestrator.config import ClusterConfig
from orchestrator.security.certs import LOCAL_HOSTS, ensure_local_tls
from orchestrator.security.permissions import ROLES
from orchestrator.security.tokens import digest

TLS_SETTINGS = {
    "cert": "tls/{node}.pem",
    "key": "tls/{node}-key.pem",
    "ca": "tls/ca.pem",
}
AUTH_SETTINGS = {"tokens_file": "tokens.json"}


@dataclass(frozen=True)
class Access:
    """Addresses and the credentials to use them with; no CA file means plaintext."""

    addresses: list[str]
    ca_file: str = ""
    token_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    # The token itself, when not in token_file; kept out of repr so it is never printed.
    token_value: str = field(default="", repr=False)

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.ca_file:
            return None
        return tls_credentials(self.ca_file, self.cert_file or None, self.key_file or None)

    def bearer(self) -> str | None:
        if self.token_value:
            return self.token_value
        return read_token_file(self.token_file) if self.token_file else None

    def client(self, addresses: list[str] | None = None, **kw: Any) -> OrchestratorClient:
        """A client of these addresses (or of `addresses`, e.g. in another order) with these
        credentials; `kw` as OrchestratorClient's."""
        creds = self.credentials()
        token = self.bearer() if creds is not None else None
        return OrchestratorClient(addresses or self.addresses, credentials=creds, token=token, **kw)

    def channel(self, address: str, options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
        """A raw channel to `address` whose calls carry the token (for stubs)."""
        creds = self.credentials()
        if creds is None:
            return grpc.insecure_channel(address, options=options)
        token = self.bearer()
        if token:
            creds = channel_credentials(creds, token)
        return grpc.secure_channel(address, creds, options=options)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The token as call metadata (for channels made elsewhere); () without one."""
        token = self.bearer() if self.credentials() is not None else None
        return (("authorization", f"Bearer {token}"),) if token else ()


def token_path(cfg: ClusterConfig, name: str) -> str:
    return os.path.join(os.path.dirname(cfg.auth.tokens_file), "tokens", f"{name}.token")


def _write_private(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    # Atomic: a replica that reloads the file meanwhile reads the old or the new one whole.
    os.replace(tmp, path)


def add_token(cfg: ClusterConfig, name: str, role: str) -> str:
    """A new token for `name` with `role` in the local cluster's tokens file (the replicas read
    it again on their next call); returns the token's file."""
    path = cfg.auth.tokens_file
    doc: dict[str, Any] = {"tokens": []}
    if os.path.exists(path):
        with open(path) as f:
            doc = json.load(f)
    token = secrets.token_urlsafe(32)
    out = token_path(cfg, name)
    _write_private(out, token + "\n")
    doc["tokens"].append({"sha256": digest(token).hex(), "name": name, "role": role})
    _write_private(path, json.dumps(doc, indent=2) + "\n")
    return out


def prepare(cfg: ClusterConfig) -> None:
    """Makes what a local cluster's config names and is missing: the CA and the replicas'
    certificates (SANs: each replica's gRPC host, 127.0.0.1 and localhost), and a token per
    role."""
    if cfg.tls is not None and cfg.tls.ca:
        hosts = {r.node_id: (r.grpc.rpartition(":")[0], *LOCAL_HOSTS) for r in cfg.replicas}
        ensure_local_tls(
            cfg.tls.ca,
            [(nid, cfg.tls.cert_for(nid), cfg.tls.key_for(nid), h) for nid, h in hosts.items()],
        )
    if cfg.auth.tokens_file and not os.path.exists(cfg.auth.tokens_file):
        for role in ROLES:
            add_token(cfg, role, role)


def local_access(cfg: ClusterConfig, name: str = "admin") -> Access:
    """Access to a local cluster as `name` (a role's name, or one given to add_token)."""
    addresses = [r.grpc for r in cfg.replicas]
    if cfg.tls is None:
        return Access(addresses)
    return Access(addresses, cfg.tls.ca, token_path(cfg, name) if cfg.auth.tokens_file else "")
