"""A 500-tool fixture catalog: every surface must agree with a scope model computed in Python.

The expected visible set is recomputed here from DESIGN.md's rule (universe ∩ claim.allowed_tools
∩ session allow − session deny ∩ has-a-tier, `*` matching any run including dots, case-sensitive)
with a regex-based matcher, and compared with tools/list, system.search_tools,
system.execute_tool and tools/call, on /mcp and /mcp/servers/{id}.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import pytest

from interop_support import (
    BUILTIN_SYSTEM_TOOLS,
    BUILTIN_WORKSPACE_TOOLS,
    INITIALIZE_BODY,
    Connection,
    Patterns,
    ScopeModel,
    assert_ran,
    assert_not_in_scope,
    copy_policies,
    glob_match,
    http_mcp,
    policy_patterns,
    raw_headers,
    raw_post,
    run_cli,
    search_names,
    write_catalog_config,
)

pytestmark = pytest.mark.anyio

# server -> (areas, verbs); names are f"{server}.{area}_{verb}"; counts multiply to 500.
SERVERS: dict[str, tuple[list[str], list[str]]] = {
    "kb": (
        ["support", "support_internal", "finance", "legal", "eng", "Support", "sales", "hr-policy", "ops", "product",
         "security"],
        ["faq", "search_articles", "get_article", "delete_article", "list", "summarize", "export", "sync_admin",
         "search_index", "translate"],
    ),
    "crm": (
        ["contact", "account", "lead", "deal", "ticket", "contact_export", "note", "Contact", "campaign", "segment"],
        ["read", "create", "update", "delete_record", "search_all", "merge", "list_read", "export_csv", "audit_admin",
         "bulk-update"],
    ),
    "ci": (
        ["job", "pipeline", "runner", "deploy", "artifact", "cache", "secret", "build", "test"],
        ["status", "logs", "retry", "cancel", "prod", "staging", "delete_old", "list", "search_runs", "trigger_admin"],
    ),
    "docs": (
        ["user_guide", "admin_guide", "api_v1", "api_v2", "draft", "release_notes", "faq", "tutorial"],
        ["get", "search_pages", "render", "draft_edit", "publish", "delete_page", "list", "diff", "export",
         "translate_admin"],
    ),
    "billing": (
        ["invoice", "invoice_void", "payment", "refund", "subscription", "usage", "tax"],
        ["get", "list", "create", "monthly_report", "delete_draft", "search_ledger", "export", "approve_admin",
         "reconcile", "notify"],
    ),
    "hr": (
        ["employee", "read_salary", "read_directory", "leave", "review"],
        ["get", "list", "update", "delete_record", "search_people", "export", "history", "approve_admin", "summary",
         "notify"],
    ),
}

BUNDLES = {
    "support-desk": ["kb.support_*", "crm.contact_*", "crm.ticket_*", "repo.read_file", "docs.faq_*"],
    "finance": ["billing.*", "kb.finance_*"],
    "ci-observer": ["ci.*_status", "ci.*_logs", "ci.*_list"],
}

# Tiers for the fixture servers. Deliberately partial: billing.refund_*, billing.subscription_*,
# billing.usage_*, billing.tax_* (except *_report), hr.employee_* etc. have no tier -> denied.
TIER_RULES = [
    ("kb.*", "read"),
    ("crm.*", "write"),
    ("ci.*", "exec"),
    ("docs.*", "read"),
    ("billing.invoice_*", "read"),
    ("billing.*_report", "read"),
    ("billing.payment_*", "write"),
    ("hr.read_*", "read"),
]

SESSION_ALLOW = [
    "kb.support_*", "kb.finance_*", "kb.legal_faq", "crm.*_read", "crm.contact_*", "crm.deal_*", "ci.*",
    "docs*guide*", "docs.api_v2_*", "billing.invoice_*", "billing.*_report", "billing.refund_*", "hr.*",
    "*_search_*", "repo.*", "shell.run",
]
SESSION_DENY = [
    "*_delete_*", "*_admin", "kb*_internal_*", "crm.contact_export*", "ci.deploy_*", "ci.*_prod",
    "docs.*draft*", "billing.invoice_void*", "repo.write_file", "repo.apply_patch", "shell.*", "hr.read_salary*",
    "*-update",
]

SEARCH_QUERIES = ["support", "invoice", "search", "report", "delete", "admin", "status logs", "kb", "crm contact",
                  "guide", "export", "faq article", "read", "Support", "repo file"]


def build_catalog() -> tuple[dict[str, list[tuple[str, str]]], dict[str, str], dict[str, str]]:
    """-> (servers for the config file, name -> server, name -> unique search token)."""
    servers: dict[str, list[tuple[str, str]]] = {}
    owner: dict[str, str] = {}
    token: dict[str, str] = {}
    index = 0
    for server, (areas, verbs) in SERVERS.items():
        entries = []
        for area, verb in itertools.product(areas, verbs):
            name = f"{server}.{area}_{verb}"
            unique = f"uq{index:04d}x"
            words = f"{area} {verb}".replace("_", " ").replace("-", " ")
            entries.append((name, f"{server.upper()} {words} operation (ref {unique})"))
            owner[name] = server
            token[name] = unique
            index += 1
        servers[server] = entries
    return servers, owner, token


CONFIG_SERVERS, FIXTURE_OWNER, UNIQUE_TOKEN = build_catalog()
DESCRIPTIONS = {name: desc for entries in CONFIG_SERVERS.values() for name, desc in entries}
assert len(FIXTURE_OWNER) == 500


@pytest.fixture
def catalog_server(tmp_path: Path, start_server, binary):
    policies = copy_policies(tmp_path / "policies", TIER_RULES)
    config = write_catalog_config(tmp_path / "leasehold.yaml", CONFIG_SERVERS, BUNDLES)
    catalog = dict(FIXTURE_OWNER)
    catalog.update({name: name.split(".")[0] for name in BUILTIN_WORKSPACE_TOOLS})
    model = ScopeModel(catalog=catalog, tier_patterns=policy_patterns(policies), bundles=BUNDLES)

    # `policy check` must accept the fixture (no ambiguous tiers) and warn exactly for the tools our
    # model considers unmapped.
    out = run_cli(binary, "policy", "check", "--policies", str(policies), "--config", str(config))
    warned = {line.split()[1] for line in out.splitlines() if line.startswith("warning:")}
    unmapped = {n for n in catalog if not Patterns(model.tier_patterns).matches(n)}
    assert unmapped, "the fixture should contain tools without a tier"
    assert warned == unmapped, f"policy check disagrees with the model: {sorted(warned ^ unmapped)[:10]}"

    return start_server(policies=policies, config=config), model


def test_fixture_patterns_are_meaningful() -> None:
    """Guards the fixture itself: every pattern matters, so a mutated matcher cannot go unnoticed."""
    names = list(FIXTURE_OWNER) + list(BUILTIN_WORKSPACE_TOOLS)
    assert len(SESSION_ALLOW) + len(SESSION_DENY) >= 20
    for pattern in SESSION_ALLOW + SESSION_DENY + [p for ps in BUNDLES.values() for p in ps]:
        assert any(glob_match(pattern, n) for n in names), f"pattern {pattern} matches no tool"
    allowed = Patterns(SESSION_ALLOW).matching(names)
    for pattern in SESSION_DENY:
        assert any(glob_match(pattern, n) for n in allowed), f"deny pattern {pattern} removes nothing"
    # Case sensitivity and dots: kb.Support_* is not kb.support_*; `*` crosses the dot.
    assert not glob_match("kb.support_*", "kb.Support_faq")
    assert glob_match("kb*_internal_*", "kb.support_internal_faq")
    assert glob_match("docs*guide*", "docs.user_guide_get")
    assert not glob_match("docs.guide", "docsxguide")


async def _check_listing(conn: Connection, expected: set[str], label: str) -> None:
    tools = await conn.session.list_tools()
    names = [t.name for t in tools.tools]
    assert len(names) == len(set(names)), f"{label}: duplicates in tools/list"
    missing, extra = expected - set(names), set(names) - expected
    assert not missing and not extra, f"{label}: missing {sorted(missing)[:15]} extra {sorted(extra)[:15]}"
    for tool in tools.tools:
        if tool.name in DESCRIPTIONS:
            assert tool.description == DESCRIPTIONS[tool.name], tool


async def _check_search(conn: Connection, expected: set[str], label: str, samples: int = 25) -> None:
    session = conn.session
    for query in SEARCH_QUERIES:
        found = search_names(await session.call_tool("system.search_tools", {"query": query, "limit": 100}))
        assert len(found) == len(set(found)), f"{label}: duplicate search hits for {query!r}"
        leaked = set(found) - expected
        assert not leaked, f"{label}: search {query!r} returned hidden tools {sorted(leaked)}"
    # Unique tokens: a visible tool is found exactly, a hidden one not at all.
    rng = random.Random(f"search-{label}")
    fixture_visible = sorted(expected & set(FIXTURE_OWNER))
    fixture_hidden = sorted(set(FIXTURE_OWNER) - expected)
    for name in rng.sample(fixture_visible, min(samples, len(fixture_visible))):
        found = search_names(await session.call_tool("system.search_tools", {"query": UNIQUE_TOKEN[name]}))
        assert found == [name], f"{label}: searching {UNIQUE_TOKEN[name]} for visible {name} gave {found}"
    for name in rng.sample(fixture_hidden, min(samples, len(fixture_hidden))):
        found = search_names(await session.call_tool("system.search_tools", {"query": UNIQUE_TOKEN[name]}))
        assert found == [], f"{label}: searching {UNIQUE_TOKEN[name]} revealed hidden {name}: {found}"
    # A broad query that matches many visible tools is capped by limit.
    found = search_names(await session.call_tool("system.search_tools", {"query": "operation", "limit": 5}))
    assert len(found) == min(5, len(expected & set(FIXTURE_OWNER))), f"{label}: limit not applied: {found}"


async def _check_calls(
    conn: Connection, expected: set[str], universe: list[str], label: str, must_hide: list[str] = (), samples: int = 30
) -> None:
    rng = random.Random(f"calls-{label}")
    visible = sorted((expected & set(universe)) - set(BUILTIN_SYSTEM_TOOLS))
    hidden = sorted(set(universe) - expected)
    for name in must_hide:
        assert name not in expected, f"{label}: fixture expects {name} hidden"
    visible_sample = rng.sample(visible, min(samples, len(visible)))
    hidden_sample = sorted(set(rng.sample(hidden, min(samples, len(hidden)))) | set(must_hide))
    for name in visible_sample:
        assert_ran(await conn.session.call_tool(name, {"path": "README.md"}), name, label)
    for name in hidden_sample:
        await assert_not_in_scope(conn.session, name, {"path": "README.md"})
    # system.execute_tool goes through the same decision.
    for name in visible_sample[:8]:
        result = await conn.session.call_tool("system.execute_tool", {"name": name, "arguments": {"q": 1}})
        assert_ran(result, name, f"{label}: execute_tool")
    for name in hidden_sample[:8]:
        await assert_not_in_scope(conn.session, "system.execute_tool", {"name": name, "arguments": {"q": 1}})


async def test_gateway_session_with_many_patterns(catalog_server) -> None:
    server, model = catalog_server
    record, claim = server.create_session(allowed_tool_names=SESSION_ALLOW, denied_tool_names=SESSION_DENY)
    expected = model.visible(allowed=SESSION_ALLOW, denied=SESSION_DENY)
    fixture_visible = expected & set(FIXTURE_OWNER)
    assert 40 <= len(fixture_visible) <= 300, f"fixture yields {len(fixture_visible)} visible tools"
    # Each reason for hiding is represented: a pattern deny, no allow match, no tier, case mismatch.
    must_hide = [
        "kb.support_delete_article",  # *_delete_*
        "kb.support_internal_faq",  # kb*_internal_* (crosses the dot)
        "crm.contact_export_read",  # crm.contact_export* beats crm.contact_* and crm.*_read
        "crm.contact_bulk-update",  # *-update
        "kb.Support_faq",  # case-sensitive: not kb.support_*
        "billing.refund_get",  # allowed, but no tier
        "hr.employee_get",  # allowed by hr.*, but no tier
        "hr.read_salary_get",  # has a tier, denied
        "ci.deploy_status",  # ci.deploy_*
        "docs.api_v1_get",  # no allow pattern
        "repo.write_file",  # built-in, denied
        "shell.run",  # allowed exactly, denied by shell.* (deny wins)
        "nosuch.tool",  # does not exist
    ]
    for name in ["kb.support_faq", "crm.account_read", "ci.job_status", "billing.usage_monthly_report",
                 "hr.read_directory_get", "docs.admin_guide_get", "kb.eng_search_index", "repo.read_file"]:
        assert name in expected, f"fixture expects {name} visible"

    async with http_mcp(server.mcp_url, claim) as conn:
        await _check_listing(conn, expected, "gateway")
        await _check_search(conn, expected, "gateway")
        await _check_calls(conn, expected, list(model.catalog) + ["nosuch.tool"], "gateway", must_hide)

    # The same session through a claim narrowed by allowed_tools, on a new connection.
    claim_allowed = ["kb.*", "ci.job_*", "docs.*", "repo.read_file"]
    narrowed = server.mint_claim(record["id"], allowed_tools=claim_allowed)
    expected_narrow = model.visible(allowed=SESSION_ALLOW, denied=SESSION_DENY, claim_allowed=claim_allowed)
    assert expected_narrow < expected
    async with http_mcp(server.mcp_url, narrowed) as conn:
        await _check_listing(conn, expected_narrow, "claim-narrowed")
        await _check_calls(conn, expected_narrow, list(model.catalog), "claim-narrowed", ["crm.account_read"], 15)

    # /mcp/servers/kb narrows the same session to one server; it never widens.
    for endpoint in ["kb", "billing", "repo"]:
        fresh = server.mint_claim(record["id"])
        expected_endpoint = model.visible(allowed=SESSION_ALLOW, denied=SESSION_DENY, endpoint_server=endpoint)
        assert expected_endpoint == {n for n in expected if n in BUILTIN_SYSTEM_TOOLS or n.startswith(endpoint + ".")}
        async with http_mcp(server.server_url(endpoint), fresh) as conn:
            await _check_listing(conn, expected_endpoint, f"endpoint-{endpoint}")
            await _check_search(conn, expected_endpoint, f"endpoint-{endpoint}", samples=10)
            others = sorted(n for n in expected if n not in expected_endpoint)[:10]
            await _check_calls(conn, expected_endpoint, list(model.catalog), f"endpoint-{endpoint}", others, 10)

    # An unknown server endpoint and the reserved system server are not endpoints.
    for endpoint in ["nosuch", "system"]:
        fresh = server.mint_claim(record["id"])
        response = await raw_post(server.server_url(endpoint), INITIALIZE_BODY, raw_headers(fresh))
        assert response.status_code == 404, (endpoint, response.status_code, response.text)


async def test_bundle_scoped_sessions(catalog_server) -> None:
    server, model = catalog_server
    deny = ["*_delete_*", "crm.contact_export*", "*_admin"]
    record, claim = server.create_session(bundle_id="support-desk", denied_tool_names=deny)
    expected = model.visible(bundle_id="support-desk", denied=deny)
    assert len(expected & set(FIXTURE_OWNER)) >= 20
    async with http_mcp(server.mcp_url, claim) as conn:
        await _check_listing(conn, expected, "bundle-support-desk")
        await _check_search(conn, expected, "bundle-support-desk")
        await _check_calls(
            conn, expected, list(model.catalog), "bundle-support-desk",
            ["kb.finance_faq", "repo.list_dir", "crm.contact_export_read", "kb.Support_faq", "crm.lead_read"],
        )

    # The bundle endpoint combination: /mcp/servers/crm narrows the bundle to its crm part.
    fresh = server.mint_claim(record["id"])
    expected_crm = model.visible(bundle_id="support-desk", denied=deny, endpoint_server="crm")
    async with http_mcp(server.server_url("crm"), fresh) as conn:
        await _check_listing(conn, expected_crm, "bundle-endpoint-crm")
        await _check_calls(conn, expected_crm, list(model.catalog), "bundle-endpoint-crm", ["kb.support_faq"], 10)

    # The finance bundle with an allow list: tools without a tier (billing.refund_* ...) stay hidden.
    allow = ["billing.*", "kb.finance_faq", "kb.finance_list"]
    _, claim = server.create_session(bundle_id="finance", allowed_tool_names=allow)
    expected = model.visible(bundle_id="finance", allowed=allow)
    async with http_mcp(server.mcp_url, claim) as conn:
        await _check_listing(conn, expected, "bundle-finance")
        await _check_calls(
            conn, expected, list(model.catalog), "bundle-finance",
            ["billing.refund_get", "billing.tax_list", "kb.finance_export", "repo.read_file"],
        )


async def test_server_scoped_sessions(catalog_server) -> None:
    server, model = catalog_server
    allow = ["crm.*", "kb.*"]  # kb.* cannot widen a crm-scoped session
    deny = ["*_admin", "crm.deal_*", "crm.Contact_*"]
    record, claim = server.create_session(server_id="crm", allowed_tool_names=allow, denied_tool_names=deny)
    expected = model.visible(server_id="crm", allowed=allow, denied=deny)
    assert all(n in BUILTIN_SYSTEM_TOOLS or n.startswith("crm.") for n in expected)
    async with http_mcp(server.mcp_url, claim) as conn:
        await _check_listing(conn, expected, "server-crm")
        await _check_search(conn, expected, "server-crm")
        await _check_calls(
            conn, expected, list(model.catalog), "server-crm",
            ["kb.support_faq", "crm.deal_read", "crm.Contact_read", "crm.account_audit_admin", "repo.read_file"],
        )

    # /mcp/servers/crm serves the same set; /mcp/servers/kb leaves only the system built-ins.
    fresh = server.mint_claim(record["id"])
    async with http_mcp(server.server_url("crm"), fresh) as conn:
        await _check_listing(conn, expected, "server-crm-endpoint-crm")
    fresh = server.mint_claim(record["id"])
    async with http_mcp(server.server_url("kb"), fresh) as conn:
        await _check_listing(conn, set(BUILTIN_SYSTEM_TOOLS), "server-crm-endpoint-kb")
        await assert_not_in_scope(conn.session, "crm.account_read")
        await assert_not_in_scope(conn.session, "kb.support_faq")
        assert search_names(await conn.session.call_tool("system.search_tools", {"query": "read"})) == []


async def test_server_and_bundle_together_are_rejected(catalog_server) -> None:
    server, _ = catalog_server
    body: dict[str, Any] = {
        "tenant_id": "acme", "actor_id": "alice", "workspace_id": "w1", "server_id": "crm", "bundle_id": "finance",
    }
    response = server.admin("POST", "/sessions", body)
    assert response.status_code == 400, response.text
    # And a PATCH that would create the combination is rejected too, leaving the session unchanged.
    record, _ = server.create_session(server_id="crm")
    response = server.admin("PATCH", f"/sessions/{record['id']}", {"bundle_id": "finance"})
    assert response.status_code == 400, response.text
    current = server.admin("GET", f"/sessions/{record['id']}", expect=200).json()["session"]
    assert current.get("server_id") == "crm" and current.get("bundle_id") is None, current
