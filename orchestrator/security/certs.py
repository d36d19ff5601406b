"""A private CA and certificates for a local cluster (`make run`, the tests), with `cryptography`.

Not for production, where certificates come from the organisation's own CA; docs/security.md
says how. Keys are ECDSA P-256 (fast handshakes), written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOCAL_HOSTS = ("127.0.0.1", "localhost")
VALID_DAYS = 825


@dataclass(frozen=True)
class Issued:
    cert: str  # path of the PEM certificate
    key: str  # path of the PEM private key


def _write(path: str, data: bytes, private: bool) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _builder(
    subject: str, issuer: x509.Name, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
    )


def make_ca(out: Issued, name: str = "orchestrator local CA") -> Issued:
    os.makedirs(os.path.dirname(out.cert), exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write(out.key, _key_pem(key), private=True)
    _write(out.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return out


def issue(ca: Issued, out: Issued, name: str, hosts: tuple[str, ...] = LOCAL_HOSTS) -> Issued:
    """A certificate for `name` (its CN and a DNS SAN) valid for `hosts`, written to `out`,
    usable as a server's and as a client's (replicas present theirs to each other under mutual
    TLS)."""
    with open(ca.cert, "rb") as f:
        ca_cert = x509.load_pem_x509_certificate(f.read())
    with open(ca.key, "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    for host in dict.fromkeys(hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        _builder(name, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    os.makedirs(os.path.dirname(out.cert), exist_ok=True)
    os.makedirs(os.path.dirname(out.key), exist_ok=True)
    _write(out.key, _key_pem(key), private=True)
    _write(out.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return out


def ca_at(ca_cert: str) -> Issued:
    """The CA whose certificate is `ca_cert`; its key is beside it (ca.pem -> ca-key.pem)."""
    root, ext = os.path.splitext(ca_cert)
    return Issued(ca_cert, f"{root}-key{ext or '.pem'}")


def ensure_local_tls(ca_cert: str, certs: list[tuple[str, str, str, tuple[str, ...]]]) -> Issued:
    """The CA at `ca_cert` (made when missing) and each (name, cert, key, hosts) certificate
    (made when missing, or all of them anew with a new CA); returns the CA."""
    ca = ca_at(ca_cert)
    fresh = not (os.path.exists(ca.cert) and os.path.exists(ca.key))
    if fresh:
        make_ca(ca)
    for name, cert, key, hosts in certs:
        if fresh or not (os.path.exists(cert) and os.path.exists(key)):
            issue(ca, Issued(cert, key), name, hosts)
    return ca
