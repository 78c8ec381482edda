"""mcp 2.x's high-level `Client`: by default (`mode="auto"`) it opens with a `server/discover` probe
at protocol 2026-07-28 and falls back to `initialize` on any JSON-RPC error, over the same
transport and with the same credentials.

Leasehold answers the probe (it speaks 2026-07-28 beside the handshake era), so `auto` adopts the
new revision and `legacy` still negotiates 2025-11-25 with the same claim. A first request the
server refuses opens no connection and binds no claim (it used to bind it, so a fallback's
`initialize` got `claim_replayed`).
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from interop_support import (
    BUILTIN_SYSTEM_TOOLS,
    BUILTIN_WORKSPACE_TOOLS,
    INITIALIZE_BODY,
    POLICIES_DIR,
    TENANT,
    WORKSPACE,
    assert_read_fixture,
    raw_headers,
    raw_post,
    run_cli,
)
from mcp_compat import MCP_MAJOR, StdioServerParameters

pytestmark = pytest.mark.anyio


DISCOVER = {
    "jsonrpc": "2.0", "id": 1, "method": "server/discover",
    "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}},
}


def needs_mcp2() -> None:
    if MCP_MAJOR < 2:
        pytest.skip("mcp.Client (connect-time era negotiation) is 2.x only: make test-interop-mcp2 runs this")


async def test_a_refused_first_request_does_not_use_up_the_claim(server) -> None:
    _, claim = server.create_session()
    # A probe without its version header (-32020) and a ping before initialize are refused.
    for first, version in ((DISCOVER, None), ({"jsonrpc": "2.0", "id": 1, "method": "ping"}, None)):
        response = await raw_post(server.mcp_url, first, raw_headers(claim, None, version))
        assert response.status_code == 400, response.text
        assert "mcp-session-id" not in {k.lower() for k in response.headers}
    response = await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(claim))
    assert response.status_code == 200, response.text


async def check_client(client, version: str = "2025-11-25") -> None:
    assert client.protocol_version == version
    names = {t.name for t in (await client.list_tools()).tools}
    assert names == set(BUILTIN_SYSTEM_TOOLS) | set(BUILTIN_WORKSPACE_TOOLS)
    assert_read_fixture(await client.call_tool("repo.read_file", {"path": "README.md"}))


async def http_client_run(server, mode: str) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    _, claim = server.create_session()
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {claim}"}, timeout=30) as http:
        with anyio.fail_after(30):
            async with Client(streamable_http_client(server.mcp_url, http_client=http), mode=mode) as client:
                await check_client(client, "2025-11-25" if mode == "legacy" else "2026-07-28")


async def test_client_legacy_mode_over_http(server) -> None:
    needs_mcp2()
    await http_client_run(server, "legacy")


async def test_client_auto_mode_over_http(server) -> None:
    needs_mcp2()
    await http_client_run(server, "auto")


async def test_client_auto_mode_over_stdio(binary: Path, state_dir: Path, workspace_root: Path) -> None:
    needs_mcp2()
    from mcp import Client

    run_cli(binary, "workspace", "add", "--state-dir", str(state_dir), "--policies", str(POLICIES_DIR),
            "--tenant", TENANT, "--workspace", WORKSPACE, "--root", str(workspace_root))
    created = json.loads(run_cli(binary, "session", "create", "--state-dir", str(state_dir), "--policies",
                                 str(POLICIES_DIR), "--tenant", TENANT, "--actor", "alice", "--workspace", WORKSPACE))
    params = StdioServerParameters(
        command=str(binary),
        args=["serve", "--stdio", "--state-dir", str(state_dir), "--policies", str(POLICIES_DIR)],
        env={"LEASEHOLD_CLAIM": created["claim"]},
    )
    # The probe is answered over stdio too: the client adopts 2026-07-28.
    with anyio.fail_after(30):
        async with Client(params) as client:
            await check_client(client, "2026-07-28")

