"""Streamable HTTP with the official Python client: initialize, list, call, per-request auth."""

from __future__ import annotations

import warnings

import httpx
import pytest

from interop_support import (
    BUILTIN_SYSTEM_TOOLS,
    BUILTIN_WORKSPACE_TOOLS,
    assert_ok,
    assert_read_fixture,
    assert_not_in_scope,
    assert_refused,
    INITIALIZE_BODY,
    http_mcp,
    jsonrpc_messages,
    raw_headers,
    raw_post,
)
from mcp_compat import ClientSession, streamablehttp_client, wire

pytestmark = pytest.mark.anyio


async def test_python_client_initializes_lists_and_calls(server) -> None:
    session_record, claim = server.create_session(denied_tool_names=["shell.*", "repo.write_file"])
    # The (deprecated but widely used) `streamablehttp_client(url, headers=...)` entry point; mcp 2.x
    # removed it, and there mcp_compat gives its replacement (the headers on the HTTP client).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = streamablehttp_client(server.mcp_url, headers={"Authorization": f"Bearer {claim}"})
    async with client as (read, write, get_session_id):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert wire(init, "serverInfo").name == "leasehold"
            assert init.capabilities.tools is not None and wire(init.capabilities.tools, "listChanged") is True
            assert get_session_id(), "no Mcp-Session-Id assigned"

            names = [t.name for t in (await session.list_tools()).tools]
            expected = set(BUILTIN_SYSTEM_TOOLS) | set(BUILTIN_WORKSPACE_TOOLS) - {"shell.run", "repo.write_file"}
            assert set(names) == expected
            assert len(names) == len(set(names)), "duplicate tool names in tools/list"

            # A visible tool passes every check and runs in a confined worker: the fixture's bytes.
            result = await session.call_tool("repo.read_file", {"path": "README.md"})
            assert_read_fixture(result)

            # Hidden (denied) and nonexistent tools are refused identically.
            await assert_not_in_scope(session, "shell.run", {"command": "id"})
            await assert_not_in_scope(session, "repo.write_file", {"path": "x", "content": "y"})
            await assert_not_in_scope(session, "nope.does_not_exist")

            # execute_tool re-applies the target's scope.
            result = await session.call_tool("system.execute_tool", {"name": "repo.stat", "arguments": {"path": "."}})
            assert assert_ok(result, "system.execute_tool(repo.stat)")["type"] == "dir"
            await assert_not_in_scope(session, "system.execute_tool", {"name": "shell.run", "arguments": {"command": "id"}})


async def test_every_request_needs_the_authorization_header(server) -> None:
    _, claim = server.create_session()
    async with http_mcp(server.mcp_url, claim) as conn:
        sid = conn.mcp_session_id
        version = conn.protocol_version
        list_body = {"jsonrpc": "2.0", "id": 99, "method": "tools/list", "params": {}}
        call_body = {
            "jsonrpc": "2.0", "id": 100, "method": "tools/call",
            "params": {"name": "repo.read_file", "arguments": {"path": "README.md"}},
        }

        # Same connection, no Authorization header: refused, even though the connection is live.
        for body in (list_body, call_body):
            response = await raw_post(server.mcp_url, body, raw_headers(None, sid, version))
            assert_refused(response, "claim_missing")

        # The GET (SSE) stream and DELETE need the claim too: knowing an Mcp-Session-Id is not enough.
        async with httpx.AsyncClient(timeout=10) as client:
            get_headers = {**raw_headers(None, sid, version), "Accept": "text/event-stream"}
            async with client.stream("GET", server.mcp_url, headers=get_headers) as response:
                await response.aread()
                assert_refused(response, "claim_missing")
            response = await client.delete(server.mcp_url, headers=raw_headers(None, sid, version))
            assert_refused(response, "claim_missing")

        # A garbage bearer on the live connection: refused as an invalid claim.
        response = await raw_post(server.mcp_url, list_body, raw_headers("not-a-jwt", sid, version))
        assert response.status_code == 401, response.text
        assert response.json()["error"]["message"].startswith("claim_invalid:"), response.text

        # The same raw request with the bound claim is served (proves the refusals above were
        # about the header, not about the raw request shape).
        response = await raw_post(server.mcp_url, list_body, raw_headers(claim, sid, version))
        assert response.status_code == 200, response.text
        [message] = [m for m in jsonrpc_messages(response) if m.get("id") == 99]
        assert "repo.read_file" in {t["name"] for t in message["result"]["tools"]}, message

        # And the Python client on that connection still works afterwards.
        names = await conn.tool_names()
        assert "repo.read_file" in names

    # Initialize without any claim: refused before a connection exists.
    response = await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(None))
    assert_refused(response, "claim_missing")
    assert "mcp-session-id" not in {k.lower() for k in response.headers}



async def test_requests_the_sdk_serves_keep_their_one_authentication(server) -> None:
    """Requests the SDK serves (ping, a tools/call the edge cannot parse) go on with the context the
    endpoint authenticated them with; a client's own value for the internal context header is
    dropped, so it neither picks another request's context nor breaks its own."""
    _, claim = server.create_session()
    globex_root = server.workspace_dir("globex")
    (globex_root / "README.md").write_text("globex's own readme\n")
    server.register_workspace(globex_root, tenant="globex")
    other_session, other_claim = server.create_session(tenant_id="globex", actor_id="bob")
    assert other_session["tenant_id"] == "globex", other_session
    async with http_mcp(server.mcp_url, claim) as conn, http_mcp(server.mcp_url, other_claim) as other:
        sid = conn.mcp_session_id
        version = conn.protocol_version
        ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
        odd_call = {"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                    "params": {"name": "repo.read_file", "arguments": ["README.md"]}}
        read = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                "params": {"name": "repo.read_file", "arguments": {"path": "README.md"}}}
        for forged in (None, "rq_guess", "x" * 5000):
            headers = raw_headers(claim, sid, version)
            if forged is not None:
                headers["X-Leasehold-Request-Context"] = forged
            response = await raw_post(server.mcp_url, ping, headers)
            assert response.status_code == 200, response.text
            [message] = [m for m in jsonrpc_messages(response) if m.get("id") == 7]
            assert message.get("result") == {}, message
            response = await raw_post(server.mcp_url, odd_call, headers)
            [message] = [m for m in jsonrpc_messages(response) if m.get("id") == 8]
            # The SDK answers a params it cannot decode with -32603 (it would be -32602 by the spec).
            assert message["error"]["code"] in (-32602, -32603), message
            response = await raw_post(server.mcp_url, read, headers)
            [message] = [m for m in jsonrpc_messages(response) if m.get("id") == 9]
            assert message["result"]["isError"] is False, message
        # Without the claim, the header is no way in.
        headers = {**raw_headers(None, sid, version), "X-Leasehold-Request-Context": "rq_guess"}
        assert_refused(await raw_post(server.mcp_url, read, headers), "claim_missing")
        # The other tenant's live connection stays its own: it reads globex's workspace, not acme's.
        assert "repo.read_file" in await other.tool_names()
        result = await other.session.call_tool("repo.read_file", {"path": "README.md"})
        assert assert_ok(result, "repo.read_file")["content"] == "globex's own readme\n", result
