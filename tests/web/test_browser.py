"""The web UI in a real headless Chromium (Debian's chromium and chromedriver, via selenium)
against three real replicas with TLS and tokens, each serving its UI on its own port.

Every page loads on every replica; a workflow the test starts is listed and drawn with the
right nodes; Pause then Resume clicked on a follower's page take effect (checked through the
API); a reader gets no buttons, and forged POSTs are refused.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from orchestrator.tools.access import token_path
from orchestrator.tools.localcluster import LocalCluster, free_ports, write_config
from tests.cluster_support import TEST_RAFT, wait_for

pytestmark = pytest.mark.cluster

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGES = ("/cluster", "/workflows", "/definitions", "/events")

FLOW = {
    "name": "ui_flow",
    "version": 1,
    "tasks": [
        {"name": "ui_task", "taskReferenceName": "prepare"},
        {
            "name": "fork",
            "type": "FORK_JOIN",
            "taskReferenceName": "fork",
            "forkTasks": [
                [{"name": "ui_task", "taskReferenceName": "left"}],
                [{"name": "ui_task", "taskReferenceName": "right"}],
            ],
        },
        {"name": "join", "type": "JOIN", "taskReferenceName": "join", "joinOn": ["left", "right"]},
        {
            "name": "route",
            "type": "SWITCH",
            "taskReferenceName": "route",
            "evaluatorType": "value-param",
            "expression": "kind",
            "inputParameters": {"kind": "${workflow.input.kind}"},
            "decisionCases": {"fast": [{"name": "ui_task", "taskReferenceName": "express"}]},
            "defaultCase": [{"name": "ui_task", "taskReferenceName": "standard"}],
        },
    ],
}


def _browser_or_skip() -> Any:
    """selenium's webdriver module, or a skip saying what is missing (a failure under CI)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        from selenium import webdriver
    except ImportError:
        missing.append("the selenium package")
        webdriver = None
    if missing:
        reason = (
            f"{', '.join(missing)} missing (make system-deps installs chromium and chromium-driver)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return webdriver


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: Any) -> Iterator[LocalCluster]:
    tmp = tmp_path_factory.mktemp("web")
    ports = free_ports(9)  # distinct: gRPC, Raft, UI
    path = write_config(
        str(tmp / "cluster.json"),
        n=3,
        raft=TEST_RAFT,
        grpc_ports=ports[:3],
        raft_ports=ports[3:6],
        ui_ports=ports[6:],
    )
    c = LocalCluster(path, env={"ORCHESTRATOR_LOG_LEVEL": "INFO"})
    try:
        c.start_all()
        c.wait_healthy(timeout_s=60)
        yield c
    finally:
        c.stop_all()


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Any]:
    c = cluster.client(timeout_s=5.0, retry_budget_s=60.0)
    c.register_task_defs([{"name": "ui_task", "retryCount": 0, "responseTimeoutSeconds": 300}])
    c.register_workflow_def(FLOW)
    yield c
    c.close()


@pytest.fixture(scope="module")
def driver(cluster: LocalCluster) -> Iterator[Any]:
    webdriver = _browser_or_skip()
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ui-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={profile}")
    # The local CA is not in the browser's store; the test's own HTTPS calls verify against it.
    options.accept_insecure_certs = True
    service = Service(CHROMEDRIVER)
    d = webdriver.Chrome(service=service, options=options)
    d.set_page_load_timeout(30)
    try:
        yield d
    finally:
        d.quit()  # ends chromium and stops the chromedriver process
        assert service.process is None or service.process.poll() is not None
        shutil.rmtree(profile, ignore_errors=True)


def _token(cluster: LocalCluster, role: str) -> str:
    return Path(token_path(cluster.cfg, role)).read_text().strip()


