"""Transport-level and admin-API attacks against the real binary, with two tenants.

DNS rebinding (foreign Origin/Host), deleted and unknown MCP sessions, one tenant's claim on
another's connection, the server-scoped endpoint, malformed and oversized bodies, hidden tools
that must look nonexistent, a tenant admin key reaching for another tenant, and invalid admin
input. One runner (the shared harness: tenants acme and globex, each with workspace `main`
holding a canary) for the module, with a catalog server `kb` and a bundle.

(Ported from the Swift Tests/AttackTests/ProtocolAttackTests.swift: one test per Swift test.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from interop_support import (
    LeaseholdServer,
    error_message,
    first_message,
    leasehold_binary,
    raw_call,
    raw_headers,
    raw_initialize,
)

CONFIG = """\
catalog:
  servers:
    - id: kb
      tools:
        - {name: kb.finance, description: "finance pages"}
  bundles:
    support-desk: ["repo.read_file"]
"""


@dataclass
class Session:
    id: str
    claim: str


@dataclass
class Runner:
    server: LeaseholdServer
    acme: Session
    globex: Session

    def session(self, tenant: str, actor: str, **fields: Any) -> Session:
        session, claim = self.server.create_session(tenant_id=tenant, actor_id=actor, workspace_id="main", **fields)
        return Session(session["id"], claim)

    def fresh_claim(self, session: Session) -> str:
        return self.server.mint_claim(session.id)


@pytest.fixture(scope="module")
def transport_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LeaseholdServer]:
    base = Path(os.path.realpath(tmp_path_factory.mktemp("transport")))
    (base / "leasehold.yaml").write_text(CONFIG)
    server = LeaseholdServer(leasehold_binary(), base / "state", config=base / "leasehold.yaml").start()
    try:
        server.canary_workspaces("main")
        yield server
    finally:
        server.stop()


@pytest.fixture
def runner(transport_server: LeaseholdServer) -> Runner:
    """One server per module; every test gets fresh sessions of acme (alice) and globex (gina)."""
    built = Runner(transport_server, Session("", ""), Session("", ""))
    built.acme = built.session("acme", "alice")
    built.globex = built.session("globex", "gina")
    return built


def test_foreign_origin_and_host_are_forbidden(runner: Runner) -> None:
    url = runner.server.mcp_url
    foreign, session = raw_initialize(url, runner.acme.claim, {"Origin": "https://evil.example"})
    assert foreign.status_code == 403, foreign.text
    assert session is None
    rebound, _ = raw_initialize(url, runner.acme.claim, {"Host": "evil.example:80"})
    assert rebound.status_code == 403, rebound.text
    # Neither attempt consumed the claim: it still binds on a clean request.
    clean, clean_session = raw_initialize(url, runner.acme.claim, {"Origin": "http://localhost:3000"})
    assert clean.status_code == 200, clean.text
    assert clean_session is not None


def test_deleted_and_unknown_mcp_sessions_are_404(runner: Runner) -> None:
    url = runner.server.mcp_url
    claim = runner.fresh_claim(runner.acme)
    _, session = raw_initialize(url, claim)
    assert session is not None
    deleted = httpx.delete(url, headers=raw_headers(claim, session), timeout=20)
    assert deleted.status_code == 200, deleted.text
    after = raw_call(url, "tools/list", claim, session)
    assert after.status_code == 404, after.text
    unknown = raw_call(url, "tools/list", claim, "mcp_does_not_exist")
    assert unknown.status_code == 404, unknown.text
    assert all(0x21 <= byte <= 0x7E for byte in session.encode()), f"session ids are visible ASCII: {session!r}"


def test_another_tenants_connection_cannot_be_used(runner: Runner) -> None:
    url = runner.server.mcp_url
    _, acme_connection = raw_initialize(url, runner.acme.claim)
    assert acme_connection is not None
    globex_claim = runner.fresh_claim(runner.globex)
    # globex's valid claim presented on acme's MCP connection.
    hijack = raw_call(url, "tools/list", globex_claim, acme_connection)
    assert hijack.status_code == 401, hijack.text
    assert error_message(hijack).startswith("boundary_mismatch:"), hijack.text
    # The refused attempt did not burn globex's claim: its owner still binds it to its own connection.
    owner, owner_connection = raw_initialize(url, globex_claim)
    assert owner.status_code == 200, f"a claim refused on a foreign connection stays usable: {owner.text}"
    assert owner_connection is not None


def test_server_scoped_endpoint_narrows(runner: Runner) -> None:
    scoped = runner.server.server_url("repo")
    claim = runner.fresh_claim(runner.acme)
    result, session = raw_initialize(scoped, claim)
    assert result.status_code == 200, result.text
    assert session is not None
    listed = raw_call(scoped, "tools/list", claim, session)
    names = [tool.get("name") for tool in first_message(listed).get("result", {}).get("tools", [])]
    assert "repo.read_file" in names, listed.text
    assert "kb.finance" not in names
    # The connection is tied to its endpoint: it does not exist on the unscoped one.
    wider = raw_call(runner.server.mcp_url, "tools/list", claim, session)
    assert wider.status_code == 404, wider.text
    missing, _ = raw_initialize(runner.server.server_url("nope"), runner.fresh_claim(runner.acme))
    assert missing.status_code == 404, missing.text


def test_malformed_and_oversized_requests_get_clean_errors(runner: Runner) -> None:
    url = runner.server.mcp_url
    claim = runner.fresh_claim(runner.acme)
    _, session = raw_initialize(url, claim)
    assert session is not None
    headers = raw_headers(claim, session)
    garbage = httpx.post(url, content=b"{not json", headers=headers, timeout=20)
    assert garbage.status_code == 400, garbage.text
    huge = httpx.post(url, content=b" " * (5 << 20), headers=headers, timeout=20)
    assert huge.status_code == 413, huge.text[:500]
    unknown_method = raw_call(url, "no/such/method", claim, session)
    assert unknown_method.status_code == 200, unknown_method.text
    assert first_message(unknown_method).get("error", {}).get("code") == -32601, unknown_method.text
    # The server is still healthy afterwards.
    health = httpx.get(runner.server.base_url + "/healthz", timeout=20)
    assert health.status_code == 200, health.text


def test_hidden_tools_look_like_nonexistent_ones(runner: Runner) -> None:
    url = runner.server.mcp_url
    narrow = runner.session("acme", "alice", allowed_tool_names=["repo.read_file"])
    _, session = raw_initialize(url, narrow.claim)
    assert session is not None
    messages = []
    # The last name has a Cyrillic "і" (U+0456) where "i" belongs.
    for index, name in enumerate(["kb.finance", "no.such_tool", "Repo.read_file", "repo.read_f\u0456le"]):
        result = raw_call(url, "tools/call", narrow.claim, session, {"name": name, "arguments": {}}, 10 + index)
        assert result.status_code == 200, result.text
        message = error_message(result)
        assert "tool_not_in_scope" in message, f"{name}: {message}"
        # A name that is not a valid tool name is shown escaped and quoted; the refusal is otherwise the same.
        shown = '"repo.read_f\\u{456}le"' if name == "repo.read_f\u0456le" else name
        assert shown in message, f"{name}: {message}"
        messages.append(message.replace(shown, "<tool>"))
    assert len(set(messages)) == 1, f"hidden and nonexistent tools must be refused identically: {messages}"
    via_execute = raw_call(url, "tools/call", narrow.claim, session,
                           {"name": "system.execute_tool", "arguments": {"name": "kb.finance"}}, 20)
    assert "tool_not_in_scope" in error_message(via_execute), via_execute.text
    search = raw_call(url, "tools/call", narrow.claim, session,
                      {"name": "system.search_tools", "arguments": {"query": "finance"}}, 21)
    assert "kb.finance" not in search.text


def test_tenant_admin_key_cannot_touch_another_tenant(runner: Runner) -> None:
    server, globex, acme = runner.server, runner.globex.id, runner.acme.id
    created = server.admin("POST", "/tenants/acme/admin-keys")
    assert created.status_code == 201, created.text
    acme_key = created.json()["key"]

    def status(method: str, path: str, body: Any = None, key: str = acme_key) -> int:
        return server.admin(method, path, body, key=key).status_code

    assert status("GET", f"/sessions/{globex}") == 404
    assert status("PATCH", f"/sessions/{globex}", {"denied_tool_names": ["*"]}) == 404
    assert status("DELETE", f"/sessions/{globex}") == 404
    assert status("POST", f"/sessions/{globex}/claims") == 404
    assert status("POST", f"/sessions/{globex}/lease") == 404
    assert status("POST", "/sessions", {"tenant_id": "globex", "actor_id": "x", "workspace_id": "main"}) == 403
    assert status("POST", "/sessions", {"tenant_id": "acme", "actor_id": "x", "workspace_id": "globex-main"}) == 400
    assert status("POST", "/workspaces",
                  {"tenant_id": "globex", "workspace_id": "w2", "root": str(server.state_dir)}) == 403
    assert status("POST", "/tenants/globex/admin-keys") == 403
    listed = server.admin("GET", "/workspaces", key=acme_key)
    assert listed.status_code == 200, listed.text
    assert [w.get("tenant_id") for w in listed.json().get("workspaces", [])] == ["acme"], listed.text
    # Still works on its own tenant.
    assert status("GET", f"/sessions/{acme}") == 200
    # No key at all: an empty bearer credential (httpx refuses to send the trailing space of "Bearer ").
    no_key = httpx.get(server.api_url + f"/sessions/{acme}", headers={"Authorization": "Bearer"}, timeout=20)
    assert no_key.status_code == 401, no_key.text


def test_admin_input_is_validated(runner: Runner) -> None:
    server = runner.server
    both = server.admin("POST", "/sessions", {"tenant_id": "acme", "actor_id": "a", "workspace_id": "main",
                                              "server_id": "kb", "bundle_id": "support-desk"})
    assert both.status_code == 400, both.text
    assert both.json().get("error", {}).get("code") == "scope_conflict", both.text
    for bad in (
        {"tenant_id": "../acme", "actor_id": "a", "workspace_id": "main"},
        {"tenant_id": "acme", "actor_id": "a", "workspace_id": "main", "allowed_tool_names": ["repo read"]},
        {"tenant_id": "acme", "actor_id": "a", "workspace_id": "main", "lease_ttl_seconds": -1},
        {"tenant_id": "acme", "actor_id": "a"},
        {"tenant_id": "acme", "actor_id": "a", "workspace_id": "main", "server_id": "nope"},
    ):
        response = server.admin("POST", "/sessions", bad)
        assert response.status_code == 400, f"{bad} -> {response.status_code} {response.text}"
    state = str(server.state_dir)
    for index, root in enumerate(["/", "/etc", "relative", state + "/workspaces/acme", state + "/workspaces"]):
        response = server.admin("POST", "/workspaces", {"tenant_id": "acme", "workspace_id": f"x{index}", "root": root})
        assert response.status_code in (400, 409), f"{root} -> {response.status_code} {response.text}"
