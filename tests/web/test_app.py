"""The web UI without sockets or a cluster: sessions, CSRF and Origin checks, headers, pages
(escaping of hostile names and data, truncation, buttons by role) against a fake API."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from orchestrator_client.v1 import cluster_pb2, definitions_pb2, workflows_pb2

from orchestrator.security.permissions import allowed_roles
from orchestrator.web.app import Request, Response, UiApp
from orchestrator.web.gateway import ApiError

EVIL = '"><script>alert(1)</script>'
TOKENS = {"admin-token-0123456789": ("ada", "admin"), "reader-token-0123456789": ("rita", "reader")}


def workflow(status: int = workflows_pb2.WORKFLOW_STATUS_RUNNING) -> Any:
    wf = workflows_pb2.Workflow(
        workflow_id="wf-1",
        workflow_name=EVIL,
        workflow_version=1,
        status=status,
        input_json=json.dumps({"note": EVIL, "big": "x" * 5000}),
        correlation_id=EVIL,
    )
    wf.tasks.add(
        task_id="t1",
        reference_task_name=EVIL,
        task_type="SIMPLE",
        status=workflows_pb2.TASK_STATUS_IN_PROGRESS,
        input_json=json.dumps({"q": "</pre><b>bold</b>"}),
        seq=1,
        worker_id=EVIL,
    )
    return wf


class FakeApi:
    """The gateway's calls, answering from memory; refuses what a reader may not do."""

    def __init__(self) -> None:
        self.wf = workflow()
        self.actions: list[tuple[str, str, str, dict[str, str]]] = []

    def _check(self, token: str, rpc: str) -> str:
        if token == "":  # an insecure replica: everyone may do everything
            return "admin"
        if token not in TOKENS:
            raise ApiError("UNAUTHENTICATED", f"{rpc}: the bearer token is not valid")
        role = TOKENS[token][1]
        if role not in allowed_roles(f"/orchestrator.v1.WorkflowService/{rpc}"):
            raise ApiError(
                "PERMISSION_DENIED", f"WorkflowService.{rpc} needs role admin or operator"
            )
        return role

    def cluster_status(self, token: str) -> Any:
        self._check(token, "GetWorkflow")
        resp = cluster_pb2.GetClusterStatusResponse(leader_id="n1")
        resp.replicas.add(node_id="n1", role="LEADER", term=3, applied_sequence=10, serving=True)
        resp.replicas.add(node_id="n2", role="FOLLOWER", term=3, applied_sequence=7, detail=EVIL)
        return resp

    def search(self, token: str, min_seq: int, **query: Any) -> Any:
        self._check(token, "SearchWorkflows")
        self.last_query = query
        return workflows_pb2.SearchWorkflowsResponse(
            workflows=[self.wf], total_count=1, next_page_token="tok&x=1"
        )

    def workflow(self, token: str, workflow_id: str, min_seq: int) -> Any:
        self._check(token, "GetWorkflow")
        if workflow_id != self.wf.workflow_id:
            raise ApiError("NOT_FOUND", f"no workflow {workflow_id!r}")
        return self.wf

    def workflow_def(self, token: str, name: str, version: int) -> str:
        return json.dumps({"name": name, "tasks": [{"taskReferenceName": EVIL, "type": "SIMPLE"}]})

    def workflow_defs(self, token: str) -> list[Any]:
        return [definitions_pb2.WorkflowDefSummary(name=EVIL, version=2, definition_json="{}")]

    def task_defs(self, token: str) -> list[str]:
        return [json.dumps({"name": EVIL})]

    def event_handlers(self, token: str) -> list[str]:
        return [json.dumps({"name": EVIL, "event": "e"})]

    def act(
        self, token: str, action: str, wf_id: str, request_id: str, form: dict[str, str]
    ) -> int:
        rpc = {"pause": "PauseWorkflow", "resume": "ResumeWorkflow"}.get(
            action, "TerminateWorkflow"
        )
        self._check(token, rpc)
        self.actions.append((action, wf_id, request_id, form))
        return 42


def make_app(secure: bool = True, https: bool = True) -> tuple[UiApp, FakeApi]:
    api = FakeApi()

    def who(token: str) -> tuple[str, str] | None:
        return TOKENS.get(token)

    def may(role: str, rpc: str) -> bool:
        return role in allowed_roles(f"/orchestrator.v1.WorkflowService/{rpc}")

    return UiApp("n1", api, secure, https, who, may), api  # type: ignore[arg-type]


HOST = "127.0.0.1:8081"


def get(app: UiApp, target: str, cookie: str = "") -> Response:
    headers = {"host": HOST, **({"cookie": cookie} if cookie else {})}
    return app.handle(Request("GET", target, headers, scheme="https"))


def post(
    app: UiApp, target: str, form: dict[str, str], cookie: str = "", origin: str | None = None
) -> Response:
    headers = {"host": HOST, "content-type": "application/x-www-form-urlencoded"}
    if cookie:
        headers["cookie"] = cookie
    headers["origin"] = origin if origin is not None else f"https://{HOST}"
    return app.handle(Request("POST", target, headers, urlencode(form).encode(), "https"))


