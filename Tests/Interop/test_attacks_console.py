"""Attacks on the console at /ui, through the real binary with two tenants (acme, globex), by
plain HTTP (no browser: these also run unprivileged): another tenant's data through the cookie,
changes without the CSRF token or from another origin, the cookie on /api/v1, a planted cookie,
wrong keys, and markup in what the console shows.

tests/test_console.py drives the same console in Chromium."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from interop_support import (
    INITIALIZE_BODY,
    OPERATOR_KEY,
    LeaseholdServer,
    copy_policies,
    jsonrpc_messages,
    leasehold_binary,
    raw_headers,
    write_catalog_config,
)

VERSION = INITIALIZE_BODY["params"]["protocolVersion"]
COOKIE = "lh_console"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def start_world(base: Path) -> LeaseholdServer:
    """A runner whose kb.publish needs approval (tier external), with acme/w1 and globex/g1."""
    policies = copy_policies(base / "policies", [("kb.publish", "external")])
    config = write_catalog_config(base / "leasehold.yaml", {"kb": [("kb.publish", "publish a page")]}, {})
    server = LeaseholdServer(leasehold_binary(), base / "state", policies, config).start()
    for tenant, workspace in (("acme", "w1"), ("globex", "g1")):
        server.register_workspace(server.workspace_dir(tenant, workspace), tenant=tenant, workspace=workspace)
    return server


class Console:
    """One browser's worth of console: its cookie jar, and its CSRF token once signed in."""

    def __init__(self, server: LeaseholdServer):
        self.server = server
        self.origin = server.base_url
        self.http = httpx.Client(base_url=server.base_url, timeout=20)
        self.csrf = ""

    def sign_in(self, key: str, expect: int = 200) -> httpx.Response:
        response = self.http.post("/ui/api/signin", json={"key": key}, headers={"Origin": self.origin})
        assert response.status_code == expect, response.text
        if response.status_code == 200:
            self.csrf = response.json()["csrf_token"]
        return response

    def get(self, path: str, expect: int | None = 200) -> httpx.Response:
        response = self.http.get(path)
        if expect is not None:
            assert response.status_code == expect, f"GET {path}: {response.status_code} {response.text}"
        return response

    def change(self, path: str, body: Any = None, expect: int | None = 200, **headers: str) -> httpx.Response:
        sent = {"Origin": self.origin, "X-CSRF-Token": self.csrf, **headers}
        response = self.http.post(path, json=body or {}, headers={k: v for k, v in sent.items() if v is not None})
        if expect is not None:
            assert response.status_code == expect, f"POST {path}: {response.status_code} {response.text}"
        return response

    @property
    def cookie(self) -> str | None:
        return self.http.cookies.get(COOKIE)


class World:
    def __init__(self, server: LeaseholdServer):
        self.server = server
        self.keys = {t: server.admin("POST", f"/tenants/{t}/admin-keys", expect=201).json()["key"] for t in ("acme", "globex")}

    def session(self, tenant: str, actor: str = "agent") -> tuple[dict[str, Any], str]:
        workspace = "w1" if tenant == "acme" else "g1"
        return self.server.create_session(tenant_id=tenant, actor_id=actor, workspace_id=workspace)

    def ask_approval(self, claim: str, arguments: dict[str, Any]) -> str:
        """A kb.publish call that needs approval: its approval id."""
        with httpx.Client(timeout=20) as client:
            opened = client.post(self.server.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(claim))
            assert opened.status_code == 200, opened.text
            sid = opened.headers["mcp-session-id"]
            body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": "kb.publish", "arguments": arguments}}
            answer = jsonrpc_messages(client.post(self.server.mcp_url, json=body, headers=raw_headers(claim, sid, VERSION)))
        error = answer[0]["result"]["structuredContent"]["error"]
        assert error["code"] == "approval_required", error
        return error["approval_id"]

    def console(self, key: str) -> Console:
        console = Console(self.server)
        console.sign_in(key)
        return console


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = start_world(tmp_path_factory.mktemp("console-attacks"))
    yield World(server)
    server.stop()


def approval_status(world: World, approval_id: str) -> str:
    return world.server.admin("GET", f"/approvals/{approval_id}", expect=200).json()["approval"]["status"]


