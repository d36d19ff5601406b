"""TLS material and tokens for the client, from files.

``OrchestratorClient(addresses, credentials=tls_credentials("ca.pem"), token=token)`` is the
usual form; :func:`channel_credentials` builds the same for a raw gRPC stub.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc

__all__ = ["channel_credentials", "read_token_file", "tls_credentials", "with_token"]


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc.strerror}") from None


def tls_credentials(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> grpc.ChannelCredentials:
    """TLS credentials that trust ``ca_file`` (the system's roots when None) and, for mutual
    TLS, present the client certificate ``cert_file`` with its key ``key_file``.

    Args:
        ca_file: PEM file of the CA that signed the replicas' certificates.
        cert_file: PEM client certificate (mutual TLS); needs ``key_file``.
        key_file: PEM private key of ``cert_file``.

    Returns:
        Channel credentials for ``OrchestratorClient(credentials=...)``.

    Raises:
        ValueError: A file cannot be read, or only one of cert_file and key_file was given.
    """
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate needs both cert_file and key_file")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file, "ca_file") if ca_file else None,
        private_key=_read(key_file, "key_file") if key_file else None,
        certificate_chain=_read(cert_file, "cert_file") if cert_file else None,
    )


def channel_credentials(
    credentials: grpc.ChannelCredentials, token: str
) -> grpc.ChannelCredentials:
    """``credentials`` that also send ``token`` as a bearer token on every call (for raw stubs;
    the client itself sends its token as metadata).

    Args:
        credentials: TLS channel credentials (grpc sends call credentials only over TLS).
        token: The bearer token.

    Returns:
        Composite channel credentials.
    """
    return grpc.composite_channel_credentials(
        credentials, grpc.access_token_call_credentials(token)
    )


def read_token_file(path: str) -> str:
    """The token in ``path`` (its first line, without surrounding whitespace).

    Args:
        path: A file holding one token.

    Returns:
        The token.

    Raises:
        ValueError: The file cannot be read or holds no token.
    """
    lines = _read(path, "token file").decode("utf-8", "replace").strip().splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"token file {path} is empty")
    return lines[0].strip()


def with_token(
    metadata: Sequence[tuple[str, str]] | Mapping[str, str] | None,
    token: str | None,
    credentials: grpc.ChannelCredentials | None,
) -> Sequence[tuple[str, str]] | Mapping[str, str] | None:
    """A client's call metadata: ``metadata`` and, with a token, its ``authorization`` entry.

    Raises:
        ValueError: A token without credentials (it would cross the network in clear text).
    """
    if token is None:
        return metadata
    if credentials is None:
        raise ValueError("a token is sent only over TLS: pass credentials too")
    items = (
        () if metadata is None else metadata.items() if isinstance(metadata, Mapping) else metadata
    )
    return (*items, ("authorization", f"Bearer {token}"))
