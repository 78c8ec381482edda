"""The console at /ui in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven by Selenium, against the real binary with two tenants. One runner and one browser for the
module. Each page's screenshot is kept under Tests/Interop/artifacts/console/ (git-ignored);
the best of them are copied by hand to docs/console/.

test_attacks_console.py tries the same console without a browser (cookie, CSRF, tenant scoping)."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from interop_support import INITIALIZE_BODY, OPERATOR_KEY, jsonrpc_messages, raw_headers
from test_attacks_console import World, start_world

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (Tests/Interop/requirements.txt)")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

VERSION = INITIALIZE_BODY["params"]["protocolVersion"]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "console"
# What a granted kb.publish call answers once it ran: a catalog tool with no upstream server behind
# it, so the confined worker answers unknown_tool (as in test_approvals.py).
RAN = "unknown_tool"
WAIT_S = 15

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("chromium and chromium-driver are not installed (scripts/bootstrap.sh installs them)",
                allow_module_level=True)


class Client:
    """An MCP client of one session, by raw JSON-RPC over Streamable HTTP."""

    def __init__(self, url: str, claim: str):
        self.url, self.claim, self.next_id = url, claim, 1
        self.http = httpx.Client(timeout=30)
        opened = self.http.post(url, json=INITIALIZE_BODY, headers=raw_headers(claim))
        assert opened.status_code == 200, opened.text
        self.sid = opened.headers["mcp-session-id"]
        self.http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                       headers=raw_headers(claim, self.sid, VERSION))

    def request(self, method: str, params: dict[str, Any]) -> httpx.Response:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        return self.http.post(self.url, json=body, headers=raw_headers(self.claim, self.sid, VERSION))

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        response = self.request("tools/call", {"name": name, "arguments": arguments})
        assert response.status_code == 200, response.text
        return jsonrpc_messages(response)[0]["result"]

    def tools(self) -> list[str]:
        return [t["name"] for t in jsonrpc_messages(self.request("tools/list", {}))[0]["result"]["tools"]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = start_world(tmp_path_factory.mktemp("console"))
    yield World(server)
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    # --no-sandbox: CI runs as root, where Chromium's own sandbox refuses to start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1440,1000", "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def wait(driver: Any, condition: Any, what: str) -> Any:
    """A bounded poll of the page (WebDriverWait) for `condition`, failing with `what`."""
    def check(d: Any) -> Any:
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(check, message=what)


def shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def sign_in(driver: Any, world: World, key: str) -> None:
    driver.get(world.server.base_url + "/ui")
    signout = driver.find_elements(By.ID, "signout")
    if signout and signout[0].is_displayed():
        signout[0].click()
    field = wait(driver, lambda d: d.find_element(By.ID, "signin-key") if d.find_element(By.ID, "signin").is_displayed()
                 else None, "the sign-in form")
    field.send_keys(key)
    driver.find_element(By.ID, "signin-submit").click()
    wait(driver, lambda d: d.find_element(By.ID, "nav").is_displayed(), "the console after sign-in")


def open_view(driver: Any, view: str) -> None:
    driver.find_element(By.ID, f"nav-{view}").click()
    wait(driver, lambda d: d.find_element(By.ID, f"view-{view}").is_displayed(), f"the {view} view")


def card(driver: Any, approval_id: str) -> Any:
    return wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, f'article.approval[data-id="{approval_id}"]'),
                f"approval {approval_id} in the inbox")


def no_console_errors(driver: Any) -> None:
    """Nothing the CSP blocked and no script error: the page works within its own policy."""
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
              and "/ui/api/" not in entry["message"]]  # a refused API call (401/403/404) is logged too
    assert errors == [], errors


def test_sign_in_with_a_wrong_key_then_the_operator_key(world: World, browser: Any) -> None:
    browser.get(world.server.base_url + "/ui")
    field = wait(browser, lambda d: d.find_element(By.ID, "signin-key"), "the sign-in form")
    shot(browser, "signin")
    field.send_keys("lh_op_wrong")
    browser.find_element(By.ID, "signin-submit").click()
    wait(browser, lambda d: "unauthorized" in d.find_element(By.ID, "signin-error").text, "the refusal")
    assert not browser.find_element(By.ID, "nav").is_displayed()
    field.clear()
    sign_in(browser, world, OPERATOR_KEY)
    assert browser.find_element(By.ID, "who").text == "Signed in as operator"
    cookie = browser.get_cookie("lh_console")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    # The script cannot read the cookie.
    assert "lh_console" not in browser.execute_script("return document.cookie")
    no_console_errors(browser)


def test_grant_in_the_inbox_lets_the_waiting_call_run(world: World, browser: Any) -> None:
    session, claim = world.session("acme", actor="alice")
    client = Client(world.server.mcp_url, claim)
    long_value = "x" * 3000 + "-END-OF-ARGUMENT"
    arguments = {"page": "q3-results", "body": long_value, "note": "<script>window.__pwned=1</script><b>bold?</b>"}
    asked = client.call("kb.publish", arguments)["structuredContent"]["error"]
    assert asked["code"] == "approval_required"
    sign_in(browser, world, OPERATOR_KEY)
    open_view(browser, "approvals")
    item = card(browser, asked["approval_id"])
    text = item.text
    for expected in ("acme", session["id"], "alice", "w1", "kb.publish", "external", asked["approval_id"]):
        assert expected in text, (expected, text)
    # The whole arguments: the long value's end is there (scrollable, not cut), and markup is text.
    shown = item.find_element(By.CSS_SELECTOR, "pre.args").get_attribute("textContent")
    assert json.loads(shown) == arguments and "-END-OF-ARGUMENT" in shown
    assert browser.execute_script("return window.__pwned") is None
    assert item.find_elements(By.TAG_NAME, "script") == [] and item.find_elements(By.TAG_NAME, "b") == []
    shot(browser, "approvals")

    ttl = item.find_element(By.CSS_SELECTOR, "input.ttl")
    ttl.clear()
    ttl.send_keys("120")
    item.find_element(By.CSS_SELECTOR, "button.grant").click()
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f'article.approval[data-id="{asked["approval_id"]}"]'),
         "the granted approval leaving the inbox")
    row = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f'#approvals-history tr[data-id="{asked["approval_id"]}"]'),
               "the grant in the history")
    assert "granted" in row.text and "operator" in row.text

    ran = client.call("kb.publish", arguments)
    assert ran["structuredContent"]["error"]["code"] == RAN, ran

    # Deny with a reason: the reason is kept and the call stays refused.
    other = client.call("kb.publish", {"page": "q4-draft"})["structuredContent"]["error"]
    item = card(browser, other["approval_id"])
    item.find_element(By.CSS_SELECTOR, "input.reason").send_keys("drafts are not published")
    item.find_element(By.CSS_SELECTOR, "button.deny").click()
    row = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f'#approvals-history tr[data-id="{other["approval_id"]}"]'),
               "the denial in the history")
    assert "denied" in row.text and "drafts are not published" in row.text
    shot(browser, "approvals-history")
    refused = client.call("kb.publish", {"page": "q4-draft"})["structuredContent"]["error"]
    assert refused["code"] != RAN, refused
    no_console_errors(browser)


def test_narrow_then_revoke_a_live_session(world: World, browser: Any) -> None:
    session, claim = world.session("acme", actor="bob")
    client = Client(world.server.mcp_url, claim)
    before = client.tools()
    assert "repo.read_file" in before and "shell.run" in before
    # A read-tier call leaves the session a warm worker (isolation: session).
    assert "structuredContent" in client.call("repo.read_file", {"path": "missing.txt"})
    sign_in(browser, world, OPERATOR_KEY)
    open_view(browser, "sessions")
    row = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f'#sessions-table tr[data-id="{session["id"]}"]'),
               "the session in the live list")
    assert row.find_element(By.CSS_SELECTOR, "td.connections").text == "1"
    assert row.find_element(By.CSS_SELECTOR, "td.visible-tools").text == str(len(before))
    assert row.find_element(By.CSS_SELECTOR, "td.warm-workers").text == "1"
    shot(browser, "sessions")

    row.find_element(By.CSS_SELECTOR, "input.deny-patterns").send_keys("shell.*")
    row.find_element(By.CSS_SELECTOR, "button.apply-scope").click()
    wait(browser, lambda d: "deny: shell.*" in d.find_element(By.CSS_SELECTOR, f'#sessions-table tr[data-id="{session["id"]}"]').text,
         "the narrowed scope")
    row = browser.find_element(By.CSS_SELECTOR, f'#sessions-table tr[data-id="{session["id"]}"]')
    assert row.find_element(By.CSS_SELECTOR, "td.visible-tools").text == str(len(before) - 1)
    after = client.tools()
    assert "shell.run" not in after and "repo.read_file" in after

    row.find_element(By.CSS_SELECTOR, "button.revoke-session").click()
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f'#sessions-table tr[data-id="{session["id"]}"]'),
         "the revoked session leaving the live list")
    # Its client is refused: the connection was closed, and a new one with the claim is refused.
    assert client.request("tools/list", {}).status_code == 404
    reopened = httpx.post(world.server.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(claim), timeout=20)
    assert reopened.status_code in (401, 403) and "session_revoked" in reopened.text, reopened.text

    # Revoking a lease keeps the session listed, with its lease shown as revoked.
    leased, _ = world.session("acme", actor="carol")
    browser.refresh()
    wait(browser, lambda d: d.find_element(By.ID, "view-sessions").is_displayed(), "the sessions view")
    row = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f'#sessions-table tr[data-id="{leased["id"]}"]'),
               "the second session")
    row.find_element(By.CSS_SELECTOR, "button.revoke-lease").click()
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f'#sessions-table tr[data-id="{leased["id"]}"] td.lease')
         .text.startswith("revoked"), "the revoked lease")
    no_console_errors(browser)


def test_audit_explorer_filters_verifies_and_exports(world: World, browser: Any) -> None:
    session, claim = world.session("acme", actor="dora")
    client = Client(world.server.mcp_url, claim)
    client.call("repo.read_file", {"path": "missing.txt"})
    # Not a valid tool name: refused as a JSON-RPC error, and audited with the name quoted.
    assert client.request("tools/call", {"name": "kb.<img src=x onerror=alert(1)>", "arguments": {}}).status_code == 200
    sign_in(browser, world, OPERATOR_KEY)
    open_view(browser, "audit")
    chain = wait(browser, lambda d: d.find_element(By.ID, "audit-chain").text.startswith("Chain: ok") and
                 d.find_element(By.ID, "audit-chain"), "the chain's verification")
    assert "records, head" in chain.text
    form = browser.find_element(By.ID, "audit-form")
    form.find_element(By.NAME, "session_id").send_keys(session["id"])
    form.find_element(By.NAME, "tool").send_keys("repo.read_file")
    browser.find_element(By.ID, "audit-apply").click()
    rows = wait(browser, lambda d: [r for r in d.find_elements(By.CSS_SELECTOR, "#audit-table tbody tr")
                                    if session["id"] in r.text] or None, "the filtered records")
    assert all("repo.read_file" in r.text and session["id"] in r.text for r in
               browser.find_elements(By.CSS_SELECTOR, "#audit-table tbody tr"))
    rows[0].click()
    detail = json.loads(browser.find_element(By.ID, "audit-detail").text)
    assert detail["event"]["session"] == session["id"] and detail["event"]["tool"] == "repo.read_file" and detail["hash"]
    shot(browser, "audit")

    # The tool name holding markup is shown as text.
    form.find_element(By.NAME, "tool").clear()
    form.find_element(By.NAME, "event").send_keys("call.refused")
    browser.find_element(By.ID, "audit-apply").click()
    wait(browser, lambda d: "<img src=x onerror=alert(1)>" in d.find_element(By.ID, "audit-table").text,
         "the refused call with markup in its tool name")
    assert browser.find_elements(By.CSS_SELECTOR, "#audit-table img") == []

    # The export link carries the same filters; fetched with the browser's cookie it is JSON lines.
    href = browser.find_element(By.ID, "audit-export").get_attribute("href")
    assert "session_id=" + session["id"] in href and "event=call.refused" in href
    exported = httpx.get(href, cookies={"lh_console": browser.get_cookie("lh_console")["value"]}, timeout=20)
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert lines and all(r["event"]["session"] == session["id"] and r["event"]["event"] == "call.refused" for r in lines)
    no_console_errors(browser)


def test_policy_view_explains_a_tool(world: World, browser: Any) -> None:
    sign_in(browser, world, OPERATOR_KEY)
    open_view(browser, "policy")
    wait(browser, lambda d: "Version in force" in d.find_element(By.ID, "policy-version").text, "the policy version")
    assert "No reload has been rejected." in browser.find_element(By.ID, "policy-status").text
    tiers = browser.find_element(By.ID, "tiers-table").text
    assert "external" in tiers and "required" in tiers
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#tools-table tbody tr") if r.text.startswith("kb.publish"))
    assert "external" in row.text
    row.click()
    wait(browser, lambda d: "tier external:" in d.find_element(By.ID, "explain-output").text, "the explanation")
    assert "approval: required" in browser.find_element(By.ID, "explain-output").text
    shot(browser, "policy")

    # A rejected reload: the view names its errors, and the policy in force stays.
    version = browser.find_element(By.ID, "policy-version").text
    tools = world.server.policies_dir / "tools.yaml"
    original = tools.read_text()
    try:
        tools.write_text(original + '  - {pattern: "kb.other", tier: no-such-tier}\n')
        mark = len(world.server.log)
        world.server.send_signal(signal.SIGHUP)
        assert world.server.wait_for_log("policy reload rejected", after=mark), "the reload was not rejected"
        open_view(browser, "approvals")
        open_view(browser, "policy")
        status = wait(browser, lambda d: "Last reload rejected" in d.find_element(By.ID, "policy-status").text
                      and d.find_element(By.ID, "policy-status"), "the rejected reload in the view")
        assert "no-such-tier" in status.text and "tools.yaml" in status.text, status.text
        assert browser.find_element(By.ID, "policy-version").text == version
        shot(browser, "policy-rejected")
    finally:
        tools.write_text(original)
    no_console_errors(browser)


def test_a_tenant_admin_sees_only_its_tenant(world: World, browser: Any) -> None:
    acme_session, acme_claim = world.session("acme", actor="erin")
    acme_approval = world.ask_approval(acme_claim, {"page": "acme-only"})
    globex_session, globex_claim = world.session("globex", actor="gina")
    globex_approval = world.ask_approval(globex_claim, {"page": "globex-only"})
    sign_in(browser, world, world.keys["globex"])
    assert browser.find_element(By.ID, "who").text == "Signed in as tenant:globex"
    open_view(browser, "approvals")
    card(browser, globex_approval)
    assert not browser.find_elements(By.CSS_SELECTOR, f'article.approval[data-id="{acme_approval}"]')
    assert "acme" not in browser.find_element(By.ID, "view-approvals").text
    shot(browser, "approvals-tenant")
    open_view(browser, "sessions")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'#sessions-table tr[data-id="{globex_session["id"]}"]'),
         "globex's session")
    assert acme_session["id"] not in browser.find_element(By.ID, "sessions-table").text
    # The same cookie against the API directly: acme's approval cannot be granted.
    cookie = browser.get_cookie("lh_console")["value"]
    csrf = browser.execute_script("return state.csrf")
    refused = httpx.post(world.server.base_url + f"/ui/api/approvals/{acme_approval}/grant", json={},
                         headers={"Origin": world.server.base_url, "X-CSRF-Token": csrf},
                         cookies={"lh_console": cookie}, timeout=20)
    assert refused.status_code == 404
    assert world.server.admin("GET", f"/approvals/{acme_approval}", expect=200).json()["approval"]["status"] == "pending"
    no_console_errors(browser)