def header(resp: Response, name: str) -> str:
    return next((v for k, v in resp.all_headers() if k.lower() == name.lower()), "")


def login(app: UiApp, token: str) -> str:
    resp = post(app, "/login", {"token": token})
    assert resp.status == 303, resp.body
    return header(resp, "Set-Cookie").split(";")[0]


def csrf(page: Response) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.body.decode())
    assert found
    return found.group(1)


def test_pages_need_a_login_and_the_cookie_is_http_only_strict_and_secure() -> None:
    app, _ = make_app()
    resp = get(app, "/workflows")
    assert resp.status == 303 and header(resp, "Location") == "/login"
    resp = post(app, "/login", {"token": "admin-token-0123456789"})
    cookie = header(resp, "Set-Cookie")
    assert cookie.startswith("orch_token=admin-token-0123456789;")
    for attr in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/"):
        assert attr in cookie
    assert get(app, "/cluster", cookie.split(";")[0]).status == 200


def test_a_wrong_token_is_refused_at_login_with_the_apis_words() -> None:
    app, _ = make_app()
    resp = post(app, "/login", {"token": "not-a-known-token-123"})
    assert resp.status == 401 and "bearer token is not valid" in resp.body.decode()
    assert header(resp, "Set-Cookie") == ""
    assert post(app, "/login", {"token": "has spaces; and=more"}).status == 400


def test_no_login_without_tokens_but_forms_still_need_their_csrf_token() -> None:
    app, api = make_app(secure=False, https=False)
    assert get(app, "/cluster").status == 200
    assert header(get(app, "/login"), "Location") == "/cluster"
    page = get(app, "/workflows/wf-1")
    assert 'data-action="pause"' in page.body.decode()
    form = {"action": "pause", "request_id": "r-1"}
    assert post(app, "/workflows/wf-1", form).status == 403
    resp = post(app, "/workflows/wf-1", {**form, "csrf": csrf(page)})
    assert resp.status == 303 and "Secure" not in header(resp, "Set-Cookie")
    assert [a[0] for a in api.actions] == ["pause"]


def test_without_a_login_only_addresses_and_own_names_are_answered() -> None:
    app, _ = make_app(secure=False, https=False)
    for host in ("127.0.0.1:8081", "[::1]:8081", "localhost:8081", "10.0.0.7"):
        resp = app.handle(Request("GET", "/cluster", {"host": host}))
        assert resp.status == 200, host
    # A rebinding site's name resolving here gets nothing, forms included.
    rebound = {"host": "evil.example:8081", "origin": "http://evil.example:8081"}
    assert app.handle(Request("GET", "/cluster", rebound)).status == 421
    form = Request(
        "POST", "/workflows/wf-1", {**rebound, "content-type": "application/x-www-form-urlencoded"}
    )
    assert app.handle(form).status == 421
    named = UiApp("n1", FakeApi(), False, False, hosts=("replica-0.orch",))  # type: ignore[arg-type]
    assert named.handle(Request("GET", "/cluster", {"host": "Replica-0.orch:8081"})).status == 200
    # With logins the cookie is the guard: any name is answered (an ingress's, say).
    secure, _ = make_app()
    assert secure.handle(Request("GET", "/login", {"host": "ui.example"})).status == 200


def test_security_headers_on_every_page() -> None:
    app, _ = make_app()
    cookie = login(app, "admin-token-0123456789")
    for target in (
        "/cluster",
        "/workflows",
        "/workflows/wf-1",
        "/definitions",
        "/events",
        "/login",
    ):
        resp = get(app, target, cookie)
        assert resp.status == 200, (target, resp.body[:300])
        csp = header(resp, "Content-Security-Policy")
        assert "default-src 'none'" in csp and "script-src" not in csp
        assert "frame-ancestors 'none'" in csp
        assert header(resp, "X-Frame-Options") == "DENY"
        assert header(resp, "Cache-Control") == "no-store"
        assert header(resp, "X-Content-Type-Options") == "nosniff"
        assert "<script" not in resp.body.decode().lower()
    css = get(app, "/static/style.css")
    assert css.status == 200 and css.content_type.startswith("text/css")


def test_hostile_names_and_data_are_escaped_everywhere() -> None:
    app, _ = make_app()
    cookie = login(app, "admin-token-0123456789")
    for target in ("/cluster", "/workflows", "/workflows/wf-1", "/definitions", "/events"):
        body = get(app, target, cookie).body.decode()
        assert "<script>" not in body, target
        assert "</pre><b>" not in body
    body = get(app, "/workflows/wf-1", cookie).body.decode()
    assert "&lt;script&gt;" in body
    assert "more characters)" in body  # the 5000-character input was cut
    # The search's next-page link carries the opaque token encoded, the filters escaped.
    body = get(app, "/workflows?name=%3Cb%3E", cookie).body.decode()
    assert 'value="&lt;b&gt;"' in body and "page=tok%26x%3D1" in body
    assert "First page" not in body
    assert (
        'href="/workflows?name=%3Cb%3E" class="first"'
        in get(app, "/workflows?name=%3Cb%3E&page=p2", cookie).body.decode()
    )


