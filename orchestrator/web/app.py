"""The web UI's requests and answers, without sockets: sessions, CSRF, routes, pages.

A session is the user's bearer token in an HttpOnly, SameSite=Strict cookie (Secure under TLS);
every page calls this replica's API with it. Cookies are per host, not per port, so one login
serves every replica of a cluster on one host (`make run`). Whatever the API refuses is shown as
the API said it; the role only decides which buttons a page shows.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from urllib.parse import parse_qs, quote, unquote, urlsplit

from orchestrator_client.v1 import workflows_pb2

from .gateway import ACTIONS, ApiError, Gateway
from .render import (
    Page,
    cluster_page,
    definition_page,
    definitions_page,
    error_page,
    events_page,
    login_page,
    workflows_page,
)
from .workflow_page import LABELS, workflow_page

TOKEN_COOKIE = "orch_token"
SEQ_COOKIE = "orch_seq"
MAX_FORM_BYTES = 64 * 1024
PAGE_SIZE = 50
# A bearer token as RFC 6750 writes it (token68), bounded.
TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
HTTP_STATUS = {
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class Request:
    method: str
    target: str  # path and query, as the request line gives them
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    scheme: str = "http"


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    cache: bool = False  # static files only: pages with data are never stored

    def all_headers(self) -> list[tuple[str, str]]:
        out = [
            ("Content-Type", self.content_type),
            ("Content-Length", str(len(self.body))),
            ("Content-Security-Policy", CSP),
            ("X-Frame-Options", "DENY"),
            ("X-Content-Type-Options", "nosniff"),
            # same-origin, not no-referrer: a form POST must carry its Origin for the check.
            ("Referrer-Policy", "same-origin"),
            ("Cache-Control", "public, max-age=300" if self.cache else "no-store"),
        ]
        return out + self.headers


def html(body: str, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, body.encode("utf-8"), headers=headers or [])


def redirect(location: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(303, b"", "text/plain", [("Location", location), *(headers or [])])


def parse_cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name not in out:
            out[name] = unquote(value)
    return out


@dataclass
class Session:
    token: str
    user: str
    role: str
    csrf: str
    min_seq: int


class UiApp:
    """Answers one request at a time (threads share it; it keeps no per-request state)."""

    def __init__(
        self,
        node_id: str,
        gateway: Gateway,
        secure: bool,
        https: bool,
        who: Callable[[str], tuple[str, str] | None] | None = None,
        may: Callable[[str, str], bool] | None = None,
        hosts: tuple[str, ...] = (),
    ) -> None:
        """`secure`: tokens are configured, so a login is needed; `who(token)` names the
        token's holder and role, `may(role, rpc)` says whether the role may call the
        WorkflowService RPC (for the buttons only: the API decides); `hosts`: the names
        this UI answers to without a login besides IP addresses and localhost."""
        self.node_id = node_id
        self.gateway = gateway
        self.secure = secure
        self.https = https
        self.who = who or (lambda _t: None)
        self.may = may or (lambda _r, _m: True)
        self._key = secrets.token_bytes(32)
        self.hosts = frozenset(h.lower() for h in (*hosts, "localhost") if h)
        self.css = resources.files(__package__).joinpath("static/style.css").read_bytes()

    # Sessions and their cookies.

    def _cookie(self, name: str, value: str, max_age: int | None = None) -> tuple[str, str]:
        attrs = f"{name}={quote(value, safe='')}; Path=/; HttpOnly; SameSite=Strict"
        if self.https:
            attrs += "; Secure"
        if max_age is not None:
            attrs += f"; Max-Age={max_age}"
        return ("Set-Cookie", attrs)

    def csrf_for(self, token: str) -> str:
        return hmac.new(self._key, b"csrf\0" + token.encode(), hashlib.sha256).hexdigest()[:40]

    def session(self, req: Request) -> Session | None:
        cookies = parse_cookies(req.headers.get("cookie", ""))
        token = cookies.get(TOKEN_COOKIE, "") if self.secure else ""
        if self.secure and not token:
            return None
        seq = cookies.get(SEQ_COOKIE, "0")
        found = self.who(token) if token else None
        user, role = found if found else (("(token)", "") if token else ("", ""))
        return Session(token, user, role, self.csrf_for(token), int(seq) if seq.isdigit() else 0)

    def page(self, s: Session) -> Page:
        def can(rpc: str) -> bool:
            return not self.secure or self.may(s.role, rpc)

        return Page(self.node_id, s.user, s.role, s.csrf, can)

    # Dispatch.

    def handle(self, req: Request) -> Response:
        url = urlsplit(req.target)
        path = url.path
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if not self.secure and not self._known_host(req.headers.get("host", "")):
            return Response(421, b"unknown host name", "text/plain")
        if path == "/static/style.css":
            return Response(200, self.css, "text/css; charset=utf-8", cache=True)
        if req.method == "POST":
            refused = self._cross_origin(req)
            if refused is not None:
                return refused
        if path == "/login":
            return self._login(req)
        s = self.session(req)
        if s is None:
            return redirect("/login")
        if req.method == "POST":
            return self._post(req, path, s)
        if req.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed", "text/plain", [("Allow", "GET, POST")])
        try:
            return self._get(path, query, s)
        except ApiError as exc:
            return self._api_error(exc, s)

    def _get(self, path: str, query: dict[str, str], s: Session) -> Response:
        p = self.page(s)
        if path in ("/", ""):
            return redirect("/cluster")
        if path == "/cluster":
            return html(cluster_page(p, self.gateway.cluster_status(s.token)))
        if path == "/workflows":
            return self._workflows(p, query, s)
        parts = [unquote(x) for x in path.split("/")[1:]]
        if len(parts) == 2 and parts[0] == "workflows" and parts[1]:
            note = ""
            if query.get("done") in LABELS:
                note = f"{LABELS[query['done']]}: accepted by the API."
            return html(self._workflow(p, parts[1], s, note=note))
        if path == "/definitions":
            wdefs = self.gateway.workflow_defs(s.token)
            return html(definitions_page(p, wdefs, self.gateway.task_defs(s.token)))
        if len(parts) == 4 and parts[:2] == ["definitions", "workflow"] and parts[3].isdigit():
            doc = self.gateway.workflow_def(s.token, parts[2], int(parts[3]))
            return html(definition_page(p, parts[2], int(parts[3]), doc))
        if path == "/events":
            return html(events_page(p, self.gateway.event_handlers(s.token)))
        return html(error_page(p, "Not found", f"no page {path}"), 404)

    def _workflows(self, p: Page, query: dict[str, str], s: Session) -> Response:
        filters = {k: query[k] for k in ("name", "status", "correlation", "text") if query.get(k)}
        statuses = []
        if filters.get("status"):
            try:
                statuses = [
                    workflows_pb2.WorkflowStatus.Value("WORKFLOW_STATUS_" + filters["status"])
                ]
            except ValueError:
                return html(
                    workflows_page(p, filters, None, f"no status {filters['status']!r}"), 400
                )
        try:
            result = self.gateway.search(
                s.token,
                s.min_seq,
                workflow_name=filters.get("name", ""),
                statuses=statuses,
                correlation_id=filters.get("correlation", ""),
                text=filters.get("text", ""),
                page_size=PAGE_SIZE,
                page_token=query.get("page", ""),
            )
        except ApiError as exc:
            if exc.code == "UNAUTHENTICATED":
                raise
            return html(workflows_page(p, filters, None, str(exc)), HTTP_STATUS.get(exc.code, 502))
        return html(workflows_page(p, filters, result, paged=bool(query.get("page"))))

    def _workflow(
        self, p: Page, workflow_id: str, s: Session, *, error: str = "", note: str = ""
    ) -> str:
        wf = self.gateway.workflow(s.token, workflow_id, s.min_seq)
        try:
            definition = self.gateway.workflow_def(s.token, wf.workflow_name, wf.workflow_version)
        except ApiError:
            definition = ""  # an inline (sub-)workflow definition: the tasks are drawn in order
        return workflow_page(p, wf, definition, error=error, note=note)

    def _api_error(self, exc: ApiError, s: Session) -> Response:
        if exc.code == "UNAUTHENTICATED" and self.secure:
            return html(
                login_page(self.node_id, self.https, f"{exc}: log in again"),
                401,
                [self._cookie(TOKEN_COOKIE, "", 0)],
            )
        return html(error_page(self.page(s), exc.code, str(exc)), HTTP_STATUS.get(exc.code, 502))

    def _known_host(self, host: str) -> bool:
        """Without a login, a page of another site whose name was made to resolve to this
        address (DNS rebinding) would be same-origin with the UI, CSRF token and all: answer
        only to addresses and this replica's own names."""
        name = urlsplit(f"//{host}").hostname or ""
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return name in self.hosts
        return True

    # Forms.

    def _cross_origin(self, req: Request) -> Response | None:
        """A POST from another origin, or not a form, is refused before anything else."""
        origin = req.headers.get("origin")
        own = f"{req.scheme}://{req.headers.get('host', '')}"
        if origin is not None and origin != own:
            return Response(403, b"cross-origin form refused", "text/plain")
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded" or len(req.body) > MAX_FORM_BYTES:
            return Response(
                400, b"expected a form (application/x-www-form-urlencoded)", "text/plain"
            )
        return None

    def _form(self, req: Request) -> dict[str, str]:
        raw = parse_qs(req.body.decode("utf-8", errors="replace"), keep_blank_values=True)
        return {k: v[-1] for k, v in raw.items()}

    def _login(self, req: Request) -> Response:
        if not self.secure:
            return redirect("/cluster")
        if req.method != "POST":
            return html(login_page(self.node_id, self.https))
        token = self._form(req).get("token", "").strip()
        if not token or len(token) > 4096 or not TOKEN_SHAPE.match(token):
            return html(login_page(self.node_id, self.https, "not a bearer token"), 400)
        try:
            self.gateway.cluster_status(token)
        except ApiError as exc:
            return html(
                login_page(self.node_id, self.https, str(exc)), HTTP_STATUS.get(exc.code, 502)
            )
        return redirect("/cluster", [self._cookie(TOKEN_COOKIE, token)])

    def _post(self, req: Request, path: str, s: Session) -> Response:
        form = self._form(req)
        if not hmac.compare_digest(form.get("csrf", ""), s.csrf):
            return Response(403, b"form refused: its CSRF token is missing or stale", "text/plain")
        if path == "/logout":
            return redirect("/login", [self._cookie(TOKEN_COOKIE, "", 0)])
        parts = [unquote(x) for x in path.split("/")[1:]]
        if len(parts) != 2 or parts[0] != "workflows" or not parts[1]:
            return Response(404, b"no such form", "text/plain")
        workflow_id, action = parts[1], form.get("action", "")
        if action not in ACTIONS:
            return Response(400, b"no such action", "text/plain")
        try:
            seq = self.gateway.act(s.token, action, workflow_id, form.get("request_id", ""), form)
        except ApiError as exc:
            return self._refused(exc, workflow_id, s)
        cookie = [self._cookie(SEQ_COOKIE, str(max(seq, s.min_seq)))]
        if action == "remove":
            return redirect("/workflows", cookie)
        return redirect(f"/workflows/{quote(workflow_id, safe='')}?done={action}", cookie)

    def _refused(self, exc: ApiError, workflow_id: str, s: Session) -> Response:
        """The workflow's page again, with the API's refusal on top."""
        status = HTTP_STATUS.get(exc.code, 502)
        try:
            return html(self._workflow(self.page(s), workflow_id, s, error=str(exc)), status)
        except ApiError:
            return html(error_page(self.page(s), exc.code, str(exc)), status)