def test_the_page_and_cookie_carry_the_promised_protections(world: World) -> None:
    console = Console(world.server)
    page = console.get("/ui")
    assert page.headers["content-security-policy"] == CSP and "unsafe-inline" not in CSP
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    # No inline script or style, no event-handler attribute: the CSP would block them anyway.
    html = page.text
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/ui/static/console.js" defer>']
    assert "<style" not in html and " style=" not in html and not re.search(r"\son[a-z]+=", html)
    for asset, kind in (("/ui/static/console.js", "text/javascript"), ("/ui/static/console.css", "text/css")):
        response = console.get(asset)
        assert response.headers["content-type"].startswith(kind) and response.headers["content-security-policy"] == CSP
    script = console.get("/ui/static/console.js").text
    assert not re.search(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|\beval\(", script)

    signed = console.sign_in(OPERATOR_KEY)
    cookie = signed.headers["set-cookie"]
    parts = [part.strip() for part in cookie.split(";")]
    assert parts[0].startswith(f"{COOKIE}=lhc_") and len(parts[0]) > len(COOKIE) + 40
    assert {"HttpOnly", "SameSite=Strict", "Path=/ui"} <= set(parts), cookie
    # Loopback listener: no TLS in front, so no Secure (docs/console.md); a non-loopback one sets it.
    assert "Secure" not in parts
    # The key is in neither the cookie nor anything the page can read.
    assert OPERATOR_KEY not in cookie and OPERATOR_KEY not in signed.text
    me = console.get("/ui/api/me").json()
    assert me["principal"] == "operator" and me["csrf_token"] == console.csrf and OPERATOR_KEY not in json.dumps(me)
    assert console.get("/ui/api/me").headers["content-security-policy"] == CSP


def test_only_a_live_console_session_is_signed_in(world: World) -> None:
    anonymous = httpx.Client(base_url=world.server.base_url, timeout=20)
    for path in ("/ui/api/me", "/ui/api/approvals", "/ui/api/sessions", "/ui/api/audit", "/ui/api/policy",
                 "/ui/api/audit/export"):
        assert anonymous.get(path).status_code == 401
        assert anonymous.get(path, headers={"Cookie": f"{COOKIE}=lhc_{secrets.token_urlsafe(32)}"}).status_code == 401
    console = world.console(OPERATOR_KEY)
    # Two cookies of the name (one planted by a sibling host): neither is guessed at.
    doubled = httpx.get(world.server.base_url + "/ui/api/me", headers={"Cookie": f"{COOKIE}=x; {COOKIE}={console.cookie}"})
    assert doubled.status_code == 401
    assert httpx.get(world.server.base_url + "/ui/api/me", headers={"Cookie": f"{COOKIE}={console.cookie}"}).status_code == 200
    # Signed out: the same cookie is refused from then on.
    token = console.cookie
    console.change("/ui/api/signout")
    assert httpx.get(world.server.base_url + "/ui/api/me", headers={"Cookie": f"{COOKIE}={token}"}).status_code == 401


def test_a_planted_cookie_is_never_adopted_at_sign_in(world: World) -> None:
    planted = "lhc_" + secrets.token_urlsafe(32)
    console = Console(world.server)
    console.http.cookies.set(COOKIE, planted, domain="127.0.0.1", path="/ui")
    signed = console.http.post("/ui/api/signin", json={"key": OPERATOR_KEY}, headers={"Origin": console.origin})
    assert signed.status_code == 200
    fresh = signed.cookies.get(COOKIE)
    assert fresh and fresh != planted
    assert httpx.get(world.server.base_url + "/ui/api/me", headers={"Cookie": f"{COOKIE}={planted}"}).status_code == 401
    # A second sign-in from the same browser ends the first session.
    again = console.http.post("/ui/api/signin", json={"key": OPERATOR_KEY}, headers={"Origin": console.origin,
                                                                                   "Cookie": f"{COOKIE}={fresh}"})
    assert again.status_code == 200 and again.cookies.get(COOKIE) != fresh
    assert httpx.get(world.server.base_url + "/ui/api/me", headers={"Cookie": f"{COOKIE}={fresh}"}).status_code == 401


def test_changes_need_the_csrf_token_and_the_console_origin(world: World) -> None:
    session, claim = world.session("acme")
    approval_id = world.ask_approval(claim, {"page": "csrf-" + secrets.token_hex(4)})
    console = world.console(OPERATOR_KEY)
    grant = f"/ui/api/approvals/{approval_id}/grant"
    for headers, code in (
        ({"X-CSRF-Token": None}, "csrf_failed"),
        ({"X-CSRF-Token": ""}, "csrf_failed"),
        ({"X-CSRF-Token": "csrf_" + secrets.token_urlsafe(32)}, "csrf_failed"),
        ({"X-CSRF-Token": world.console(OPERATOR_KEY).csrf}, "csrf_failed"),  # another session's token
        ({"Origin": None}, "forbidden_origin"),
        ({"Origin": "http://evil.example"}, "forbidden_origin"),
        ({"Origin": "null"}, "forbidden_origin"),
    ):
        refused = console.change(grant, {"ttl_seconds": 60, "uses": 1}, expect=403, **headers)
        assert refused.json()["error"]["code"] == code, (headers, refused.text)
    for path in (f"/ui/api/sessions/{session['id']}/revoke", f"/ui/api/sessions/{session['id']}/lease/revoke",
                 f"/ui/api/approvals/{approval_id}/deny", "/ui/api/signout"):
        assert console.change(path, expect=403, **{"X-CSRF-Token": None}).json()["error"]["code"] == "csrf_failed"
    # Nothing changed; the console still works with the token.
    assert approval_status(world, approval_id) == "pending"
    assert world.server.admin("GET", f"/sessions/{session['id']}", expect=200).json()["session"].get("revoked_at") is None
    assert console.get("/ui/api/me").status_code == 200
    granted = console.change(grant, {"ttl_seconds": 60, "uses": 1}).json()["approval"]
    assert granted["status"] == "granted" and granted["decided_by"] == "operator"
    # Sign-in itself refuses another origin (login CSRF).
    other = httpx.post(world.server.base_url + "/ui/api/signin", json={"key": OPERATOR_KEY},
                       headers={"Origin": "http://evil.example"})
    assert other.status_code == 403 and "set-cookie" not in other.headers


def test_the_cookie_does_not_authorize_the_admin_api(world: World) -> None:
    console = world.console(OPERATOR_KEY)
    for path in ("/api/v1/approvals", "/api/v1/audit", "/api/v1/policy", "/api/v1/workspaces"):
        response = console.http.get(path)
        assert response.status_code == 401, (path, response.text)
    assert console.http.post("/api/v1/tenants/acme/admin-keys", headers={"Origin": console.origin,
                                                                       "X-CSRF-Token": console.csrf}).status_code == 401


def test_a_tenant_admin_console_reaches_only_its_tenant(world: World) -> None:
    acme_session, acme_claim = world.session("acme", actor="alice")
    acme_approval = world.ask_approval(acme_claim, {"page": "acme-secret-" + secrets.token_hex(4)})
    globex_session, globex_claim = world.session("globex", actor="gina")
    globex_approval = world.ask_approval(globex_claim, {"page": "globex-" + secrets.token_hex(4)})
    globex = world.console(world.keys["globex"])
    assert globex.get("/ui/api/me").json() | {"csrf_token": ""} == {"principal": "tenant:globex", "tenant": "globex",
                                                                     "csrf_token": ""}

    # Reading: only globex's, and asking for acme's is refused, not silently narrowed.
    pending = globex.get("/ui/api/approvals").json()["approvals"]
    assert [a["approval"]["id"] for a in pending] == [globex_approval]
    assert all(a["approval"]["tenant_id"] == "globex" for a in globex.get("/ui/api/approvals?view=history").json()["approvals"])
    sessions = globex.get("/ui/api/sessions").json()["sessions"]
    assert {s["session"]["tenant_id"] for s in sessions} == {"globex"} and globex_session["id"] in [s["session"]["id"] for s in sessions]
    for path in ("/ui/api/approvals?tenant_id=acme", "/ui/api/sessions?tenant_id=acme", "/ui/api/audit?tenant_id=acme",
                 "/ui/api/audit/export?tenant_id=acme", "/ui/api/policy?tenant_id=acme",
                 "/ui/api/policy/explain?tool=kb.publish&tenant_id=acme"):
        assert globex.get(path, expect=403).json()["error"]["code"] == "forbidden", path
    audit = globex.get("/ui/api/audit?limit=10000").json()["records"]
    assert audit and {r["event"].get("tenant") for r in audit} == {"globex"}
    assert globex.get(f"/ui/api/audit?session_id={acme_session['id']}").json()["records"] == []
    export = globex.get("/ui/api/audit/export").text
    assert export and "acme" not in export and all(json.loads(line)["event"]["tenant"] == "globex" for line in export.splitlines())
    # The whole log's size and head are the operator's; a tenant admin learns whether it holds.
    assert globex.get("/ui/api/audit/verify").json() == {"status": "ok"}
    assert "status" not in globex.get("/ui/api/policy").json()

    # Acting: every change on acme's objects is refused as if they did not exist, and nothing changes.
    for path, body in (
        (f"/ui/api/approvals/{acme_approval}/grant", {"ttl_seconds": 60, "uses": 1}),
        (f"/ui/api/approvals/{acme_approval}/deny", {"reason": "no"}),
        (f"/ui/api/sessions/{acme_session['id']}/scope", {"denied_tool_names": ["*"]}),
        (f"/ui/api/sessions/{acme_session['id']}/lease/revoke", {}),
        (f"/ui/api/sessions/{acme_session['id']}/revoke", {}),
    ):
        refused = globex.change(path, body, expect=404)
        assert refused.json()["error"]["code"] == "not_found" and "acme" not in refused.text, path
    assert approval_status(world, acme_approval) == "pending"
    acme_now = world.server.admin("GET", f"/sessions/{acme_session['id']}", expect=200).json()["session"]
    assert acme_now.get("revoked_at") is None and acme_now["lease"].get("revoked_at") is None
    assert acme_now.get("denied_tool_names") is None
    # Its own approval it may decide.
    denied = globex.change(f"/ui/api/approvals/{globex_approval}/deny", {"reason": "not today"}).json()["approval"]
    assert denied["status"] == "denied" and denied["decided_by"] == "tenant:globex" and denied["deny_reason"] == "not today"


def test_markup_in_arguments_and_tool_names_is_data(world: World) -> None:
    session, claim = world.session("acme", actor="mallory")
    markup = "<script>window.__pwned=1</script><img src=x onerror=alert(1)>"
    approval_id = world.ask_approval(claim, {"page": markup})
    # A tool name holding markup reaches the audit log through a refused call (a fresh claim: the
    # first is bound to the connection that asked for the approval).
    claim = world.server.mint_claim(session["id"])
    with httpx.Client(timeout=20) as client:
        opened = client.post(world.server.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(claim))
        sid = opened.headers["mcp-session-id"]
        body = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "kb.<script>x</script>", "arguments": {}}}
        client.post(world.server.mcp_url, json=body, headers=raw_headers(claim, sid, VERSION))
    console = world.console(OPERATOR_KEY)
    listed = console.get("/ui/api/approvals")
    assert listed.headers["content-type"] == "application/json" and listed.headers["x-content-type-options"] == "nosniff"
    shown = next(a for a in listed.json()["approvals"] if a["approval"]["id"] == approval_id)["approval"]
    # The whole arguments, byte for byte as canonical JSON, beside their digest.
    assert json.loads(shown["arguments"]) == {"page": markup} and shown["arguments_sha256"] == shown["arguments_digest"]
    # The page is the same static file whatever the data: nothing is rendered into it on the server.
    assert markup not in console.get("/ui").text
    # The log shows a name that is not a valid tool name quoted (ToolName.display); the filter finds it.
    refused = console.http.get("/ui/api/audit", params={"tool": '"kb.<script>x</script>"'}).json()["records"]
    assert [r["event"]["event"] for r in refused] == ["call.refused"]


