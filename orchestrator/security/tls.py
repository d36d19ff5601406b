"""TLS credentials of a replica: its server side, and its side of the channels to its peers."""

from __future__ import annotations

import grpc

from ..config import ConfigError, TlsSettings


def read_pem(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"tls.{what}: cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"tls.{what}: {path} holds no PEM data")
    return data


def server_credentials(tls: TlsSettings, node_id: str) -> grpc.ServerCredentials:
    """This replica's certificate; with a CA, client certificates are required (mutual TLS)
    when `require_client_cert` says so, and verified against that CA."""
    key = read_pem(tls.key_for(node_id), "key")
    cert = read_pem(tls.cert_for(node_id), "cert")
    ca = read_pem(tls.ca, "ca") if tls.ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=tls.require_client_cert
    )


def peer_credentials(tls: TlsSettings, node_id: str) -> grpc.ChannelCredentials:
    """How this replica connects to another (forwarding, status): it trusts the configured CA
    (the system's roots without one) and presents its own certificate, which a peer requiring
    client certificates verifies."""
    ca = read_pem(tls.ca, "ca") if tls.ca else None
    return grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=read_pem(tls.key_for(node_id), "key"),
        certificate_chain=read_pem(tls.cert_for(node_id), "cert"),
    )
