"""The leader's HTTP executor: phase one of HTTP tasks happens here, outside apply.

The core marks an HTTP task pending (an "http" marker holding the checked request) and lists
it in Effects.scripts_ready, as it does scripts; this executor is the script executor with its
hooks replaced: it reads pending requests (queries.pending_http / http_job), makes each on a
thread pool and proposes HttpResult with the leader's epoch. A new leader makes an unfinished
request again (at least once); the core applies one result per (task, fence).

A definition must not reach internal services: before a request, the host is resolved and every
address checked; a loopback, private, link-local or otherwise non-public address is refused
unless the cluster's `http_allow` (hosts or CIDR networks) names it, and the connection goes to
the address that was checked (a second lookup could answer differently). Redirects are not
followed (a 3xx fails the task), so a public host cannot send the request inward.

HTTPS is always verified: against the system's CAs plus, when the cluster sets `http_ca_file`,
the private CA(s) in that PEM file (an internal service's certificate); never unverified.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..core import queries
from ..core.commands import Command, HttpResult
from ..replication.api import Replica
from .scripts import Key, ScriptExecutor

JSON = Any
MAX_BODY_BYTES = 128 * 1024  # the response is recorded in the task's output (MAX_JSON_BYTES)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class HttpOutcome:
    response: JSON = None
    error: str = ""
    terminal: bool = False

    @property
    def ok(self) -> bool:
        return self.response is not None

    @property
    def kind(self) -> str:
        return "refused" if self.terminal else ""


class AllowList:
    """Hosts (exact, case-insensitive) and networks a request may reach although not public."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.hosts: set[str] = set()
        self.networks: list[Network] = []
        for e in entries:
            try:
                self.networks.append(ipaddress.ip_network(e, strict=False))
            except ValueError:
                self.hosts.add(e.lower().rstrip("."))

    def refusal(self, host: str, addresses: Iterable[str]) -> str:
        """Why a request to `host` (resolved to `addresses`) is refused; "" when it is not."""
        if host.lower().rstrip(".") in self.hosts:
            return ""
        for a in addresses:
            ip = ipaddress.ip_address(a.split("%", 1)[0])
            if ip.is_global and not ip.is_multicast:
                continue
            if any(ip in n for n in self.networks if n.version == ip.version):
                continue
            return f"{host} resolves to {ip}, a {_kind(ip)} address not in the cluster's http_allow"
        return ""


def _kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-public"


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """The system's trust store, plus the CA certificates in `ca_file` (PEM) when given."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def make_request(req: JSON, allow: AllowList, tls: ssl.SSLContext | None = None) -> HttpOutcome:
    """One request as Conductor's HTTP task makes it; never raises."""
    parts = urlsplit(req["uri"])
    host, port = parts.hostname, parts.port
    if parts.scheme not in ("http", "https") or not host:
        return HttpOutcome(error=f"not an http(s) URL: {req['uri']!r}", terminal=True)
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        return HttpOutcome(error=f"cannot resolve {host}: {exc}")
    addresses = [str(i[4][0]) for i in infos]
    why = allow.refusal(host, addresses)
    if why:
        return HttpOutcome(error=f"refused: {why}", terminal=True)
    conn = _connection(parts.scheme, host, addresses[0], port, req, tls)
    try:
        headers, body = _headers_and_body(req)
        headers.setdefault("Host", parts.netloc.rsplit("@", 1)[-1])
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.connect()  # within connectionTimeOut; then each read waits up to readTimeOut
        if conn.sock is not None:
            conn.sock.settimeout(req["readTimeOut"] / 1000)
        conn.request(req["method"], path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read(MAX_BODY_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:
        return HttpOutcome(error=f"{req['method']} {req['uri']}: {exc!r}")
    finally:
        conn.close()
    if len(data) > MAX_BODY_BYTES:
        return HttpOutcome(error=f"the response body is over {MAX_BODY_BYTES} bytes", terminal=True)
    return HttpOutcome(
        {
            "statusCode": resp.status,
            "headers": {k: ", ".join(resp.headers.get_all(k) or []) for k in resp.headers},
            "body": _decode(data, resp.headers.get_content_type()),
            "reasonPhrase": resp.reason,
        }
    )


def _connection(
    scheme: str, host: str, address: str, port: int, req: JSON, tls: ssl.SSLContext | None
) -> http.client.HTTPConnection:
    timeout = req["connectionTimeOut"] / 1000
    if scheme == "http":
        return http.client.HTTPConnection(address, port, timeout=timeout)
    return _PinnedHTTPS(host, address, port, timeout, tls or tls_context())


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to the checked address, with the certificate verified for the host name."""

    def __init__(
        self, host: str, address: str, port: int, timeout: float, tls: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=tls)
        self._address = address
        self._tls = tls

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def _headers_and_body(req: JSON) -> tuple[dict[str, str], bytes | None]:
    headers = {str(k): str(v) for k, v in (req.get("headers") or {}).items()}
    if req.get("accept"):
        headers.setdefault("Accept", str(req["accept"]))
    body = req.get("body")
    if body is None or req["method"] in ("GET", "HEAD"):
        return headers, None
    if isinstance(body, str):
        headers.setdefault("Content-Type", str(req.get("contentType") or "text/plain"))
        return headers, body.encode("utf-8")
    headers.setdefault("Content-Type", str(req.get("contentType") or "application/json"))
    return headers, json.dumps(body).encode("utf-8")


def _decode(data: bytes, content_type: str) -> JSON:
    text = data.decode("utf-8", "replace")
    if not data:
        return None
    if "json" in content_type:
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


class HttpExecutor(ScriptExecutor):
    """The script executor's loop and fencing, for HTTP requests (see the module docstring)."""

    _pending = staticmethod(queries.pending_http)

    def __init__(
        self,
        replica: Replica,
        allow: Iterable[str] = (),
        threads: int = 8,
        rescan_s: float = 5.0,
        *,
        ca_file: str = "",
    ) -> None:
        self.allow = AllowList(allow)
        # Loaded once, here: a bad CA file stops the replica at start, not each request.
        self.tls = tls_context(ca_file)
        super().__init__(replica, None, threads=threads, rescan_s=rescan_s)  # type: ignore[arg-type]
        self._thread.name = "http"

    def _read_job(self, tid: str) -> Any:
        return self.replica.read(lambda st: queries.http_job(st, tid))

    def _evaluate(self, job: Any) -> HttpOutcome:
        return make_request(job.request, self.allow, self.tls)

    def _result_command(self, key: Key, outcome: Any, term: int) -> Command | None:
        return HttpResult(
            task_id=key[0],
            fence=key[1],
            epoch=term,
            response=outcome.response,
            error=outcome.error.encode("utf-8", "replace").decode("utf-8"),
            terminal=outcome.terminal,
        )
