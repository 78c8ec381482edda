"""Claim binding, revocation and lease renewal as seen by the Python client and raw HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest

from interop_support import (
    INITIALIZE_BODY,
    Connection,
    assert_ok,
    assert_refused,
    expect_client_http_refusal,
    http_mcp,
    raw_headers,
    raw_post,
)
from mcp_compat import MCPError, find_http_refusal

pytestmark = pytest.mark.anyio

LIST = {"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {}}


async def raw_list(server, conn: Connection, claim: str | None) -> httpx.Response:
    """tools/list on `conn`'s MCP session id with an explicit bearer."""
    return await raw_post(server.mcp_url, LIST, raw_headers(claim, conn.mcp_session_id, conn.protocol_version))


async def client_refused_midway(
    server, claim: str, between: Callable[[Connection], Awaitable[Any]], code: str
) -> None:
    """Connects with `claim`, lists, runs `between`, then expects the *Python client's* next request
    to fail with HTTP 401 (and a raw request on the same connection to name `code`)."""
    raw_response: list[httpx.Response] = []
    try:
        with anyio.fail_after(30):
            async with http_mcp(server.mcp_url, claim) as conn:
                assert "repo.read_file" in await conn.tool_names()
                await between(conn)
                raw_response.append(await raw_list(server, conn, claim))
                await conn.session.list_tools()
    except BaseException as exc:  # noqa: BLE001 - the client's task group raises an exception group
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        found = find_http_refusal(exc)
        if found is None:
            raise
        assert found.status_code == 401, found
        assert raw_response, "the refusal happened before the raw check"
        assert_refused(raw_response[0], code)
        return
    raise AssertionError(f"the Python client kept working after the claim should be refused ({code})")


async def client_disconnected_midway(
    server, claim: str, between: Callable[[Connection], Awaitable[Any]], code: str
) -> None:
    """Connects with `claim`, lists, runs `between` (which must close the connection server-side),
    then expects the Python client's next request to fail as a terminated session (HTTP 404), and a
    fresh initialize with the same claim to be refused with `code`."""
    raw_response: list[httpx.Response] = []
    with anyio.fail_after(30):
        async with http_mcp(server.mcp_url, claim) as conn:
            assert "repo.read_file" in await conn.tool_names()
            await between(conn)
            raw_response.append(await raw_list(server, conn, claim))
            # The client's request is answered 404 and fails (mcp 1.x says "Session terminated";
            # 2.x passes on the JSON-RPC error of the 404's body).
            with pytest.raises(MCPError):
                await conn.session.list_tools()
            assert conn.transport.last_post_status == 404, conn.transport.post_statuses
    assert raw_response[0].status_code == 404, raw_response[0].text
    assert_refused(await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(claim)), code)


async def test_claim_is_bound_to_its_first_connection(server) -> None:
    record, claim = server.create_session()
    async with http_mcp(server.mcp_url, claim) as first:
        assert "repo.read_file" in await first.tool_names()

        # A second connection presenting the same claim: refused, with no session id handed out.
        response = await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(claim))
        assert_refused(response, "claim_replayed")
        assert "mcp-session-id" not in {k.lower() for k in response.headers}
        # ...also through a server-scoped endpoint...
        response = await raw_post(server.server_url("repo"), INITIALIZE_BODY, raw_headers(claim))
        assert_refused(response, "claim_replayed")
        # ...and through the official Python client.
        await expect_client_http_refusal(server.mcp_url, claim)

        # The first connection is unaffected by the replay attempts.
        assert assert_ok(await first.session.call_tool("repo.stat", {"path": "."}), "repo.stat")["type"] == "dir"

        # A fresh claim for the same session opens a second connection; it is bound to that one.
        second_claim = server.mint_claim(record["id"])
        async with http_mcp(server.mcp_url, second_claim) as second:
            assert "repo.read_file" in await second.tool_names()
            assert second.mcp_session_id != first.mcp_session_id
            # Each claim stays on its own connection: swapping them is a replay.
            assert_refused(await raw_list(server, first, second_claim), "claim_replayed")
            assert_refused(await raw_list(server, second, claim), "claim_replayed")

        # A claim of another session cannot drive this connection.
        _, other_claim = server.create_session(actor_id="bob")
        response = await raw_list(server, first, other_claim)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["message"].split(":")[0] in {"boundary_mismatch", "claim_replayed"}, response.text
        assert "repo.read_file" in await first.tool_names()


async def test_revoked_session_is_refused_everywhere(server) -> None:
    record, claim = server.create_session()
    unused = server.mint_claim(record["id"])

    async def revoke(conn: Connection) -> None:
        revoked = (await server.aadmin("DELETE", f"/sessions/{record['id']}", expect=200)).json()["session"]
        assert revoked.get("revoked_at"), revoked

    # Revoking closes the session's live connections (the client sees a terminated session);
    # re-initializing with the claim names the reason.
    await client_disconnected_midway(server, claim, revoke, "session_revoked")

    # A claim minted before the revoke and never used is refused too, on a new connection.
    assert_refused(await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(unused)), "session_revoked")
    await expect_client_http_refusal(server.mcp_url, unused)
    # No new claims, no lease renewal, no PATCH for a revoked session.
    assert (await server.aadmin("POST", f"/sessions/{record['id']}/claims")).status_code == 409
    assert (await server.aadmin("POST", f"/sessions/{record['id']}/lease")).status_code == 409
    assert (await server.aadmin("PATCH", f"/sessions/{record['id']}", {"denied_tool_names": ["x.*"]})).status_code == 409


async def test_renewed_lease_replaces_old_claims(server) -> None:
    record, claim = server.create_session()
    old_unused = server.mint_claim(record["id"])
    renewed: dict[str, Any] = {}

    async def renew(conn: Connection) -> None:
        data = (await server.aadmin("POST", f"/sessions/{record['id']}/lease", expect=201)).json()
        assert data["session"]["lease"]["id"] != record["lease"]["id"]
        renewed.update(data)

    await client_refused_midway(server, claim, renew, "lease_replaced")

    # A claim of the old lease that was never used: refused as well.
    assert_refused(await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(old_unused)), "lease_replaced")

    # The claim returned by the renewal works on a new connection.
    async with http_mcp(server.mcp_url, renewed["claim"]) as conn:
        assert "repo.read_file" in await conn.tool_names()
        listing = assert_ok(await conn.session.call_tool("repo.list_dir", {"path": "."}), "repo.list_dir")
        assert [e["path"] for e in listing["entries"]] == ["README.md"], listing

    # And claims minted after the renewal carry the new lease.
    async with http_mcp(server.mcp_url, server.mint_claim(record["id"])) as conn:
        assert "repo.read_file" in await conn.tool_names()
