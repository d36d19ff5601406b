"""Make what a cluster config names and is missing: the Raft password, a private CA, each
replica's certificate (SANs: its gRPC host, 127.0.0.1, localhost) and a token per role.

    python deploy/make_secrets.py deploy/kubernetes/cluster.json

For a trial or a cluster of your own; in production the certificates come from the
organisation's CA (docs/security.md). Existing files are kept; prints what a Kubernetes Secret
needs (never the CA's private key, never a token).
"""

from __future__ import annotations

import os
import secrets
import sys

from orchestrator.cli import ensure_password_file
from orchestrator.config import load
from orchestrator.tools.access import prepare

RAFT_PASSWORD_KEY = "raft-password"


def main(config_path: str) -> list[str]:
    """Returns the files a replica reads (the Secret's keys, by their file names)."""
    ensure_password_file(config_path)
    cfg = load(config_path, require_password=False)
    prepare(cfg)
    files = []
    if cfg.tls is not None:
        files += [cfg.tls.ca] if cfg.tls.ca else []
        for r in cfg.replicas:
            files += [cfg.tls.cert_for(r.node_id), cfg.tls.key_for(r.node_id)]
    if cfg.auth.tokens_file:
        files.append(cfg.auth.tokens_file)
        if not cfg.password:
            # No password in the config: the replicas take it from ORCHESTRATOR_RAFT_PASSWORD,
            # which a Secret's key of this name feeds (deploy/kubernetes/orchestrator.yaml).
            pw = os.path.join(os.path.dirname(cfg.auth.tokens_file), RAFT_PASSWORD_KEY)
            if not os.path.exists(pw):
                fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_urlsafe(32))
            files.append(pw)
    return files


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} <cluster config JSON>")
    made = main(sys.argv[1])
    print("kubectl create secret generic orchestrator-secrets \\")
    print(" \\\n".join(f"  --from-file={os.path.relpath(p)}" for p in made))
