"""Connection lifecycle: revoke and hand-off close live connections; SIGTERM drains open streams.

Each test opens the client's standalone GET SSE stream (the one a real MCP client keeps open for
server notifications) with raw HTTP, so the test knows exactly when the stream is open, then checks
that the server ends it.
"""

from __future__ import annotations

import json
import subprocess
from contextlib import asynccontextmanager
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from interop_support import INITIALIZE_BODY, raw_headers, raw_post

pytestmark = pytest.mark.anyio

STREAM_END_TIMEOUT_S = 10.0


async def open_connection(server, claim: str) -> str:
    """initialize + notifications/initialized over raw HTTP; returns the Mcp-Session-Id."""
    response = await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(claim))
    assert response.status_code == 200, response.text
    mcp_session_id = response.headers["mcp-session-id"]
    version = INITIALIZE_BODY["params"]["protocolVersion"]
    initialized = await raw_post(
        server.mcp_url,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        raw_headers(claim, mcp_session_id, version),
    )
    assert initialized.status_code == 202, initialized.text
    return mcp_session_id


@asynccontextmanager
async def open_get_stream(server, claim: str, mcp_session_id: str) -> AsyncIterator[httpx.Response]:
    """The standalone GET SSE stream, open (headers received) when the body of the block runs."""
    headers = raw_headers(claim, mcp_session_id, INITIALIZE_BODY["params"]["protocolVersion"])
    headers["Accept"] = "text/event-stream"
    del headers["Content-Type"]
    async with httpx.AsyncClient(timeout=httpx.Timeout(20, read=None)) as client:
        async with client.stream("GET", server.mcp_url, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            yield response


async def assert_stream_ends(response: httpx.Response) -> None:
    """Reads the stream to its end; fails if the server keeps it open."""
    with anyio.fail_after(STREAM_END_TIMEOUT_S):
        async for _ in response.aiter_raw():
            pass


async def assert_connection_gone(server, claim: str, mcp_session_id: str) -> None:
    version = INITIALIZE_BODY["params"]["protocolVersion"]
    listed = await raw_post(
        server.mcp_url, {"jsonrpc": "2.0", "id": 9, "method": "tools/list"}, raw_headers(claim, mcp_session_id, version)
    )
    assert listed.status_code == 404, f"connection still served after close: {listed.status_code} {listed.text}"


async def test_revoking_a_session_closes_its_live_connections(server) -> None:
    session, claim = server.create_session()
    other_session, other_claim = server.create_session(actor_id="bystander")
    mcp_session_id = await open_connection(server, claim)
    bystander_id = await open_connection(server, other_claim)
    async with open_get_stream(server, claim, mcp_session_id) as stream:
        await server.aadmin("DELETE", f"/sessions/{session['id']}", expect=200)
        await assert_stream_ends(stream)
    await assert_connection_gone(server, claim, mcp_session_id)
    # Re-initializing says why, with the stable code.
    again = await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(claim))
    assert again.status_code == 401 and 'error_code="session_revoked"' in again.headers["www-authenticate"]
    # Another session's connection is untouched.
    version = INITIALIZE_BODY["params"]["protocolVersion"]
    listed = await raw_post(
        server.mcp_url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, raw_headers(other_claim, bystander_id, version)
    )
    assert listed.status_code == 200, listed.text


async def test_revoking_the_lease_closes_live_connections(server) -> None:
    session, claim = server.create_session()
    mcp_session_id = await open_connection(server, claim)
    async with open_get_stream(server, claim, mcp_session_id) as stream:
        await server.aadmin("DELETE", f"/sessions/{session['id']}/lease", expect=200)
        await assert_stream_ends(stream)
    await assert_connection_gone(server, claim, mcp_session_id)


async def test_actor_hand_off_closes_the_previous_actors_connections(server) -> None:
    session, claim = server.create_session()
    mcp_session_id = await open_connection(server, claim)
    async with open_get_stream(server, claim, mcp_session_id) as stream:
        await server.aadmin("PATCH", f"/sessions/{session['id']}", {"actor_id": "bob"}, expect=200)
        await assert_stream_ends(stream)
    # The new actor's claim cannot pick up the previous actor's connection.
    bob_claim = await server.amint_claim(session["id"])
    await assert_connection_gone(server, bob_claim, mcp_session_id)
    assert await open_connection(server, bob_claim)


async def test_a_scope_patch_keeps_the_connection(server) -> None:
    session, claim = server.create_session()
    mcp_session_id = await open_connection(server, claim)
    await server.aadmin("PATCH", f"/sessions/{session['id']}", {"denied_tool_names": ["shell.*"]}, expect=200)
    version = INITIALIZE_BODY["params"]["protocolVersion"]
    listed = await raw_post(
        server.mcp_url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, raw_headers(claim, mcp_session_id, version)
    )
    assert listed.status_code == 200, listed.text


async def test_sigterm_ends_open_streams_and_exits(server) -> None:
    _, claim = server.create_session()
    mcp_session_id = await open_connection(server, claim)
    async with open_get_stream(server, claim, mcp_session_id) as stream:
        exit_code = await anyio.to_thread.run_sync(server.terminate, STREAM_END_TIMEOUT_S)
        assert exit_code == 0, f"leasehold serve did not exit cleanly on SIGTERM with a GET stream open: {exit_code}"
        await assert_stream_ends(stream)


async def test_lease_expiry_closes_connections_when_it_happens(server) -> None:
    """No request is needed: at the lease's end its connections close and the audit says so."""
    session, claim = server.create_session(lease_ttl_seconds=2)
    mcp_session_id = await open_connection(server, claim)
    async with open_get_stream(server, claim, mcp_session_id) as stream:
        await assert_stream_ends(stream)
    await assert_connection_gone(server, claim, mcp_session_id)
    records = subprocess.run(
        [str(server.binary), "audit", "export", "--state-dir", str(server.state_dir)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    expired = [json.loads(r)["event"] for r in records if '"lease.expired"' in r]
    assert [(e["session"], e["lease"]) for e in expired] == [(session["id"], session["lease"]["id"])]
