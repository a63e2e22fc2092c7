"""The web console against `make dev`: its routes over real HTTP, and the page itself in a real
headless Chromium (Debian's, driven by Selenium through Debian's chromedriver, so nothing is
downloaded): sign in, watch a workflow's steps, approve and deny `confirm` tasks, and see that
what the API returns is shown as text, never as markup."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from a3s_serverless import Agent
from a3s_serverless.transport import HttpTransport

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"  # git-ignored
WAIT_S = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("console")
    proc = subprocess.Popen([sys.executable, "-m", "a3s_local.server", "--port", "0",
                             "--workspace-root", str(root / "wsroot")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        info = json.loads(proc.stdout.readline())  # the server's first line names its endpoint
        info["port"] = int(info["endpoint"].rsplit(":", 1)[1])
        info["root"] = root
        yield info
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def get(server, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One GET with the path sent exactly as written (http.client does not normalise it)."""
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# -- the routes ----------------------------------------------------------------------------------
def test_given_no_key_when_the_console_is_fetched_then_page_and_assets_come_typed_with_a_strict_csp(server):
    status, headers, body = get(server, "/console")
    assert status == 200, body
    assert headers["content-type"] == "text/html; charset=utf-8"
    csp = {d.split()[0]: d.split()[1:] for d in headers["content-security-policy"].split("; ")}
    assert csp["default-src"] == ["'none'"] and csp["script-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"] and "'unsafe-inline'" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-cache" and headers["etag"]
    page = body.decode()
    assert '<script type="module" src="console/app.js"></script>' in page
    assert "<script>" not in page and " on" not in page.split("<body>")[1].replace(" only", "")  # no inline code

    for name, media_type in (("app.js", "text/javascript"), ("gantt.js", "text/javascript"),
                             ("app.css", "text/css")):
        status, headers, body = get(server, f"/console/{name}")
        assert (status, headers["content-type"]) == (200, f"{media_type}; charset=utf-8"), name
        assert body and headers["content-security-policy"]

    # A page the browser has: revalidated, and answered with 304 and no body.
    _, headers, _ = get(server, "/console/app.js")
    status, again, body = get(server, "/console/app.js", {"If-None-Match": headers["etag"]})
    assert (status, body, again["etag"]) == (304, b"", headers["etag"])


@pytest.mark.parametrize("path", ["/console/nope.js", "/console/index.html", "/console/..", "/console/.%2e",
                                  "/console/..%2Fapp.py", "/console/../app.py", "/console/../../functions/api/app.py",
                                  "/console/%2e%2e/%2e%2e/template.yaml"])
@pytest.mark.parametrize("key", [None, "a3s-local-key"])
def test_given_a_name_the_console_does_not_have_then_404_or_401_and_never_a_file(server, path, key):
    status, headers, body = get(server, path, {"Authorization": f"Bearer {key}"} if key else None)
    assert status in (401, 404), (status, body)
    assert headers["content-type"] == "application/json"
    assert b"def handler" not in body and b"AWSTemplateFormatVersion" not in body
    if path == "/console/nope.js":
        assert json.loads(body)["error"]["code"] == "not_found"


def test_given_the_console_is_public_then_the_api_still_needs_a_key(server):
    assert get(server, "/sessions")[0] == 401
    assert get(server, "/sessions", {"Authorization": "Bearer wrong"})[0] == 403


# -- the page in a browser -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"no Chromium here ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900"):
        options.add_argument(arg)
    # An explicit driver path: Selenium Manager is never asked to fetch a driver or a browser.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def signed_in(server, browser):
    """The console open in the browser, signed in with the dev server's key."""
    from selenium.webdriver.common.by import By

    browser.get(server["endpoint"] + "/console")
    wait(browser, lambda d: d.find_element(By.ID, "key").is_displayed())
    sign_in(browser, "not-the-key")
    error = wait(browser, lambda d: d.find_element(By.ID, "login-error").text)
    assert "API key was refused (403" in error
    assert browser.find_element(By.ID, "app").is_displayed() is False
    sign_in(browser, server["api_key"])
    wait(browser, lambda d: d.find_element(By.ID, "app").is_displayed())
    assert browser.execute_script("return sessionStorage.getItem('a3s.apiKey')") == server["api_key"]
    return browser


