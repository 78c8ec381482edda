"""MCP 2026-07-28 (sessionless) with the official Python SDK 2.x `Client` through the real binary,
over Streamable HTTP and stdio: `server/discover` adopts the revision, `tools/list` carries its cache
rules (`cacheScope: private`, a bounded `ttlMs`), calls run, `subscriptions/listen` hears a scope
PATCH, and an approval is asked inside the call (`InputRequiredResult` -> the client's elicitation
callback -> the retry with the signed `requestState` runs the call once).

The 1.x line has no `Client` and no 2026-07-28: this file skips there, with that reason, and runs in
`make test-interop-mcp2`; the raw-bytes attacks on the revision are in test_attacks_sessionless.py.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import anyio
import pytest

from interop_support import (
    BUILTIN_SYSTEM_TOOLS,
    BUILTIN_WORKSPACE_TOOLS,
    OPERATOR_KEY,
    POLICIES_DIR,
    TENANT,
    WORKSPACE,
    assert_read_fixture,
    run_cli,
)
from mcp_compat import MCP_MAJOR, StdioServerParameters

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(MCP_MAJOR < 2, reason="MCP 2026-07-28 needs the mcp 2.x Client: make test-interop-mcp2 runs this"),
]

MODERN = "2026-07-28"
RAN = "unknown_tool"  # kb.publish has no upstream: a call that got past its approval answers this


def http_client(url: str, claim: str, **kwargs):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {claim}"}, timeout=30)
    return http, Client(streamable_http_client(url, http_client=http), mode="auto", **kwargs)


async def check_listing_and_call(client) -> None:
    assert client.protocol_version == MODERN
    listed = await client.list_tools()
    assert {t.name for t in listed.tools} == set(BUILTIN_SYSTEM_TOOLS) | set(BUILTIN_WORKSPACE_TOOLS)
    # A listing is one claim's view: never shareable, reusable for a bounded time.
    assert listed.cache_scope == "private"
    assert 0 < listed.ttl_ms <= 30_000
    assert_read_fixture(await client.call_tool("repo.read_file", {"path": "README.md"}))


async def test_the_2x_client_adopts_2026_over_http(server) -> None:
    _, claim = server.create_session()
    http, client = http_client(server.mcp_url, claim)
    async with http:
        with anyio.fail_after(30):
            async with client:
                await check_listing_and_call(client)


def stdio_params(binary: Path, state_dir: Path, claim: str, *extra: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=str(binary),
        args=["serve", "--stdio", "--state-dir", str(state_dir), "--policies", str(POLICIES_DIR), *extra],
        env={"LEASEHOLD_CLAIM": claim, "LEASEHOLD_OPERATOR_KEY": OPERATOR_KEY, "PATH": os.environ.get("PATH", "")},
    )


def cli_session(binary: Path, state_dir: Path, workspace_root: Path) -> dict:
    run_cli(binary, "workspace", "add", "--state-dir", str(state_dir), "--policies", str(POLICIES_DIR),
            "--tenant", TENANT, "--workspace", WORKSPACE, "--root", str(workspace_root))
    return json.loads(run_cli(binary, "session", "create", "--state-dir", str(state_dir), "--policies",
                              str(POLICIES_DIR), "--tenant", TENANT, "--actor", "alice", "--workspace", WORKSPACE))


async def test_the_2x_client_adopts_2026_over_stdio(binary: Path, state_dir: Path, workspace_root: Path) -> None:
    from mcp import Client

    created = cli_session(binary, state_dir, workspace_root)
    with anyio.fail_after(30):
        async with Client(stdio_params(binary, state_dir, created["claim"])) as client:
            await check_listing_and_call(client)


async def patch_and_hear(client, patch) -> None:
    """Listens for list_changed, PATCHes the session, and sees the change in the next listing."""
    from mcp.client.subscriptions import ToolsListChanged

    with anyio.fail_after(30):
        before = {t.name for t in (await client.list_tools()).tools}
        assert "repo.write_file" in before
        async with client.listen(tools_list_changed=True) as subscription:
            assert subscription.honored.tools_list_changed is True
            await patch({"denied_tool_names": ["repo.write*"]})
            async for event in subscription:
                assert isinstance(event, ToolsListChanged), event
                break
        after = {t.name for t in (await client.list_tools()).tools}
        assert after == before - {"repo.write_file"}, after


async def test_listen_hears_a_scope_patch_over_http(server) -> None:
    session, claim = server.create_session()
    http, client = http_client(server.mcp_url, claim)

    async def patch(body: dict) -> None:
        await server.aadmin("PATCH", f"/sessions/{session['id']}", body, expect=200)

    async with http:
        async with client:
            await patch_and_hear(client, patch)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_listen_hears_a_scope_patch_over_stdio(binary: Path, state_dir: Path, workspace_root: Path) -> None:
    """One runner serves the stdio client and, on HTTP, the admin API that PATCHes its session."""
    import httpx2
    from mcp import Client

    created = cli_session(binary, state_dir, workspace_root)
    port = free_port()
    params = stdio_params(binary, state_dir, created["claim"], "--http", f"127.0.0.1:{port}")

    async def patch(body: dict) -> None:
        async with httpx2.AsyncClient(timeout=20) as admin:
            response = await admin.patch(
                f"http://127.0.0.1:{port}/api/v1/sessions/{created['session']['id']}", json=body,
                headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
            assert response.status_code == 200, response.text

    with anyio.fail_after(40):
        async with Client(params) as client:
            assert client.protocol_version == MODERN
            await patch_and_hear(client, patch)


async def test_an_approval_is_asked_inside_the_call(approval_server) -> None:
    import mcp.types as types

    server = approval_server
    session, claim = server.create_session()
    asked: list[types.ElicitRequestParams] = []

    async def elicit(context, params):
        # The user follows the link and an approver grants it; the client then retries.
        asked.append(params)
        approval_id = params.url.rsplit("/", 1)[1]
        await server.aadmin("POST", f"/approvals/{approval_id}/grant", {"uses": 1}, expect=200)
        return types.ElicitResult(action="accept")

    http, client = http_client(server.mcp_url, claim, elicitation_callback=elicit)
    async with http:
        with anyio.fail_after(30):
            async with client:
                result = await client.call_tool("kb.publish", {"page": "q3-results", "visibility": "public"})
    assert len(asked) == 1 and asked[0].mode == "url", asked
    assert "kb.publish" in asked[0].message and "q3-results" in asked[0].message
    assert result.structured_content["error"]["code"] == RAN, result  # past the gate: it ran
    records = (await server.aadmin("GET", f"/audit?session_id={session['id']}&limit=10000", expect=200)).json()
    assert sum(1 for r in records["records"] if r["event"].get("event") == "approval.used") == 1


async def test_revoking_the_session_ends_its_listen_streams_and_its_claim(server) -> None:
    from mcp_compat import MCPError

    session, claim = server.create_session()
    http, client = http_client(server.mcp_url, claim)
    async with http:
        with anyio.fail_after(30):
            async with client:
                async with client.listen(tools_list_changed=True) as subscription:
                    await server.aadmin("DELETE", f"/sessions/{session['id']}", expect=200)
                    # The stream ends gracefully (the listen result), without an event.
                    events = [event async for event in subscription]
                    assert events == [], events
                with pytest.raises(MCPError) as refused:
                    await client.call_tool("repo.read_file", {"path": "README.md"})
                assert "session_revoked" in str(refused.value), refused.value