def test_an_admin_sees_buttons_a_reader_none() -> None:
    app, _ = make_app()
    admin = get(app, "/workflows/wf-1", login(app, "admin-token-0123456789")).body.decode()
    assert 'data-action="pause"' in admin and 'data-action="terminate"' in admin
    assert 'data-action="skip"' in admin
    reader = get(app, "/workflows/wf-1", login(app, "reader-token-0123456789")).body.decode()
    assert "data-action=" not in reader
    assert "rita (reader)" in reader


def test_an_action_goes_to_the_api_with_its_request_id_and_raises_min_seq() -> None:
    app, api = make_app()
    cookie = login(app, "admin-token-0123456789")
    page = get(app, "/workflows/wf-1", cookie)
    form = {"csrf": csrf(page), "action": "pause", "request_id": "r-1"}
    resp = post(app, "/workflows/wf-1", form, cookie)
    assert resp.status == 303, resp.body
    assert header(resp, "Location") == "/workflows/wf-1?done=pause"
    assert api.actions[0][:3] == ("pause", "wf-1", "r-1")
    assert "orch_seq=42;" in header(resp, "Set-Cookie")
    assert "Pause: accepted" in get(app, "/workflows/wf-1?done=pause", cookie).body.decode()


def test_forged_posts_are_refused() -> None:
    app, api = make_app()
    cookie = login(app, "admin-token-0123456789")
    token = csrf(get(app, "/workflows/wf-1", cookie))
    form = {"action": "pause", "request_id": "r-1"}
    # No CSRF token, a wrong one, another origin, not a form: refused before the API.
    assert post(app, "/workflows/wf-1", form, cookie).status == 403
    assert post(app, "/workflows/wf-1", {**form, "csrf": "0" * 40}, cookie).status == 403
    evil = post(app, "/workflows/wf-1", {**form, "csrf": token}, cookie, "https://evil.example")
    assert evil.status == 403
    raw = Request("POST", "/workflows/wf-1", {"host": HOST, "cookie": cookie}, b"{}", "https")
    assert app.handle(raw).status == 400
    assert api.actions == []
    # Another user's CSRF token does not serve this one.
    other = login(app, "reader-token-0123456789")
    assert post(app, "/workflows/wf-1", {**form, "csrf": token}, other).status == 403


def test_a_refused_action_shows_the_apis_error() -> None:
    app, api = make_app()
    cookie = login(app, "reader-token-0123456789")
    token = csrf(get(app, "/cluster", cookie))  # the logout form's
    resp = post(app, "/workflows/wf-1", {"csrf": token, "action": "pause"}, cookie)
    assert resp.status == 403
    body = resp.body.decode()
    assert "PERMISSION_DENIED" in body and "needs role admin or operator" in body
    assert api.actions == []


def test_api_errors_become_pages_and_a_stale_token_logs_out() -> None:
    app, _ = make_app()
    cookie = login(app, "admin-token-0123456789")
    missing = get(app, "/workflows/nope", cookie)
    assert missing.status == 404 and "NOT_FOUND" in missing.body.decode()
    stale = get(app, "/cluster", "orch_token=gone-token-0123456789")
    assert stale.status == 401 and "Max-Age=0" in header(stale, "Set-Cookie")


@pytest.mark.parametrize(
    "target", ["/nowhere", "/workflows/", "/definitions/workflow/x/notanumber"]
)
def test_unknown_pages_are_404(target: str) -> None:
    app, _ = make_app()
    assert get(app, target, login(app, "admin-token-0123456789")).status == 404


def test_status_filter_is_the_apis_enum() -> None:
    app, api = make_app()
    cookie = login(app, "admin-token-0123456789")
    assert get(app, "/workflows?status=PAUSED&correlation=c1", cookie).status == 200
    assert api.last_query["statuses"] == [workflows_pb2.WORKFLOW_STATUS_PAUSED]
    assert api.last_query["correlation_id"] == "c1"
    assert get(app, "/workflows?status=BOGUS", cookie).status == 400


def test_an_errors_reason_comes_from_its_status_details() -> None:
    status_pb2 = pytest.importorskip("google.rpc.status_pb2")
    error_details_pb2 = pytest.importorskip("google.rpc.error_details_pb2")
    from orchestrator.api.errors import DETAILS_KEY
    from orchestrator.web.gateway import _reason

    status = status_pb2.Status(code=14, message="no leader")
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(reason="NO_LEADER", domain="orchestrator.v1")
    )
    assert _reason(((DETAILS_KEY, status.SerializeToString()),)) == "NO_LEADER"
    assert _reason(((DETAILS_KEY, b"not a status"),)) == ""
    assert _reason(()) == ""
    assert (
        str(ApiError("UNAVAILABLE", "no leader", "NO_LEADER"))
        == "UNAVAILABLE (NO_LEADER): no leader"
    )
    assert str(ApiError("NOT_FOUND", "gone", "NOT_FOUND")) == "NOT_FOUND: gone"