def test_wrong_keys_are_refused_audited_and_rate_limited(tmp_path: Path) -> None:
    # A runner of its own: the limit is per client address, and every test here comes from 127.0.0.1.
    server = start_world(tmp_path)
    try:
        console = Console(server)
        for attempt in range(10):
            refused = console.sign_in("lh_tk_" + secrets.token_urlsafe(32), expect=401)
            assert "set-cookie" not in refused.headers and refused.json()["error"]["code"] == "unauthorized"
        # Over the limit the right key is not even looked at until the window passes.
        limited = console.sign_in(OPERATOR_KEY, expect=429)
        assert limited.json()["error"]["code"] == "too_many_sign_ins" and "set-cookie" not in limited.headers
        assert console.sign_in("", expect=429)
        records = server.admin("GET", "/audit?limit=10000", expect=200).json()["records"]
        refusals = [r["event"] for r in records if r["event"]["event"] == "console.signin.refused"]
        # Sampled like every unauthenticated refusal: the first from the address at once.
        assert refusals and refusals[0]["code"] == "console_signin_refused" and "127.0.0.1" in refusals[0]["detail"]
        assert all("lh_tk_" not in json.dumps(r) for r in records)
        # The admin API is not rate limited by the console's failures (its own bounds apply).
        assert server.admin("GET", "/policy").status_code == 200
    finally:
        server.stop()