def sign_in(browser, key: str) -> None:
    from selenium.webdriver.common.by import By

    field = browser.find_element(By.ID, "key")
    field.clear()
    field.send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()


def wait(browser, condition, timeout: float = WAIT_S):
    """What `condition` returns once it is truthy (Selenium polls the page with a deadline). The
    console redraws what it polls, so an element read mid-redraw is simply read again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(condition)


def show(browser, kind: str, id_: str) -> None:
    browser.execute_script("location.hash = arguments[0]", f"#{kind}/{id_}")


def text_of(browser, css: str) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, css))


def screenshot(browser, tmp_path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    assert browser.save_screenshot(str(path))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(path, ARTIFACTS / path.name)
    return path


@pytest.fixture
def connect(server, tmp_path):
    """A session on the dev server (as another process would make it) and a raw transport."""
    workspace = tmp_path / "repo"
    workspace.mkdir()
    agent = Agent.connect(server["endpoint"], api_key=server["api_key"])
    return SimpleNamespace(new_session=lambda **opts: agent.session(str(workspace), **opts), workspace=workspace,
                           transport=HttpTransport(server["endpoint"], server["api_key"]))


def test_given_a_running_workflow_when_shown_then_its_steps_progress_to_done_on_a_time_axis(
        signed_in, connect, tmp_path):
    from selenium.webdriver.common.by import By

    browser = signed_in
    session = connect.new_session(permissive=True)
    specs = [{"task_id": "fetch", "agent": "general", "prompt": "fetch\n/sleep 1500"},
             {"task_id": "build", "agent": "general", "prompt": "build\n/sleep 5000"},
             {"task_id": "lint", "agent": "general", "prompt": "/fail lint found 3 problems"}]
    started = connect.transport.request("POST", f"/sessions/{session.session_id}/workflows",
                                {"kind": "parallel", "specs": specs})
    show(browser, "session", session.session_id)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'#workflows [data-workflow="{started["workflow_id"]}"]'))
    browser.find_element(By.CSS_SELECTOR, f'#workflows [data-workflow="{started["workflow_id"]}"] a').click()

    # While it runs: the slow step (the second) is seen running, as a bar that has not settled.
    running = 'svg g.step[data-index="1"][data-status="running"] rect.bar'
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, running))
    wait(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#steps tbody tr')].map((r) => r.dataset.status)")
        == ["succeeded", "succeeded", "failed"])
    wait(browser, lambda d: "3 of 3 steps settled" in text_of(d, "#workflow-progress"))
    wait(browser, lambda d: text_of(d, "h2 .badge") == "failed")  # one step failed: so did the workflow

    # Once done, the steps are named by the caller's task ids.
    wait(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#steps tbody td:first-child')].map((t) => t.firstChild.data)")
        == ["fetch", "build", "lint"])
    names = ["fetch", "build", "lint"]
    bars = {names[int(g.get_attribute("data-index"))]: g.find_element(By.CSS_SELECTOR, "rect.bar")
            for g in browser.find_elements(By.CSS_SELECTOR, "svg g.step")}
    width = {k: float(b.get_attribute("width")) for k, b in bars.items()}
    assert width["build"] > width["fetch"] > width["lint"]  # one time axis: longer work, longer bar
    assert bars["lint"].get_attribute("class") == "bar failed"
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg circle.settle")) == 3
    wait(browser, lambda d: "lint found 3 problems" in text_of(d, ".detail pre.error"))
    screenshot(browser, tmp_path, "console-workflow")


def _pending_card(browser, session_id: str):
    from selenium.webdriver.common.by import By

    show(browser, "session", session_id)
    return wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#tasks .task.confirm"))[0]


def test_given_a_confirm_task_when_approved_in_the_console_then_the_run_goes_on_and_succeeds(
        signed_in, connect, tmp_path):
    from selenium.webdriver.common.by import By

    browser = signed_in
    session = connect.new_session()  # not permissive: write waits for an approval on the control lane
    handle = session.send_async('save\n/tool write {"file_path": "a.txt", "content": "hello"}')
    card = _pending_card(browser, session.session_id)
    assert "Allow write?" in card.text and '"file_path": "a.txt"' in card.text
    screenshot(browser, tmp_path, "console-approval")
    card.find_element(By.CSS_SELECTOR, "button.approve").click()
    wait(browser, lambda d: "Approved" in card.text)
    assert card.get_attribute("data-answer") == "approved"
    assert session.pending_external_tasks() == []

    show(browser, "run", handle.run_id)
    wait(browser, lambda d: text_of(d, "h2 .badge") == "succeeded")
    wait(browser, lambda d: "tool write" in text_of(d, "#timeline li.tool")
         and "wrote 5 bytes to a.txt" in text_of(d, "#timeline li.tool"))
    assert handle.wait(timeout=WAIT_S).status == "succeeded"
    assert (connect.workspace / "a.txt").read_text() == "hello"
    screenshot(browser, tmp_path, "console-run")


def test_given_a_confirm_task_when_denied_in_the_console_then_the_tool_is_refused(signed_in, connect):
    from selenium.webdriver.common.by import By

    browser = signed_in
    session = connect.new_session()
    handle = session.send_async('clean up\n/tool bash {"command": "touch x"}')
    card = _pending_card(browser, session.session_id)
    card.find_element(By.CSS_SELECTOR, "button.deny").click()
    wait(browser, lambda d: "Denied" in card.text)
    assert card.get_attribute("data-answer") == "denied"
    assert all(not b.is_enabled() for b in card.find_elements(By.TAG_NAME, "button"))

    show(browser, "run", handle.run_id)
    wait(browser, lambda d: text_of(d, "h2 .badge") == "succeeded")
    wait(browser, lambda d: "permission denied for bash: denied" in text_of(d, "#timeline li.tool"))
    assert not (connect.workspace / "x").exists()


def test_given_markup_in_a_runs_text_when_shown_then_it_is_text_not_elements(signed_in, connect, tmp_path):
    from selenium.webdriver.common.by import By

    browser = signed_in
    session = connect.new_session(permissive=True)
    payload = "<img src=x onerror=\"document.title='owned'\"><script>window.owned=1</script>"
    result = session.send(f"say {payload}")
    assert payload in result.text

    show(browser, "run", result.run_id)
    wait(browser, lambda d: payload in text_of(d, ".run-text"))
    wait(browser, lambda d: payload in text_of(d, "#timeline li.text"))  # the events come on their own request
    show(browser, "session", session.session_id)
    wait(browser, lambda d: "<img src=x" in text_of(d, "#runs td.text"))
    assert browser.find_elements(By.CSS_SELECTOR, "#app img, #app script") == []
    assert browser.title == "a3s console" and browser.execute_script("return window.owned") is None


def test_given_a_narrow_screen_then_the_console_is_one_column(signed_in, connect, tmp_path):
    from selenium.webdriver.common.by import By

    browser = signed_in
    session = connect.new_session(permissive=True)
    session.send("hello")
    browser.set_window_size(420, 900)
    try:
        show(browser, "session", session.session_id)
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#runs tbody tr"))
        nav = browser.find_element(By.CSS_SELECTOR, "#app nav").rect
        detail = browser.find_element(By.ID, "detail").rect
        assert detail["y"] >= nav["y"] + nav["height"] and detail["x"] == nav["x"]
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        screenshot(browser, tmp_path, "console-narrow")
    finally:
        browser.set_window_size(1280, 900)
