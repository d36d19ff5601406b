"""The web UI's HTTP(S) server: the stdlib's, in a thread of its own, with bounded threads.

It never touches the Raft node or the state: every page is a gRPC call to this replica's own
public port (gateway.py), answered by the API's thread pool under its admission limits.
"""

from __future__ import annotations

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import structlog

from ..config import ClusterConfig, ConfigError, TlsSettings
from ..security.permissions import allowed_roles
from .app import Request, UiApp
from .gateway import Gateway

log = structlog.get_logger("orchestrator.web")

WORKFLOW_SERVICE = "orchestrator.v1.WorkflowService"
# Connections served at once; more are closed at once (a browser retries).
MAX_THREADS = 16
# A client that sends nothing for this long loses its connection (and its thread).
IDLE_TIMEOUT_S = 15.0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = IDLE_TIMEOUT_S
    server_version = "orchestrator-ui"
    sys_version = ""

    def _serve(self) -> None:
        length = self.headers.get("Content-Length", "0")
        size = int(length) if length.isdigit() else -1
        if size < 0 or size > 1024 * 1024:
            self.send_error(413 if size > 0 else 400)
            return
        body = self.rfile.read(size) if size else b""
        req = Request(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            body,
            "https" if self.server.tls else "http",
        )
        try:
            resp = self.server.app.handle(req)
        except Exception as exc:  # a bug must not take the thread's connection silently
            log.error("ui_request_failed", path=self.path[:200], error=repr(exc)[:500])
            self.send_error(500)
            return
        self.send_response(resp.status)
        for key, value in resp.all_headers():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_POST = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log: URLs hold workflow ids and search text


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], app: UiApp, tls: ssl.SSLContext | None) -> None:
        self.app = app
        self.tls = tls
        self._slots = threading.BoundedSemaphore(MAX_THREADS)
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        if self.tls is not None:
            # The handshake happens on the connection's first read, in its own thread (with
            # its timeout), never in the accepting one.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # TLS handshakes that fail, clients that hang up: nothing the operator can act on.
        pass


def tls_context(tls: TlsSettings, node_id: str) -> ssl.SSLContext:
    """The gRPC port's certificate and key, for HTTPS (browsers present no client certificate:
    the UI authenticates its users by token)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert_for(node_id), tls.key_for(node_id))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"web UI: cannot load the TLS certificate: {exc}") from None
    return ctx


class WebUI:
    """One replica's web UI on `host:port`, a client of the API at `grpc_address`."""

    def __init__(
        self,
        node_id: str,
        host: str,
        port: int,
        grpc_address: str,
        channel_credentials: grpc.ChannelCredentials | None,
        tls: ssl.SSLContext | None,
        app_options: dict[str, Any] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.gateway = Gateway(grpc_address, channel_credentials)
        self.app = UiApp(node_id, self.gateway, https=tls is not None, **(app_options or {}))
        self.tls = tls
        self._http: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/"

    def start(self) -> None:
        try:
            self._http = _Server((self.host, self.port), self.app, self.tls)
        except OSError as exc:
            raise ConfigError(f"cannot bind the web UI to {self.host}:{self.port}: {exc}") from None
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.25},
            name="web-ui",
            daemon=True,
        )
        self._thread.start()
        log.info("web_ui_started", url=self.url)

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.gateway.close()


def for_replica(cfg: ClusterConfig, node_id: str, security: Any) -> WebUI | None:
    """The UI `node_id` serves (config ui_port), or None: HTTPS with the gRPC certificate and a
    login unless the replica runs --insecure; its calls trust the configured CA, as the
    replica's own calls to its peers do (server.Security)."""
    port = cfg.ui_port_of(node_id)
    if not port:
        return None
    me = cfg.replica(node_id)
    host = cfg.bind_host or me.grpc.rpartition(":")[0]
    auth = security.authenticator
    if security.insecure or cfg.tls is None or auth is None:
        names = (me.grpc.rpartition(":")[0], cfg.bind_host)
        return WebUI(node_id, host, port, me.grpc, None, None, {"secure": False, "hosts": names})

    def who(token: str) -> tuple[str, str] | None:
        principal = auth.tokens.by_token(token)
        return (principal.name, principal.role) if principal is not None else None

    def may(role: str, rpc: str) -> bool:
        return role in allowed_roles(f"/{WORKFLOW_SERVICE}/{rpc}")

    options = {"secure": True, "who": who, "may": may}
    tls = tls_context(cfg.tls, node_id)
    return WebUI(node_id, host, port, me.grpc, security.peer_credentials, tls, options)