def _login(driver: Any, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "login")
    driver.find_element(By.NAME, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait_for(lambda: _text(driver, "h1") == "Cluster", 30, "the cluster page")


def _follower_url(cluster: LocalCluster) -> str:
    leader = wait_for(cluster.leader, 30, "a leader")
    return next(u for nid, u in cluster.ui_urls().items() if nid != leader)


def _open_as(cluster: LocalCluster, driver: Any, role: str, wid: str) -> str:
    """Logs in to a follower's UI as `role` and opens the workflow's page; that UI's URL."""
    url = _follower_url(cluster)
    _login(driver, url, _token(cluster, role))
    driver.get(f"{url}workflows/{wid}")
    return url


def _text(driver: Any, css: str) -> str | None:
    """The text of the first element `css` selects, or None (none yet, or the page is being
    replaced: a click's navigation may still be under way)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def _status(client: Any, wid: str) -> str:
    return str(client.get_workflow(wid, include_tasks=False).status)


@pytest.fixture(scope="module")
def started(client: Any) -> tuple[str, str]:
    """A ui_flow whose first task a worker completed: (workflow id, correlation id)."""
    cid = f"ui-{uuid.uuid4().hex[:8]}"
    wid = client.start_workflow("ui_flow", {"kind": "fast"}, correlation_id=cid)

    def completed_prepare() -> bool:
        for t in client.poll_tasks("ui_task", worker_id="ui-test", count=10, timeout_ms=500):
            if t.workflow_id == wid and t.reference_task_name == "prepare":
                client.complete_task(t.task_id, {"ok": True}, worker_id="ui-test")
                return True
        return False

    wait_for(completed_prepare, 60, "the prepare task leased and completed")
    return wid, cid


def test_every_page_loads_on_every_replica(cluster: LocalCluster, driver: Any) -> None:
    from selenium.webdriver.common.by import By

    urls = cluster.ui_urls()
    assert len(urls) == 3 and all(u.startswith("https://127.0.0.1:") for u in urls.values())
    _login(driver, urls["n1"], _token(cluster, "admin"))
    # One login serves every replica's UI: cookies belong to the host, not the port.
    for nid, url in urls.items():
        for page in PAGES:
            driver.get(url + page.lstrip("/"))
            assert driver.find_elements(By.CSS_SELECTOR, ".error") == [], (url, page)
            assert f"replica {nid}" in driver.find_element(By.CSS_SELECTOR, ".replica").text
        driver.get(url + "cluster")
        roles = [
            e.text
            for e in driver.find_elements(By.CSS_SELECTOR, "table.cluster tbody tr td:nth-child(2)")
        ]
        assert sorted(roles) == ["FOLLOWER", "FOLLOWER", "LEADER"], (nid, roles)


def test_a_started_workflow_is_listed_and_drawn(
    cluster: LocalCluster, driver: Any, started: tuple[str, str]
) -> None:
    from selenium.webdriver.common.by import By

    wid, cid = started
    url = _follower_url(cluster)
    _login(driver, url, _token(cluster, "admin"))

    def listed() -> bool:
        driver.get(url + "workflows?" + urlencode({"correlation": cid}))
        return bool(driver.find_elements(By.LINK_TEXT, wid))

    wait_for(listed, 30, "the workflow in the follower's list")
    driver.find_element(By.LINK_TEXT, wid).click()
    wait_for(lambda: _text(driver, "svg.graph") is not None, 30, "the workflow's graph")
    nodes = {
        g.get_attribute("data-ref"): g.get_attribute("data-status")
        for g in driver.find_elements(By.CSS_SELECTOR, "svg.graph g.node")
    }
    assert set(nodes) == {
        "prepare",
        "fork",
        "left",
        "right",
        "join",
        "route",
        "express",
        "standard",
    }
    assert nodes["prepare"] == "COMPLETED"
    assert nodes["left"] in ("SCHEDULED", "IN_PROGRESS") and nodes["right"] in (
        "SCHEDULED",
        "IN_PROGRESS",
    )
    assert nodes["join"] == "IN_PROGRESS" or nodes["join"] == "NOT_RUN"
    assert nodes["express"] == nodes["standard"] == "NOT_RUN"
    # Its tasks' table, with the worker that completed the first one.
    row = driver.find_element(By.CSS_SELECTOR, "table.tasks tr[data-ref='prepare']")
    assert "ui-test" in row.text


def test_pause_then_resume_clicked_on_a_follower_take_effect(
    cluster: LocalCluster, driver: Any, client: Any, started: tuple[str, str]
) -> None:
    from selenium.webdriver.common.by import By

    wid, _ = started
    _open_as(cluster, driver, "operator", wid)
    for action, status, label in (("pause", "PAUSED", "Pause"), ("resume", "RUNNING", "Resume")):
        driver.find_element(By.CSS_SELECTOR, f"button[data-action='{action}']").click()
        wait_for(lambda s=status: _status(client, wid) == s, 30, f"the workflow {status}")  # type: ignore[misc]
        note = f"{label}: accepted by the API."
        wait_for(lambda n=note: _text(driver, ".note") == n, 30, "the page after the action")  # type: ignore[misc]
        # That page already shows it (the write's sequence rides a cookie to the next read).
        assert _text(driver, "table.summary .badge") == status
    # A refused action shows the API's own answer on the page.
    driver.find_element(By.NAME, "task_reference_name").send_keys("no_such_task")
    driver.find_element(By.CSS_SELECTOR, "button[data-action='skip']").click()
    error = wait_for(lambda: _text(driver, ".error"), 30, "the API's refusal on the page")
    assert re.match(r"^(INVALID_ARGUMENT|NOT_FOUND|FAILED_PRECONDITION)\b", error), error
    assert "no_such_task" in error
    assert _status(client, wid) == "RUNNING"


def _https(
    url: str, cluster: LocalCluster, data: dict[str, str] | None = None, **headers: str
) -> tuple[int, str]:
    """One request verifying the replica's certificate against the cluster's CA."""
    assert cluster.cfg.tls is not None
    ctx = ssl.create_default_context(cafile=cluster.cfg.tls.ca)
    body = urlencode(data).encode() if data is not None else None
    if body is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=15) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_reader_gets_no_buttons_and_forged_posts_are_refused(
    cluster: LocalCluster, driver: Any, client: Any, started: tuple[str, str]
) -> None:
    from selenium.webdriver.common.by import By

    wid, _ = started
    url = _open_as(cluster, driver, "reader", wid)
    assert driver.find_elements(By.CSS_SELECTOR, "svg.graph g.node")
    assert driver.find_elements(By.CSS_SELECTOR, "button[data-action]") == []
    assert "(reader)" in driver.find_element(By.CSS_SELECTOR, ".who").text
    # The reader forges the Pause form with its own session's CSRF token: the API refuses.
    csrf = driver.find_element(By.CSS_SELECTOR, "input[name='csrf']").get_attribute("value")
    reader = f"orch_token={_token(cluster, 'reader')}"
    form = {"action": "pause", "request_id": str(uuid.uuid4()), "csrf": csrf}
    status, body = _https(f"{url}workflows/{wid}", cluster, form, Cookie=reader)
    assert status == 403 and "PERMISSION_DENIED" in body
    # An admin's session without its CSRF token, or from another origin: refused by the UI.
    admin = f"orch_token={_token(cluster, 'admin')}"
    status, page = _https(f"{url}workflows/{wid}", cluster, Cookie=admin)
    assert status == 200
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found
    no_csrf = {k: v for k, v in form.items() if k != "csrf"}
    assert _https(f"{url}workflows/{wid}", cluster, no_csrf, Cookie=admin)[0] == 403
    forged = dict(form, csrf=found.group(1))
    status, _ = _https(
        f"{url}workflows/{wid}", cluster, forged, Cookie=admin, Origin="https://evil.example"
    )
    assert status == 403
    assert _status(client, wid) == "RUNNING"
    # The same form from the UI's own origin would pass (the refusals above were the checks').
    origin = url.rstrip("/")
    status, _ = _https(
        f"{url}workflows/{wid}", cluster, dict(forged, action="bogus"), Cookie=admin, Origin=origin
    )
    assert status == 400
